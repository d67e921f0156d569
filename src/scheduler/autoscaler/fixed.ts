/**
 * @module The baseline policy: a fixed keep-alive. Instances start only for waiting requests, and each idle
 * instance above `scaling.min` is stopped after `scaling.idleTimeout`; eviction is least recently used.
 * It is what the core shipped, and what the trace replay compares the hybrid policy against.
 */

import { FunctionHistory } from './history.js';
import {
  type AutoscalerTiming,
  DEFAULT_TIMING,
  formatMs,
  type ScalingDecision,
  type ScalingPolicy,
  type ScalingSample,
  type ScalingSpec,
} from './policy.js';

export class FixedKeepAlive implements ScalingPolicy {
  readonly name = 'fixed-keep-alive';
  private readonly histories = new Map<string, FunctionHistory>();

  constructor(private readonly timing: AutoscalerTiming = DEFAULT_TIMING) {}

  decide(key: string, scaling: ScalingSpec, sample: ScalingSample): ScalingDecision {
    let history = this.histories.get(key);
    if (history === undefined) {
      history = new FunctionHistory(this.timing, sample.now);
      this.histories.set(key, history);
    }
    history.observe(sample);
    return {
      desired: scaling.min,
      keepIdleMs: scaling.idleTimeoutMs,
      mode: 'stable',
      reason: `fixed keep-alive: instances above min ${scaling.min} stop after ${formatMs(scaling.idleTimeoutMs)} idle`,
      figures: {
        concurrency: history.concurrency.mean(),
        panicConcurrency: history.concurrency.meanOfLast(history.panicTicks),
        rps: history.stableRps(),
        idleForMs: history.idleFor(sample.now),
      },
      keepAlive: {
        strategy: 'fixed',
        samples: history.idle.samples,
        prewarmAfterMs: 0,
        keepUntilMs: scaling.idleTimeoutMs,
        reason: 'the fixed keep-alive policy is configured',
      },
    };
  }

  /** Least recently used goes first. */
  expectedIdleMs(key: string, now: number): number {
    return this.histories.get(key)?.idleFor(now) ?? Number.POSITIVE_INFINITY;
  }

  forget(key: string): void {
    this.histories.delete(key);
  }
}
