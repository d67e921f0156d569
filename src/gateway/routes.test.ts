import { describe, expect, it } from 'vitest';
import { HearthError } from '../domain/errors.js';
import type { GatewayManifest } from '../domain/gateway.js';
import { parseGatewayManifest } from '../domain/gateway.js';
import { LimitRule, TokenBucket, takeTokens } from './rate-limit.js';
import { compileRoutes, RouteTable } from './routes.js';
import { Traffic } from './traffic.js';

function gateway(name: string, functions: unknown[]): GatewayManifest {
  return parseGatewayManifest({
    apiVersion: 'hearth.dev/v1',
    kind: 'EventGateway',
    metadata: { name },
    spec: { functions },
  });
}

describe('route table', () => {
  const table = new RouteTable(
    compileRoutes(
      gateway('shop', [
        { name: 'exact', match: { path: '/orders', method: 'POST' } },
        { name: 'one', match: { path: '/orders/:id' } },
        { name: 'literal', match: { path: '/orders/export' } },
        { name: 'item', match: { path: '/orders/:id/items/:item', method: ['GET', 'DELETE'] } },
        { name: 'static', match: { path: '/static/*' } },
        { name: 'deep', match: { path: '/static/img/*' } },
      ]),
      'default',
    ),
  );
  const fnOf = (method: string, path: string) => table.match(method, path).match?.route.ref.name;

  it('prefers exact paths, then the most literal segments, then the longest prefix', () => {
    expect(fnOf('POST', '/orders')).toBe('exact');
    expect(fnOf('GET', '/orders/export')).toBe('literal');
    expect(fnOf('GET', '/orders/42')).toBe('one');
    expect(table.match('GET', '/orders/42/items/a%20b').match?.params).toEqual({ id: '42', item: 'a b' });
    expect(fnOf('GET', '/static/img/logo.png')).toBe('deep');
    expect(fnOf('GET', '/static/app.js')).toBe('static');
    expect(fnOf('GET', '/static')).toBe('static');
    expect(fnOf('GET', '/nothing')).toBeUndefined();
  });

  it('tells a path served for other methods (405) from an unknown path (404)', () => {
    expect(table.match('GET', '/orders')).toEqual({ methodMismatch: true });
    expect(table.match('PUT', '/orders/1/items/2').methodMismatch).toBe(true);
    expect(table.match('GET', '/elsewhere').methodMismatch).toBe(false);
  });
});

describe('route conflicts', () => {
  it('refuses a route another gateway already serves, naming both', () => {
    const traffic = new Traffic();
    traffic.setGateway(
      gateway('payments', [{ name: 'pay', match: { path: '/pay/:id', method: 'POST' } }]),
      'default',
    );
    let error: unknown;
    try {
      traffic.check(
        gateway('shop', [{ name: 'shop', match: { path: '/pay/:order', method: ['GET', 'POST'] } }]),
        'default',
      );
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(HearthError);
    const message = (error as HearthError).message;
    expect((error as HearthError).code).toBe('HEARTH_E_ROUTE_CONFLICT');
    expect(message).toContain('gateway default/shop spec.functions.0');
    expect(message).toContain('gateway default/payments spec.functions.0');
    // Different methods, or a different shape, do not conflict; re-applying the same gateway does not either.
    traffic.check(
      gateway('shop', [{ name: 'shop', match: { path: '/pay/:order', method: 'GET' } }]),
      'default',
    );
    traffic.check(
      gateway('shop', [{ name: 'shop', match: { path: '/pay/export', method: 'POST' } }]),
      'default',
    );
    traffic.check(
      gateway('payments', [{ name: 'pay2', match: { path: '/pay/:id', method: 'POST' } }]),
      'default',
    );
    traffic.close();
  });

  it('takes the smallest concurrency when several entries name one function', () => {
    const traffic = new Traffic();
    traffic.setGateway(
      gateway('a', [
        { name: 'f', match: { path: '/a' }, concurrency: 8 },
        { name: 'f', match: { path: '/b' }, concurrency: 3 },
      ]),
      'default',
    );
    expect(traffic.instanceCaps().get('default/f')?.cap).toBe(3);
    traffic.close();
  });
});

describe('token buckets', () => {
  it('holds a constant 2x overload to the configured rate (simulated clock)', () => {
    const bucket = new TokenBucket(200, 20, 0);
    let admitted = 0;
    // 400 attempts per second for ten seconds: twice the rate.
    for (let i = 0; i < 4000; i++) {
      const now = i * 2.5;
      if (bucket.available(now) >= 1) {
        bucket.take();
        admitted += 1;
      }
    }
    // 200/s for 10s plus the initial burst of 20: 2020, held within 1%.
    expect(admitted).toBeGreaterThanOrEqual(2000);
    expect(admitted).toBeLessThanOrEqual(2021);
  });

  it('answers 429 with Retry-After and RateLimit headers, and keeps clients apart', () => {
    const rule = new LimitRule(
      'function',
      'function/default/f',
      { rate: undefined, burst: 1, perClient: 1, clientBurst: 2 },
      undefined,
    );
    expect(takeTokens([rule], 'ip:a')?.headers).toEqual(
      expect.arrayContaining(['ratelimit-limit', '1', 'ratelimit-remaining', '1']),
    );
    takeTokens([rule], 'ip:a');
    let refusal: HearthError | undefined;
    try {
      takeTokens([rule], 'ip:a');
    } catch (error) {
      refusal = error as HearthError;
    }
    expect(refusal?.status).toBe(429);
    expect(refusal?.retryAfter).toBe(1);
    expect(refusal?.headers?.['ratelimit-remaining']).toBe('0');
    expect(refusal?.details?.scope).toBe('client');
    // Another client has its own bucket.
    expect(() => takeTokens([rule], 'ip:b')).not.toThrow();
  });

  it('takes a token from every bucket or from none', () => {
    const wide = new LimitRule(
      'protocol',
      'wide',
      { rate: 1000, burst: 5, perClient: undefined, clientBurst: 1 },
      undefined,
    );
    const narrow = new LimitRule(
      'route',
      'narrow',
      { rate: 0.001, burst: 1, perClient: undefined, clientBurst: 1 },
      undefined,
    );
    takeTokens([wide, narrow], 'c');
    expect(() => takeTokens([wide, narrow], 'c')).toThrow(/narrow/);
    // The refused request took nothing from the wide bucket: 4 remain of 5.
    expect(takeTokens([wide], 'c')?.headers).toEqual(expect.arrayContaining(['ratelimit-remaining', '3']));
  });
});
