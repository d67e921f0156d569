/**
 * @module End-to-end: a burst of cold starts (issue 11). Many distinct functions, parked at zero instances,
 * called at the same moment, sandboxed: every one answers, each from a stem cell bound for it. No timing is
 * asserted (the machine is shared); `node bench/run.mjs cold-burst` measures it.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  deployFolder,
  eventually,
  type Hearth,
  invoke,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

/** Per runtime: more than the pools' default size and burst limit; the floor (a cell per idle function) covers it. */
const PER_RUNTIME = 10;
const FIXTURES = { node20: 'node-esm-default', python3: 'py-sync' } as const;

let hearth: Hearth;
const folders: TempFolder[] = [];
const names: string[] = [];

beforeAll(async () => {
  hearth = await startHearth();
  for (const [runtime, fixture] of Object.entries(FIXTURES)) {
    for (let i = 0; i < PER_RUNTIME; i++) {
      const name = `burst-${runtime.replace(/\d/g, '')}-${i}`;
      const folder = await copyFixture(fixture, { 'hearth.yaml': manifest(name, `{ runtime: ${runtime} }`) });
      folders.push(folder);
      const deployed = await deployFolder(hearth.url, folder.dir, { name, query: '?verify=false' });
      expect(deployed.status, `deploy ${name}: ${JSON.stringify(deployed.body)}`).toBe(200);
      names.push(name);
    }
  }
  for (const name of names) {
    const parked = await fetch(`${hearth.url}/api/v1/namespaces/default/functions/${name}/instances`, {
      method: 'DELETE',
    });
    expect(parked.ok, `scale ${name} to zero`).toBe(true);
  }
});

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

interface PoolStats {
  runtime: string;
  isolation: string;
  network: string;
  taken: number;
  ready: number;
  starting: number;
  target: number;
  floor: number;
  boots: number;
  misses: number;
}

async function defaultPools(): Promise<PoolStats[]> {
  const health = (await (await fetch(`${hearth.url}/healthz`)).json()) as { stemCells: PoolStats[] };
  return health.stemCells.filter((pool) => pool.isolation === 'sandbox' && pool.network === 'none');
}

async function takenByRuntime(): Promise<Record<string, number>> {
  const taken: Record<string, number> = {};
  for (const pool of await defaultPools()) taken[pool.runtime] = (taken[pool.runtime] ?? 0) + pool.taken;
  return taken;
}

describe('a burst of cold starts', () => {
  it('keeps a ready stem cell for each deployed function without an instance, and says so in the log', async () => {
    expect(
      hearth.log.some((line) =>
        String(line.msg).startsWith('stem cells: 1 kept ready per deployed function without an instance'),
      ),
    ).toBe(true);
    await eventually(
      'a ready cell per idle function',
      async () => {
        const pools = await defaultPools();
        return ['node20', 'python3'].every(
          (runtime) => (pools.find((pool) => pool.runtime === runtime)?.ready ?? 0) >= PER_RUNTIME,
        )
          ? true
          : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const resized = hearth.log.filter((line) =>
      String(line.msg).startsWith('stem cells python3/sandbox/none:'),
    );
    expect(resized.map((line) => String(line.reason))).toContainEqual(
      expect.stringContaining(`${PER_RUNTIME} deployed functions without an instance`),
    );
  });

  it('boots no Node cell while idle functions are called back to back, each taking its own cell, and refills after', async () => {
    const node = async (): Promise<PoolStats> => {
      const pool = (await defaultPools()).find((candidate) => candidate.runtime === 'node20');
      if (pool === undefined) throw new Error('no node20 pool');
      return pool;
    };
    const nodeNames = names.filter((name) => name.startsWith('burst-node-'));
    const before = await node();
    expect(before.floor).toBe(nodeNames.length);
    for (const [index, name] of nodeNames.entries()) {
      const response = await invoke(hearth.url, name, { method: 'POST' });
      expect(response.status, `${name}: ${response.text}`).toBe(200);
      expect(response.headers.get('x-hearth-cold-start'), name).toBe('1');
      const now = await node();
      // What the pool refills to falls with the functions still idle: each cold start took its own cell.
      expect(now).toMatchObject({ misses: before.misses, floor: nodeNames.length - index - 1 });
      expect(now.ready).toBeGreaterThanOrEqual(now.floor);
      // Nothing to boot while it holds what it wants (a tick may want more once it has seen the burst's starts;
      // those boot once the calls stop).
      if (now.ready >= now.target) expect(now).toMatchObject({ starting: 0, boots: before.boots });
    }
    // Over: the pool refills to its size from starts. Refills boot at the least CPU weight, so on a machine
    // busy with other suites they take their time; the pool's figures are shown if they never come.
    await eventually(
      'the node pool refilled',
      async () => {
        const now = await node();
        return now.ready >= now.target && now.starting === 0 ? true : undefined;
      },
      { timeoutMs: 90_000 },
    ).catch(async (error: unknown) => {
      throw new Error(`${(error as Error).message}; the pool: ${JSON.stringify(await node())}`);
    });
    // Idle again, for the burst below: a cell for each once more.
    for (const name of nodeNames) {
      const parked = await fetch(`${hearth.url}/api/v1/namespaces/default/functions/${name}/instances`, {
        method: 'DELETE',
      });
      expect(parked.ok, `scale ${name} to zero`).toBe(true);
    }
    await eventually(
      'a ready cell per idle node function again',
      async () => {
        const now = await node();
        return now.floor === nodeNames.length && now.ready >= now.floor && now.starting === 0
          ? true
          : undefined;
      },
      { timeoutMs: 90_000 },
    ).catch(async (error: unknown) => {
      throw new Error(`${(error as Error).message}; the pool: ${JSON.stringify(await node())}`);
    });
  }, 240_000);

  it('distinct idle Node and Python functions called at the same moment all answer, each from a ready cell', async () => {
    const before = await takenByRuntime();
    const missesBefore = (await defaultPools()).reduce((sum, pool) => sum + pool.misses, 0);
    const responses = await Promise.all(names.map((name) => invoke(hearth.url, name, { method: 'POST' })));
    for (const [index, response] of responses.entries()) {
      expect(response.status, `${names[index]}: ${response.text}`).toBe(200);
      expect(response.headers.get('x-hearth-cold-start'), names[index]).toBe('1');
      expect((response.json() as { fn?: string }).fn ?? names[index]).toBe(names[index]);
    }
    // Every one of them took a stem cell; the autoscaler may take more meanwhile (a pre-warm it learned).
    const after = await takenByRuntime();
    expect((after.node20 ?? 0) - (before.node20 ?? 0)).toBeGreaterThanOrEqual(PER_RUNTIME);
    expect((after.python3 ?? 0) - (before.python3 ?? 0)).toBeGreaterThanOrEqual(PER_RUNTIME);
    // The floor had a cell ready for each: none of them waited for a runtime to boot.
    expect((await defaultPools()).reduce((sum, pool) => sum + pool.misses, 0)).toBe(missesBefore);
  });

  it('the same functions answer again from the instances the burst started', async () => {
    const responses = await Promise.all(names.map((name) => invoke(hearth.url, name)));
    for (const [index, response] of responses.entries()) {
      expect(response.status, names[index]).toBe(200);
      expect(response.headers.get('x-hearth-cold-start'), names[index]).not.toBe('1');
    }
  });
});
