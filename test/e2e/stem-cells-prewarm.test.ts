/**
 * @module End-to-end: a pre-warm takes its function's floor cell and boots nothing (issue 11). The autoscaler's
 * tick pre-warms a learned periodic function while other functions sit idle, so the Node pool refills to the
 * floor of the idle functions; counting the pre-warmed function idle in the tick that started it made the pool
 * boot it a second cell, which the next tick let go unused (the trace replay: most of its unused boots). The
 * windows are shrunk as the replay's are, so that a floor that fell is not held over the call. No timing is
 * asserted.
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
import { configFile, functionStats } from '../support/load.js';

const PERIOD_MS = 1_500;
/** Idle periods the policy needs before it trusts the histogram (MIN_IDLE_SAMPLES), plus a few. */
const CALLS = 14;
/** Calls made once the pre-warms have begun, over which no cell may be let go. */
const WATCHED = 4;
/** Idle Node functions beside the ticker: more than the pool's size from starts, so the floor sets its level. */
const IDLE = 6;

let hearth: Hearth;
let config: Awaited<ReturnType<typeof configFile>>;
const folders: TempFolder[] = [];

interface PoolStats {
  runtime: string;
  isolation: string;
  network: string;
  taken: number;
  ready: number;
  floor: number;
  starting: number;
  boots: number;
}

/** The Node pool once no boot is under way (a boot's cell is in `starting`, not yet in `boots`). */
async function settledNodePool(): Promise<PoolStats> {
  return eventually('the node pool to finish its boots', async () => {
    const pool = await nodePool();
    return pool.starting === 0 ? pool : undefined;
  });
}

async function nodePool(): Promise<PoolStats> {
  const health = (await (await fetch(`${hearth.url}/healthz`)).json()) as { stemCells: PoolStats[] };
  const pool = health.stemCells.find(
    (entry) => entry.runtime === 'node20' && entry.isolation === 'sandbox' && entry.network === 'none',
  );
  if (pool === undefined) throw new Error('no node20 sandbox pool');
  return pool;
}

/** Cells the pool booted that no take got and that are not ready or booting now: let go unused. */
function letGo(pool: PoolStats): number {
  return pool.boots - pool.taken - pool.ready - pool.starting;
}

beforeAll(async () => {
  config = await configFile({ autoscaler: { tick: '20ms', stableWindow: '100ms', panicWindow: '40ms' } });
  hearth = await startHearth({ args: ['--config', config.path] });
  const ticker = await copyFixture('node-slow', {
    'hearth.yaml': manifest(
      'ticker',
      '{ runtime: node20, scaling: { targetConcurrency: 1, idleTimeout: 30s } }',
    ),
  });
  folders.push(ticker);
  const deployed = await deployFolder(hearth.url, ticker.dir, { name: 'ticker' });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  for (let i = 0; i < IDLE; i++) {
    const name = `idle-${i}`;
    const folder = await copyFixture('node-esm-default', {
      'hearth.yaml': manifest(name, '{ runtime: node20 }'),
    });
    folders.push(folder);
    const idle = await deployFolder(hearth.url, folder.dir, { name, query: '?verify=false' });
    expect(idle.status, `deploy ${name}: ${JSON.stringify(idle.body)}`).toBe(200);
    const parked = await fetch(`${hearth.url}/api/v1/namespaces/default/functions/${name}/instances`, {
      method: 'DELETE',
    });
    expect(parked.ok, `scale ${name} to zero`).toBe(true);
  }
  await eventually('a ready cell for each idle function', async () =>
    (await nodePool()).ready >= IDLE ? true : undefined,
  );
});

afterAll(async () => {
  await hearth?.stop();
  await config?.cleanup();
  for (const folder of folders) await folder.cleanup();
});

describe('stem cells and pre-warms', () => {
  it('a pre-warmed function takes its floor cell and the pool boots no cell it lets go', async () => {
    let next = Date.now();
    let watchedFrom: PoolStats | undefined;
    const prewarmed: boolean[] = [];
    for (let i = 0; i < CALLS; i++) {
      // The timer's own schedule: the workload, not a wait for the platform.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
      next += PERIOD_MS;
      if (i === CALLS - WATCHED) watchedFrom = await settledNodePool();
      const before = (await functionStats(hearth.url, 'ticker'))?.instances.ready ?? -1;
      // Longer than the stable window: the floor that fell while the instance runs is not held for it.
      const answer = await invoke(hearth.url, 'ticker', { path: '?ms=300' });
      expect(answer.status).toBe(200);
      prewarmed.push(answer.headers.get('x-hearth-cold-start') !== '1' && before === 1);
    }
    // The last calls found a pre-warmed instance: the ticks started them from zero.
    expect(prewarmed.slice(-WATCHED)).toEqual([true, true, true, true]);
    await eventually('ticker to be released after its call', async () =>
      (await functionStats(hearth.url, 'ticker'))?.instances.ready === 0 ? true : undefined,
    );
    const after = await settledNodePool();
    // The idle functions' floor set the pool's level throughout.
    expect(after.floor).toBeGreaterThanOrEqual(IDLE);
    expect(watchedFrom).toBeDefined();
    expect(letGo(after)).toBe(letGo(watchedFrom as PoolStats));
  });
});
