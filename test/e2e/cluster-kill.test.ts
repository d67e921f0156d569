/**
 * @module End-to-end, cluster mode (issue 12): `kill -9` of one node of three under load. A steady stream of
 * async invocations (through every node) and of sync requests (through the two that survive) runs while
 * node c is killed. Every invocation a node accepted (202) must still complete, run by the survivors
 * (JetStream redelivers what c held once its ack wait passes); sync requests b forwarded to c go elsewhere
 * once its breaker opens. The survivors' p99 before and after the kill is printed, not asserted (two shared
 * cores); `node bench/run.mjs cluster` measures the cluster's figures.
 */

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterNodes, type ClusterServices, LEAN, startClusterServices } from '../support/cluster.js';
import {
  api,
  cleanUp,
  copyFixture,
  deployFolder,
  eventually,
  functionApiPath,
  type Hearth,
  invoke,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

/** Short, so what c held comes back within the test: a delivery unconfirmed this long goes to another node. */
const ACK_WAIT = '2s';
const BREAKER_FAILURES = 5;
const ASYNC_TOTAL = 150;
const KILL_AT = 60;
const SLEEP_MS = 400;

let services: ClusterServices;
let recorder: Recorder;
let configDir: TempFolder;
const nodes = new ClusterNodes();

interface Accepted {
  readonly n: number;
  readonly id: string;
  readonly via: string;
}

interface NodesView {
  readonly items: readonly {
    readonly id: string;
    readonly self: boolean;
    readonly instances: number;
    readonly maxInstances: number;
    readonly warm: readonly { readonly function: string; readonly idle: number }[];
  }[];
}

interface SyncSample {
  readonly via: string;
  readonly at: number;
  readonly ms: number;
  readonly status: number;
  readonly ranOn: string | null;
}

const node = (id: string): Hearth => nodes.get(id);

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

let workerDeployed = false;

/** The async worker (once): reports each run to the recorder, then works for `sleepMs`, or fails on `fail`. */
async function deployWorker(): Promise<void> {
  if (workerDeployed) return;
  const worker = await copyFixture('event-recorder', {
    'hearth.yaml': [
      'apiVersion: hearth.dev/v1',
      'kind: Function',
      'metadata: { name: worker }',
      'spec:',
      '  runtime: node20',
      '  egress: allow',
      `  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }`,
      '',
    ].join('\n'),
  });
  try {
    expect((await deployFolder(node('a').url, worker.dir, { name: 'worker' })).status).toBe(200);
  } finally {
    await worker.cleanup();
  }
  workerDeployed = true;
}

/** Deploys a fixture under another name, through one node. */
async function deployAs(via: string, fixture: string, name: string): Promise<void> {
  const folder = await copyFixture(fixture, {
    'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: { runtime: node20 }\n`,
  });
  try {
    expect((await deployFolder(node(via).url, folder.dir, { name })).status).toBe(200);
  } finally {
    await folder.cleanup();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('cluster mode: kill -9 of one node under load', () => {
  beforeAll(async () => {
    [services, recorder] = await Promise.all([startClusterServices(), startRecorder()]);
    configDir = await makeFolder({});
    const cluster = (id: string) => services.yaml(id, { ackWait: ACK_WAIT });
    const breaker = `breaker: { failures: ${BREAKER_FAILURES} }\n`;
    const retry = 'retry: { attempts: 2, backoff: 200ms }';
    await writeFile(join(configDir.dir, 'a.yaml'), `${LEAN}${breaker}async: { ${retry} }\n${cluster('a')}`);
    // b has room for one instance and runs one async delivery at a time: once full, it forwards its sync
    // requests to the node with the function warm (c).
    await writeFile(
      join(configDir.dir, 'b.yaml'),
      `${LEAN}${breaker}maxInstances: 1\nasync: { concurrency: 1, ${retry} }\n${cluster('b')}`,
    );
    await writeFile(join(configDir.dir, 'c.yaml'), `${LEAN}${breaker}async: { ${retry} }\n${cluster('c')}`);
    const [a, b, c] = await Promise.all(
      ['a', 'b', 'c'].map((id) => startHearth({ args: ['--config', join(configDir.dir, `${id}.yaml`)] })),
    );
    nodes
      .set('a', a as Hearth)
      .set('b', b as Hearth)
      .set('c', c as Hearth);
  }, 180_000);

  afterAll(async () => {
    await cleanUp(
      () => nodes.stopAll(),
      () => Promise.all([services?.stop(), recorder?.close()]),
      () => configDir?.cleanup(),
    );
  }, 90_000);

  it('an invocation accepted on a is dead-lettered after its retries, listed on b and redriven from c', async () => {
    await deployWorker();
    const accepted = await fetch(`${node('a').url}/async-function/worker`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ n: -2, fail: true }),
    });
    expect(accepted.status).toBe(202);
    const { id } = (await accepted.json()) as { id: string };
    const dead = await eventually(
      `invocation ${id} to be dead-lettered`,
      async () => {
        const answer = await api<{ status: string; attempts: number }>(
          node('c').url,
          `/api/v1/invocations/${id}`,
        );
        return answer.body.status === 'dead' ? answer.body : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(dead.attempts).toBe(2);
    const ls = await runCli(['dlq', 'ls'], { url: node('b').url });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(new RegExp(`${id}\\s+worker\\s+async\\s+dead\\s+2/2`));
    const redrive = await runCli(['dlq', 'redrive', id], { url: node('c').url });
    expect(redrive.stdout).toBe('1 dead letter redriven\n');
    // It runs again (twice more: it still fails), on whichever nodes take it, and is dead again.
    const runsOf = () =>
      recorder.received.filter((hit) => hit.json<{ event: { body?: { n?: number } } }>().event.body?.n === -2)
        .length;
    await eventually('the redriven invocation to run twice more', () => (runsOf() >= 4 ? true : undefined), {
      timeoutMs: 30_000,
    });
    await eventually(`invocation ${id} to be dead again`, async () => {
      const answer = await api<{ status: string }>(node('a').url, `/api/v1/invocations/${id}`);
      return answer.body.status === 'dead' ? true : undefined;
    });
  });

  it('loses no accepted async invocation, and fails sync requests over to the survivors', async () => {
    await deployWorker();
    // Sync functions: one warm on c only (its deploy's proof), one on a.
    await deployAs('c', 'node-version', 'sync-c');
    await deployAs('a', 'node-esm-default', 'sync-a');
    // b holds one instance, the worker's, and so forwards sync-c to c, the node with it warm. A deploy or
    // a stale heartbeat may leave b (or a) holding sync-c itself: then it is parked there.
    await eventually(
      'b to be full of the worker, and to forward sync-c to c',
      async () => {
        const { items } = (await api<NodesView>(node('b').url, '/cluster/nodes')).body;
        const self = items.find((item) => item.self);
        const c = items.find((item) => item.id === 'c');
        if (self === undefined || c === undefined) return undefined;
        if (self.warm.some((fn) => fn.function === 'default/sync-c')) {
          await api(node('b').url, `${functionApiPath('sync-c')}/instances`, { method: 'DELETE' });
          return undefined;
        }
        // Only c is to have it warm (a forward while c's instance was busy may have warmed one on a).
        if (items.find((item) => item.id === 'a')?.warm.some((fn) => fn.function === 'default/sync-c')) {
          await api(node('a').url, `${functionApiPath('sync-c')}/instances`, { method: 'DELETE' });
          return undefined;
        }
        if (self.instances < self.maxInstances) {
          await invoke(node('b').url, 'worker', { body: JSON.stringify({ n: -1, sleepMs: 0 }) });
          return undefined;
        }
        if (!c.warm.some((fn) => fn.function === 'default/sync-c' && fn.idle > 0)) {
          await invoke(node('c').url, 'sync-c');
          return undefined;
        }
        const answer = await invoke(node('b').url, 'sync-c');
        return answer.headers.get('x-hearth-node') === 'c' ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 300 },
    );

    let killedAt = Number.POSITIVE_INFINITY;
    let producing = true;
    const samples: SyncSample[] = [];
    const syncLane = async (via: string, fn: string): Promise<void> => {
      while (producing) {
        const started = performance.now();
        const at = Date.now();
        let status = 0;
        let ranOn: string | null = null;
        try {
          const answer = await invoke(node(via).url, fn);
          status = answer.status;
          ranOn = answer.headers.get('x-hearth-node');
        } catch {
          status = 0;
        }
        samples.push({ via, at, ms: performance.now() - started, status, ranOn });
        await sleep(10);
      }
    };
    const lanes = [syncLane('a', 'sync-a'), syncLane('b', 'sync-c')];

    const accepted: Accepted[] = [];
    const victim = node('c');
    const exited = new Promise((resolve) => victim.process.once('exit', resolve));
    const sends: Promise<void>[] = [];
    for (let n = 0; n < ASYNC_TOTAL; n += 1) {
      if (n === KILL_AT) {
        victim.process.kill('SIGKILL');
        killedAt = Date.now();
      }
      const via = ['a', 'b', 'c'][n % 3] as string;
      if (via === 'c' && n >= KILL_AT) continue;
      const url = via === 'c' ? victim.url : node(via).url;
      sends.push(
        fetch(`${url}/async-function/worker`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ n, sleepMs: SLEEP_MS }),
        })
          .then(async (response) => {
            // Only a 202 is a promise to run it; a request c was taking when killed is not one.
            if (response.status === 202)
              accepted.push({ n, id: ((await response.json()) as { id: string }).id, via });
          })
          .catch(() => undefined),
      );
      await sleep(30);
    }
    await Promise.all(sends);
    await exited;
    nodes.delete('c');
    // The sync lanes run on until the survivors have seen c gone and its breaker has had its say.
    await eventually(
      'a and b to see c gone',
      async () => {
        for (const id of ['a', 'b']) {
          const answer = await api<{ items: { id: string }[] }>(node(id).url, '/cluster/nodes');
          if (answer.body.items.some((item) => item.id === 'c')) return undefined;
        }
        return true;
      },
      { timeoutMs: 30_000 },
    );
    await sleep(2000);
    producing = false;
    await Promise.all(lanes);

    // Every accepted invocation completes, on the survivors if c had it.
    expect(accepted.filter((entry) => entry.via === 'c').length).toBeGreaterThan(0);
    const pending = new Set(accepted.map((entry) => entry.id));
    const records = new Map<string, { status: string; attempts: number }>();
    await eventually(
      `all ${accepted.length} accepted invocations to succeed`,
      async () => {
        for (const id of [...pending]) {
          const answer = await api<{ status: string; attempts: number }>(
            node('a').url,
            `/api/v1/invocations/${id}`,
          );
          if (answer.status === 200) records.set(id, answer.body);
          if (answer.status === 200 && answer.body.status === 'succeeded') pending.delete(id);
        }
        return pending.size === 0 ? true : undefined;
      },
      { timeoutMs: 120_000 },
    );
    // …and each ran at least once (the recorder saw it); some more than once (c died running them).
    const runs = new Map<number, number>();
    for (const hit of recorder.received) {
      const n = hit.json<{ event: { body?: { n?: number } } }>().event.body?.n;
      if (typeof n === 'number') runs.set(n, (runs.get(n) ?? 0) + 1);
    }
    const neverRan = accepted.filter((entry) => (runs.get(entry.n) ?? 0) === 0).map((entry) => entry.n);
    expect(neverRan).toEqual([]);
    const redelivered = [...records.values()].filter((record) => record.attempts > 1).length;
    const ranTwice = accepted.filter((entry) => (runs.get(entry.n) ?? 0) > 1).length;

    // Sync: b's requests to sync-c failed for at most the breaker's window, then went elsewhere.
    const after = samples.filter((sample) => sample.at >= killedAt);
    const failedOnB = after.filter((sample) => sample.via === 'b' && sample.status !== 200);
    expect(failedOnB.length).toBeLessThanOrEqual(BREAKER_FAILURES);
    const lastOnB = after.filter((sample) => sample.via === 'b').slice(-10);
    expect(lastOnB.length).toBe(10);
    for (const sample of lastOnB) {
      expect(sample.status).toBe(200);
      expect(sample.ranOn).not.toBe('c');
    }
    expect(after.filter((sample) => sample.via === 'a' && sample.status !== 200)).toEqual([]);

    const p99 = (via: string, before: boolean) =>
      Math.round(
        percentile(
          samples
            .filter(
              (sample) => sample.via === via && sample.status === 200 && sample.at < killedAt === before,
            )
            .map((sample) => sample.ms),
          99,
        ) * 10,
      ) / 10;
    console.log(
      `cluster kill -9: ${accepted.length} async accepted (${accepted.filter((e) => e.via === 'c').length} by c), all succeeded; ` +
        `${redelivered} delivered more than once, ${ranTwice} ran twice; sync on b failed ${failedOnB.length} time(s) after the kill; ` +
        `p99 sync a ${p99('a', true)} ms before / ${p99('a', false)} ms after, b ${p99('b', true)} / ${p99('b', false)} ms`,
    );
  }, 240_000);
});
