/**
 * @module NATS triggers against a real nats-server with JetStream: a durable consumer (created with its
 * stream), acks after success, `nak`-with-backoff redeliveries then the dead-letter list, lag in status.
 */

import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import { type Broker, startNats } from '../support/brokers.js';
import {
  api,
  copyFixture,
  deployFolder,
  eventually,
  type Hearth,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

let broker: Broker;
let hearth: Hearth;
let recorder: Recorder;
let nc: NatsConnection;
const folders: TempFolder[] = [];

interface Report {
  readonly invocationId: string;
  readonly event: Record<string, unknown> & { data: Record<string, unknown> };
}

const reports = (): Report[] => recorder.received.map((r) => r.json<Report>());

async function trigger(): Promise<NonNullable<FunctionDetail['triggers']>[number] | undefined> {
  return (await api<FunctionDetail>(hearth.url, '/api/v1/namespaces/default/functions/nats-sink')).body
    .triggers?.[0];
}

beforeAll(async () => {
  broker = await startNats();
  recorder = await startRecorder();
  hearth = await startHearth();
  const fixture = await copyFixture('event-recorder', {
    'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: nats-sink }\nspec:\n  runtime: node20\n  egress: allow\n  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }\n  triggers:\n    - nats: { url: "${broker.url}", subject: "orders.*", stream: ORDERS, retry: { attempts: 3, backoff: 100ms } }\n`,
  });
  folders.push(fixture);
  const { status, body } = await deployFolder(hearth.url, fixture.dir, { name: 'nats-sink' });
  expect(status, JSON.stringify(body)).toBe(200);
  await eventually(
    'the trigger to run',
    async () => ((await trigger())?.state === 'running' ? true : undefined),
    {
      timeoutMs: 20_000,
    },
  );
  nc = await connect({ servers: broker.url });
});

afterAll(async () => {
  await nc?.close();
  await hearth?.stop();
  await broker?.stop();
  await recorder?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('NATS JetStream trigger', () => {
  it('creates the stream and durable consumer, and delivers a message as a CloudEvent', async () => {
    const js = jetstream(nc);
    const ack = await js.publish('orders.created', JSON.stringify({ order: 1 }));
    expect(ack.stream).toBe('ORDERS');
    await recorder.waitFor('the event', () => reports().some((r) => r.event.data.order === 1));
    const { event } = reports().find((r) => r.event.data.order === 1) as Report;
    expect(event).toMatchObject({
      specversion: '1.0',
      type: 'dev.hearth.nats.message',
      source: 'nats://ORDERS/orders.created',
      subject: 'orders.created',
      datacontenttype: 'application/json',
      stream: 'ORDERS',
      sequence: ack.seq,
      deliveries: 1,
    });
    const state = await eventually('the lag to settle at 0', async () => {
      const current = await trigger();
      return current?.lag === 0 && current.delivered >= 1 ? current : undefined;
    });
    expect(state.detail).toMatchObject({ stream: 'ORDERS', consumer: 'hearth-default_nats-sink_nats-0' });
  });

  it('naks a failure for a later redelivery, then dead-letters it after the last attempt', async () => {
    const js = jetstream(nc);
    await js.publish('orders.broken', JSON.stringify({ order: 2, fail: true }));
    const state = await eventually('the event to be dead-lettered', async () => {
      const current = await trigger();
      return current !== undefined && current.deadLettered >= 1 ? current : undefined;
    });
    const attempts = reports().filter((r) => r.event.data.order === 2);
    expect(attempts.map((r) => r.event.deliveries)).toEqual([1, 2, 3]);
    expect(state.retried).toBe(2);
    const dlq = await runCli(['dlq', 'ls', '--function', 'nats-sink'], { url: hearth.url });
    expect(dlq.stdout).toMatch(/nats-sink\s+nats:default\/nats-sink\/nats-0\s+dead\s+3\/3/);
    // Terminated, not left for JetStream to redeliver: nothing pending on the consumer, as JetStream itself says
    // (the trigger's own lag is read every 2 s, and could still show the 0 it read before the event came).
    const jsm = await jetstreamManager(nc);
    await eventually('the consumer to be empty', async () => {
      const info = await jsm.consumers.info('ORDERS', 'hearth-default_nats-sink_nats-0');
      return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
    }).catch(async (error: unknown) => {
      const info = await jsm.consumers.info('ORDERS', 'hearth-default_nats-sink_nats-0');
      throw new Error(
        `${(error as Error).message}: ${info.num_ack_pending} awaiting an ack, ${info.num_pending} pending`,
      );
    });
  });

  it('keeps up with a burst, each message delivered', async () => {
    const js = jetstream(nc);
    await Promise.all(
      Array.from({ length: 200 }, (_, n) => js.publish('orders.bulk', JSON.stringify({ bulk: n }))),
    );
    await recorder.waitFor(
      '200 events',
      () =>
        new Set(
          reports()
            .filter((r) => r.event.data.bulk !== undefined)
            .map((r) => r.event.data.bulk),
        ).size === 200,
    );
  });
});
