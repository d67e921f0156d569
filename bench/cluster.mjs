// Cluster mode (issue 12): throughput of bench-hello spread over 1, 2 and 3 nodes sharing a PostgreSQL,
// a NATS server and a Redis started here, and the cost of a forwarded request (a full node sending it one
// hop to a node with a warm instance) against the same request served where it lands. On two cores the
// nodes and the load generator share the same CPUs: the figures show the overhead, not a speed-up.
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pg from 'pg';
import { startMosquitto, startNats } from '../test/support/broker-processes.mjs';
import { autocannon, deploy, processTree, ROOT, round, sleep, startHearth, summarise } from './lib.mjs';

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitFor(what, probe) {
  for (let i = 0; i < 600; i++) {
    if (await probe()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A private PostgreSQL (Debian's), as the `postgres` user under root; see test/support/postgres.ts. */
export async function startPostgres() {
  const root = '/usr/lib/postgresql';
  const major = readdirSync(root)
    .filter((name) => existsSync(join(root, name, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a))[0];
  const bin = join(root, major, 'bin');
  const asRoot = process.getuid() === 0;
  const user = asRoot
    ? {
        uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
        gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
      }
    : {};
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-pg-'));
  if (asRoot) chownSync(dir, user.uid, user.gid);
  execFileSync(
    join(bin, 'initdb'),
    ['-D', join(dir, 'data'), '-U', 'hearth', '--auth=trust', '--no-sync', '--no-instructions'],
    { stdio: 'ignore', ...user, env: { ...process.env, LC_ALL: 'C.UTF-8' } },
  );
  const port = await freePort();
  const child = spawn(
    join(bin, 'postgres'),
    [
      '-D',
      join(dir, 'data'),
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
    ],
    { stdio: 'ignore', ...user },
  );
  const url = `postgres://hearth@127.0.0.1:${port}/postgres`;
  await waitFor('postgres', async () => {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  });
  return {
    url,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-redis-'));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir],
    {
      stdio: 'ignore',
    },
  );
  await waitFor(
    'redis',
    () =>
      new Promise((resolve) => {
        const socket = createConnection({ port, host: '127.0.0.1' });
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      }),
  );
  return {
    url: `redis://127.0.0.1:${port}`,
    stop() {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sequential requests on one keep-alive connection: latency in ms, and which node answered. */
async function sequential(url, path, count, agent) {
  const samples = [];
  const servedBy = new Set();
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const node = await new Promise((resolve, reject) => {
      const req = request(`${url}${path}`, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.headers['x-hearth-node'] ?? 'here'));
      });
      req.on('error', reject);
      req.end();
    });
    samples.push(performance.now() - started);
    servedBy.add(node);
  }
  const s = summarise(samples);
  return {
    n: s.n,
    p50: round(s.p50, 3),
    p95: round(s.p95, 3),
    p99: round(s.p99, 3),
    servedBy: [...servedBy],
  };
}

/**
 * Async invocations through the cluster's JetStream queue: `count` accepts spread over the nodes, `lanes`
 * at a time; the accept latency (record in PostgreSQL + publish acknowledged by JetStream, before the 202),
 * and how fast the nodes together run them (first accept to last finish, from the records).
 */
async function asyncThroughput(nodes, postgresUrl, { count = 600, lanes = 24 } = {}) {
  const agent = new Agent({ keepAlive: true, maxSockets: lanes });
  const accepts = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < count) {
        const node = nodes[next % nodes.length];
        next += 1;
        const t0 = performance.now();
        const status = await new Promise((resolve, reject) => {
          const req = request(`${node.url}/async-function/bench-hello`, { method: 'POST', agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode));
          });
          req.on('error', reject);
          req.end('{}');
        });
        if (status !== 202) throw new Error(`async accept answered ${status}`);
        accepts.push(performance.now() - t0);
      }
    }),
  );
  const acceptSeconds = (performance.now() - started) / 1000;
  agent.destroy();
  const client = new pg.Client({ connectionString: postgresUrl });
  await client.connect();
  try {
    let row;
    await waitFor('every async invocation to finish', async () => {
      ({
        rows: [row],
      } = await client.query(
        `SELECT COUNT(*) FILTER (WHERE state = 'succeeded') AS done, COUNT(*) AS total,
           MIN(accepted_at) AS first, MAX(finished_at) AS last
         FROM queue_messages WHERE name = 'bench-hello'`,
      ));
      return Number(row.done) >= count;
    });
    const a = summarise(accepts);
    return {
      count,
      lanes,
      nodes: nodes.length,
      acceptsPerSecond: Math.round(count / acceptSeconds),
      accept: { p50: round(a.p50, 2), p95: round(a.p95, 2), p99: round(a.p99, 2) },
      runsPerSecond: Math.round((count * 1000) / (Number(row.last) - Number(row.first))),
    };
  } finally {
    await client.end();
  }
}

