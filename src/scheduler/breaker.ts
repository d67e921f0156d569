/**
 * @module Circuit breakers. Per instance: after N consecutive failures (handler threw, process crashed,
 * execution timed out) the instance is isolated and replaced. Per function: after N consecutive failures
 * across its instances the circuit opens and requests get 503 at once (no queueing, no timeout) until a
 * cool-down passes; then one probe request is let through (half-open): success closes the circuit,
 * failure opens it again for a longer cool-down.
 */

import { HearthError } from '../domain/errors.js';
import { type BreakerEvent, breakerChannel } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';

export interface BreakerOptions {
  /** Consecutive failures that isolate an instance or open a function's circuit (default 5). */
  readonly failures: number;
  /** How long an open circuit refuses before a probe (default 5s); doubles on each failed probe, up to 60s. */
  readonly coolDownMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = Object.freeze({ failures: 5, coolDownMs: 5000 });
const MAX_COOL_DOWN_MS = 60_000;

/** Errors that say the function (not the caller, not the platform's capacity) failed. */
export function isFailure(code: string, stage?: unknown): boolean {
  return (
    code === 'HEARTH_E_FN_ERROR' ||
    code === 'HEARTH_E_FN_CRASHED' ||
    code === 'HEARTH_E_FN_OOM' ||
    (code === 'HEARTH_E_TIMEOUT' && (stage === undefined || stage === 'execution'))
  );
}

/**
 * How many failures one counts as towards opening a function's circuit: an instance killed for memory
 * counts as half the threshold, so two in a row open it. Each such kill costs the node the kernel's
 * reclaim and reaping and a replacement's boot, which its neighbours feel (bench/abuse.mjs, memory bomb:
 * five kills in a row before the circuit opened), and a request that ran a function out of memory mostly
 * does again when retried.
 */
export function failureWeight(code: string, threshold: number): number {
  return code === 'HEARTH_E_FN_OOM' ? Math.max(1, Math.ceil(threshold / 2)) : 1;
}

export type Admission = 'pass' | 'probe' | HearthError;

export class FunctionBreaker {
  state: BreakerEvent['state'] = 'closed';
  /** Consecutive failures while closed. */
  consecutive = 0;
  private openUntil = 0;
  private coolDownMs: number;
  private probing = false;

  constructor(
    readonly ref: FunctionRef,
    private readonly options: BreakerOptions,
    private readonly onChange: (event: BreakerEvent) => void,
  ) {
    this.coolDownMs = options.coolDownMs;
  }

  /** Called only when the state is not `closed` (the hot path tests `state` first). */
  admit(now: number): Admission {
    if (this.state === 'open' && now >= this.openUntil) {
      this.state = 'half-open';
      this.probing = false;
      this.emit('half-open', undefined, 'cool-down over: one probe request goes through');
    }
    if (this.state === 'half-open' && !this.probing) {
      this.probing = true;
      return 'probe';
    }
    if (this.state === 'closed') return 'pass';
    const waitMs = this.state === 'open' ? this.openUntil - now : this.coolDownMs;
    return this.refusal(waitMs);
  }

  refusal(waitMs: number): HearthError {
    const { name, namespace } = this.ref;
    return new HearthError(
      'HEARTH_E_CIRCUIT_OPEN',
      `the circuit of ${name} (namespace ${namespace}) is ${this.state} after ${this.options.failures} consecutive failures; retry in ${Math.max(0, Math.ceil(waitMs / 1000))}s`,
      {
        retryAfter: Math.max(1, Math.ceil(waitMs / 1000)),
        headers: { 'x-hearth-circuit': this.state },
        details: { circuit: this.state, retryAfterMs: Math.max(0, Math.round(waitMs)) },
      },
    );
  }

  /** A success; returns `closed` when it was the probe that closed the circuit. */
  success(probe: boolean): 'closed' | undefined {
    this.consecutive = 0;
    if (!probe || this.state !== 'half-open') return undefined;
    this.state = 'closed';
    this.probing = false;
    this.coolDownMs = this.options.coolDownMs;
    this.emit('closed', undefined, 'the probe request succeeded');
    return 'closed';
  }

  /** A failure, counted `weight` times (`failureWeight`); returns `open` when it opened the circuit. */
  failure(probe: boolean, reason: string, weight = 1): 'open' | undefined {
    if (probe && this.state === 'half-open') {
      this.coolDownMs = Math.min(MAX_COOL_DOWN_MS, this.coolDownMs * 2);
      this.open(`the probe request failed (${reason})`);
      return 'open';
    }
    if (this.state !== 'closed') return undefined;
    this.consecutive += weight;
    if (this.consecutive < this.options.failures) return undefined;
    this.open(`${this.consecutive} consecutive failures, the last: ${reason}`);
    return 'open';
  }

  /** The probe never ran (its request failed before reaching an instance): let the next request probe. */
  abandonProbe(): void {
    this.probing = false;
  }

  get retryAfterMs(): number {
    return Math.max(0, this.openUntil - Date.now());
  }

  private open(reason: string): void {
    this.state = 'open';
    this.probing = false;
    this.openUntil = Date.now() + this.coolDownMs;
    this.emit('open', undefined, reason);
  }

  private emit(state: BreakerEvent['state'], instanceId: string | undefined, reason: string): void {
    const event: BreakerEvent = {
      ref: this.ref,
      scope: 'function',
      instanceId,
      state,
      failures: this.consecutive,
      reason,
    };
    this.onChange(event);
    if (breakerChannel.hasSubscribers) breakerChannel.publish(event);
  }
}

/** Publishes an instance's isolation (the per-instance breaker opening). */
export function instanceIsolated(
  ref: FunctionRef,
  instanceId: string,
  failures: number,
  reason: string,
  onChange: (event: BreakerEvent) => void,
): void {
  const event: BreakerEvent = { ref, scope: 'instance', instanceId, state: 'open', failures, reason };
  onChange(event);
  if (breakerChannel.hasSubscribers) breakerChannel.publish(event);
}
