/**
 * @module Cron decisions at chosen times (an injected clock): time zones, no double fire across a restart
 * (persisted last fire + the queue's dedupe key), and the missed-run policy, against the real SQLite queue.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cron } from 'croner';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CronSource, resolveRetry } from '../../domain/triggers.js';
import { SqliteQueue } from '../../queue/index.js';
import type { TriggerConfig, TriggerHost } from '../index.js';
import { CronTrigger, nextFire, planStart } from './index.js';

const at = (iso: string): Date => new Date(iso);
const cron = (schedule: string, timezone?: string): Cron =>
  new Cron(schedule, { paused: true, ...(timezone === undefined ? {} : { timezone }) });

describe('cron plan (pure)', () => {
  it('computes the next run in the schedule’s time zone, across daylight saving time', () => {
    const nine = cron('0 9 * * *', 'Europe/Paris');
    expect(nextFire(nine, at('2026-01-15T00:00:00Z'), undefined)).toEqual(at('2026-01-15T08:00:00Z'));
    expect(nextFire(nine, at('2026-07-01T00:00:00Z'), undefined)).toEqual(at('2026-07-01T07:00:00Z'));
    const newYork = cron('30 17 * * 1-5', 'America/New_York');
    // Friday 2026-03-06 17:30 EST = 22:30Z; the next weekday run after it is Monday 2026-03-09 (EDT).
    expect(nextFire(newYork, at('2026-03-06T22:30:00Z'), undefined)).toEqual(at('2026-03-09T21:30:00Z'));
    // 02:30 does not exist in Paris on 2026-03-29 (02:00 → 03:00): that day runs at 03:00 CEST.
    expect(cron('30 2 * * *', 'Europe/Paris').nextRuns(2, at('2026-03-28T12:00:00Z'))).toEqual([
      at('2026-03-29T01:00:00Z'),
      at('2026-03-30T00:30:00Z'),
    ]);
  });

  it('never plans a time at or before the last fire, even if the clock stepped back', () => {
    const everySecond = cron('* * * * * *');
    expect(nextFire(everySecond, at('2026-01-01T10:00:00.400Z'), at('2026-01-01T10:00:00Z'))).toEqual(
      at('2026-01-01T10:00:01Z'),
    );
    expect(nextFire(everySecond, at('2026-01-01T09:59:58Z'), at('2026-01-01T10:00:00Z'))).toEqual(
      at('2026-01-01T10:00:01Z'),
    );
  });

  it('skips (default) or fires once for the newest run missed while down', () => {
    const hourly = cron('0 * * * *');
    const last = at('2026-01-01T10:00:00Z');
    expect(planStart(hourly, undefined, at('2026-01-01T15:30:00Z'), 'fire-once')).toEqual({ action: 'none' });
    expect(planStart(hourly, last, at('2026-01-01T10:59:59Z'), 'fire-once')).toEqual({ action: 'none' });
    expect(planStart(hourly, last, at('2026-01-01T15:30:00Z'), 'skip')).toEqual({
      action: 'skip',
      at: at('2026-01-01T15:00:00Z'),
    });
    expect(planStart(hourly, last, at('2026-01-01T15:30:00Z'), 'fire-once')).toEqual({
      action: 'fire',
      at: at('2026-01-01T15:00:00Z'),
    });
    // A run due exactly now counts as missed (the timer that would have fired it is gone).
    expect(planStart(hourly, last, at('2026-01-01T11:00:00Z'), 'fire-once')).toEqual({
      action: 'fire',
      at: at('2026-01-01T11:00:00Z'),
    });
  });

  it('decides in one step after a long downtime of a per-second schedule', () => {
    const started = performance.now();
    const plan = planStart(
      cron('* * * * * *'),
      at('2026-01-01T00:00:00Z'),
      at('2026-01-31T00:00:00.250Z'),
      'skip',
    );
    expect(plan).toEqual({ action: 'skip', at: at('2026-01-31T00:00:00Z') });
    expect(performance.now() - started).toBeLessThan(100);
  });
});

describe('CronTrigger across restarts (real SQLite queue, injected clock)', () => {
  let dir: string;
  let queue: SqliteQueue;
  let state: Map<string, string>;
  let clock: number;
  const running: CronTrigger[] = [];

  const host = (): TriggerHost => ({
    lookup: () => undefined,
    invoke: () => Promise.reject(new Error('cron goes through the queue')),
    queue,
    notifyQueue: () => undefined,
    state: { get: (key) => state.get(key), set: (key, value) => void state.set(key, value) },
    warn: () => undefined,
    info: () => undefined,
  });

  const config: TriggerConfig = {
    id: 'default/report/nightly',
    name: 'nightly',
    kind: 'cron',
    owner: 'default.report.nightly',
    retry: resolveRetry(undefined),
    route: () => ({ ref: { namespace: 'default', name: 'report' } }),
  };

  /** Starts the trigger as a (re)started platform would, and stops its timer so only start() acts. */
  async function restart(source: CronSource): Promise<CronTrigger> {
    const trigger = new CronTrigger(source, config, host(), () => clock);
    running.push(trigger);
    await trigger.start();
    await trigger.stop();
    return trigger;
  }

  const queuedTimes = async (): Promise<string[]> =>
    (await queue.list({ source: `cron:${config.id}` })).map((m) => m.request.event?.time ?? '?').sort();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-cron-'));
    queue = new SqliteQueue(join(dir, 'queue.db'));
    state = new Map();
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((t) => t.stop()));
    await queue.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a first start fires nothing and plans the next run in its time zone', async () => {
    clock = Date.parse('2026-07-01T05:00:00Z');
    const trigger = await restart({ schedule: '0 9 * * *', timezone: 'Europe/Paris', missed: 'fire-once' });
    expect(await queuedTimes()).toEqual([]);
    expect(trigger.status().detail).toMatchObject({
      timezone: 'Europe/Paris',
      nextRun: '2026-07-01T07:00:00.000Z',
      lastRun: null,
    });
  });

  it('skip (default): runs missed while down are recorded, not fired, and not fired by a later restart', async () => {
    const source: CronSource = { schedule: '0 * * * *' };
    state.set(`cron:${config.id}:0 * * * *:`, '2026-01-01T10:00:00.000Z');
    clock = Date.parse('2026-01-01T15:30:00Z');
    const trigger = await restart(source);
    expect(await queuedTimes()).toEqual([]);
    expect(trigger.status().detail).toMatchObject({
      missed: 'skip',
      lastRun: '2026-01-01T15:00:00.000Z',
      nextRun: '2026-01-01T16:00:00.000Z',
    });
    clock = Date.parse('2026-01-01T15:45:00Z');
    await restart(source);
    expect(await queuedTimes()).toEqual([]);
  });

  it('fire-once: one run for the newest missed time, and a second restart does not fire it again', async () => {
    const source: CronSource = { schedule: '0 * * * *', missed: 'fire-once' };
    state.set(`cron:${config.id}:0 * * * *:`, '2026-01-01T10:00:00.000Z');
    clock = Date.parse('2026-01-01T15:30:00Z');
    const trigger = await restart(source);
    expect(await queuedTimes()).toEqual(['2026-01-01T15:00:00.000Z']);
    expect(trigger.status()).toMatchObject({ delivered: 1, detail: { lastRun: '2026-01-01T15:00:00.000Z' } });
    const [message] = await queue.list({ source: `cron:${config.id}` });
    expect(message?.request.event).toMatchObject({
      specversion: '1.0',
      id: `${config.id}@2026-01-01T15:00:00.000Z`,
      source: `hearth://cron/${config.id}`,
      type: 'dev.hearth.cron.tick',
      subject: 'nightly',
      time: '2026-01-01T15:00:00.000Z',
    });
    clock = Date.parse('2026-01-01T15:59:00Z');
    await restart(source);
    expect(await queuedTimes()).toEqual(['2026-01-01T15:00:00.000Z']);
  });

  it('a crash between queueing a run and recording it does not queue the run twice', async () => {
    const source: CronSource = { schedule: '0 * * * *', missed: 'fire-once' };
    // The run of 11:00 was queued, then the platform died before persisting it as the last fire.
    await queue.enqueue({
      ref: { namespace: 'default', name: 'report' },
      source: `cron:${config.id}`,
      request: { method: 'POST', path: '/', rawQuery: '', headers: [], body: Buffer.alloc(0) },
      maxAttempts: 3,
      backoffMs: 1000,
      maxBackoffMs: 60_000,
      dedupeKey: `cron:${config.id}@2026-01-01T11:00:00.000Z`,
    });
    state.set(`cron:${config.id}:0 * * * *:`, '2026-01-01T10:00:00.000Z');
    clock = Date.parse('2026-01-01T11:00:02Z');
    await restart(source);
    expect(await queue.list({ source: `cron:${config.id}` })).toHaveLength(1);
    expect(state.get(`cron:${config.id}:0 * * * *:`)).toBe('2026-01-01T11:00:00.000Z');
  });

  it('fires on time with the real clock, once per second, and never twice for one time', async () => {
    const trigger = new CronTrigger({ schedule: '* * * * * *' }, config, host());
    running.push(trigger);
    await trigger.start();
    const deadline = Date.now() + 5000;
    while ((await queuedTimes()).length < 2 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    await trigger.stop();
    const times = await queuedTimes();
    expect(times.length).toBeGreaterThanOrEqual(2);
    expect(new Set(times).size).toBe(times.length);
    for (const time of times) expect(time).toMatch(/T\d\d:\d\d:\d\d\.000Z$/);
    // A restart right after (same persisted state) does not fire the last time again.
    const before = times.length;
    const again = new CronTrigger({ schedule: '* * * * * *' }, config, host());
    running.push(again);
    await again.start();
    await again.stop();
    expect((await queuedTimes()).length).toBe(before);
  });
});
