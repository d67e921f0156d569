/**
 * @module Kafka triggers against a real Kafka 4 broker (KRaft, one per file): a record as a CloudEvent,
 * commit after success (a record in flight when the platform is killed comes back), retries with backoff
 * then the dead-letter topic, per-partition order with parallelism across partitions, status in describe.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Admin, Consumer, type Message, Producer } from '@platformatic/kafka';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import { type Broker, startKafka } from '../support/brokers.js';
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

const TOPIC = 'orders';
const PARTITIONS = 3;

let broker: Broker;
let hearth: Hearth;
let recorder: Recorder;
let producer: Producer;
let dataDir: string;
const folders: TempFolder[] = [];

interface Report {
  readonly invocationId: string;
  readonly event: Record<string, unknown> & { data: Record<string, unknown> };
}

function reports(): Report[] {
  return recorder.received.map((r) => r.json<Report>());
}

async function trigger(): Promise<NonNullable<FunctionDetail['triggers']>[number] | undefined> {
  return (await api<FunctionDetail>(hearth.url, '/api/v1/namespaces/default/functions/kafka-sink')).body
    .triggers?.[0];
}

async function running(): Promise<void> {
  await eventually(
    'the Kafka trigger to run',
    async () => ((await trigger())?.state === 'running' ? true : undefined),
    { timeoutMs: 30_000 },
  );
}

async function produce(partition: number, data: Record<string, unknown>, key?: string): Promise<void> {
  await producer.send({
    messages: [
      {
        topic: TOPIC,
        partition,
        value: Buffer.from(JSON.stringify(data)),
        ...(key === undefined ? {} : { key: Buffer.from(key) }),
      },
    ],
  });
}

beforeAll(async () => {
  broker = await startKafka();
  const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: [broker.address] });
  await admin.createTopics({ topics: [TOPIC], partitions: PARTITIONS, replicas: 1 });
  await admin.close();
  producer = new Producer({ clientId: 'test-producer', bootstrapBrokers: [broker.address] });
  recorder = await startRecorder();
  dataDir = await mkdtemp(join(tmpdir(), 'hearth-kafka-'));
  hearth = await startHearth({ dataDir });
  const fixture = await copyFixture('event-recorder', {
    'hearth.yaml': [
      'apiVersion: hearth.dev/v1',
      'kind: Function',
      'metadata: { name: kafka-sink }',
      'spec:',
      '  runtime: node20',
      '  egress: allow',
      '  scaling: { max: 4 }',
      `  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }`,
      '  triggers:',
      `    - kafka: { brokers: ["${broker.address}"], topic: ${TOPIC}, startFrom: earliest, parallelism: ${PARTITIONS}, retry: { attempts: 3, backoff: 200ms } }`,
      '',
    ].join('\n'),
  });
  folders.push(fixture);
  const { status, body } = await deployFolder(hearth.url, fixture.dir, { name: 'kafka-sink' });
  expect(status, JSON.stringify(body)).toBe(200);
  await running();
}, 180_000);

afterAll(async () => {
  await producer?.close();
  await hearth?.stop();
  await broker?.stop();
  await recorder?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

describe('Kafka trigger', () => {
  it('delivers a record as a CloudEvent and shows it in describe', async () => {
    await produce(1, { order: 1 }, 'customer-7');
    await recorder.waitFor('the record', () => reports().some((r) => r.event.data.order === 1), 30_000);
    const { event } = reports().find((r) => r.event.data.order === 1) as Report;
    expect(event).toMatchObject({
      specversion: '1.0',
      id: `${TOPIC}-1-0`,
      source: `kafka://${TOPIC}`,
      type: 'dev.hearth.kafka.message',
      subject: 'customer-7',
      datacontenttype: 'application/json',
      data: { order: 1 },
      topic: TOPIC,
      partition: 1,
      offset: '0',
      key: 'customer-7',
    });
    expect(Math.abs(Date.parse(String(event.time)) - Date.now())).toBeLessThan(60_000);
    const state = await eventually('the lag to settle at 0', async () => {
      const current = await trigger();
      return current?.lag === 0 && current.delivered >= 1 ? current : undefined;
    });
    expect(state.detail).toMatchObject({
      topic: TOPIC,
      group: 'hearth.default.kafka-sink.kafka-0',
      parallelism: PARTITIONS,
      deadLetterTopic: `${TOPIC}.dlq`,
    });
    const described = await runCli(['describe', 'kafka-sink'], { url: hearth.url });
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(
      /kafka-0\s+kafka\s+running\s+topic orders group hearth\.default\.kafka-sink\.kafka-0\s+0\s+[1-9]\d*\s+0\s+0/,
    );
  });

  it('keeps each partition in order while delivering partitions in parallel', async () => {
    const perPartition = 6;
    for (let n = 0; n < perPartition; n++)
      for (let p = 0; p < PARTITIONS; p++) await produce(p, { lane: p, n, sleepMs: 300 });
    await recorder.waitFor(
      'every ordered record',
      () => reports().filter((r) => r.event.data.lane !== undefined).length >= perPartition * PARTITIONS,
      60_000,
    );
    const ordered = recorder.received.filter((r) => r.json<Report>().event.data.lane !== undefined);
    for (let p = 0; p < PARTITIONS; p++) {
      const sequence = ordered.map((r) => r.json<Report>().event.data).filter((d) => d.lane === p);
      expect(
        sequence.map((d) => d.n),
        `partition ${p}`,
      ).toEqual(Array.from({ length: perPartition }, (_, n) => n));
    }
    // One delivery at a time would space reports ≥ 300 ms apart (each handler sleeps after reporting);
    // partitions in parallel put reports from different partitions close together.
    const times = ordered.map((r) => ({ at: r.at, lane: r.json<Report>().event.data.lane }));
    const close = times.some((a, i) =>
      times.some((b, j) => j > i && a.lane !== b.lane && Math.abs(a.at - b.at) < 150),
    );
    expect(close, 'records of different partitions were delivered at the same time').toBe(true);
  }, 90_000);

  it('retries a failing record with backoff, then produces it to the dead-letter topic', async () => {
    await produce(2, { fail: true, order: 'broken' }, 'bad-key');
    const state = await eventually(
      'the record to be dead-lettered',
      async () => {
        const current = await trigger();
        return current !== undefined && current.deadLettered >= 1 ? current : undefined;
      },
      { timeoutMs: 30_000 },
    );
    const attempts = recorder.received.filter((r) => r.json<Report>().event.data.order === 'broken');
    expect(attempts).toHaveLength(3);
    const at = attempts.map((r) => r.at);
    // 200 ms then 400 ms (±20% jitter), measured at the recorder with its 25 ms polling slack.
    expect((at[1] ?? 0) - (at[0] ?? 0)).toBeGreaterThanOrEqual(130);
    expect((at[2] ?? 0) - (at[1] ?? 0)).toBeGreaterThanOrEqual(290);
    expect(state.failed).toBeGreaterThanOrEqual(3);
    expect(state.retried).toBeGreaterThanOrEqual(2);
    expect(state.lastError?.message).toContain('failing on purpose');

    const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      clientId: 'test-dlq-reader',
      groupId: `test-dlq-${Date.now()}`,
      bootstrapBrokers: [broker.address],
    });
    try {
      const stream = await consumer.consume({ topics: [`${TOPIC}.dlq`], mode: 'earliest', maxWaitTime: 200 });
      const dead = await new Promise<Message<Buffer, Buffer, Buffer, Buffer>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('nothing on the dead-letter topic in 20s')), 20_000);
        stream.on('data', (message: Message<Buffer, Buffer, Buffer, Buffer>) => {
          clearTimeout(timer);
          resolve(message);
        });
      });
      await stream.close();
      const headers = new Map(
        [...dead.headers].map(([key, value]) => [key.toString(), value.toString()] as const),
      );
      expect(JSON.parse(dead.value.toString())).toEqual({ fail: true, order: 'broken' });
      expect(dead.key.toString()).toBe('bad-key');
      expect(headers.get('hearth-attempts')).toBe('3');
      expect(headers.get('hearth-error')).toContain('failing on purpose');
      expect(headers.get('hearth-source')).toMatch(/^orders\/2\/\d+$/);
    } finally {
      await consumer.close(true);
    }
    // Dead-lettering counts as done: the partition is committed past the record.
    await eventually('the lag to settle at 0', async () => ((await trigger())?.lag === 0 ? true : undefined));
    const described = await runCli(['describe', 'kafka-sink'], { url: hearth.url });
    expect(described.stdout).toMatch(/kafka-0\s+kafka\s+running\s.*\s1\s+\S+ ago/);
    expect(described.stdout).toContain('kafka-0: last error');
  }, 60_000);

  it('commits only after success: a record in flight when the platform dies comes back, committed ones do not', async () => {
    const before = reports().filter((r) => r.event.data.order === 1).length;
    await produce(0, { where: 'slow', sleepMs: 4000 });
    await recorder.waitFor(
      'the slow record to start',
      () => reports().some((r) => r.event.data.where === 'slow'),
      30_000,
    );
    hearth.process.kill('SIGKILL');
    await new Promise((resolve) => hearth.process.once('exit', resolve));
    hearth = await startHearth({ dataDir });
    await recorder.waitFor(
      'the uncommitted record to be delivered again',
      () => reports().filter((r) => r.event.data.where === 'slow').length >= 2,
      60_000,
    );
    await running();
    await eventually(
      'the redelivered record to be committed',
      async () => {
        const current = await trigger();
        return current?.lag === 0 && current.delivered >= 1 ? true : undefined;
      },
      { timeoutMs: 20_000 },
    );
    // Records committed before the crash stay committed.
    expect(reports().filter((r) => r.event.data.order === 1)).toHaveLength(before);
    expect(reports().filter((r) => r.event.data.lane === 0 && r.event.data.n === 0)).toHaveLength(1);
  }, 120_000);
});
