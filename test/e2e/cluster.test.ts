/**
 * @module End-to-end, cluster mode (issue 12): three Hearth nodes (processes on this machine, on loopback)
 * sharing a real PostgreSQL, NATS server and Redis. A deploy on one node serves on the others, a redeploy
 * reaches every node and none goes back to the old version, a removal too, and a node killed with
 * SIGKILL is seen dead while the others keep serving.
 */

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMosquitto } from '../support/broker-processes.mjs';
import { ClusterNodes, type ClusterServices, LEAN, startClusterServices } from '../support/cluster.js';
import {
  api,
  cleanUp,
  copyFixture,
  deployFolder,
  eventually,
  FIXTURES,
  functionApiPath,
  getFunction,
  type Hearth,
  invoke,
  listFunctions,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { startRecorder } from '../support/recorder.js';

const NAME = 'node-version';

interface NodesAnswer {
  readonly self: string;
  readonly items: readonly {
    readonly id: string;
    readonly url: string;
    readonly self: boolean;
    readonly instances: number;
    readonly maxInstances: number;
    readonly warm: readonly { readonly function: string; readonly idle: number }[];
  }[];
}

let services: ClusterServices;
let configDir: TempFolder;
const nodes = new ClusterNodes();
const node = (id: string): Hearth => nodes.get(id);

function clusterArgs(id: string, config = 'lean.yaml'): string[] {
  return [...services.flags(id), '--config', join(configDir.dir, config)];
}

async function memberIds(url: string): Promise<string[]> {
  const answer = await api<NodesAnswer>(url, '/cluster/nodes');
  expect(answer.status).toBe(200);
  return answer.body.items.map((item) => item.id);
}

async function versionOn(url: string): Promise<string | undefined> {
  const answer = await invoke(url, NAME);
  return answer.status === 200 ? (answer.json() as { version?: string }).version : `status ${answer.status}`;
}

describe('cluster mode: three nodes on PostgreSQL, NATS and Redis', () => {
  beforeAll(async () => {
    services = await startClusterServices();
    configDir = await makeFolder({ 'lean.yaml': LEAN });
    // Node a takes its cluster from the config file's `cluster:`, the others from the flags.
    await writeFile(join(configDir.dir, 'a.yaml'), `${LEAN}${services.yaml('a')}`);
    // Node c has room for one instance only: once it holds one, it forwards what it has no warm instance of.
    await writeFile(join(configDir.dir, 'c.yaml'), `${LEAN}maxInstances: 1\n`);
    // All at once: the schema migrations run once, under PostgreSQL's advisory lock.
    const [a, b, c] = await Promise.all([
      startHearth({ args: ['--config', join(configDir.dir, 'a.yaml')] }),
      startHearth({ args: clusterArgs('b') }),
      startHearth({ args: clusterArgs('c', 'c.yaml') }),
    ]);
    nodes.set('a', a).set('b', b).set('c', c);
  }, 180_000);

  afterAll(async () => {
    await cleanUp(
      () => nodes.stopAll(),
      () => services?.stop(),
      () => configDir?.cleanup(),
    );
  }, 90_000);

  it('every node sees the three members', async () => {
    for (const id of ['a', 'b', 'c'])
      await eventually(`node ${id} to see a, b and c`, async () => {
        const ids = await memberIds(node(id).url);
        return ids.join(',') === 'a,b,c' ? ids : undefined;
      });
    const answer = await api<NodesAnswer>(node('b').url, '/cluster/nodes');
    expect(answer.body.self).toBe('b');
    expect(answer.body.items.find((item) => item.id === 'c')?.url).toBe(node('c').url);
  });

  it('a secret is refused by a node whose master key is its own, naming $HEARTH_MASTER_KEY', async () => {
    // These nodes run without $HEARTH_MASTER_KEY: each made a key in its data dir, which the others lack.
    const set = await api(node('b').url, '/api/v1/namespaces/default/secrets/db', {
      method: 'PUT',
      json: { stringData: { password: 'not-stored' } },
    });
    expect(set.status, set.text).toBe(400);
    expect(set.text).toContain('$HEARTH_MASTER_KEY');
    expect((await api<{ items: unknown[] }>(node('a').url, '/api/v1/secrets')).body.items).toEqual([]);
  });

  it('a function deployed on node a is served by b and c as soon as the deploy answers', async () => {
    const deployed = await deployFolder(node('a').url, join(FIXTURES, NAME), { name: NAME });
    expect(deployed.status).toBe(200);
    // The deploy answers once every live node serves it: no waiting here.
    for (const id of ['a', 'b', 'c']) {
      expect(await versionOn(node(id).url)).toBe('v1');
      expect(await listFunctions(node(id).url)).toContain(`default/${NAME}`);
    }
  });

  it('a redeploy on node b has reached every node when it answers, and none goes back', async () => {
    const v2 = await copyFixture(NAME, {
      'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${NAME} }\nspec:\n  runtime: node20\n  env: { VERSION: v2 }\n`,
    });
    try {
      const deployed = await deployFolder(node('b').url, v2.dir, { name: NAME });
      expect(deployed.status).toBe(200);
    } finally {
      await v2.cleanup();
    }
    // Once the deploy has answered, every node answers with the new version, and only with it.
    for (const id of ['a', 'b', 'c'])
      for (let i = 0; i < 10; i += 1) expect(await versionOn(node(id).url)).toBe('v2');
    expect((await getFunction(node('c').url, NAME))?.version).toBe(2);
  });

  it('hearth apply on node b has reached every node when it answers', async () => {
    const folder = await makeFolder({
      'fresh/index.mjs': 'export default async () => ({ fresh: true });\n',
      'resources.yaml':
        'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: fresh }\nspec: { runtime: node20, source: ./fresh }\n',
    });
    try {
      const applied = await runCli(['apply', '-f', join(folder.dir, 'resources.yaml')], {
        url: node('b').url,
      });
      expect(applied.code, applied.stderr).toBe(0);
      for (const id of ['a', 'c']) {
        const answer = await invoke(node(id).url, 'fresh');
        expect(answer.status, answer.text).toBe(200);
        expect(answer.json()).toEqual({ fresh: true });
      }
    } finally {
      await api(node('b').url, functionApiPath('fresh'), { method: 'DELETE' });
      await folder.cleanup();
    }
  });

  it('a node that joins later serves what was deployed before it, as soon as it is ready', async () => {
    const late = await startHearth({ args: clusterArgs('d') });
    try {
      // Its start restored the function from PostgreSQL and fetched its code before "hearth ready".
      expect(await versionOn(late.url)).toBe('v2');
      await eventually('node d to hear a, b and c', async () =>
        (await memberIds(late.url)).join(',') === 'a,b,c,d' ? true : undefined,
      );
    } finally {
      await late.stop();
    }
    // Stopped cleanly, it left at once: no waiting for its heartbeats to go silent.
    await eventually('node a to see d leave', async () =>
      (await memberIds(node('a').url)).includes('d') ? undefined : true,
    );
    expect(node('a').log.some((entry) => entry.msg === 'cluster: node d left (stopped)')).toBe(true);
  });

  it('ctx.state is shared: a value set through node a is read through node c', async () => {
    const folder = await copyFixture('node-state');
    try {
      expect((await deployFolder(node('a').url, folder.dir, { name: 'node-state' })).status).toBe(200);
    } finally {
      await folder.cleanup();
    }
    const onA = await invoke(node('a').url, 'node-state');
    expect(onA.status).toBe(200);
    const visits = (onA.json() as { visits: number }).visits;
    const onC = await eventually('node c to serve node-state', async () => {
      const answer = await invoke(node('c').url, 'node-state');
      return answer.status === 200 ? (answer.json() as { visits: number }) : undefined;
    });
    // The counter lives in the cluster's Redis, not in either node.
    expect(onC.visits).toBe(visits + 1);
  });

  it('a node with no room forwards one hop to a node with a warm instance', async () => {
    // c (maxInstances: 1) holds a node-version instance; a holds a warm node-state one.
    expect(await versionOn(node('c').url)).toBe('v2');
    expect((await invoke(node('a').url, 'node-state')).json()).toMatchObject({ shared: 'blue' });
    await eventually('node c to be full, and to hear that a has node-state warm', async () => {
      const { items } = (await api<NodesAnswer>(node('c').url, '/cluster/nodes')).body;
      const self = items.find((item) => item.self);
      const a = items.find((item) => item.id === 'a');
      const warmOnA = a?.warm.some((fn) => fn.function === 'default/node-state' && fn.idle > 0) === true;
      return self !== undefined && self.instances >= self.maxInstances && warmOnA ? true : undefined;
    });
    const forwarded = await invoke(node('c').url, 'node-state');
    expect(forwarded.status).toBe(200);
    expect(forwarded.headers.get('x-hearth-node')).toBe('a');
    expect(forwarded.json()).toMatchObject({ shared: 'blue' });
    // What c has warm it runs itself.
    const here = await invoke(node('c').url, NAME);
    expect(here.status).toBe(200);
    expect(here.headers.get('x-hearth-node')).toBeNull();
    // A request another node forwarded is run where it lands: never a second hop.
    const landed = await invoke(node('c').url, 'node-state', { headers: { 'x-hearth-forwarded': 'b' } });
    expect(landed.headers.get('x-hearth-node')).toBeNull();
  });

  it('a function removed on node c stops being served everywhere', async () => {
    const removed = await api(node('c').url, functionApiPath('node-state'), { method: 'DELETE' });
    expect(removed.status).toBe(200);
    for (const id of ['a', 'b'])
      await eventually(`node ${id} to stop serving node-state`, async () =>
        (await invoke(node(id).url, 'node-state')).status === 404 ? true : undefined,
      );
  });

  it('a node killed with SIGKILL is seen dead, and the others keep serving', async () => {
    const victim = node('c');
    const exited = new Promise((resolve) => victim.process.once('exit', resolve));
    victim.process.kill('SIGKILL');
    await exited;
    nodes.delete('c');
    for (const id of ['a', 'b']) {
      await eventually(
        `node ${id} to see c gone`,
        async () => {
          const ids = await memberIds(node(id).url);
          return ids.join(',') === 'a,b' ? ids : undefined;
        },
        { timeoutMs: 30_000 },
      );
      expect(await versionOn(node(id).url)).toBe('v2');
    }
    expect(node('a').log.some((entry) => String(entry.msg).includes('node c left'))).toBe(true);
    // Restarted on its data dir, it rejoins and serves the current version (its leftovers cleaned up).
    const back = await startHearth({ dataDir: victim.dataDir, args: clusterArgs('c', 'c.yaml') });
    nodes.set('c', back);
    expect(await versionOn(back.url)).toBe('v2');
    await eventually('node a to see c again', async () =>
      (await memberIds(node('a').url)).includes('c') ? true : undefined,
    );
  });

  it('a full node whose chosen node dies still answers: the refused hop is run elsewhere', async () => {
    // c is full again (one node-version instance); node-esm-default is warm on a only (its deploy's proof).
    expect(await versionOn(node('c').url)).toBe('v2');
    const deployed = await deployFolder(node('a').url, join(FIXTURES, 'node-esm-default'), {
      name: 'node-esm-default',
    });
    expect(deployed.status).toBe(200);
    await eventually(
      'node c to be full, to serve node-esm-default, and to hear that a has it warm',
      async () => {
        const { items } = (await api<NodesAnswer>(node('c').url, '/cluster/nodes')).body;
        const self = items.find((item) => item.self);
        const a = items.find((item) => item.id === 'a');
        const warmOnA =
          a?.warm.some((fn) => fn.function === 'default/node-esm-default' && fn.idle > 0) === true;
        const full = self !== undefined && self.instances >= self.maxInstances;
        // Switched to by c's reconciler (its store lists it before that).
        const serving = node('c').log.some(
          (entry) => entry.msg === 'cluster: now serving default/node-esm-default v1',
        );
        return full && warmOnA && serving ? true : undefined;
      },
    );
    const victim = node('a');
    const exited = new Promise((resolve) => victim.process.once('exit', resolve));
    victim.process.kill('SIGKILL');
    await exited;
    nodes.delete('a');
    // Whether c still counts on a (refused: run here) or already knows it dead (sent to b), it answers.
    const answer = await invoke(node('c').url, 'node-esm-default');
    expect(answer.status, answer.text).toBe(200);
    expect(answer.headers.get('x-hearth-node')).not.toBe('a');
    // Restarted, so the sandboxes its SIGKILL left behind are ended by its own start.
    nodes.set('a', await startHearth({ dataDir: victim.dataDir, args: clusterArgs('a') }));
  });

  it('a cron schedule every node runs fires each time once, cluster-wide', async () => {
    const recorder = await startRecorder();
    const fixture = await copyFixture('event-recorder', {
      'hearth.yaml': [
        'apiVersion: hearth.dev/v1',
        'kind: Function',
        'metadata: { name: ticker }',
        'spec:',
        '  runtime: node20',
        '  egress: allow',
        `  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }`,
        '  triggers:',
        '    - cron: { name: every-second, schedule: "* * * * * *" }',
        '',
      ].join('\n'),
    });
    try {
      expect((await deployFolder(node('b').url, fixture.dir, { name: 'ticker' })).status).toBe(200);
      for (const id of ['a', 'c'])
        await eventually(`node ${id} to run the ticker's schedule`, async () =>
          node(id).log.some((entry) => entry.msg === 'cluster: now serving default/ticker v1')
            ? true
            : undefined,
        );
      const ticks = (): string[] =>
        recorder.received
          .map((hit) => hit.json<{ event: { type?: string; id?: string } }>().event)
          .filter((event) => event.type === 'dev.hearth.cron.tick')
          .map((event) => String(event.id));
      // A time claimed by a node that then died before queueing its run (a claim row with a short lease,
      // never marked done): another node takes it over once the lease has run out, and fires it once.
      const orphanTime = new Date(Math.ceil(Date.now() / 1000) * 1000 + 4000).toISOString();
      const orphanId = `default/ticker/every-second@${orphanTime}`;
      const client = new pg.Client({ connectionString: services.postgres.url });
      await client.connect();
      try {
        await client.query(
          // Its lease outlasts the time: the nodes find it held, and ask again once it has run out.
          `INSERT INTO trigger_claims (key, node, lease_until, done)
           VALUES ($1, 'dead-node', $2::timestamptz + interval '2 seconds', false)`,
          [`cron:${orphanId}`, orphanTime],
        );
      } finally {
        await client.end();
      }
      // Six distinct times fired while all three nodes ran the schedule, the orphaned one among them.
      await recorder.waitFor(
        'six cron times and the orphaned one',
        () => new Set(ticks()).size >= 6 && ticks().includes(orphanId),
        30_000,
      );
      // Later times settle the orphaned one's deliveries (a duplicate would have come by then).
      const orphanFiredAt = new Set(ticks()).size;
      await recorder.waitFor(
        'three more cron times',
        () => new Set(ticks()).size >= orphanFiredAt + 3,
        30_000,
      );
      expect(ticks().filter((tick) => tick === orphanId)).toHaveLength(1);
      const fired = ticks();
      // The newest times may still have a (duplicate) delivery on its way: judged on the older ones.
      const settled = [...new Set(fired)].sort().slice(0, -2);
      for (const id of settled)
        expect(
          fired.filter((tick) => tick === id),
          id,
        ).toHaveLength(1);
    } finally {
      await api(node('b').url, functionApiPath('ticker'), { method: 'DELETE' });
      await fixture.cleanup();
      await recorder.close();
    }
  }, 90_000);

  it('an MQTT trigger every node runs stays connected on each and delivers each message once, cluster-wide', async () => {
    const broker = await startMosquitto();
    const recorder = await startRecorder();
    const publisher = await mqtt.connectAsync(broker.url, {
      protocolVersion: 5,
      clientId: 'cluster-publisher',
    });
    const fixture = await copyFixture('event-recorder', {
      'hearth.yaml': [
        'apiVersion: hearth.dev/v1',
        'kind: Function',
        'metadata: { name: mqtt-sink }',
        'spec:',
        '  runtime: node20',
        '  egress: allow',
        `  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }`,
        '  triggers:',
        `    - mqtt: { url: "${broker.url}", topic: "cluster/jobs", qos: 1 }`,
        '',
      ].join('\n'),
    });
    const jobs = (): number[] =>
      recorder.received
        .map((hit) => hit.json<{ event: { data?: { job?: number } } }>().event.data?.job)
        .filter((job): job is number => typeof job === 'number');
    try {
      expect((await deployFolder(node('b').url, fixture.dir, { name: 'mqtt-sink' })).status).toBe(200);
      for (const id of ['a', 'c'])
        await eventually(`node ${id} to serve mqtt-sink`, async () =>
          node(id).log.some((entry) => entry.msg === 'cluster: now serving default/mqtt-sink v1')
            ? true
            : undefined,
        );
      // Until a first message arrives the subscriptions may still be on their way: probe with job -1.
      await eventually(
        'a first message through the trigger',
        async () => {
          await publisher.publishAsync('cluster/jobs', JSON.stringify({ job: -1 }), { qos: 1 });
          return jobs().includes(-1) ? true : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 1000 },
      );
      // Every node holds its subscription, and keeps it: nodes that took one MQTT client id from each other
      // would be reconnecting in turn, each seen `connecting` most of the time.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      for (let sample = 0; sample < 6; sample++) {
        for (const id of ['a', 'b', 'c'])
          expect((await getFunction(node(id).url, 'mqtt-sink'))?.triggers?.[0]?.state, `node ${id}`).toBe(
            'running',
          );
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      for (let job = 0; job < 12; job++)
        await publisher.publishAsync('cluster/jobs', JSON.stringify({ job }), { qos: 1 });
      await recorder.waitFor(
        'the 12 jobs',
        () => new Set(jobs().filter((job) => job >= 0)).size === 12,
        30_000,
      );
      // A duplicate from another node's subscription would have arrived by now.
      await new Promise((resolve) => setTimeout(resolve, 2000));
      for (let job = 0; job < 12; job++)
        expect(
          jobs().filter((seen) => seen === job),
          `job ${job}`,
        ).toHaveLength(1);
    } finally {
      await api(node('b').url, functionApiPath('mqtt-sink'), { method: 'DELETE' });
      await fixture.cleanup();
      await publisher.endAsync();
      await recorder.close();
      await broker.stop();
    }
  }, 90_000);
});

describe('hearth up --cluster: bad flags', () => {
  it('refuses cluster flags without --cluster, and --cluster without its services, in one line', async () => {
    const stray = await runCli(['up', '--port', '0', '--postgres', 'postgres://127.0.0.1/x']);
    expect(stray.code).not.toBe(0);
    expect(stray.stderr.trim().split('\n')).toEqual([
      'error: HEARTH_E_VALIDATION: --postgres goes with --cluster: add --cluster',
    ]);
    const missing = await runCli(['up', '--port', '0', '--cluster', '--postgres', 'postgres://127.0.0.1/x']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('--cluster needs --nats, --redis');
    const bad = await runCli([
      'up',
      '--port',
      '0',
      '--cluster',
      '--postgres',
      'mysql://127.0.0.1/x',
      '--nats',
      'nats://127.0.0.1:1',
      '--redis',
      'redis://127.0.0.1:1',
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--postgres: expected a postgres:// URL, got "mysql://127.0.0.1/x"');
  });
});
