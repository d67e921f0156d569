/**
 * @module What the scheduler keeps per function for scaling: counters the request path bumps (one addition
 * each), the last decision, the recent figures `describe` and `top` show, and the log of scaling decisions.
 */

import type { ScalingDecision, ScalingMode } from './policy.js';
import { RollingCounter } from './window.js';

export type ScalingAction =
  | 'scale-up'
  | 'scale-down'
  | 'prewarm'
  | 'scale-to-zero'
  | 'evict'
  | 'blocked'
  | 'panic'
  | 'stable';

/** One scaling decision the scheduler acted on, as `describe` lists it and the channel publishes it. */
export interface ScalingRecord {
  /** Epoch milliseconds. */
  readonly at: number;
  readonly action: ScalingAction;
  /** Instances (ready + starting) before and after. */
  readonly from: number;
  readonly to: number;
  readonly desired: number;
  readonly mode: ScalingMode;
  readonly reason: string;
  readonly figures: Readonly<Record<string, number>>;
}

/** Decisions kept per function for `describe`. */
const DECISIONS_KEPT = 20;
/** `top`'s live window: 10 one-second buckets. */
const LIVE_BUCKET_MS = 1000;
const LIVE_BUCKETS = 10;
/** `describe`'s recent cold-start ratio: 5 minutes in 10-second buckets. */
const RECENT_BUCKET_MS = 10_000;
const RECENT_BUCKETS = 30;

export class FunctionScaling {
  /** Requests submitted since the last tick (bumped on the request path). */
  arrivals = 0;
  /** Requests served by an instance started for them since the last tick. */
  coldStarts = 0;
  /** Instances started for waiting requests since the last tick, reported once per tick. */
  queueStarts = 0;
  queueStartsFrom = 0;
  queuePeak = 0;
  /** Whether waiting requests could not get an instance because the node is full (reported once). */
  blocked = false;
  /** Released on request (`DELETE .../instances`): nothing above min is kept or pre-warmed until the next request. */
  parked = false;
  /** When an instance of the function last failed to start (epoch ms); speculative starts back off. */
  startFailedAt = Number.NEGATIVE_INFINITY;
  /** When the kernel last killed an instance of the function for memory (epoch ms); speculative starts back off. */
  killedForMemoryAt = Number.NEGATIVE_INFINITY;
  /** The policy's last answer, clamped to min and max. */
  desired = 0;
  decision: ScalingDecision | undefined;
  mode: ScalingMode = 'stable';
  readonly decisions: ScalingRecord[] = [];
  totalRequests = 0;
  totalColdStarts = 0;
  /** Idle instance memory·time: Σ over ticks of idle instances × their memory (MiB) × the tick (s). */
  idleMemoryMiBSeconds = 0;
  readonly live = new RollingCounter(LIVE_BUCKET_MS, LIVE_BUCKETS, 2);
  readonly recent = new RollingCounter(RECENT_BUCKET_MS, RECENT_BUCKETS, 2);
  lastTickAt: number;
  private readonly since: number;

  constructor(now: number) {
    this.lastTickAt = now;
    this.since = now;
  }

  /** Moves the per-tick counters into the rolling figures; returns the arrivals of the tick. */
  roll(now: number, idleInstances: number, memoryMiB: number): { arrivals: number; coldStarts: number } {
    const arrivals = this.arrivals;
    const coldStarts = this.coldStarts;
    this.arrivals = 0;
    this.coldStarts = 0;
    this.totalRequests += arrivals;
    this.totalColdStarts += coldStarts;
    this.live.add(now, [arrivals, coldStarts]);
    this.recent.add(now, [arrivals, coldStarts]);
    this.idleMemoryMiBSeconds += (idleInstances * memoryMiB * Math.max(0, now - this.lastTickAt)) / 1000;
    this.lastTickAt = now;
    return { arrivals, coldStarts };
  }

  note(record: ScalingRecord): void {
    this.decisions.push(record);
    if (this.decisions.length > DECISIONS_KEPT) this.decisions.shift();
  }

  /** Requests per second over the live window. */
  rps(now: number): number {
    // A function deployed 3 s ago has 3 s of figures, not 10.
    const spanMs = Math.max(LIVE_BUCKET_MS, Math.min(this.live.spanMs, now - this.since));
    return this.live.total(0, now) / (spanMs / 1000);
  }

  /** Requests and cold starts over the recent window. */
  recentFigures(now: number): { windowMs: number; requests: number; coldStarts: number } {
    return {
      windowMs: this.recent.spanMs,
      requests: this.recent.total(0, now),
      coldStarts: this.recent.total(1, now),
    };
  }
}
