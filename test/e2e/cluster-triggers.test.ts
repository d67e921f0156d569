/**
 * @module End-to-end, cluster mode (issue 12): trigger events survive a node's death. Three nodes share a
 * function with a Kafka, an MQTT and a NATS JetStream trigger; events of each kind are published while the
 * function takes seconds over each, and the node running the most of them is killed with SIGKILL
 * mid-run. Every event must still finish (the function reports its end), on the survivors:
 *
 * - MQTT: each message was handed to the cluster's durable queue and acknowledged once queued there, so
 *   the queue redelivers what the dead node was running; messages the broker routed to the dead node's
 *   session after its death are taken over by a survivor (it drains that session, then ends it).
 * - Kafka: offsets are committed only after the function finished, so the group's rebalance hands the dead
 *   node's partitions, from their last commit, to the survivors.
 * - NATS JetStream: the consumer is shared by the nodes and acks only after the function finished, so what
 *   the dead node held comes back to the survivors after the ack wait (30 s).
 */

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { connect as connectNats, type NatsConnection } from '@nats-io/transport-node';
import { Admin, Producer } from '@platformatic/kafka';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import { type Broker, startKafka, startMosquitto } from '../support/brokers.js';
import { ClusterNodes, type ClusterServices, LEAN, startClusterServices } from '../support/cluster.js';
import {
  api,
  cleanUp,
  copyFixture,
  deployFolder,
  eventually,
  type Hearth,
  invoke,
  makeFolder,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

const ACK_WAIT = '2s';
const TOPIC = 'orders';
const PARTITIONS = 3;
/** Events of each kind published before the kill, and MQTT messages published right after it. */
const PER_KIND = 6;
const MQTT_AFTER = 6;
/** Long enough that the kill finds runs under way. */
const SLEEP_MS = 6_000;
const KINDS = ['kafka', 'mqtt', 'nats'] as const;
type Kind = (typeof KINDS)[number];

let services: ClusterServices;
let kafka: Broker;
let mosquitto: Broker;
let recorder: Recorder;
let configDir: TempFolder;
let producer: Producer;
let publisher: mqtt.MqttClient;
let natsClient: NatsConnection;
const nodes = new ClusterNodes();

/** What the function reports: the start and the end of each run. */
interface Report {
  readonly phase: 'start' | 'done';
  readonly kind: Kind;
  readonly n: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const node = (id: string): Hearth => nodes.get(id);

function reports(): Report[] {
  return recorder.received.map((hit) => hit.json<Report>());
}

type TriggerStatuses = NonNullable<FunctionDetail['triggers']>;

async function triggersOn(id: string): Promise<TriggerStatuses> {
  const answer = await api<FunctionDetail>(node(id).url, '/api/v1/namespaces/default/functions/sink');
  return answer.body.triggers ?? [];
}

/** This node's own count of invocations under way (any source), as it announces it. */
async function inFlightOn(id: string): Promise<number> {
  const answer = await api<{ items: { self: boolean; inFlight: number }[] }>(node(id).url, '/cluster/nodes');
  return answer.body.items.find((item) => item.self)?.inFlight ?? 0;
}

describe('cluster mode: trigger events survive kill -9 of the node running them', () => {
  beforeAll(async () => {
    [services, kafka, mosquitto, recorder] = await Promise.all([
      startClusterServices(),
      startKafka(),
      startMosquitto(),
      startRecorder(),
    ]);
    const admin = new Admin({ clientId: 'test-admin', bootstrapBrokers: [kafka.address] });
    await admin.createTopics({ topics: [TOPIC], partitions: PARTITIONS, replicas: 1 });
    await admin.close();
    producer = new Producer({ clientId: 'test-producer', bootstrapBrokers: [kafka.address] });
    publisher = await mqtt.connectAsync(mosquitto.url, { protocolVersion: 5, clientId: 'test-publisher' });
    natsClient = await connectNats({ servers: services.nats.url });
    configDir = await makeFolder({});
    const cluster = (id: string) => services.yaml(id, { ackWait: ACK_WAIT });
    for (const id of ['a', 'b', 'c'])
      await writeFile(join(configDir.dir, `${id}.yaml`), `${LEAN}${cluster(id)}`);
    const started = await Promise.all(
      ['a', 'b', 'c'].map((id) => startHearth({ args: ['--config', join(configDir.dir, `${id}.yaml`)] })),
    );
    for (const [index, id] of ['a', 'b', 'c'].entries()) nodes.set(id, started[index] as Hearth);

    const sink = await copyFixture('event-recorder', {
      'index.mjs': [
        '// Reports the start and the end of each run, with the event kind and its number.',
        'export default async function handler(event) {',
        '  if (event.specversion === undefined) return { warm: true };',
        '  const kind = event.type.split(".")[2];',
        '  const report = (phase) => fetch(process.env.RECORDER_URL, {',
        '    method: "POST", headers: { "content-type": "application/json" },',
        '    body: JSON.stringify({ phase, kind, n: event.data.n, at: Date.now() }),',
        '  });',
        '  await report("start");',
        '  await new Promise((resolve) => setTimeout(resolve, event.data.sleepMs));',
        '  await report("done");',
        '  return { ok: true };',
        '}',
        '',
      ].join('\n'),
      'hearth.yaml': [
        'apiVersion: hearth.dev/v1',
        'kind: Function',
        'metadata: { name: sink }',
        'spec:',
        '  runtime: node20',
        '  egress: allow',
        `  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }`,
        '  triggers:',
        `    - kafka: { brokers: ["${kafka.address}"], topic: ${TOPIC}, startFrom: earliest }`,
        `    - mqtt: { url: "${mosquitto.url}", topic: "orders/+", qos: 1 }`,
        `    - nats: { url: "${services.nats.url}", subject: "orders.*", stream: ORDERS, startFrom: earliest, parallelism: 2 }`,
        '',
      ].join('\n'),
    });
    try {
      const deployed = await deployFolder(node('a').url, sink.dir, { name: 'sink' });
      expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
    } finally {
      await sink.cleanup();
    }
    // An instance warm on every node, so that the runs the kill interrupts are under way in the function.
    for (const id of nodes.ids()) expect((await invoke(node(id).url, 'sink')).status).toBe(200);
    await eventually(
      'every trigger to run on every node',
      async () => {
        for (const id of nodes.ids()) {
          const triggers = await triggersOn(id);
          if (triggers.length !== 3 || triggers.some((trigger) => trigger.state !== 'running'))
            return undefined;
        }
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  }, 240_000);

  afterAll(async () => {
    await Promise.allSettled([publisher?.endAsync(), natsClient?.close(), producer?.close()]);
    await cleanUp(
      () => nodes.stopAll(),
      () => Promise.all([services?.stop(), kafka?.stop(), mosquitto?.stop(), recorder?.close()]),
      () => configDir?.cleanup(),
    );
  }, 90_000);

  it('finishes every event, the ones the killed node was running and the ones routed to it after', async () => {
    const js = jetstream(natsClient);
    const publish = async (kind: Kind, n: number): Promise<void> => {
      const data = JSON.stringify({ n, sleepMs: SLEEP_MS });
      if (kind === 'kafka')
        await producer.send({
          messages: [
            { topic: TOPIC, partition: n % PARTITIONS, key: Buffer.from(`k${n}`), value: Buffer.from(data) },
          ],
        });
      else if (kind === 'mqtt') await publisher.publishAsync(`orders/${n}`, data, { qos: 1 });
      else await js.publish(`orders.${n}`, data);
    };
    for (let n = 0; n < PER_KIND; n += 1) for (const kind of KINDS) await publish(kind, n);

    // The victim: the node with the most runs under way, of as many kinds as can be had.
    const victim = await eventually(
      'runs of every kind to be under way',
      async () => {
        let best: { id: string; score: number; kinds: string[]; inFlight: number } | undefined;
        for (const id of nodes.ids()) {
          const triggers = await triggersOn(id);
          const kinds: string[] = triggers
            .filter((trigger) => trigger.inFlight > 0)
            .map((trigger) => trigger.kind);
          const inFlight = await inFlightOn(id);
          // Runs beyond the Kafka and NATS deliveries in flight are the queue's: MQTT events.
          const queued = inFlight - triggers.reduce((sum, trigger) => sum + trigger.inFlight, 0);
          if (queued > 0) kinds.push('mqtt (queued)');
          const score = kinds.length * 100 + inFlight;
          if (best === undefined || score > best.score) best = { id, score, kinds, inFlight };
        }
        return best !== undefined && best.kinds.length >= 3 ? best : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    ).catch(async () => {
      // No node runs all three kinds at once: the busiest is killed all the same.
      let busiest = { id: 'a', inFlight: -1 };
      for (const id of nodes.ids()) {
        const inFlight = await inFlightOn(id);
        if (inFlight > busiest.inFlight) busiest = { id, inFlight };
      }
      return { ...busiest, kinds: ['(not every kind)'] };
    });
    expect(victim.inFlight).toBeGreaterThan(0);
    // Runs of a few seconds: the ones under way now are in the function's handler a moment later.
    await sleep(1_000);
    expect(await inFlightOn(victim.id)).toBeGreaterThan(0);
    const killed = node(victim.id);
    const exited = new Promise((resolve) => killed.process.once('exit', resolve));
    killed.process.kill('SIGKILL');
    await exited;
    nodes.delete(victim.id);
    // Published before the survivors see the victim gone: the broker routes a share to its session.
    for (let n = PER_KIND; n < PER_KIND + MQTT_AFTER; n += 1) await publish('mqtt', n);

    const expected = (kind: Kind): number => (kind === 'mqtt' ? PER_KIND + MQTT_AFTER : PER_KIND);
    const unfinished = (): string[] =>
      KINDS.flatMap((kind) =>
        Array.from({ length: expected(kind) }, (_, n) => n)
          .filter((n) => !reports().some((r) => r.phase === 'done' && r.kind === kind && r.n === n))
          .map((n) => `${kind} ${n}`),
      );
    await eventually('every event to finish', () => (unfinished().length === 0 ? true : undefined), {
      timeoutMs: 150_000,
      intervalMs: 500,
    }).catch(() => {
      throw new Error(`events never finished: ${unfinished().join(', ')}`);
    });
    // The survivor with the lowest id took over the victim's MQTT session (the broker had routed a share
    // of the later messages to it).
    const adopter = [...nodes.ids()].sort()[0] as string;
    expect(
      node(adopter).log.some(
        (entry) =>
          typeof entry.msg === 'string' && entry.msg.includes(`took over the session of node ${victim.id}`),
      ),
    ).toBe(true);
    // Runs the victim had under way started again elsewhere.
    const startsOf = (kind: Kind, n: number): number =>
      reports().filter((r) => r.phase === 'start' && r.kind === kind && r.n === n).length;
    const restarted = KINDS.flatMap((kind) =>
      Array.from({ length: expected(kind) }, (_, n) => n)
        .filter((n) => startsOf(kind, n) > 1)
        .map((n) => `${kind} ${n}`),
    );
    expect(restarted.length).toBeGreaterThan(0);
    console.log(
      `cluster triggers: killed ${victim.id} running ${victim.inFlight} (${victim.kinds.join(', ')}); ` +
        `every event finished; started again elsewhere: ${restarted.join(', ')}`,
    );
  }, 240_000);
});
