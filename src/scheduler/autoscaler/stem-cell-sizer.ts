/**
 * @module Sizes the stem-cell pools from the node-wide rate of instance starts. A start that finds its pool
 * empty spawns a runtime on the spot (~110 ms instead of ~6 ms, bench/RESULTS.md), so each pool keeps, between
 * its configured size and `max`, the most of:
 * - the largest burst of starts seen within a panic window over the last stable window (it shrinks back after
 *   a stable window without bursts);
 * - a cell more for each start that found the pool empty (given back after ten calm stable windows);
 * - the starts expected while one cell boots, from the rate of starts over ten stable windows and the pool's
 *   own boot time (Little's law, plus two standard deviations of a Poisson count): a take leaves a gap that
 *   long, and on a busy machine a boot takes several hundred milliseconds;
 * and on top, one cell per start the autoscaler has announced (`expectStart`: a pre-warm due within two boot
 *   times), so that the pre-warm's cell is booted ahead of it instead of taken from the unpredicted starts.
 *
 * Under all of these lies a floor sized from memory, not from starts (`StemCellFloor`): a ready cell for each
 * deployed function with no instance (each is one cold start away), up to a share of the node's memory. The
 * reactive sizing answers a burst only after its first misses, and a miss boots a runtime on the spot (Node
 * ~80 ms of CPU, Python ~30 ms): 24 idle functions called back to back missed 2-7 times, 100 called at once
 * 84 times (issue 11). An idle cell costs ~6-8 MiB PSS; memory is what a node has plenty of.
 *
 * The pool gets the two apart (`SizablePool.setTarget`): it refills to the larger of the size from starts and
 * the floor of the functions idle now, which it lowers itself as they start between ticks; a floor that fell
 * is only held (its cells kept, none booted) for a stable window. Refilling to the held floor booted a cell
 * for each function a burst had just started, during the burst (issue 11).
 */

import { type AutoscalerTiming, formatMs } from './policy.js';
import { SlidingWindow } from './window.js';

/**
 * A cell added for a miss stays until this many stable windows pass without one (10 minutes by default): the
 * churn that caused it is steady, and a ready cell costs ~13 MiB (PSS, bench/RESULTS.md). With one window, the
 * trace replay's pools shrank back between two pre-warms and missed again.
 */
const MISS_CALM_WINDOWS = 10;
/** Stable windows over which the rate of starts is measured for the reserve a boot's gap needs. */
const RATE_WINDOWS = 10;

export interface SizablePool {
  stats(): {
    readonly runtime: string;
    readonly isolation: string;
    readonly network: string;
    readonly target: number;
    /** Takes that found the pool empty, ever; optional so that a pool without the figure sizes by bursts. */
    readonly misses?: number;
    /** How long a cell boots lately (ms); without it, no reserve for the gap a boot leaves. */
    readonly bootMs?: number;
  };
  /**
   * `target`: the cells to keep from the starts seen; `floor`: the idle functions' cells now and the cells held
   * for a floor that fell (absent without a floor).
   */
  setTarget(target: number, floor?: StemCellFloorNow): void;
}

/** The floor handed to a pool (see `StemCellFloorNow` in stem-cells.ts, which it mirrors). */
export interface StemCellFloorNow {
  /** Cells for the deployed functions with no instance now (bounded by memory). */
  readonly cells: number;
  /** Those functions. */
  readonly functions: number;
  /** The most cells the floor asked for over the last stable window: kept, not refilled to. */
  readonly hold: number;
}

