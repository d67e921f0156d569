/**
 * The cluster's durable queue against a real nats-server (JetStream on) and a real PostgreSQL: two queue
 * handles stand for two nodes sharing the work-queue consumer. What the embedded queue's conformance
 * suite asserts holds here too, with leases awaited (messages arrive from JetStream, not from a table),
 * plus what only a shared queue has: work spread over nodes, a node killed mid-delivery, a function one
 * node does not serve yet.
 */

import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Broker, startNats } from '../../test/support/broker-processes.mjs';
import { type RunningPostgres, startPostgres } from '../../test/support/postgres.js';
import { newMessage as message } from '../../test/support/queue-messages.js';
import type { QueueMessage } from '../queue/index.js';
import { JetStreamQueue, QUEUE_ALIVE, QUEUE_PUBLISHED, QUEUE_TABLES } from './js-queue.js';

const ACK_WAIT_MS = 1000;
const REPUBLISH_AFTER_MS = 500;
let postgres: RunningPostgres;
let nats: Broker;
const open: JetStreamQueue[] = [];
let functionCount = 0;

/** A function of its own per test, so one test's leftovers are not another's messages. */
function freshRef(): { namespace: string; name: string } {
  functionCount += 1;
  return { namespace: 'default', name: `fn${functionCount}` };
}

async function node(
  id: string,
  runsHere: (ref: { name: string }) => boolean = () => true,
  ackWaitMs = ACK_WAIT_MS,
  concurrency = 1000,
) {
  const queue = await JetStreamQueue.open({
    natsUrl: nats.url,
    postgresUrl: postgres.url,
    nodeId: id,
    ackWaitMs,
    concurrency,
    warn: () => undefined,
    republishAfterMs: REPUBLISH_AFTER_MS,
  });
  queue.start(runsHere);
  open.push(queue);
  return queue;
}

/** Leases until `count` messages of `ref` came (others' messages are completed out of the way). */
async function leaseSome(
  queue: JetStreamQueue,
  ref: { name: string },
  count: number,
  timeoutMs = 10_000,
): Promise<QueueMessage[]> {
  const got: QueueMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < count && Date.now() < deadline) {
    for (const leased of await queue.lease(count - got.length, 60_000)) {
      if (leased.ref.name === ref.name) got.push(leased);
      else await queue.complete(leased.id, 'succeeded', undefined);
    }
    if (got.length < count) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return got;
}

