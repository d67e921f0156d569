import { channel } from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import type { InstanceEvent, InvocationEvent } from '../domain/events.js';
import { AlertEvaluator } from './alerts.js';
import { sketchBound, sketchIndex, sketchQuantile } from './histogram.js';
import { Telemetry } from './telemetry.js';

const ref = { namespace: 'default', name: 'shop' };
let clock = Date.UTC(2026, 0, 1, 12, 0, 0);
const now = (): number => clock;
const running: Telemetry[] = [];

function telemetry(): Telemetry {
  const t = new Telemetry({ runtimeOf: () => 'node20', now });
  t.start();
  running.push(t);
  return t;
}

afterEach(() => {
  for (const t of running.splice(0)) t.stop();
});

let sequence = 0;
function invocation(fields: Partial<InvocationEvent> = {}): void {
  sequence += 1;
  channel('hearth:invocation').publish({
    ref,
    version: 1,
    invocationId: `00000000-0000-4000-8000-${String(sequence).padStart(12, '0')}`,
    status: 200,
    durationMs: 2,
    waitMs: 0,
    coldStart: false,
    errorCode: undefined,
    trigger: 'http',
    startedAt: clock,
    execMs: 1.5,
    instanceId: 'shop-1-a',
    ...fields,
  } satisfies InvocationEvent);
}

function instance(phase: InstanceEvent['phase'], instanceId: string): void {
  channel('hearth:instance').publish({
    ref,
    version: 1,
    instanceId,
    runtime: 'node20',
    phase,
    reason: 'test',
  } satisfies InstanceEvent);
}

describe('latency sketch', () => {
  it('finds quantiles within one bucket (factor √2)', () => {
    const counts = new Array<number>(38).fill(0);
    for (let ms = 1; ms <= 100; ms++) counts[sketchIndex(ms)] = (counts[sketchIndex(ms)] ?? 0) + 1;
    const p50 = sketchQuantile(counts, 0.5) ?? 0;
    expect(p50).toBeGreaterThanOrEqual(50);
    expect(p50).toBeLessThanOrEqual(50 * Math.SQRT2);
    expect(sketchQuantile(counts, 0.99)).toBeGreaterThanOrEqual(99);
    expect(sketchQuantile(new Array<number>(38).fill(0), 0.5)).toBeUndefined();
    expect(sketchBound(sketchIndex(1e9))).toBeGreaterThan(60_000);
  });
});

describe('Telemetry', () => {
  it('counts outcomes by trigger and status, errors by code, and keeps the latest invocations', () => {
    const t = telemetry();
    invocation();
    invocation({ trigger: 'invoke' });
    invocation({ status: 500, errorCode: 'HEARTH_E_FN_ERROR' });
    invocation({ status: 404, errorCode: 'HEARTH_E_FN_NOT_FOUND' });
    const stats = t.get(ref);
    expect(stats?.invocations).toBe(3);
    expect(stats?.outcomes.get('http')?.get(200)).toBe(1);
    expect(stats?.outcomes.get('invoke')?.get(200)).toBe(1);
    expect(stats?.errors.get('HEARTH_E_FN_ERROR')).toBe(1);
    expect(stats?.recentInvocations().map((event) => event.status)).toEqual([500, 200, 200]);
    expect(stats?.duration.count).toBe(3);
    expect(stats?.window(clock, 12)).toMatchObject({ requests: 3, errors: 1 });
  });

  it('measures utilisation as busy time over provisioned time', () => {
    const t = telemetry();
    instance('started', 'shop-1-a');
    clock += 10_000;
    // Two overlapping requests ending now: 1 s and 0.5 s, counted once as 1 s.
    invocation({ execMs: 1000 });
    invocation({ execMs: 500 });
    const stats = t.get(ref);
    expect(stats?.busyMs).toBe(1000);
    expect(stats?.provisionedMs(clock)).toBe(10_000);
    instance('stopped', 'shop-1-a');
    clock += 5000;
    expect(stats?.provisionedMs(clock)).toBe(10_000);
  });
});

describe('AlertEvaluator', () => {
  it('raises the error-rate alert after it holds for 5 minutes, and clears it', () => {
    const t = telemetry();
    const alerts = new AlertEvaluator(t, () => ({ live: 1, min: 0 }), now);
    const errorAlert = () => alerts.evaluate().find((alert) => alert.alert === 'HearthFunctionErrorRateHigh');
    for (let i = 0; i < 98; i++) invocation();
    invocation({ status: 502, errorCode: 'HEARTH_E_FN_CRASHED' });
    invocation({ status: 502, errorCode: 'HEARTH_E_FN_CRASHED' });
    expect(errorAlert()).toMatchObject({ state: 'pending', value: 0.02, function: 'shop' });
    clock += 5 * 60_000 - 10_000;
    invocation({ status: 502, errorCode: 'HEARTH_E_FN_CRASHED' });
    expect(errorAlert()?.state).toBe('pending');
    clock += 10_000;
    invocation({ status: 502, errorCode: 'HEARTH_E_FN_CRASHED' });
    expect(errorAlert()?.state).toBe('firing');
    clock += 6 * 60_000;
    for (let i = 0; i < 10; i++) invocation();
    expect(errorAlert()).toMatchObject({ state: 'inactive', value: 0, since: null });
  });

  it('reports a cold-start ratio over 30% at once, and suggests scaling in only with instances to spare', () => {
    const t = telemetry();
    let live = 1;
    const alerts = new AlertEvaluator(t, () => ({ live, min: 0 }), now);
    instance('started', 'shop-1-a');
    invocation({ coldStart: true });
    invocation();
    const find = (name: string) => alerts.evaluate().find((alert) => alert.alert === name);
    expect(find('HearthColdStartRatioHigh')).toMatchObject({ state: 'firing', value: 0.5 });
    clock += 60_000;
    t.tick();
    expect(find('HearthLowUtilisation')?.state).toBe('inactive');
    live = 3;
    expect(find('HearthLowUtilisation')?.state).toBe('pending');
    clock += 14 * 60_000;
    t.tick();
    expect(find('HearthLowUtilisation')?.state).toBe('pending');
    clock += 60_000;
    t.tick();
    expect(find('HearthLowUtilisation')?.state).toBe('firing');
  });
});