/** The floor of every pool: cells for the idle deployed functions, bounded by memory (see the module comment). */
export interface StemCellFloor {
  /** Ready cells per deployed function that has no instance (0 turns the floor off). */
  readonly perIdleFunction: number;
  /** The most memory the floor's cells may hold, all pools together (bytes). */
  readonly memoryBytes: number;
  /** What one idle cell of a runtime costs (PSS, bytes). */
  cellBytes(runtime: string): number;
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
  /** Starts per tick over `RATE_WINDOWS` stable windows. */
  readonly rate: SlidingWindow;
  /** The memory floor per tick over a stable window (`StemCellFloor`). */
  readonly floors: SlidingWindow;
  /** Cells added because starts found the pool empty: steady churn the burst figure does not see. */
  missBoost: number;
  misses: number;
  /** Ticks since a start last found the pool empty. */
  calmTicks: number;
  target: number;
  /** What the pool was last told (`setTarget`), to tell it again only on a change. */
  sent: string;
}

export class StemCellSizer {
  private readonly sizings = new Map<string, Sizing>();
  private readonly starts = new Map<string, number>();
  /** Starts announced for this tick, by pool: how soon each is due (ms). */
  private readonly expected = new Map<string, number[]>();

  constructor(
    private readonly timing: AutoscalerTiming,
    /** The most cells a pool grows to by its starts (the floor may hold more). */
    private readonly max: number,
    private readonly floor?: StemCellFloor,
  ) {}

  /**
   * Each pool's floor: `perIdleFunction` cells per idle function filed under its key, all of them scaled down
   * together when they would hold more than `floor.memoryBytes`.
   */
  floors(
    pools: ReadonlyMap<string, SizablePool>,
    idleFunctions: ReadonlyMap<string, number>,
  ): Map<string, number> {
    const floors = new Map<string, number>();
    const floor = this.floor;
    if (floor === undefined || floor.perIdleFunction <= 0) return floors;
    let bytes = 0;
    for (const [key, pool] of pools) {
      const stats = pool.stats();
      // Only the sandboxed pools without a network of their own, whose cells cost what `cellBytes` says: a
      // cell with egress has a slirp4netns beside it, an image's a prepared container (tens of MiB).
      if (stats.isolation !== 'sandbox' || stats.network !== 'none' || stats.runtime === 'image') continue;
      const wanted = Math.ceil((idleFunctions.get(key) ?? 0) * floor.perIdleFunction);
      if (wanted === 0) continue;
      floors.set(key, wanted);
      bytes += wanted * floor.cellBytes(stats.runtime);
    }
    if (bytes > floor.memoryBytes) {
      const scale = floor.memoryBytes / bytes;
      for (const [key, wanted] of floors) floors.set(key, Math.floor(wanted * scale));
    }
    return floors;
  }

  /** One instance start that took a cell from pool `key` (`runtime/isolation/network`). */
  noteStart(key: string): void {
    this.starts.set(key, (this.starts.get(key) ?? 0) + 1);
  }

  /**
   * A start the autoscaler will make from pool `key` in about `inMs` (a pre-warm), announced each tick until
   * it is made; one due within two of the pool's boot times gets a cell booted for it.
   */
  expectStart(key: string, inMs: number): void {
    const list = this.expected.get(key);
    if (list === undefined) this.expected.set(key, [inMs]);
    else list.push(inMs);
  }

