/** @module The hybrid autoscaler's decisions, driven tick by tick on a synthetic clock. */

import { describe, expect, it } from 'vitest';
import { FixedKeepAlive } from './fixed.js';
import { HybridAutoscaler, MIN_IDLE_SAMPLES } from './hybrid.js';
import type {
  AutoscalerTiming,
  ScalingDecision,
  ScalingPolicy,
  ScalingSample,
  ScalingSpec,
} from './policy.js';

const TIMING: AutoscalerTiming = {
  tickMs: 500,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  maxScaleDownRate: 2,
};

const SPEC: ScalingSpec = {
  min: 0,
  max: 50,
  targetConcurrency: 10,
  idleTimeoutMs: 300_000,
  warmPoolRatio: 0.1,
};

/** A function on a synthetic clock: each tick reports the load given and obeys the last decision at once. */
class Driver {
  now = 1_000_000;
  ready = 0;
  /** The node's recent instance start time the scheduler would report. */
  startMs = 0;
  last: ScalingDecision | undefined;

  constructor(
    readonly policy: ScalingPolicy,
    readonly spec: ScalingSpec = SPEC,
    readonly key = 'default/fn',
  ) {}

  tick(load: Partial<Pick<ScalingSample, 'arrivals' | 'concurrency'>> = {}): ScalingDecision {
    this.now += TIMING.tickMs;
    const decision = this.policy.decide(this.key, this.spec, {
      now: this.now,
      arrivals: load.arrivals ?? 0,
      concurrency: load.concurrency ?? 0,
      ready: this.ready,
      starting: 0,
      capacity: this.spec.targetConcurrency,
      startMs: this.startMs,
    });
    this.ready = decision.desired;
    this.last = decision;
    return decision;
  }

  /** Ticks for `ms` with the same load; returns every decision. */
  run(ms: number, load: Partial<Pick<ScalingSample, 'arrivals' | 'concurrency'>> = {}): ScalingDecision[] {
    const decisions: ScalingDecision[] = [];
    for (let t = 0; t < ms; t += TIMING.tickMs) decisions.push(this.tick(load));
    return decisions;
  }

  /** One request that arrives and finishes within a tick, then `gapMs` of silence. */
  request(then: { gapMs: number }): ScalingDecision[] {
    const decisions = [this.tick({ arrivals: 1 })];
    return decisions.concat(this.run(then.gapMs - TIMING.tickMs));
  }
}

