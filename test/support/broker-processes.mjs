// Real message brokers for the trigger suites and the event benchmarks, on loopback ports: a Kafka 4 broker in KRaft mode
// (jars fetched once from Maven Central into ~/.cache/hearth-test/kafka by test/support/kafka/fetch.mjs),
// Mosquitto and nats-server (Debian packages, installed by scripts/test.mjs). One broker per test file. Plain JavaScript so `bench/` can start them too.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kafkaLibs } from './kafka/fetch.mjs';

export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise((resolve) => server.close(() => resolve()));
  return port;
}

function reachable(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitForPort(port, child, what, log, timeoutMs = 60_000, host = '127.0.0.1') {
  const deadline = Date.now() + timeoutMs;
  while (!(await reachable(port, host))) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before listening:\n${log()}`);
    if (Date.now() > deadline)
      throw new Error(`${what} did not listen on ${port} within ${timeoutMs}ms:\n${log()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function spawnLogged(command, args, cwd) {
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(cwd === undefined ? {} : { cwd }),
  });
  let output = '';
  const keep = (chunk) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, log: () => output };
}

function stopper(child, dir) {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
}

/** A single-node Kafka (broker + controller, KRaft) on two free loopback ports. */
export async function startKafka(options = {}) {
  const libs = kafkaLibs();
  const dir = await mkdtemp(join(tmpdir(), 'hearth-kafka-'));
  const [port, controller] = [await freePort(), await freePort()];
  const properties = join(dir, 'server.properties');
  await writeFile(
    properties,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.bootstrap.servers=127.0.0.1:${controller}`,
      `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller}`,
      'controller.listener.names=CONTROLLER',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      'inter.broker.listener.name=PLAINTEXT',
      `log.dirs=${join(dir, 'data')}`,
      `num.partitions=${options.partitions ?? 1}`,
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'share.coordinator.state.topic.replication.factor=1',
      'share.coordinator.state.topic.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      'auto.create.topics.enable=true',
      '',
    ].join('\n'),
  );
  const classpath = `${libs}/*`;
  const jvm = [
    '-Xms256m',
    '-Xmx768m',
    '-XX:+UseSerialGC',
    ...(options.jit === true ? [] : ['-XX:TieredStopAtLevel=1']),
  ];
  const clusterId = execFileSync(
    'java',
    [...jvm, '-cp', classpath, 'kafka.tools.StorageTool', 'random-uuid'],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  )
    .trim()
    .split('\n')
    .at(-1);
  execFileSync(
    'java',
    [
      ...jvm,
      '-cp',
      classpath,
      'kafka.tools.StorageTool',
      'format',
      '--standalone',
      '-t',
      clusterId ?? '',
      '-c',
      properties,
    ],
    { stdio: 'ignore' },
  );
  const { child, log } = spawnLogged('java', [...jvm, '-cp', classpath, 'kafka.Kafka', properties], dir);
  await waitForPort(port, child, 'kafka', log, 120_000);
  return {
    url: `127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
    process: child,
    log,
    stop: stopper(child, dir),
  };
}

/** Mosquitto with shared subscriptions (MQTT 5), anonymous, on a free loopback port. */
export async function startMosquitto() {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-mosquitto-'));
  const port = await freePort();
  const config = join(dir, 'mosquitto.conf');
  await writeFile(
    config,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'max_queued_messages 100000',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  const { child, log } = spawnLogged('mosquitto', ['-c', config], dir);
  await waitForPort(port, child, 'mosquitto', log);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
    process: child,
    log,
    stop: stopper(child, dir),
  };
}

/** nats-server with JetStream (file storage in a temp dir) on a free loopback port. */
export async function startNats({ host = '127.0.0.1' } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-nats-'));
  const port = await freePort();
  const { child, log } = spawnLogged(
    'nats-server',
    ['-a', host, '-p', String(port), '-js', '-sd', join(dir, 'js')],
    dir,
  );
  await waitForPort(port, child, 'nats-server', log, 60_000, host);
  return {
    url: `nats://${host}:${port}`,
    address: `${host}:${port}`,
    process: child,
    log,
    stop: stopper(child, dir),
  };
}