  /** `idleFunctions`: per pool key, the deployed functions with no instance that would start from it. */
  tick(
    pools: ReadonlyMap<string, SizablePool>,
    idleFunctions: ReadonlyMap<string, number> = new Map(),
  ): StemCellResize[] {
    const changes: StemCellResize[] = [];
    const floors = this.floors(pools, idleFunctions);
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
          rate: new SlidingWindow(RATE_WINDOWS * stableTicks),
          floors: new SlidingWindow(stableTicks),
          missBoost: 0,
          misses: pool.stats().misses ?? 0,
          calmTicks: 0,
          target: base,
          sent: '',
        };
        this.sizings.set(key, sizing);
      }
      const started = this.starts.get(key) ?? 0;
      sizing.perTick.push(started);
      sizing.rate.push(started);
      this.starts.delete(key);
      sizing.bursts.push(sizing.perTick.sum());
      const peak = sizing.bursts.max();
      const stats = pool.stats();
      // A steady stream of starts (a pre-warm every few seconds, a release after each use) never makes a
      // burst within a panic window, yet takes cells faster than a refill (a fork and a boot, ~110 ms, far more
      // on a busy CPU) brings them back: each start that found the pool empty adds a cell, and ten stable windows
      // without one take one back. Measured on the trace replay, where the misses made cold starts 10× slower.
      const missed = (stats.misses ?? 0) - sizing.misses;
      sizing.misses = stats.misses ?? 0;
      if (missed > 0) {
        sizing.missBoost = Math.min(this.max, sizing.missBoost + missed);
        sizing.calmTicks = 0;
      } else if (++sizing.calmTicks >= MISS_CALM_WINDOWS * stableTicks && sizing.missBoost > 0) {
        sizing.missBoost -= 1;
        sizing.calmTicks = 0;
      }
      const reserve = bootGapReserve(sizing.rate, this.timing.tickMs, stats.bootMs);
      const bootMs = stats.bootMs ?? 0;
      const announced = this.expected.get(key)?.filter((inMs) => inMs <= 2 * bootMs + this.timing.tickMs);
      const soon = announced?.length ?? 0;
      // A floor that falls (functions got instances) is let go after a stable window, as a burst's peak is.
      sizing.floors.push(floors.get(key) ?? 0);
      const floor = sizing.floors.max();
      const reactive = Math.max(
        sizing.base,
        Math.min(this.max, Math.max(peak, sizing.base + sizing.missBoost, reserve) + soon),
      );
      const idle = idleFunctions.get(key) ?? 0;
      const now: StemCellFloorNow =
        sizing.base === 0
          ? { cells: 0, functions: 0, hold: 0 }
          : { cells: floors.get(key) ?? 0, functions: idle, hold: floor };
      const sent = `${reactive} ${now.cells} ${now.functions} ${now.hold}`;
      if (sent !== sizing.sent) {
        sizing.sent = sent;
        pool.setTarget(sizing.base === 0 ? 0 : reactive, now);
      }
      // The figure the events report: the cells kept, the held floor's included.
      const target = sizing.base === 0 ? 0 : Math.max(reactive, floor);
      if (target === sizing.target) continue;
      changes.push({
        runtime: stats.runtime,
        isolation: stats.isolation,
        network: stats.network,
        from: sizing.target,
        to: target,
        reason:
          floor > reactive
            ? `${idle} deployed function${idle === 1 ? '' : 's'} without an instance: keeping ${target} ready (the floor${floor < Math.ceil(idle * (this.floor?.perIdleFunction ?? 0)) ? ', bounded by stemCellFloor.memory' : ''})`
            : target > sizing.target
              ? `${peak} instance starts within ${formatMs(this.timing.panicWindowMs)}${missed > 0 ? `, ${missed} of them found the pool empty` : ''}${reserve > 0 ? `, ${reserve} for the starts while one boots (${formatMs(bootMs)})` : ''}${soon > 0 ? `, ${soon} pre-warm${soon === 1 ? '' : 's'} due` : ''}: keeping ${target} ready (max ${this.max})`
              : `at most ${peak} starts within ${formatMs(this.timing.panicWindowMs)} over the last ${formatMs(this.timing.stableWindowMs)}${soon > 0 ? `, ${soon} pre-warm${soon === 1 ? '' : 's'} due` : ''}: back towards ${sizing.base}`,
      });
      sizing.target = target;
    }
    this.expected.clear();
    return changes;
  }
}

/**
 * The cells that cover the starts expected while one boots: λ·B takes on average, for a rate λ over the window
 * and a boot time B, plus two standard deviations of a Poisson count so that a pool runs dry in about one
 * boot gap in forty. 0 without a boot time or starts.
 */
function bootGapReserve(rate: SlidingWindow, tickMs: number, bootMs: number | undefined): number {
  if (bootMs === undefined || rate.count === 0) return 0;
  const during = (rate.sum() / (rate.count * tickMs)) * bootMs;
  return during <= 0 ? 0 : Math.ceil(during + 2 * Math.sqrt(during));
}