describe('cluster queue: NATS JetStream + PostgreSQL', () => {
  beforeAll(async () => {
    [postgres, nats] = await Promise.all([startPostgres(), startNats()]);
    // The cluster store's migrations 4, 6 and 7 (their SQL here: the store's worker thread runs from dist/).
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    await client.query(QUEUE_TABLES);
    await client.query(QUEUE_PUBLISHED);
    await client.query(QUEUE_ALIVE);
    await client.end();
  }, 120_000);

  afterEach(async () => {
    for (const queue of open.splice(0)) await queue.close();
  });

  afterAll(async () => {
    await Promise.all([postgres?.stop(), nats?.stop()]);
  });

  it('an accepted message is run once, and its result is read from any node', async () => {
    // A node that pulls a message holds it for its worker: b joins once a has taken it.
    const a = await node('a');
    const ref = freshRef();
    const stored = await a.enqueue(message(ref));
    expect(stored.state).toBe('queued');
    const [leased, ...rest] = await leaseSome(a, ref, 1);
    expect(rest).toHaveLength(0);
    expect(leased?.id).toBe(stored.id);
    expect(leased?.attempts).toBe(1);
    expect(leased?.request.body.toString()).toBe('{"n":1}');
    expect(leased?.request.headers).toEqual(['content-type', 'application/json']);
    const b = await node('b');
    expect((await b.get(stored.id))?.state).toBe('running');
    await a.complete(stored.id, 'succeeded', { status: 200, headers: [], body: Buffer.from('ok') });
    const done = await b.get(stored.id);
    expect(done?.state).toBe('succeeded');
    expect(done?.result?.body.toString()).toBe('ok');
    // Acked: no node gets it again.
    expect(await leaseSome(b, ref, 1, 1500)).toHaveLength(0);
  });

  it('spreads a burst over the nodes, each message to one of them', async () => {
    const [a, b] = [await node('a'), await node('b')];
    const ref = freshRef();
    const ids = await Promise.all(
      Array.from({ length: 200 }, () => a.enqueue(message(ref)).then((m) => m.id)),
    );
    const seen: string[] = [];
    const takeAll = async (queue: JetStreamQueue): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while (seen.length < ids.length && Date.now() < deadline) {
        const leased = await queue.lease(50, 60_000);
        for (const m of leased) {
          seen.push(m.id);
          await queue.complete(m.id, 'succeeded', undefined);
        }
        if (leased.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    await Promise.all([takeAll(a), takeAll(b)]);
    expect(seen.sort()).toEqual([...ids].sort());
  });

  it('redelivers, to another node, what a killed node was running', async () => {
    const a = await node('a');
    const ref = freshRef();
    const stored = await a.enqueue(message(ref));
    expect((await leaseSome(a, ref, 1)).map((m) => m.id)).toEqual([stored.id]);
    await a.abandon();
    const c = await node('c');
    const [again] = await leaseSome(c, ref, 1, ACK_WAIT_MS * 10);
    expect(again?.id).toBe(stored.id);
    expect(again?.attempts).toBe(2);
  });

  it('dead-letters a message whose every delivery died with its node', async () => {
    const a = await node('a');
    const ref = freshRef();
    const stored = await a.enqueue(message(ref, { maxAttempts: 1 }));
    expect(await leaseSome(a, ref, 1)).toHaveLength(1);
    await a.abandon();
    const b = await node('b');
    // Its worker's lease finds the message out of deliveries: dead, not run.
    expect(await leaseSome(b, ref, 1, ACK_WAIT_MS * 5)).toHaveLength(0);
    expect((await b.get(stored.id))?.state).toBe('dead');
    expect((await b.get(stored.id))?.lastError?.code).toBe('HEARTH_E_NODE_LOST');
  });

  it('retries after the backoff, dead-letters onto the dead-letter stream, and redrives', async () => {
    const a = await node('a');
    const ref = freshRef();
    const stored = await a.enqueue(message(ref, { maxAttempts: 2 }));
    await leaseSome(a, ref, 1);
    const retryAt = Date.now() + 300;
    await a.retry(stored.id, { code: 'HEARTH_E_FN_ERROR', message: 'boom' }, retryAt);
    expect((await a.get(stored.id))?.state).toBe('queued');
    const [second] = await leaseSome(a, ref, 1);
    expect(Date.now()).toBeGreaterThanOrEqual(retryAt - 20);
    expect(second?.attempts).toBe(2);
    await a.deadLetter(stored.id, { code: 'HEARTH_E_FN_ERROR', message: 'boom again' });
    const dead = await a.list({ state: 'dead', ref });
    expect(dead.map((m) => [m.id, m.lastError?.message])).toEqual([[stored.id, 'boom again']]);
    const deadSubject = `hearth.dead.${stored.id}`;
    expect(await deadLetters(deadSubject)).toBe(1);
    expect(await a.redrive([stored.id])).toBe(1);
    expect(await deadLetters(deadSubject)).toBe(0);
    const [redriven] = await leaseSome(a, ref, 1);
    expect(redriven?.id).toBe(stored.id);
    expect(redriven?.attempts).toBe(1);
  });

  it('adds a message with a known dedupe key only once', async () => {
    const a = await node('a');
    const ref = freshRef();
    const first = await a.enqueue(message(ref, { dedupeKey: `cron:${ref.name}@1` }));
    const again = await a.enqueue(message(ref, { dedupeKey: `cron:${ref.name}@1` }));
    expect(again.id).toBe(first.id);
    expect(await a.list({ ref })).toHaveLength(1);
    expect(await leaseSome(a, ref, 2, 1500)).toHaveLength(1);
  });

  it('keeps dead letters stored straight from a trigger, and redrives them by function', async () => {
    const a = await node('a');
    const ref = freshRef();
    await a.enqueue(
      message(ref, {
        source: 'mqtt:default/fn/mqtt-0',
        attempts: 3,
        deadLetter: { code: 'HEARTH_E_FN_ERROR', message: 'no' },
      }),
    );
    expect((await a.list({ state: 'dead', ref }))[0]?.attempts).toBe(3);
    expect(await a.redrive({ ref })).toBe(1);
    expect(await leaseSome(a, ref, 1)).toHaveLength(1);
  });

  it('hands out callbacks once a message has finished, to one node at a time', async () => {
    const a = await node('a');
    const ref = freshRef();
    const stored = await a.enqueue(message(ref, { callbackUrl: 'http://127.0.0.1:9/cb' }));
    await leaseSome(a, ref, 1);
    const b = await node('b');
    await a.complete(stored.id, 'succeeded', { status: 200, headers: [], body: Buffer.alloc(0) });
    const [callback] = await a.leaseCallbacks(5, 60_000);
    expect(callback?.callback).toMatchObject({ url: 'http://127.0.0.1:9/cb', state: 'pending', attempts: 1 });
    expect(await b.leaseCallbacks(5, 60_000)).toHaveLength(0);
    await a.callbackAttempt(stored.id, 'delivered', undefined);
    expect((await b.get(stored.id))?.callback?.state).toBe('delivered');
  });

  it('runs, once, a message its node stored but died before publishing', async () => {
    const ref = freshRef();
    const id = await insertUnpublished(ref);
    // Two nodes sweep: the stream takes the record's id once.
    const [a, b] = [await node('a'), await node('b')];
    const [onA, onB] = await Promise.all([leaseSome(a, ref, 2, 8_000), leaseSome(b, ref, 2, 8_000)]);
    expect([...onA, ...onB].map((m) => m.id)).toEqual([id]);
    const [leased] = [...onA, ...onB];
    expect(leased?.request.body.toString()).toBe('{"n":2}');
    expect(leased?.attempts).toBe(1);
  });

  it('an accept meeting the dedupe key of a record left unpublished gets it run', async () => {
    const ref = freshRef();
    const a = await node('a');
    const id = await insertUnpublished(ref, `cron:${ref.name}@2`);
    const again = await a.enqueue(message(ref, { dedupeKey: `cron:${ref.name}@2` }));
    expect(again.id).toBe(id);
    expect((await leaseSome(a, ref, 2, 4_000)).map((m) => m.id)).toEqual([id]);
  });

  it('leaves a message for a function this node does not serve yet to a node that does', async () => {
    const ref = freshRef();
    const a = await node('a', (fn) => fn.name !== ref.name);
    const stored = await a.enqueue(message(ref));
    // Both workers lease; a keeps handing it back, b runs it.
    const b = await node('b');
    const [onA, onB] = await Promise.all([leaseSome(a, ref, 1, 3000), leaseSome(b, ref, 1)]);
    expect(onA).toHaveLength(0);
    const [leased] = onB;
    expect(leased?.id).toBe(stored.id);
    expect(leased?.attempts).toBe(1);
  });

  it('hands back to JetStream the messages of a lease PostgreSQL refused', async () => {
    const ref = freshRef();
    const a = await node('a');
    const stored = await a.enqueue(message(ref));
    const trigger = `refuse_${ref.name}`;
    await sql(`CREATE OR REPLACE FUNCTION hearth_test_refuse() RETURNS trigger AS $$
               BEGIN RAISE EXCEPTION 'refused for the test'; END $$ LANGUAGE plpgsql`);
    await sql(`CREATE TRIGGER ${trigger} BEFORE UPDATE ON queue_messages FOR EACH ROW
               WHEN (OLD.name = '${ref.name}' AND NEW.state = 'running') EXECUTE FUNCTION hearth_test_refuse()`);
    let refused: unknown;
    try {
      const deadline = Date.now() + 10_000;
      while (refused === undefined && Date.now() < deadline) {
        await a.lease(10, 60_000).then(
          (leased) => Promise.all(leased.map((m) => a.complete(m.id, 'succeeded', undefined))),
          (error: unknown) => {
            refused = error;
          },
        );
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await sql(`DROP TRIGGER ${trigger} ON queue_messages`);
    }
    expect(String(refused)).toMatch(/refused for the test/);
    // Not kept on a (its in-progress notices would have held it there for good): it comes back and runs.
    const [leased] = await leaseSome(a, ref, 1);
    expect(leased?.id).toBe(stored.id);
    expect(leased?.attempts).toBe(1);
  });

  it('a second copy of a running message in the stream does not run beside it', async () => {
    const ref = freshRef();
    const a = await node('a');
    const stored = await a.enqueue(message(ref));
    expect((await leaseSome(a, ref, 1)).map((m) => m.id)).toEqual([stored.id]);
    // a stops pulling (so that b is the one to meet the copy); its run is, for all the record says, on.
    await a.abandon();
    // A copy under another publish id, as a sweeper's late publish or a redrive's can make.
    const connection = await connect({ servers: nats.url });
    try {
      await jetstream(connection).publish('hearth.work.async', JSON.stringify({ id: stored.id, ref }), {
        msgID: `${stored.id}.copy`,
      });
    } finally {
      await connection.close();
    }
    // b, whose ack wait is long, meets the copy while a's run is younger than that: it leaves it.
    const b = await node('b', () => true, 60_000);
    expect(await leaseSome(b, ref, 1, 2_000)).toHaveLength(0);
    const record = await b.get(stored.id);
    expect([record?.state, record?.attempts]).toEqual(['running', 1]);
  });

  it('a run longer than the ack wait, its node alive, is not taken over by a second copy', async () => {
    const ref = freshRef();
    // a runs one message at a time: holding this one, it pulls no more (b is the one to meet the copy).
    const a = await node('a', () => true, ACK_WAIT_MS, 1);
    const stored = await a.enqueue(message(ref));
    expect((await leaseSome(a, ref, 1)).map((m) => m.id)).toEqual([stored.id]);
    const connection = await connect({ servers: nats.url });
    try {
      await jetstream(connection).publish('hearth.work.async', JSON.stringify({ id: stored.id, ref }), {
        msgID: `${stored.id}.copy`,
      });
    } finally {
      await connection.close();
    }
    // Three ack waits: a's run goes on, its heartbeats keep the record alive, b leaves the copy.
    const b = await node('b');
    expect(await leaseSome(b, ref, 1, ACK_WAIT_MS * 3)).toHaveLength(0);
    expect((await b.get(stored.id))?.attempts).toBe(1);
    await a.complete(stored.id, 'succeeded', undefined);
    expect((await b.get(stored.id))?.state).toBe('succeeded');
  });

  it('keeps, for the sweeper, a record with a dedupe key whose publish failed', async () => {
    const ref = freshRef();
    const a = await node('a');
    const dedupeKey = `cron:${ref.name}@3`;
    // The publish times out while nats-server is stopped; the record's INSERT (PostgreSQL) went through.
    nats.process.kill('SIGSTOP');
    let failed: unknown;
    try {
      await a.enqueue(message(ref, { dedupeKey })).catch((error: unknown) => {
        failed = error;
      });
    } finally {
      nats.process.kill('SIGCONT');
    }
    expect(failed).toBeDefined();
    // Another node's accept of the same time (a cron lease taken over) may have met the record and been
    // answered with it: the record stays, and runs.
    const kept = await a.list({ ref });
    expect(kept.map((m) => [m.state, m.dedupeKey])).toEqual([['queued', dedupeKey]]);
    const b = await node('b');
    const again = await b.enqueue(message(ref, { dedupeKey }));
    expect(again.id).toBe(kept[0]?.id);
    // Run once, by whichever node pulls it (a's publish may have reached the stream after all).
    const [onA, onB] = await Promise.all([leaseSome(a, ref, 2, 6_000), leaseSome(b, ref, 2, 6_000)]);
    expect([...onA, ...onB].map((m) => m.id)).toEqual([again.id]);
  });
});

async function sql(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: postgres.url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/**
 * A record as a node stores it just before it dies: committed in PostgreSQL, never published to the work
 * stream (the accept's INSERT of js-queue.ts, reduced to the columns without defaults).
 */
async function insertUnpublished(
  ref: { namespace: string; name: string },
  dedupeKey?: string,
): Promise<string> {
  const id = randomUUID();
  const client = new pg.Client({ connectionString: postgres.url });
  await client.connect();
  try {
    const now = Date.now();
    await client.query(
      `INSERT INTO queue_messages (id, namespace, name, source, method, path, raw_query, headers, body, state,
         max_attempts, backoff_ms, max_backoff_ms, accepted_at, available_at, dedupe_key)
       VALUES ($1, $2, $3, 'async', 'POST', '/', '', '[]', $4, 'queued', 3, 10, 100, $5, $5, $6)`,
      [id, ref.namespace, ref.name, Buffer.from('{"n":2}'), now, dedupeKey ?? null],
    );
  } finally {
    await client.end();
  }
  return id;
}

/** Messages on a subject of the dead-letter stream. */
async function deadLetters(subject: string): Promise<number> {
  const connection = await connect({ servers: nats.url });
  try {
    const manager = await jetstreamManager(connection);
    const info = await manager.streams.info('HEARTH_DEAD', { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  } finally {
    await connection.close();
  }
}
