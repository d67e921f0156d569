/**
 * @module The hybrid keep-alive on the real platform: a function called like a timer (every 1.5 s here,
 * windows shrunk to match) is kept warm the fixed way until its idle-time histogram has enough periods,
 * then released right after a call and pre-warmed just before the next, which is served warm (at most once per
 * idleTimeout: the periods between are held through, as the fixed keep-alive would).
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  deployFolder,
  eventually,
  getFunction,
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

let hearth: Hearth;
let config: Awaited<ReturnType<typeof configFile>>;
let folder: TempFolder;

beforeAll(async () => {
  config = await configFile({ autoscaler: { tick: '50ms', stableWindow: '600ms', panicWindow: '150ms' } });
  hearth = await startHearth({ args: ['--config', config.path] });
  folder = await copyFixture('node-slow', {
    'hearth.yaml': manifest(
      'ticker',
      '{ runtime: node20, scaling: { targetConcurrency: 1, idleTimeout: 30s } }',
    ),
  });
  const { status, body } = await deployFolder(hearth.url, folder.dir, { name: 'ticker' });
  expect(status, JSON.stringify(body)).toBe(200);
});

afterAll(async () => {
  await hearth?.stop();
  await config?.cleanup();
  await folder?.cleanup();
});

describe('hybrid keep-alive', () => {
  it('learns a periodic function: releases it after each call and pre-warms it before the next', async () => {
    const calls: { cold: boolean; instancesBefore: number }[] = [];
    let next = Date.now();
    for (let i = 0; i < CALLS; i++) {
      // The timer's own schedule: the workload, not a wait for the platform.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
      next += PERIOD_MS;
      const instancesBefore = (await functionStats(hearth.url, 'ticker'))?.instances.ready ?? -1;
      const answer = await invoke(hearth.url, 'ticker', { path: '?ms=5' });
      expect(answer.status).toBe(200);
      calls.push({ cold: answer.headers.get('x-hearth-cold-start') === '1', instancesBefore });
      if (i === 3) {
        // Too little history yet: the fixed keep-alive (idleTimeout 30 s) keeps the instance between calls.
        const early = await getFunction(hearth.url, 'ticker');
        expect(early?.autoscaling?.keepAlive.strategy).toBe('fixed');
        expect(early?.autoscaling?.keepAlive.reason).toMatch(/of 10 idle periods seen/);
      }
    }
    // Released once the call is over: the histogram says the next one is more than a second away.
    await eventually('ticker to be released after its call', async () =>
      (await functionStats(hearth.url, 'ticker'))?.instances.ready === 0 ? true : undefined,
    );
    const detail = await getFunction(hearth.url, 'ticker');
    const keepAlive = detail?.autoscaling?.keepAlive;
    expect(keepAlive?.strategy).toBe('histogram');
    expect(keepAlive?.prewarmAfter).not.toBeNull();
    const actions = (detail?.autoscaling?.decisions ?? []).map((d) => d.action);
    expect(actions).toContain('prewarm');
    expect(actions).toContain('scale-to-zero');
    // The last calls found a pre-warmed instance and were served warm.
    const learned = calls.slice(-3);
    expect(learned.map((call) => call.cold)).toEqual([false, false, false]);
    expect(learned.every((call) => call.instancesBefore === 1)).toBe(true);
  });
});
