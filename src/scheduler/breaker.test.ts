import { describe, expect, it } from 'vitest';
import type { BreakerEvent } from '../domain/events.js';
import { FunctionBreaker, failureWeight, isFailure } from './breaker.js';

describe('function circuit breaker', () => {
  it('opens after N consecutive failures, refuses at once, probes once after the cool-down, closes on success', async () => {
    const events: BreakerEvent['state'][] = [];
    const breaker = new FunctionBreaker(
      { namespace: 'default', name: 'f' },
      { failures: 3, coolDownMs: 50 },
      (e) => events.push(e.state),
    );
    breaker.failure(false, 'boom');
    breaker.success(false);
    breaker.failure(false, 'boom');
    breaker.failure(false, 'boom');
    expect(breaker.state).toBe('closed');
    expect(breaker.failure(false, 'boom')).toBe('open');
    const refusal = breaker.admit(Date.now());
    expect(refusal).toMatchObject({ code: 'HEARTH_E_CIRCUIT_OPEN', status: 503, retryAfter: 1 });
    expect((refusal as { headers: Record<string, string> }).headers['x-hearth-circuit']).toBe('open');
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(breaker.admit(Date.now())).toBe('probe');
    // Only one probe at a time.
    expect(breaker.admit(Date.now())).toMatchObject({ code: 'HEARTH_E_CIRCUIT_OPEN' });
    expect(breaker.success(true)).toBe('closed');
    expect(breaker.admit(Date.now())).toBe('pass');
    expect(events).toEqual(['open', 'half-open', 'closed']);
  });

  it('opens again, for longer, when the probe fails', async () => {
    const breaker = new FunctionBreaker(
      { namespace: 'default', name: 'f' },
      { failures: 1, coolDownMs: 40 },
      () => {},
    );
    breaker.failure(false, 'x');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(breaker.admit(Date.now())).toBe('probe');
    expect(breaker.failure(true, 'still broken')).toBe('open');
    expect(breaker.retryAfterMs).toBeGreaterThan(40);
  });

  it('opens after two instances in a row were killed for memory, where other failures take five', () => {
    const breaker = new FunctionBreaker(
      { namespace: 'default', name: 'f' },
      { failures: 5, coolDownMs: 50 },
      () => {},
    );
    expect(failureWeight('HEARTH_E_FN_ERROR', 5)).toBe(1);
    expect(breaker.failure(false, 'killed for memory', failureWeight('HEARTH_E_FN_OOM', 5))).toBeUndefined();
    expect(breaker.failure(false, 'killed for memory', failureWeight('HEARTH_E_FN_OOM', 5))).toBe('open');
    // A threshold of one stays one.
    expect(failureWeight('HEARTH_E_FN_OOM', 1)).toBe(1);
  });

  it('counts function failures, not callers’ or capacity problems', () => {
    expect(isFailure('HEARTH_E_FN_ERROR')).toBe(true);
    expect(isFailure('HEARTH_E_FN_CRASHED')).toBe(true);
    expect(isFailure('HEARTH_E_FN_OOM')).toBe(true);
    expect(isFailure('HEARTH_E_TIMEOUT', 'execution')).toBe(true);
    expect(isFailure('HEARTH_E_TIMEOUT', 'queue')).toBe(false);
    expect(isFailure('HEARTH_E_SATURATED')).toBe(false);
    expect(isFailure('HEARTH_E_BODY_TOO_LARGE')).toBe(false);
  });
});