/** Sync load on the first two nodes for `seconds`: each one's p99 (ms) and req/s. */
async function survivorsLoad(nodes, { seconds, connections }) {
  const runs = await Promise.all(
    nodes
      .slice(0, 2)
      .map((node) =>
        autocannon(`${node.url}/function/bench-hello`, { connections: Math.round(connections / 2), seconds }),
      ),
  );
  return runs.map((run) => ({ rps: Math.round(run.rps), p99: run.p99, errors: run.errors }));
}

async function killPhase(nodes, postgresUrl, { seconds, connections, count = 300 }) {
  const before = await survivorsLoad(nodes, { seconds, connections });
  const victim = nodes[2];
  const agent = new Agent({ keepAlive: true, maxSockets: 12 });
  const accepted = [];
  let killedAt;
  let next = 0;
  const acceptOne = (node) =>
    new Promise((resolve) => {
      const req = request(`${node.url}/async-function/bench-hello`, { method: 'POST', agent }, (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => {
          if (res.statusCode === 202) accepted.push(JSON.parse(Buffer.concat(chunks).toString()).id);
          resolve();
        });
      });
      req.on('error', () => resolve());
      req.end('{}');
    });
  const sending = Promise.all(
    Array.from({ length: 12 }, async () => {
      while (next < count) {
        const n = next;
        next += 1;
        if (n === Math.floor(count / 3) && killedAt === undefined) {
          // The node and its sandboxes go at once, as a machine losing power would take them.
          const tree = processTree(victim.pid);
          for (const pid of tree) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
          killedAt = performance.now();
        }
        const node = killedAt === undefined ? nodes[n % 3] : nodes[n % 2];
        await acceptOne(node);
      }
    }),
  );
  const after = await survivorsLoad(nodes, { seconds, connections });
  await sending;
  agent.destroy();
  nodes.splice(2, 1);
  try {
    rmSync(victim.dataDir, { recursive: true, force: true });
  } catch {
    // A killed node's sandbox mounts may outlive it; its temp dir is left, as after a power cut.
  }
  const client = new pg.Client({ connectionString: postgresUrl });
  await client.connect();
  let lastFinishedMs;
  try {
    await waitFor('every async invocation accepted around the kill to finish', async () => {
      const { rows } = await client.query(
        `SELECT COUNT(*) FILTER (WHERE state = 'succeeded') AS done FROM queue_messages WHERE id = ANY($1)`,
        [accepted],
      );
      return Number(rows[0].done) === accepted.length;
    });
    lastFinishedMs = performance.now() - killedAt;
  } finally {
    await client.end();
  }
  return {
    asyncAccepted: accepted.length,
    allFinishedAfterKillS: round(lastFinishedMs / 1000, 1),
    before,
    after,
  };
}

