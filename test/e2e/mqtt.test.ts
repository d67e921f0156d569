/**
 * @module MQTT triggers against a real Mosquitto: QoS 1 deliveries as CloudEvents, retries then the
 * dead-letter list, shared subscriptions balancing one topic over two functions, trigger status in
 * `hearth describe`, and acknowledgement only after success (a message in flight when the platform is
 * killed is delivered again after the restart).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import { type Broker, startMosquitto } from '../support/brokers.js';
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
import { type Recorded, type Recorder, startRecorder } from '../support/recorder.js';

let broker: Broker;
let hearth: Hearth;
let recorder: Recorder;
let publisher: mqtt.MqttClient;
let dataDir: string;
const folders: TempFolder[] = [];

interface Report {
  readonly invocationId: string;
  readonly event: Record<string, unknown> & { data: Record<string, unknown> };
}

const reports = (fn: string): Report[] =>
  recorder.received.filter((r: Recorded) => r.path === `/${fn}`).map((r) => r.json<Report>());

async function deploySink(name: string, trigger: string): Promise<void> {
  const fixture = await copyFixture('event-recorder', {
    'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec:\n  runtime: node20\n  egress: allow\n  env: { RECORDER_URL: "${recorder.functionUrl}/${name}" }\n  triggers:\n    - mqtt: ${trigger}\n`,
  });
  folders.push(fixture);
  const { status, body } = await deployFolder(hearth.url, fixture.dir, { name });
  expect(status, JSON.stringify(body)).toBe(200);
}

async function triggerState(
  name: string,
): Promise<NonNullable<FunctionDetail['triggers']>[number] | undefined> {
  return (await api<FunctionDetail>(hearth.url, `/api/v1/namespaces/default/functions/${name}`)).body
    .triggers?.[0];
}

async function running(name: string): Promise<void> {
  await eventually(
    `${name}'s trigger to run`,
    async () => ((await triggerState(name))?.state === 'running' ? true : undefined),
    {
      timeoutMs: 20_000,
    },
  );
}

beforeAll(async () => {
  broker = await startMosquitto();
  recorder = await startRecorder();
  dataDir = await mkdtemp(join(tmpdir(), 'hearth-mqtt-'));
  hearth = await startHearth({ dataDir });
  publisher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'test-publisher' });
  await deploySink(
    'mqtt-sink',
    `{ url: "${broker.url}", topic: "sensors/+/temp", qos: 1, retry: { attempts: 2, backoff: 100ms } }`,
  );
  await running('mqtt-sink');
});

afterAll(async () => {
  await publisher?.endAsync();
  await hearth?.stop();
  await broker?.stop();
  await recorder?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

describe('MQTT trigger', () => {
  it('delivers a QoS 1 message as a CloudEvent', async () => {
    await publisher.publishAsync('sensors/kitchen/temp', JSON.stringify({ celsius: 21.5 }), { qos: 1 });
    await recorder.waitFor('the event', () =>
      reports('mqtt-sink').some((r) => r.event.data.celsius === 21.5),
    );
    const { event } = reports('mqtt-sink').find((r) => r.event.data.celsius === 21.5) as Report;
    expect(event).toMatchObject({
      specversion: '1.0',
      type: 'dev.hearth.mqtt.message',
      subject: 'sensors/kitchen/temp',
      datacontenttype: 'application/json',
      topic: 'sensors/kitchen/temp',
      qos: 1,
    });
    expect(typeof event.id).toBe('string');
    expect(Date.parse(String(event.time))).not.toBeNaN();
  });

  it('retries a failing event, then dead-letters it where `hearth dlq` shows it', async () => {
    await publisher.publishAsync('sensors/cellar/temp', JSON.stringify({ fail: true, where: 'cellar' }), {
      qos: 1,
    });
    const state = await eventually('the event to be dead-lettered', async () => {
      const trigger = await triggerState('mqtt-sink');
      return trigger !== undefined && trigger.deadLettered >= 1 ? trigger : undefined;
    });
    expect(reports('mqtt-sink').filter((r) => r.event.data.where === 'cellar')).toHaveLength(2);
    expect(state.failed).toBeGreaterThanOrEqual(2);
    expect(state.lastError?.message).toContain('failing on purpose');
    const dlq = await runCli(['dlq', 'ls', '--source', 'mqtt:default/mqtt-sink/mqtt-0'], { url: hearth.url });
    expect(dlq.stdout).toMatch(/mqtt-sink\s+mqtt:default\/mqtt-sink\/mqtt-0\s+dead\s+2\/2/);
    const described = await runCli(['describe', 'mqtt-sink'], { url: hearth.url });
    expect(described.stdout).toMatch(/mqtt-0\s+mqtt\s+running\s+sensors\/\+\/temp/);
  });

  it('balances a shared subscription across two functions, each message once', async () => {
    const trigger = (name: string) =>
      `{ url: "${broker.url}", topic: "jobs", shared: workers, name: ${name} }`;
    await deploySink('worker-a', trigger('jobs'));
    await deploySink('worker-b', trigger('jobs'));
    await running('worker-a');
    await running('worker-b');
    for (let n = 0; n < 20; n++) await publisher.publishAsync('jobs', JSON.stringify({ job: n }), { qos: 1 });
    const jobs = (): number[] =>
      [...reports('worker-a'), ...reports('worker-b')].map((r) => Number(r.event.data.job));
    await recorder.waitFor('20 jobs', () => new Set(jobs()).size === 20);
    expect(jobs().sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, n) => n));
    expect(reports('worker-a').length).toBeGreaterThan(0);
    expect(reports('worker-b').length).toBeGreaterThan(0);
  });

  it('acknowledges only after success: a message in flight when the platform dies comes back', async () => {
    await publisher.publishAsync('sensors/attic/temp', JSON.stringify({ where: 'attic', sleepMs: 3000 }), {
      qos: 1,
    });
    await recorder.waitFor('the slow event to start', () =>
      reports('mqtt-sink').some((r) => r.event.data.where === 'attic'),
    );
    hearth.process.kill('SIGKILL');
    await new Promise((resolve) => hearth.process.once('exit', resolve));
    hearth = await startHearth({ dataDir });
    await recorder.waitFor(
      'the unacknowledged event to be delivered again',
      () => reports('mqtt-sink').filter((r) => r.event.data.where === 'attic').length >= 2,
      30_000,
    );
  });
});
