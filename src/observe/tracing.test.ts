import { channel } from 'node:diagnostics_channel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Collector, startCollector } from '../../test/support/otlp.js';
import type { InvocationEvent } from '../domain/events.js';
import { executionSpanIdOf, requestSpanIdOf, traceIdOf } from '../domain/trace.js';
import { Tracing } from './tracing.js';

let collector: Collector;

beforeAll(async () => {
  collector = await startCollector();
});
afterAll(async () => {
  await collector?.close();
});

function publish(invocationId: string): void {
  channel('hearth:invocation').publish({
    ref: { namespace: 'shop', name: 'cart' },
    version: 3,
    invocationId,
    status: 502,
    durationMs: 12,
    waitMs: 8,
    coldStart: true,
    errorCode: 'HEARTH_E_FN_CRASHED',
    trigger: 'http',
    startedAt: Date.now() - 12,
    execMs: 3,
    coldStartPhases: { code: 0.5, stemCell: 0.5, attach: 1, load: 5 },
    method: 'POST',
    path: '/items',
    instanceId: 'cart-3-a',
  } satisfies InvocationEvent);
}

describe('Tracing', () => {
  it('exports OTLP/JSON spans too, with an error status, and drops traces beyond the rate limit', async () => {
    const tracing = new Tracing({
      endpoint: `${collector.url}/v1/traces`,
      protocol: 'http/json',
      headers: { authorization: 'Bearer test' },
      serviceName: 'hearth-test',
      serviceVersion: '9.9.9',
      // Three traces inside a second or two: at least one is over the limit whatever the clock does.
      maxTracesPerSecond: 1,
    });
    tracing.start();
    const ids = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222'];
    for (const id of ids) publish(id);
    publish('33333333-3333-4333-8333-333333333333');
    await tracing.flush();
    await tracing.stop();
    expect(tracing.recorded).toBeLessThanOrEqual(2);
    expect(tracing.dropped).toBeGreaterThanOrEqual(1);
    expect(collector.requests.every((request) => request.contentType.startsWith('application/json'))).toBe(
      true,
    );
    const spans = collector.spans.filter((span) => span.traceId === traceIdOf(ids[0] ?? ''));
    // request, queue wait, cold start and its 4 phases, execution
    expect(spans).toHaveLength(8);
    const request = spans.find((span) => span.spanId === requestSpanIdOf(ids[0] ?? ''));
    expect(request).toMatchObject({
      name: 'POST /function/cart',
      kind: 2,
      statusCode: 2,
      encoding: 'json',
      parentSpanId: '',
    });
    expect(request?.attributes).toMatchObject({
      'url.path': '/function/cart/items',
      'error.type': 'HEARTH_E_FN_CRASHED',
    });
    expect(request?.resource).toMatchObject({ 'service.name': 'hearth-test', 'service.version': '9.9.9' });
    const execution = spans.find((span) => span.spanId === executionSpanIdOf(ids[0] ?? ''));
    expect(execution?.attributes['hearth.instance_id']).toBe('cart-3-a');
    expect(Number((execution?.endNs ?? 0n) - (execution?.startNs ?? 0n)) / 1e6).toBeCloseTo(3, 1);
  });
});
