// Events/s from Kafka, MQTT and NATS into a no-op function: each broker is started on this machine
// (test/support/broker-processes.mjs), an EventGateway points its protocol at the function, and the
// rate is measured from the trigger's own delivered count (acked/committed only after success).
// Kafka and NATS drain a backlog produced beforehand, so the producer does not share the CPU with the
// measurement; MQTT has no backlog for a new subscription, so its publisher runs during the measurement.

import { Agent, request } from 'node:http';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Admin, Producer } from '@platformatic/kafka';
import mqtt from 'mqtt';
import { startKafka, startMosquitto, startNats } from '../test/support/broker-processes.mjs';
import { deploy, ROOT, round, sleep, startHearth, summarise } from './lib.mjs';

const NS = '/api/v1/namespaces/default';
const progress = (message) => process.stderr.write(`bench events: ${message}\n`);

async function applyGateway(url, name, protocol) {
  const manifest = {
    apiVersion: 'hearth.dev/v1',
    kind: 'EventGateway',
    metadata: { name },
    spec: { protocols: [protocol], functions: [{ name: 'bench-noop' }] },
  };
  const response = await fetch(`${url}${NS}/gateways/${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(manifest),
  });
  if (!response.ok) throw new Error(`apply gateway ${name}: ${await response.text()}`);
}

async function deleteGateway(url, name) {
  await fetch(`${url}${NS}/gateways/${name}`, { method: 'DELETE' }).then((r) => r.arrayBuffer());
}

async function triggerOf(url, name) {
  const detail = await fetch(`${url}${NS}/gateways/${name}`).then((r) => r.json());
  return detail.triggers?.[0];
}

/**
 * Polls the trigger's delivered count every 20 ms until `count` (or the deadline): the rate is taken from
 * the first delivery seen to the last, so connecting and the consumer group's join are not counted.
 */
async function measureDeliveries(url, name, count, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  let firstAt;
  let firstCount = 0;
  let last = { delivered: 0, at: performance.now() };
  while (Date.now() < deadline) {
    const trigger = await triggerOf(url, name);
    const now = performance.now();
    const delivered = trigger?.delivered ?? 0;
    if (firstAt === undefined && delivered > 0) {
      firstAt = now;
      firstCount = delivered;
    }
    if (delivered !== last.delivered) last = { delivered, at: now };
    if (delivered >= count) break;
    if (trigger?.state === 'error') throw new Error(`${name}: ${trigger.lastError?.message}`);
    await sleep(20);
  }
  const trigger = await triggerOf(url, name);
  const seconds = firstAt === undefined ? Number.NaN : (last.at - firstAt) / 1000;
  return {
    events: count,
    delivered: trigger?.delivered ?? 0,
    failed: trigger?.failed ?? 0,
    seconds: round(seconds, 2),
    eventsPerSecond: Math.round((last.delivered - firstCount) / seconds),
  };
}

async function kafkaRun(hearth, count, { partitions, parallelism, ordering }) {
  const broker = await startKafka({ partitions, jit: true });
  try {
    const topic = `bench-${ordering}`;
    const admin = new Admin({ clientId: 'bench-admin', bootstrapBrokers: [broker.address] });
    await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
    await admin.close();
    // Idempotent: a produce retried under load must not write a record twice (the count would lie).
    const producer = new Producer({
      clientId: 'bench-producer',
      bootstrapBrokers: [broker.address],
      idempotent: true,
    });
    const value = Buffer.from('{"n":0}');
    for (let sent = 0; sent < count; sent += 1000) {
      const batch = Array.from({ length: Math.min(1000, count - sent) }, (_, i) => ({
        topic,
        partition: (sent + i) % partitions,
        // 1,024 keys: with `ordering: key` each key stays in order while different keys overlap.
        key: Buffer.from(`k${(sent + i) % 1024}`),
        value,
      }));
      await producer.send({ messages: batch });
    }
    await producer.close();
    progress(`kafka: ${count} records produced`);
    await applyGateway(hearth.url, 'bench-kafka', {
      kafka: { brokers: [broker.address], topic, startFrom: 'earliest', parallelism, ordering },
    });
    const result = await measureDeliveries(hearth.url, 'bench-kafka', count, 180_000);
    await deleteGateway(hearth.url, 'bench-kafka');
    return { ...result, partitions, parallelism, ordering };
  } finally {
    await broker.stop();
  }
}

async function natsRun(hearth, count, { parallelism }) {
  const broker = await startNats();
  try {
    const nc = await connect({ servers: broker.url });
    const manager = await jetstreamManager(nc);
    await manager.streams.add({ name: 'BENCH', subjects: ['bench.>'] });
    const js = jetstream(nc);
    const payload = '{"n":0}';
    for (let sent = 0; sent < count; sent += 500)
      await Promise.all(
        Array.from({ length: Math.min(500, count - sent) }, () => js.publish('bench.events', payload)),
      );
    await nc.close();
    progress(`nats: ${count} messages published`);
    await applyGateway(hearth.url, 'bench-nats', {
      nats: { url: broker.url, subject: 'bench.>', stream: 'BENCH', startFrom: 'earliest', parallelism },
    });
    const result = await measureDeliveries(hearth.url, 'bench-nats', count, 180_000);
    await deleteGateway(hearth.url, 'bench-nats');
    return { ...result, parallelism };
  } finally {
    await broker.stop();
  }
}

async function mqttRun(hearth, count, { parallelism }) {
  const broker = await startMosquitto();
  try {
    await applyGateway(hearth.url, 'bench-mqtt', {
      mqtt: { url: broker.url, topic: 'bench/events', qos: 1, parallelism },
    });
    for (let i = 0; i < 300; i++) {
      if ((await triggerOf(hearth.url, 'bench-mqtt'))?.state === 'running') break;
      await sleep(100);
    }
    const publisher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'bench-pub' });
    const measuring = measureDeliveries(hearth.url, 'bench-mqtt', count, 180_000);
    const payload = '{"n":0}';
    for (let sent = 0; sent < count; sent += 200)
      await Promise.all(
        Array.from({ length: Math.min(200, count - sent) }, () =>
          publisher.publishAsync('bench/events', payload, { qos: 1 }),
        ),
      );
    const result = await measuring;
    await publisher.endAsync();
    await deleteGateway(hearth.url, 'bench-mqtt');
    return { ...result, parallelism };
  } finally {
    await broker.stop();
  }
}

export async function eventsBench({ count = 50_000, kinds = ['kafka', 'nats', 'mqtt'] } = {}) {
  const hearth = await startHearth();
  try {
    await deploy(hearth.url, `${ROOT}/bench/functions/bench-noop`, 'bench-noop');
    const out = { count };
    // Per-partition order (the default) has one delivery in flight per partition; per-key order lets
    // different keys of a partition overlap. Both keep at-least-once: commits only past finished records.
    if (kinds.includes('kafka'))
      out.kafka = await kafkaRun(hearth, count, { partitions: 8, parallelism: 256, ordering: 'partition' });
    if (kinds.includes('kafka'))
      out.kafkaByKey = await kafkaRun(hearth, count, { partitions: 8, parallelism: 256, ordering: 'key' });
    if (kinds.includes('nats')) out.nats = await natsRun(hearth, count, { parallelism: 256 });
    if (kinds.includes('mqtt')) out.mqtt = await mqttRun(hearth, count, { parallelism: 256 });
    return out;
  } finally {
    if (process.env.BENCH_DEBUG) process.stderr.write(hearth.log());
    await hearth.stop();
  }
}

/** POSTs `count` async invocations with `concurrency` in flight; resolves with the accepted ids and the time. */
async function acceptAll(url, count, concurrency) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const body = '{"n":0}';
  let next = 0;
  let refused = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      const status = await new Promise((resolve) => {
        const req = request(
          `${url}/async-function/bench-noop`,
          { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
          },
        );
        req.on('error', () => resolve(0));
        req.end(body);
      });
      if (status !== 202) refused += 1;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return { seconds, refused };
}

/**
 * The durable async queue: `count` POST /async-function/bench-noop with 64 in flight (accepted/s), then
 * until every one has run (completed/s, from the first accept to the last finish), and accept → start
 * latency from each invocation's own record (acceptedAt, startedAt; millisecond timestamps).
 */
export async function asyncBench({ count = 5000, concurrency = 64 } = {}) {
  const hearth = await startHearth();
  try {
    await deploy(hearth.url, `${ROOT}/bench/functions/bench-noop`, 'bench-noop');
    await acceptAll(hearth.url, 200, concurrency);
    await sleep(1000);
    const listed = async (state) =>
      (
        await fetch(`${hearth.url}/api/v1/invocations?function=bench-noop&state=${state}&limit=10000`).then(
          (r) => r.json(),
        )
      ).items;
    const warm = new Set((await listed('succeeded')).map((r) => r.id));
    const accepted = await acceptAll(hearth.url, count, concurrency);
    const deadline = Date.now() + 120_000;
    let records = [];
    while (Date.now() < deadline) {
      records = (await listed('succeeded')).filter((r) => !warm.has(r.id));
      if (records.length >= count - accepted.refused) break;
      await sleep(100);
    }
    const acceptedAt = records.map((r) => Date.parse(r.acceptedAt));
    const finishedAt = records.map((r) => Date.parse(r.finishedAt));
    const waits = summarise(records.map((r) => Date.parse(r.startedAt) - Date.parse(r.acceptedAt)));
    const span = (Math.max(...finishedAt) - Math.min(...acceptedAt)) / 1000;
    return {
      count,
      concurrency,
      refused: accepted.refused,
      completed: records.length,
      acceptedPerSecond: Math.round((count - accepted.refused) / accepted.seconds),
      completedPerSecond: Math.round(records.length / span),
      acceptToStartMs: { p50: waits.p50, p99: waits.p99, max: waits.max },
    };
  } finally {
    await hearth.stop();
  }
}

if (process.argv[1]?.endsWith('events.mjs') && process.argv[2] === 'async') {
  const result = await asyncBench({ count: Number(process.argv[3] ?? 5000) });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} else if (process.argv[1]?.endsWith('events.mjs')) {
  const count = Number(process.argv[2] ?? 20_000);
  const kinds = process.argv.slice(3);
  const result = await eventsBench({ count, ...(kinds.length > 0 ? { kinds } : {}) });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
