/**
 * @module The autoscaler's port. Each tick the scheduler hands a policy one sample per function (arrivals,
 * concurrency, instances) and gets back how many instances the function should have and how long an extra
 * idle instance may live; the scheduler owns the mechanism (starting, stopping, the node budget).
 */

import type { FunctionSpec } from '../../domain/function.js';

export type ScalingSpec = FunctionSpec['scaling'];

/** What the scheduler saw of one function at one tick. */
export interface ScalingSample {
  /** Epoch milliseconds of this tick. */
  readonly now: number;
  /** Requests that arrived since the previous tick. */
  readonly arrivals: number;
  /** Requests in flight on the function's instances plus those waiting for one. */
  readonly concurrency: number;
  /** Ready instances of the active version. */
  readonly ready: number;
  readonly starting: number;
  /** Requests one instance serves at once: `targetConcurrency`, or 1 for a synchronous Python handler. */
  readonly capacity: number;
  /** How long an instance start takes on this node lately; a pre-warm begins that much earlier. */
  readonly startMs?: number;
}

export type ScalingMode = 'stable' | 'panic';

/** How long the last instance stays after the function goes idle, and whether it comes back early. */
export interface KeepAlive {
  /** `fixed`: the function's idleTimeout; `histogram`: read from its idle-time histogram. */
  readonly strategy: 'fixed' | 'histogram';
  /** Idle periods the policy has seen for this function. */
  readonly samples: number;
  /** Idle time at which an instance is started ahead of the predicted next request; 0 = never released early. */
  readonly prewarmAfterMs: number;
  /** Idle time after which the last instance is released. */
  readonly keepUntilMs: number;
  /** Why this strategy, in words. */
  readonly reason: string;
}

/** The figures a decision was made from. */
export interface ScalingFigures {
  /** Mean in-flight + queued requests over the stable window. */
  readonly concurrency: number;
  /** The same over the panic window. */
  readonly panicConcurrency: number;
  /** Requests per second over the stable window. */
  readonly rps: number;
  /** Milliseconds since the function last had a request in flight or arriving (0 while busy). */
  readonly idleForMs: number;
}

export interface ScalingDecision {
  /** Instances (ready + starting) the function should have now, within its min and max. */
  readonly desired: number;
  /** An idle instance above `desired` is stopped once it has been idle this long. */
  readonly keepIdleMs: number;
  readonly mode: ScalingMode;
  /** Why `desired` is what it is, with the figure it came from. */
  readonly reason: string;
  readonly figures: ScalingFigures;
  readonly keepAlive: KeepAlive;
  /**
   * Released ahead of a predicted request: in how many milliseconds the policy will ask for the pre-warm
   * start, so that a stem cell can be booted for it beforehand (the sizer's `expectStart`).
   */
  readonly prewarmInMs?: number;
}

export interface ScalingPolicy {
  /** `hybrid` or `fixed-keep-alive`, for status and logs. */
  readonly name: string;
  /** Folds one tick's sample of one function into its history and decides. */
  decide(key: string, scaling: ScalingSpec, sample: ScalingSample): ScalingDecision;
  /**
   * How long the function is expected to stay unused, in milliseconds: when the node is full, idle
   * instances of the functions with the largest figure are evicted first.
   */
  expectedIdleMs(key: string, now: number): number;
  /** Drops what the policy remembers of a removed function. */
  forget(key: string): void;
}

/** The windows and thresholds every policy shares; the trace replay scales them with its time compression. */
export interface AutoscalerTiming {
  /** How often the scheduler samples and decides. */
  readonly tickMs: number;
  /** The averaging window of stable mode (Knative's default: 60 s). */
  readonly stableWindowMs: number;
  /** The short window that detects bursts (Knative's default: 6 s). */
  readonly panicWindowMs: number;
  /** Panic when the panic window wants this many times the ready instances (Knative's default: 2). */
  readonly panicThreshold: number;
  /** Scale down by at most this factor per tick (Knative's default: 2). */
  readonly maxScaleDownRate: number;
}

export const DEFAULT_TIMING: AutoscalerTiming = Object.freeze({
  tickMs: 500,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  maxScaleDownRate: 2,
});

/** `850ms`, `4.5s`, `12m`, `2.5h`: short, for reasons and status lines. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '∞';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${trim(ms / 1000)}s`;
  if (ms < 3_600_000) return `${trim(ms / 60_000)}m`;
  return `${trim(ms / 3_600_000)}h`;
}

function trim(value: number): string {
  return value >= 100 ? String(Math.round(value)) : String(Number(value.toFixed(1)));
}