describe('HybridAutoscaler: load', () => {
  it('scales on the short window in a burst: panic mode, desired = in flight ÷ (capacity × 0.9)', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING));
    fn.run(10_000, { concurrency: 5, arrivals: 50 });
    expect(fn.last?.mode).toBe('stable');
    expect(fn.last?.desired).toBe(1);
    const burst = fn.run(2_000, { concurrency: 200, arrivals: 2000 });
    expect(burst[0]?.mode).toBe('panic');
    // 6 s panic window, 2 s of it at 200: the short window already wants 8; a minute-long average would want 3.
    expect(burst.at(-1)?.desired).toBeGreaterThanOrEqual(8);
    fn.run(6_000, { concurrency: 200, arrivals: 2000 });
    expect(fn.last?.desired).toBe(Math.ceil(200 / 9));
    expect(fn.last?.reason).toMatch(/^panic: 200 in flight over 6s/);
  });

  it('never scales down while panicking, and leaves panic one stable window after the burst', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING));
    fn.run(8_000, { concurrency: 200, arrivals: 2000 });
    const peak = fn.last?.desired ?? 0;
    expect(peak).toBe(23);
    // Panic holds for a stable window after the burst last wanted twice the ready instances (its start).
    const after = fn.run(45_000, { concurrency: 20, arrivals: 200 });
    expect(after.every((d) => d.mode === 'panic' && d.desired === peak)).toBe(true);
    const later = fn.run(30_000, { concurrency: 20, arrivals: 200 });
    expect(later.at(-1)?.mode).toBe('stable');
    expect(later.at(-1)?.desired).toBeLessThan(peak);
  });

  it('scales down by at most half per tick', () => {
    const fn = new Driver(new HybridAutoscaler({ ...TIMING, panicThreshold: 1000 }));
    fn.run(60_000, { concurrency: 300, arrivals: 100 });
    expect(fn.last?.desired).toBe(34);
    // A long idle spell: the minute-long average falls gradually, and each tick may halve at most.
    const down = fn.run(60_000);
    for (let i = 1; i < down.length; i++) {
      const before = down[i - 1]?.desired ?? 0;
      expect(down[i]?.desired ?? 0).toBeGreaterThanOrEqual(Math.ceil(before / 2));
    }
  });

  it('does not flap under a steady but noisy load', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING));
    const noisy = (i: number): number => 45 + (i % 2 === 0 ? 8 : -8);
    for (let i = 0; i < 240; i++) fn.tick({ concurrency: noisy(i), arrivals: 100 });
    const seen = new Set<number>();
    for (let i = 0; i < 240; i++) seen.add(fn.tick({ concurrency: noisy(i), arrivals: 100 }).desired);
    expect([...seen]).toEqual([5]);
  });

  it('keeps warmPoolRatio of capacity idle: 9 in flight at 10 per instance fits one at 0.1, needs two at 0.5', () => {
    const tight = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, warmPoolRatio: 0.1 });
    tight.run(60_000, { concurrency: 9, arrivals: 10 });
    expect(tight.last?.desired).toBe(1);
    const roomy = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, warmPoolRatio: 0.5 });
    roomy.run(60_000, { concurrency: 9, arrivals: 10 });
    expect(roomy.last?.desired).toBe(2);
    const one = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, targetConcurrency: 1 });
    one.run(60_000, { concurrency: 0.95, arrivals: 10 });
    expect(one.last?.desired).toBe(2);
  });

  it('keeps extra instances longer once it had to start one again soon after stopping it', () => {
    const spec = { ...SPEC, targetConcurrency: 1, warmPoolRatio: 0, idleTimeoutMs: 600_000 };
    const fn = new Driver(new HybridAutoscaler(TIMING), spec);
    fn.run(70_000, { concurrency: 2, arrivals: 2 });
    expect(fn.last?.desired).toBe(2);
    // Until it learns otherwise, an extra instance goes after a stable window idle (Knative's scale-down).
    expect(fn.last?.keepIdleMs).toBe(TIMING.stableWindowMs);
    const calmer = fn.run(130_000, { concurrency: 1, arrivals: 1 });
    expect(calmer.at(-1)?.desired).toBe(1);
    // Needed again 2 minutes after it went: that stop saved less than the start cost.
    fn.run(10_000, { concurrency: 2, arrivals: 2 });
    expect(fn.last?.desired).toBe(2);
    const learned = fn.last?.keepIdleMs ?? 0;
    expect(learned).toBeGreaterThan(2 * TIMING.stableWindowMs);
    expect(learned).toBeLessThanOrEqual(spec.idleTimeoutMs);
    // A steady load lets it shrink back towards the stable window.
    fn.run(1_200_000, { concurrency: 2, arrivals: 2 });
    expect(fn.last?.keepIdleMs).toBeLessThan(learned);
  });

  it('respects min and max', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, min: 2, max: 4 });
    expect(fn.tick().desired).toBe(2);
    fn.run(10_000, { concurrency: 500, arrivals: 10 });
    expect(fn.last?.desired).toBe(4);
    expect(fn.last?.reason).toContain('capped at max 4');
    fn.run(20 * 60_000);
    expect(fn.last?.desired).toBe(2);
    expect(fn.last?.reason).toContain('min 2');
  });
});

