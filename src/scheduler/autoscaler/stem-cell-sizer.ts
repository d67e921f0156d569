/**
 * @module Sizes the stem-cell pools from the node-wide rate of instance starts. A start that finds its pool
 * empty spawns a runtime on the spot (~110 ms instead of ~6 ms, bench/RESULTS.md), so each pool keeps as
 * many ready cells as the largest burst of starts seen within a panic window over the last stable window,
 * between its configured size and `max`; after a stable window without bursts it shrinks back.
 */

import { type AutoscalerTiming, formatMs } from './policy.js';
import { SlidingWindow } from './window.js';

export interface SizablePool {
  stats(): {
    readonly runtime: string;
    readonly isolation: string;
    readonly network: string;
    readonly target: number;
  };
  setTarget(target: number): void;
}

export interface StemCellResize {
  readonly runtime: string;
  readonly isolation: string;
  readonly network: string;
  readonly from: number;
  readonly to: number;
  readonly reason: string;
}

interface Sizing {
  /** The configured size: the floor, and 0 keeps the pool off (the operator disabled it). */
  readonly base: number;
  readonly perTick: SlidingWindow;
  readonly bursts: SlidingWindow;
  target: number;
}

export class StemCellSizer {
  private readonly sizings = new Map<string, Sizing>();
  private readonly starts = new Map<string, number>();

  constructor(
    private readonly timing: AutoscalerTiming,
    /** The most cells a pool grows to. */
    private readonly max: number,
  ) {}

  /** One instance start that took a cell from pool `key` (`runtime/isolation/network`). */
  noteStart(key: string): void {
    this.starts.set(key, (this.starts.get(key) ?? 0) + 1);
  }

  tick(pools: ReadonlyMap<string, SizablePool>): StemCellResize[] {
    const changes: StemCellResize[] = [];
    const stableTicks = Math.ceil(this.timing.stableWindowMs / this.timing.tickMs);
    const panicTicks = Math.max(1, Math.round(this.timing.panicWindowMs / this.timing.tickMs));
    for (const [key, pool] of pools) {
      let sizing = this.sizings.get(key);
      if (sizing === undefined) {
        const base = pool.stats().target;
        sizing = {
          base,
          perTick: new SlidingWindow(panicTicks),
          bursts: new SlidingWindow(stableTicks),
          target: base,
        };
        this.sizings.set(key, sizing);
      }
      sizing.perTick.push(this.starts.get(key) ?? 0);
      this.starts.delete(key);
      sizing.bursts.push(sizing.perTick.sum());
      const peak = sizing.bursts.max();
      const target = sizing.base === 0 ? 0 : Math.max(sizing.base, Math.min(this.max, peak));
      if (target === sizing.target) continue;
      const stats = pool.stats();
      pool.setTarget(target);
      changes.push({
        runtime: stats.runtime,
        isolation: stats.isolation,
        network: stats.network,
        from: sizing.target,
        to: target,
        reason:
          target > sizing.target
            ? `${peak} instance starts within ${formatMs(this.timing.panicWindowMs)}: keeping ${target} ready (max ${this.max})`
            : `at most ${peak} starts within ${formatMs(this.timing.panicWindowMs)} over the last ${formatMs(this.timing.stableWindowMs)}: back towards ${sizing.base}`,
      });
      sizing.target = target;
    }
    return changes;
  }
}
