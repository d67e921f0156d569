/**
 * @module Membership over a real NATS server: nodes learn of each other from heartbeats, and a node that
 * starts after another knows it at once, not a heartbeat interval later.
 */

import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, startNats } from '../../test/support/broker-processes.mjs';
import { Membership, type NodeAnnouncement } from './membership.js';

let nats: Broker;
const connections: NatsConnection[] = [];
const memberships: Membership[] = [];

beforeAll(async () => {
  nats = await startNats();
}, 60_000);

afterAll(async () => {
  for (const membership of memberships) membership.close();
  await Promise.all(connections.map((connection) => connection.close()));
  await nats?.stop();
});

function announcement(id: string): NodeAnnouncement {
  return {
    id,
    url: `http://127.0.0.1:1/${id}`,
    startedAt: new Date().toISOString(),
    instances: 0,
    maxInstances: 10,
    memoryBytes: 0,
    maxMemoryBytes: 1,
    inFlight: 0,
    warm: [],
  };
}

/** A node whose next heartbeat is a minute away: what it knows comes from the first exchange alone. */
async function startNode(subject: string, id: string): Promise<Membership> {
  const connection = await connect({ servers: nats.url });
  connections.push(connection);
  const membership = new Membership({
    connection,
    subject,
    intervalMs: 60_000,
    deadAfterMs: 180_000,
    announce: () => announcement(id),
  });
  memberships.push(membership);
  membership.start();
  await connection.flush();
  return membership;
}

const peersOf = (membership: Membership): string[] =>
  membership
    .nodes()
    .filter((node) => !node.self)
    .map((node) => node.id);

/**
 * What the nodes know once it stops changing, or after 5 s: far less than the minute to the next
 * heartbeat, so only the first exchange can have told them.
 */
async function settled(nodes: readonly Membership[], expected: readonly string[][]): Promise<string[][]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const known = nodes.map(peersOf);
    if (JSON.stringify(known) === JSON.stringify(expected) || Date.now() > deadline) return known;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('cluster membership', () => {
  it('a node started first knows one started later at once, and the later one knows it too', async () => {
    const subject = 'test.membership.late';
    const first = await startNode(subject, 'a');
    // Node a's own heartbeat went out before b subscribed: b hears of a only if a answers b's.
    const second = await startNode(subject, 'b');
    expect(await settled([first, second], [['b'], ['a']])).toEqual([['b'], ['a']]);
  });

  it('three nodes started together all know each other without waiting for a heartbeat', async () => {
    const subject = 'test.membership.together';
    const started = await Promise.all(['c', 'd', 'e'].map((id) => startNode(subject, id)));
    const everyOther = [
      ['d', 'e'],
      ['c', 'e'],
      ['c', 'd'],
    ];
    expect(await settled(started, everyOther)).toEqual(everyOther);
  });

  it('a node that says goodbye is dropped by the others at once', async () => {
    const subject = 'test.membership.leaving';
    const stays = await startNode(subject, 'f');
    const leaves = await startNode(subject, 'g');
    expect(await settled([stays], [['g']])).toEqual([['g']]);
    leaves.close();
    expect(await settled([stays], [[]])).toEqual([[]]);
  });
});
