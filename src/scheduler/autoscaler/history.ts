/**
 * @module One function's observed history as the policies see it: sliding windows of concurrency and
 * arrivals, when it was last active, its idle-time histogram and a long-horizon request rate.
 */

import { IdleHistogram } from './idle-histogram.js';
import type { AutoscalerTiming, ScalingSample } from './policy.js';
import { SlidingWindow } from './window.js';

/** The long-term rate (for eviction) forgets over this many stable windows (10 minutes by default). */
const RATE_HORIZON_WINDOWS = 10;

export class FunctionHistory {
  readonly concurrency: SlidingWindow;
  readonly arrivals: SlidingWindow;
  readonly idle = new IdleHistogram();
  /** When the function last had requests arriving or in flight; until then, when it was first seen. */
  lastActiveAt: number;
  /** Whether it had never been active: the first request ends no idle period. */
  everActive = false;
  /** Whether the previous tick saw it active. */
  wasActive = false;
  /** Requests per second, an exponentially weighted mean over `RATE_HORIZON_WINDOWS` stable windows. */
  rate = 0;
  /** When the panic condition last held; panic lasts a stable window past it. */
  lastPanicAt = Number.NEGATIVE_INFINITY;
  /** The load-driven desired count of the previous tick, which panic mode never goes below. */
  lastLoadDesired = 0;
  lastTickAt: number;
  /** Instances (ready + starting) at the previous tick. */
  lastInstances = 0;
  /** When the last instance last went away (instances fell to zero): a release, or the end of a keep window. */
  lastReleaseAt = Number.NEGATIVE_INFINITY;
  /** The idle period (by its `lastActiveAt`) whose release was last weighed, and whether it may release. */
  releaseWeighedFor = Number.NaN;
  releaseAllowed = true;
  /** When an instance above the first last went away (a scale-down, not to zero). */
  lastShrinkAt = Number.NEGATIVE_INFINITY;
  /**
   * How long an idle instance above the desired count is kept (0: the stable window). It grows when the
   * function starts an instance again soon after one was stopped (see `HybridAutoscaler`).
   */
  extraKeepMs = 0;

  constructor(
    private readonly timing: AutoscalerTiming,
    now: number,
  ) {
    this.concurrency = new SlidingWindow(Math.ceil(timing.stableWindowMs / timing.tickMs));
    this.arrivals = new SlidingWindow(Math.ceil(timing.stableWindowMs / timing.tickMs));
    this.lastActiveAt = now;
    this.lastTickAt = now;
  }

  /** Ticks in the panic window (at least one). */
  get panicTicks(): number {
    return Math.max(1, Math.round(this.timing.panicWindowMs / this.timing.tickMs));
  }

  /**
   * Folds in one sample. An idle period ends when requests arrive after a tick without any; its length runs
   * from the last active tick, less one tick because both ends are known only to the tick.
   */
  observe(sample: ScalingSample): void {
    this.concurrency.push(sample.concurrency);
    this.arrivals.push(sample.arrivals);
    const active = sample.arrivals > 0 || sample.concurrency > 0;
    if (active) {
      if (!this.wasActive && this.everActive)
        this.idle.record(Math.max(0, sample.now - this.lastActiveAt - this.timing.tickMs));
      this.everActive = true;
      this.lastActiveAt = sample.now;
    }
    this.wasActive = active;
    const elapsed = Math.max(1, sample.now - this.lastTickAt);
    const alpha = Math.min(1, elapsed / (RATE_HORIZON_WINDOWS * this.timing.stableWindowMs));
    this.rate += alpha * ((sample.arrivals * 1000) / elapsed - this.rate);
    this.lastTickAt = sample.now;
  }

  idleFor(now: number): number {
    return this.wasActive ? 0 : Math.max(0, now - this.lastActiveAt);
  }

  /** Requests per second over the stable window (over the samples so far while it fills). */
  stableRps(): number {
    const spanMs = this.arrivals.count * this.timing.tickMs;
    return spanMs === 0 ? 0 : (this.arrivals.sum() * 1000) / spanMs;
  }
}