export async function clusterBench({ seconds = 4, connections = 30, sequentialCount = 1000 } = {}) {
  const [postgres, nats, redis] = await Promise.all([startPostgres(), startNats(), startRedis()]);
  const nodes = [];
  const cluster = (nodeId, extra = {}) => ({
    logLevel: 'warn',
    stemCells: { node20: 1, python3: 0 },
    // A short ack wait, so the kill phase sees what the killed node held redelivered within the bench.
    cluster: { postgres: postgres.url, nats: nats.url, redis: redis.url, nodeId, ackWait: '5s' },
    ...extra,
  });
  try {
    // Throughput: the same total load, spread evenly over the nodes running so far.
    const throughput = [];
    for (const id of ['n1', 'n2', 'n3']) {
      nodes.push(await startHearth(cluster(id)));
      if (nodes.length === 1)
        await deploy(nodes[0].url, join(ROOT, 'bench', 'functions', 'bench-hello'), 'bench-hello');
      for (const node of nodes)
        await waitFor(
          `${id} to serve bench-hello`,
          async () => (await fetch(`${node.url}/function/bench-hello`)).ok,
        );
      const share = Math.max(1, Math.round(connections / nodes.length));
      const runs = await Promise.all(
        nodes.map((node) => autocannon(`${node.url}/function/bench-hello`, { connections: share, seconds })),
      );
      throughput.push({
        nodes: nodes.length,
        rps: Math.round(runs.reduce((sum, r) => sum + r.rps, 0)),
        p99: Math.max(...runs.map((r) => r.p99)),
        errors: runs.reduce((sum, r) => sum + r.errors, 0),
      });
    }
    // Async: the same function through the JetStream queue, accepted and run by the three nodes.
    const asyncRun = await asyncThroughput(nodes, postgres.url);
    // Forwarding: a node with room for one instance, holding one of bench-noop, sends bench-hello to n1.
    const full = await startHearth(cluster('full', { maxInstances: 1 }));
    nodes.push(full);
    await deploy(nodes[0].url, join(ROOT, 'bench', 'functions', 'bench-noop'), 'bench-noop');
    await waitFor(
      'the full node to serve bench-noop',
      async () => (await fetch(`${full.url}/function/bench-noop`)).ok,
    );
    // Its own view must say full before bench-hello reaches it, or it would make room for it here.
    await waitFor('the full node to count itself full', async () => {
      const { items } = await (await fetch(`${full.url}/cluster/nodes`)).json();
      const self = items.find((item) => item.self);
      return self.instances >= self.maxInstances;
    });
    await waitFor('the full node to forward bench-hello', async () => {
      // An idle instance on n1 to forward to: the autoscaler may have released the last one after the
      // async run, and a node forwards only to one its peers' heartbeats show idle.
      await (await fetch(`${nodes[0].url}/function/bench-hello`)).arrayBuffer();
      const response = await fetch(`${full.url}/function/bench-hello`);
      await response.arrayBuffer();
      return response.headers.get('x-hearth-node') !== null;
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const direct = await sequential(nodes[0].url, '/function/bench-hello', sequentialCount, agent);
    const forwarded = await sequential(full.url, '/function/bench-hello', sequentialCount, agent);
    agent.destroy();
    // kill -9 of n3 while async work flows: n1's and n2's sync p99 before and after, and how long until
    // every async invocation accepted (by any of the three) has finished.
    await full.stop();
    nodes.splice(nodes.indexOf(full), 1);
    const kill = await killPhase(nodes, postgres.url, { seconds, connections });
    return {
      seconds,
      connections,
      throughput,
      async: asyncRun,
      kill,
      note: 'every node and the load generator share the same cores: on 2 cores this shows the overhead of more nodes, not a speed-up',
      forward: { direct, forwarded, costP50Ms: round(forwarded.p50 - direct.p50, 3) },
    };
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all([postgres.stop(), nats.stop(), redis.stop()]);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await clusterBench(), null, 2)}\n`);
}

/**
 * MQTT trigger events through a cluster of three nodes (issue 12): each message is handed to the shared
 * queue (a PostgreSQL record and a JetStream publish) and acknowledged to the broker once queued; the
 * nodes' queue workers run them. Reports the rate at which the nodes queued the messages (from the
 * first to the last, publishing included) and the rate at which the runs finished, read from the records.
 */
export async function clusterMqttBench({ count = 5000 } = {}) {
  const [postgres, nats, redis, mosquitto] = await Promise.all([
    startPostgres(),
    startNats(),
    startRedis(),
    startMosquitto(),
  ]);
  const nodes = [];
  try {
    for (const nodeId of ['n1', 'n2', 'n3'])
      nodes.push(
        await startHearth({
          stemCells: { node20: 1, python3: 0 },
          cluster: { postgres: postgres.url, nats: nats.url, redis: redis.url, nodeId },
        }),
      );
    await deploy(nodes[0].url, join(ROOT, 'bench', 'functions', 'bench-noop'), 'bench-noop');
    const gateway = {
      apiVersion: 'hearth.dev/v1',
      kind: 'EventGateway',
      metadata: { name: 'bench-mqtt' },
      spec: {
        protocols: [{ mqtt: { url: mosquitto.url, topic: 'bench/events', qos: 1, parallelism: 256 } }],
        functions: [{ name: 'bench-noop' }],
      },
    };
    const applied = await fetch(`${nodes[0].url}/api/v1/namespaces/default/gateways/bench-mqtt`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(gateway),
    });
    if (!applied.ok) throw new Error(`apply gateway: ${await applied.text()}`);
    // EventGateways are still started per node (at its start): the other nodes take it on a restart.
    // The one node that has it subscribes; the queue spreads the runs over the three.
    const triggerOf = async (node) =>
      (await (await fetch(`${node.url}/api/v1/namespaces/default/gateways/bench-mqtt`)).json()).triggers?.[0];
    await waitFor('the MQTT trigger to run', async () => (await triggerOf(nodes[0]))?.state === 'running');
    const publisher = await mqtt.connectAsync(mosquitto.url, { protocolVersion: 5, clientId: 'bench-pub' });
    const started = performance.now();
    const payload = '{"n":0}';
    for (let sent = 0; sent < count; sent += 200)
      await Promise.all(
        Array.from({ length: Math.min(200, count - sent) }, () =>
          publisher.publishAsync('bench/events', payload, { qos: 1 }),
        ),
      );
    await publisher.endAsync();
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    try {
      let row;
      await waitFor('every MQTT event to be queued and run', async () => {
        ({
          rows: [row],
        } = await client.query(
          `SELECT COUNT(*) FILTER (WHERE state = 'succeeded') AS done, COUNT(*) AS total,
             MIN(accepted_at) AS first, MAX(accepted_at) AS last_queued, MAX(finished_at) AS last,
             COUNT(DISTINCT node) AS nodes
           FROM queue_messages WHERE source LIKE 'mqtt:%'`,
        ));
        return Number(row.done) >= count;
      });
      const queuedSeconds = (Number(row.last_queued) - Number(row.first)) / 1000;
      return {
        count,
        nodes: nodes.length,
        runNodes: Number(row.nodes),
        publishSeconds: round((performance.now() - started) / 1000, 2),
        queuedPerSecond: Math.round(count / queuedSeconds),
        runsPerSecond: Math.round((count * 1000) / (Number(row.last) - Number(row.first))),
      };
    } finally {
      await client.end();
    }
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all([postgres.stop(), nats.stop(), redis.stop(), mosquitto.stop()]);
  }
}