describe('HybridAutoscaler: the last instance', () => {
  it('falls back to the fixed keep-alive while the history is thin, then scales to zero', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 30_000 });
    fn.tick({ arrivals: 1, concurrency: 1 });
    const idle = fn.run(29_000);
    expect(idle.every((d) => d.desired === 1)).toBe(true);
    expect(fn.last?.keepAlive.strategy).toBe('fixed');
    expect(fn.last?.keepAlive.reason).toContain(`0 of ${MIN_IDLE_SAMPLES} idle periods`);
    fn.run(2_000);
    expect(fn.last?.desired).toBe(0);
  });

  it('learns a timer: releases right after each run and pre-warms just before the next', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 600_000 });
    for (let i = 0; i < MIN_IDLE_SAMPLES + 2; i++) fn.request({ gapMs: 300_000 });
    const keepAlive = fn.last?.keepAlive;
    expect(keepAlive?.strategy).toBe('histogram');
    // 5th percentile of a 5-minute period (read at its bin's lower edge), less 10%.
    expect(keepAlive?.prewarmAfterMs).toBeGreaterThan(200_000);
    expect(keepAlive?.prewarmAfterMs).toBeLessThan(300_000);
    expect(keepAlive?.keepUntilMs).toBeGreaterThan(300_000);
    const cycle = fn.request({ gapMs: 300_000 });
    // Released as soon as the run is over (keepIdleMs 0), then started again before the next run is due.
    expect(cycle[0]?.desired).toBe(0);
    expect(cycle[0]?.keepIdleMs).toBe(0);
    expect(cycle[0]?.reason).toContain('released until');
    const prewarmedAt = cycle.findIndex((d) => d.desired === 1);
    expect(prewarmedAt).toBeGreaterThan(0);
    expect(cycle[prewarmedAt]?.reason).toContain('pre-warmed');
    expect(cycle.at(-1)?.desired).toBe(1);

    // The next period begins 5 minutes after that release: held through, at most one release per idleTimeout.
    const held = fn.request({ gapMs: 300_000 });
    expect(held.every((d) => d.desired === 1)).toBe(true);
    expect(held[1]?.reason).toContain('not released: released 5m ago, at most once per idleTimeout 10m');

    // Where starts take longer, the pre-warm begins earlier by twice the start time.
    fn.startMs = 2_000;
    const slow = fn.request({ gapMs: 300_000 });
    const slowPrewarmAt = slow.findIndex((d) => d.desired === 1);
    expect((prewarmedAt - slowPrewarmAt) * TIMING.tickMs).toBe(4_000);

    // Where they take so long that the gap is under 20 of them, the instance is not released at all: it
    // would be back before idleTimeout anyway.
    fn.startMs = 15_000;
    fn.request({ gapMs: 300_000 });
    const busy = fn.request({ gapMs: 300_000 });
    expect(busy.every((d) => d.desired === 1)).toBe(true);
    expect(busy[0]?.reason).toContain('not released: the gap is short against starts of 15s');
  });

  it('releases the last instance at most once per idleTimeout, as often as the fixed keep-alive starts one', () => {
    const releases = (periodMs: number, idleTimeoutMs: number) => {
      const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs });
      for (let i = 0; i < MIN_IDLE_SAMPLES + 2; i++) fn.request({ gapMs: periodMs });
      let count = 0;
      let missed = 0;
      for (let i = 0; i < 12; i++) {
        // The request finds an instance (pre-warmed or held), then the gap: released at most once.
        if (fn.ready === 0) missed += 1;
        const cycle = fn.request({ gapMs: periodMs });
        if (cycle.some((d) => d.desired === 0)) count += 1;
      }
      return { count, missed };
    };
    // A 5-minute timer under a 10-minute idleTimeout: every other period held through, the rest released and
    // pre-warmed; no request ever finds the function without an instance.
    expect(releases(300_000, 600_000)).toEqual({ count: 6, missed: 0 });
    // Periods of idleTimeout or longer: released (and pre-warmed) every time, as before.
    expect(releases(600_000, 600_000)).toEqual({ count: 12, missed: 0 });
    expect(releases(900_000, 600_000)).toEqual({ count: 12, missed: 0 });
  });

  it('keeps a frequently used function warm instead of releasing it between requests', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 180_000 });
    // A request every 40 to 60 s: kept through its histogram's tail, not released between requests.
    for (let i = 0; i < 40; i++) fn.request({ gapMs: 40_000 + (i % 5) * 5_000 });
    const keepAlive = fn.last?.keepAlive;
    expect(keepAlive?.strategy).toBe('histogram');
    expect(keepAlive?.prewarmAfterMs).toBe(0);
    // Never earlier than a stable window, never later than the function's idleTimeout.
    expect(keepAlive?.keepUntilMs).toBeGreaterThanOrEqual(TIMING.stableWindowMs);
    expect(keepAlive?.keepUntilMs).toBeLessThan(90_000);
    fn.tick({ arrivals: 1 });
    const idle = fn.run(65_000);
    expect(idle.every((d) => d.desired === 1)).toBe(true);
    fn.run(40_000);
    expect(fn.last?.desired).toBe(0);
  });

  it('holds a function called many times per idleTimeout to idleTimeout: its tail would cost a cold start now and then', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 600_000 });
    // A request every 20 to 40 s: 20 in one idleTimeout. An idle period past the histogram's tail is rare,
    // and holding on through it costs about one mean gap per cold start it saves.
    for (let i = 0; i < 60; i++) fn.request({ gapMs: 20_000 + (i % 5) * 5_000 });
    expect(fn.last?.keepAlive.keepUntilMs).toBe(600_000);
    expect(fn.last?.keepAlive.reason).toMatch(/held to idleTimeout: .* requests come in one/);
    const idle = fn.run(500_000);
    expect(idle.every((d) => d.desired === 1)).toBe(true);
    // The hold ends with idleTimeout, like the fixed keep-alive's.
    fn.run(110_000);
    expect(fn.last?.desired).toBe(0);
  });

  it('holds a busy function to idleTimeout when requests would queue behind its next start', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 180_000 });
    for (let i = 0; i < 40; i++) fn.request({ gapMs: 40_000 + (i % 5) * 5_000 });
    expect(fn.last?.keepAlive.keepUntilMs).toBeLessThan(90_000);
    // A request every 50 s or so, and starts taking 80 s on a (very) loaded node: one would wait for each.
    fn.startMs = 80_000;
    fn.tick();
    expect(fn.last?.keepAlive.keepUntilMs).toBe(180_000);
    expect(fn.last?.keepAlive.reason).toMatch(/held to idleTimeout: .* requests would wait for each start/);
    const idle = fn.run(100_000);
    expect(idle.every((d) => d.desired === 1)).toBe(true);
  });

  it('lets go in silence: after a step load, every instance goes once idleTimeout passes, not the stable window', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 3_000 });
    fn.run(10_000, { concurrency: 200, arrivals: 400 });
    expect(fn.last?.desired).toBeGreaterThan(10);
    const silence = fn.run(3_000 + 2 * TIMING.tickMs);
    // Held while the silence is shorter than idleTimeout (the stable window still averages the step) …
    expect(silence[0]?.desired).toBeGreaterThan(1);
    // … then released within a couple of ticks of it, though the 60 s stable window is far from over.
    expect(fn.last?.desired).toBe(0);
    expect(fn.last?.keepIdleMs).toBeLessThanOrEqual(3_000);
  });

  it('never keeps the last instance past idleTimeout, whatever the histogram says', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 90_000 });
    for (let i = 0; i < 30; i++) fn.request({ gapMs: 20_000 + (i % 3) * 40_000 });
    expect(fn.last?.keepAlive.keepUntilMs).toBe(90_000);
  });

  it('releases at once a function whose calls mostly come after idleTimeout: keeping it would wait for nothing', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 600_000 });
    // Called at random (Poisson) twice an hour: the twelve gaps are the quantiles of an exponential with a
    // 30-minute mean, in a shuffled order; one in four is under the 10-minute idleTimeout.
    const order = [6, 1, 9, 3, 11, 0, 7, 4, 10, 2, 8, 5];
    const gaps = order.map((i) => -Math.log(1 - (i + 0.5) / order.length) * 30 * 60_000);
    fn.request({ gapMs: gaps[0] ?? 0 });
    fn.request({ gapMs: gaps[1] ?? 0 });
    // Two idle periods: too few to judge, the fixed keep-alive holds.
    expect(fn.last?.keepAlive.strategy).toBe('fixed');
    for (const gapMs of gaps.slice(2)) fn.request({ gapMs });
    const keepAlive = fn.last?.keepAlive;
    expect(keepAlive?.keepUntilMs).toBe(0);
    expect(keepAlive?.prewarmAfterMs).toBe(0);
    expect(keepAlive?.reason).toMatch(
      /ended within idleTimeout 10m, .* idle per warm request: not worth keeping/,
    );
    // The next call's instance goes after the load half's grace (a stable window), and none is pre-warmed.
    const after = fn.request({ gapMs: 30 * 60_000 });
    const graceTicks = TIMING.stableWindowMs / TIMING.tickMs;
    expect(after.slice(graceTicks).every((d) => d.desired === 0)).toBe(true);
    expect(after.every((d) => d.reason.includes('pre-warmed') === false)).toBe(true);
  });

  it('pre-warms a function with a clear rhythm, not one whose gaps mostly run past idleTimeout', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 600_000 });
    // Gaps from 2 to 9 minutes, evenly: 95% are longer than a stable window, but a pre-warm at ~2 minutes
    // kept until ~10 would be hit by most; gaps from 2 to 60 minutes would not.
    for (let i = 0; i < 20; i++) fn.request({ gapMs: (2 + (i % 8)) * 60_000 });
    expect(fn.last?.keepAlive.prewarmAfterMs).toBeGreaterThan(0);
    const spread = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 600_000 });
    for (let i = 0; i < 20; i++) spread.request({ gapMs: (i % 4 === 0 ? 3 : 2 + (i % 4) * 20) * 60_000 });
    expect(spread.last?.keepAlive.prewarmAfterMs).toBe(0);
    expect(spread.last?.keepAlive.keepUntilMs).toBe(0);
  });

  it('pre-warms an hourly timer inside a window no longer than idleTimeout, centred on its rhythm', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 600_000 });
    // 67 minutes apart: near the top of its histogram bin, whose lower edge less 10% is 54 minutes; a window
    // from there, 10 minutes long, ended before each call.
    const periodMs = 4_000_000;
    for (let i = 0; i < MIN_IDLE_SAMPLES + 2; i++) fn.request({ gapMs: periodMs });
    const keepAlive = fn.last?.keepAlive;
    expect(keepAlive?.prewarmAfterMs).toBeLessThan(periodMs);
    expect(keepAlive?.keepUntilMs).toBeGreaterThan(periodMs);
    expect((keepAlive?.keepUntilMs ?? 0) - (keepAlive?.prewarmAfterMs ?? 0)).toBeLessThanOrEqual(600_000);
    // The next call finds the pre-warmed instance.
    const cycle = fn.request({ gapMs: periodMs });
    expect(cycle.at(-1)?.desired).toBe(1);
  });

  it('says when the pre-warm of a released function will start, so that a stem cell can be readied for it', () => {
    const fn = new Driver(new HybridAutoscaler(TIMING), { ...SPEC, idleTimeoutMs: 600_000 });
    for (let i = 0; i < MIN_IDLE_SAMPLES + 2; i++) fn.request({ gapMs: 300_000 });
    const cycle = fn.request({ gapMs: 300_000 });
    const released = cycle.filter((d) => d.desired === 0);
    expect(released.length).toBeGreaterThan(2);
    const inMs = released.map((d) => d.prewarmInMs ?? -1);
    // Counting down a tick at a time to the pre-warm, which carries none.
    expect(inMs.every((ms) => ms > 0)).toBe(true);
    expect((inMs[0] ?? 0) - (inMs[1] ?? 0)).toBe(TIMING.tickMs);
    expect(cycle.find((d) => d.desired === 1)?.prewarmInMs).toBeUndefined();
  });

  it('ranks functions for eviction: busy first kept, a just-used timer kept over an overdue one', () => {
    const policy = new HybridAutoscaler(TIMING);
    const busy = new Driver(policy, SPEC, 'default/busy');
    busy.run(5_000, { concurrency: 3, arrivals: 10 });
    expect(policy.expectedIdleMs('default/busy', busy.now)).toBe(0);
    const timer = new Driver(policy, SPEC, 'default/timer');
    for (let i = 0; i < 15; i++) timer.request({ gapMs: 300_000 });
    const soon = policy.expectedIdleMs('default/timer', timer.now);
    expect(soon).toBeLessThan(60_000);
    const early = new Driver(policy, SPEC, 'default/timer-2');
    for (let i = 0; i < 15; i++) early.request({ gapMs: 300_000 });
    early.request({ gapMs: 30_000 });
    expect(policy.expectedIdleMs('default/timer-2', early.now)).toBeGreaterThan(soon);
    expect(policy.expectedIdleMs('default/unknown', busy.now)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('FixedKeepAlive', () => {
  it('keeps min, stops extra instances after idleTimeout, and evicts least recently used first', () => {
    const policy = new FixedKeepAlive(TIMING);
    const fn = new Driver(policy, { ...SPEC, min: 1, idleTimeoutMs: 600_000 });
    const decision = fn.tick({ concurrency: 80, arrivals: 100 });
    expect(decision.desired).toBe(1);
    expect(decision.keepIdleMs).toBe(600_000);
    const other = new Driver(policy, SPEC, 'default/other');
    other.now = fn.now;
    other.tick({ arrivals: 1 });
    fn.run(10_000);
    other.run(20_000);
    expect(policy.expectedIdleMs('default/fn', other.now)).toBeGreaterThan(
      policy.expectedIdleMs('default/other', other.now),
    );
  });
});
