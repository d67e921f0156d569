/**
 * @module EventGateway routes and traffic control through the real platform: the seed's gateway applied
 * with the CLI, route matching, conflicts, rate limits, priorities under saturation, the circuit breaker,
 * concurrency caps, and one deadline carried through queue, cold start and execution.
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GatewayDetail } from '../../src/control/api/events-types.js';
import type { FunctionDetail } from '../../src/control/api/types.js';
import {
  api,
  copyFixture,
  deployFolder,
  errorLines,
  eventually,
  FIXTURES,
  type Hearth,
  makeFolder,
  ROOT,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
const folders: TempFolder[] = [];

async function applyYaml(yaml: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const folder = await makeFolder({ 'resources.yaml': yaml });
  folders.push(folder);
  return runCli(['apply', '-f', join(folder.dir, 'resources.yaml')], { url: hearth.url });
}

function gatewayYaml(name: string, functions: string, protocols = ''): string {
  return `apiVersion: hearth.dev/v1\nkind: EventGateway\nmetadata: { name: ${name} }\nspec:\n${protocols}  functions:\n${functions}`;
}

async function call(
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown>; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${hearth.url}${path}`, init);
  const text = await response.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { text };
  }
  return { status: response.status, headers: response.headers, body, ms: performance.now() - started };
}

beforeAll(async () => {
  const config = await makeFolder({
    'hearth.config.yaml': 'breaker: { failures: 3, coolDown: 1s }\nlogLevel: info\n',
  });
  folders.push(config);
  hearth = await startHearth({ args: ['--config', join(config.dir, 'hearth.config.yaml')] });
  const echo = await copyFixture('gw-echo');
  folders.push(echo);
  for (const [name, dir] of [
    ['gw-echo', echo.dir],
    ['gw-slow-start', join(FIXTURES, 'gw-slow-start')],
    ['node-crash', join(FIXTURES, 'node-crash')],
  ] as const) {
    const { status, body } = await deployFolder(hearth.url, dir, { name });
    expect(status, JSON.stringify(body)).toBe(200);
  }
  // The seed's order-processor, here the echo function under that name.
  const orders = await copyFixture('gw-echo', {
    'hearth.yaml':
      'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: order-processor }\nspec: { runtime: node20 }\n',
  });
  folders.push(orders);
  expect((await deployFolder(hearth.url, orders.dir, { name: 'order-processor' })).status).toBe(200);
});

afterAll(async () => {
  await hearth?.stop();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe("the seed's EventGateway", () => {
  it('applies with `hearth apply -f`, lists and describes, and routes POST /api/orders', async () => {
    const applied = await runCli(['apply', '-f', join(ROOT, 'test/fixtures/gateways/seed.yaml')], {
      url: hearth.url,
    });
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain('gateway/production-gateway configured');

    const list = await runCli(['get', 'gateways'], { url: hearth.url });
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/default\s+production-gateway\s+http,kafka\s+1\s+1/);

    const described = await runCli(['describe', 'gateway', 'production-gateway'], { url: hearth.url });
    expect(described.code).toBe(0);
    expect(described.stdout).toContain('rate limit 1000qps (burst 100)');
    expect(described.stdout).toMatch(/POST\s+\/api\/orders\s+order-processor\s+50/);
    expect(described.stdout).toContain('kafka-1');

    const order = await call('/api/orders', {
      method: 'POST',
      body: '{"id":1}',
      headers: { 'content-type': 'application/json' },
    });
    expect(order.status).toBe(200);
    expect(order.body).toMatchObject({
      method: 'POST',
      path: '/api/orders',
      route: 'default/production-gateway#0',
    });
    expect(order.headers.get('ratelimit-limit')).toBe('1000');
    expect((await call('/api/orders')).status).toBe(405);

    // `concurrency: 50` caps the function's instances.
    const fn = (await api<FunctionDetail>(hearth.url, '/api/v1/namespaces/default/functions/order-processor'))
      .body;
    expect(fn.instanceCap).toBe(50);
  });

  it('refuses an invalid gateway in one line naming the field, the value and the expectation', async () => {
    const result = await applyYaml(
      gatewayYaml(
        'bad',
        '    - name: gw-echo\n      match: { path: /x }\n',
        '  protocols:\n    - http: { rateLimit: lots }\n',
      ),
    );
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(
      /spec\.protocols\.0\.http\.rateLimit: got "lots", expected a rate such as "1000qps"/,
    );
    expect(result.stderr).toMatch(/resources\.yaml:\d+/);
    expect((await api(hearth.url, '/api/v1/namespaces/default/gateways/bad')).status).toBe(404);
  });
});

describe('routes', () => {
  beforeAll(async () => {
    const result = await applyYaml(
      gatewayYaml(
        'shop',
        [
          '    - name: gw-echo',
          '      match: { path: /shop/items/:id, method: [GET, DELETE] }',
          '    - name: gw-echo',
          '      match: { path: /shop/items/featured }',
          '    - name: gw-echo',
          '      match: { path: /shop/static/* }',
          '    - name: gw-echo',
          '      match: { path: /shop/limited }',
          '      rateLimit: { rate: 1qps, burst: 2 }',
          '    - name: gw-echo',
          '      match: { path: /shop/quick }',
          '      timeout: 300ms',
          '    - name: gw-slow-start',
          '      match: { path: /shop/slow-start }',
          '',
        ].join('\n'),
      ),
    );
    expect(result.stderr).toBe('');
  });

  it('matches exact paths, :params and /* prefixes, most specific first', async () => {
    const item = await call('/shop/items/42?x=1');
    expect(item.body).toMatchObject({
      path: '/shop/items/42',
      params: { id: '42' },
      route: 'default/shop#0',
    });
    expect((await call('/shop/items/featured')).body).toMatchObject({
      route: 'default/shop#1',
      params: null,
    });
    expect((await call('/shop/static/css/site.css')).body).toMatchObject({ route: 'default/shop#2' });
    expect((await call('/shop/items/42', { method: 'POST' })).status).toBe(405);
    const missing = await call('/shop/nothing');
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ error: { code: 'HEARTH_E_NOT_FOUND' } });
  });

  it('refuses a route another gateway serves, naming both, and applies nothing', async () => {
    const result = await applyYaml(
      gatewayYaml('rival', '    - name: node-crash\n      match: { path: /shop/items/:sku, method: GET }\n'),
    );
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toContain('HEARTH_E_ROUTE_CONFLICT');
    expect(result.stderr).toContain('gateway default/rival spec.functions.0 (GET /shop/items/:sku)');
    expect(result.stderr).toContain('gateway default/shop spec.functions.0 (GET|DELETE /shop/items/:id)');
    expect((await api(hearth.url, '/api/v1/namespaces/default/gateways/rival')).status).toBe(404);
    expect((await call('/shop/items/7')).body).toMatchObject({ route: 'default/shop#0' });
  });

  it('rate-limits a route with 429, Retry-After and RateLimit headers', async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await call('/shop/limited'));
    expect(answers.slice(0, 2).map((a) => a.status)).toEqual([200, 200]);
    const refused = answers.find((a) => a.status === 429);
    expect(refused).toBeDefined();
    expect(refused?.headers.get('retry-after')).toBe('1');
    expect(refused?.headers.get('ratelimit-limit')).toBe('1');
    expect(refused?.headers.get('ratelimit-remaining')).toBe('0');
    expect(refused?.body).toMatchObject({ error: { code: 'HEARTH_E_RATE_LIMITED' } });
  });
});

describe('one deadline, end to end', () => {
  it('answers 504 naming the execution stage, and the route timeout as its source', async () => {
    const slow = await call('/shop/quick?ms=2000');
    expect(slow.status).toBe(504);
    expect(slow.body).toMatchObject({
      error: { code: 'HEARTH_E_TIMEOUT', details: { stage: 'execution', source: 'route.timeout' } },
    });
    expect(slow.ms).toBeLessThan(1500);
  });

  it('answers 504 naming the cold start when starting the instance used the time up', async () => {
    // A new function deployed without the verifying instance: the first request pays the 1.5 s cold start.
    const slow = await copyFixture('gw-slow-start', {
      'hearth.yaml':
        'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: slow-cold }\nspec: { runtime: node20 }\n',
    });
    folders.push(slow);
    const deployed = await deployFolder(hearth.url, slow.dir, { name: 'slow-cold', query: '?verify=false' });
    expect(deployed.status).toBe(200);
    const cold = await call('/function/slow-cold', { headers: { 'x-hearth-timeout': '400' } });
    expect(cold.status).toBe(504);
    expect(cold.body).toMatchObject({
      error: { details: { stage: 'cold-start', source: 'X-Hearth-Timeout' } },
    });
    expect(cold.ms).toBeLessThan(1200);
  });

  it('answers 504 naming the queue when no instance freed up in time', async () => {
    const capped = await applyYaml(
      gatewayYaml('capped', '    - name: gw-echo\n      match: { path: /capped/* }\n      concurrency: 1\n'),
    );
    expect(capped.stderr).toBe('');
    const busy = [
      call('/capped/a?ms=1500'),
      call('/capped/b?ms=1500'),
      call('/capped/c?ms=1500'),
      call('/capped/d?ms=1500'),
    ];
    const queued = await call('/capped/late', { headers: { 'x-hearth-timeout': '300' } });
    expect(queued.status).toBe(504);
    expect(queued.body).toMatchObject({ error: { details: { stage: 'queue' } } });
    const fn = (await api<FunctionDetail>(hearth.url, '/api/v1/namespaces/default/functions/gw-echo')).body;
    // gw-echo allows 4 instances, the gateway entry `concurrency: 1` caps it at one.
    expect(
      fn.activeInstances.filter((i) => i.state !== 'stopped').length + fn.startingInstances,
    ).toBeLessThanOrEqual(1);
    await Promise.all(busy);
    expect((await runCli(['rm', 'gateway', 'capped'], { url: hearth.url })).code).toBe(0);
  });
});

describe('priorities under saturation', () => {
  it('serves a high-priority route (payments) ahead of a queue of low-priority requests', async () => {
    // One instance, one request at a time: saturated by a single slow request.
    const worker = await copyFixture('gw-echo', {
      'hearth.yaml':
        'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: prio-worker }\nspec: { runtime: node20, scaling: { max: 1, targetConcurrency: 1 } }\n',
    });
    folders.push(worker);
    expect((await deployFolder(hearth.url, worker.dir, { name: 'prio-worker' })).status).toBe(200);
    const applied = await applyYaml(
      gatewayYaml(
        'prio',
        [
          '    - name: prio-worker',
          '      match: { path: /prio/report }',
          '      priority: 1',
          '    - name: prio-worker',
          '      match: { path: /prio/payment-callback }',
          '      priority: 90',
          '',
        ].join('\n'),
      ),
    );
    expect(applied.stderr).toBe('');
    // Warm, then saturate the one instance with a queue of low-priority work, 150 ms each.
    expect((await call('/prio/report')).status).toBe(200);
    const started = performance.now();
    const low = Array.from({ length: 8 }, (_, i) =>
      call(`/prio/report?ms=150&i=${i}`).then((r) => ({ ...r, done: performance.now() - started })),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    const high = await call('/prio/payment-callback?ms=150').then((r) => ({
      ...r,
      done: performance.now() - started,
    }));
    const lows = await Promise.all(low);
    expect(high.status).toBe(200);
    expect(high.headers.get('x-hearth-wait-ms')).not.toBeNull();
    // The payment waited for the request in progress only, not for the seven queued before it.
    const finishedBefore = lows.filter((r) => r.done < high.done).length;
    expect(finishedBefore).toBeLessThanOrEqual(2);
    expect(Math.max(...lows.map((r) => r.done))).toBeGreaterThan(high.done + 600);
    expect((await runCli(['rm', 'gateway', 'prio'], { url: hearth.url })).code).toBe(0);
  });
});

describe('circuit breaker', () => {
  it('opens after consecutive failures, answers 503 at once, probes after the cool-down and closes', async () => {
    for (let i = 0; i < 3; i++) expect((await call('/function/node-crash?throw=1')).status).toBe(500);
    const open = await call('/function/node-crash');
    expect(open.status).toBe(503);
    expect(open.ms).toBeLessThan(200);
    expect(open.headers.get('x-hearth-circuit')).toBe('open');
    expect(open.headers.get('retry-after')).toBe('1');
    expect(open.body).toMatchObject({ error: { code: 'HEARTH_E_CIRCUIT_OPEN' } });
    const described = await runCli(['describe', 'node-crash'], { url: hearth.url });
    expect(described.stdout).toContain('Circuit: open');
    // After the cool-down one probe goes through; its success closes the circuit.
    let probe = await call('/function/node-crash');
    const deadline = Date.now() + 5000;
    while (probe.status === 503 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      probe = await call('/function/node-crash');
    }
    expect(probe.status).toBe(200);
    expect(probe.headers.get('x-hearth-circuit')).toBe('closed');
    expect((await call('/function/node-crash')).status).toBe(200);
    // The platform logs the closing after it has answered the probe: wait for the line, do not race it.
    const states = await eventually('the circuit breaker to log open, half-open and closed', () => {
      const seen = hearth.log
        .filter((entry) => String(entry.msg).startsWith('circuit breaker'))
        .map((entry) => entry.state);
      return ['open', 'half-open', 'closed'].every((state) => seen.includes(state)) ? seen : undefined;
    });
    expect(states).toEqual(expect.arrayContaining(['open', 'half-open', 'closed']));
  });
});

describe('gateway status', () => {
  it('reports each route, whether its function is deployed, and its limits', async () => {
    const detail = (await api<GatewayDetail>(hearth.url, '/api/v1/namespaces/default/gateways/shop')).body;
    expect(detail.routeTable[3]).toMatchObject({
      path: '/shop/limited',
      deployed: true,
      rateLimit: '1qps (burst 2)',
    });
    expect(detail.routeTable[4]).toMatchObject({ timeout: '300ms' });
    const json = await runCli(['get', 'gateways', '-o', 'json'], { url: hearth.url });
    const names = (JSON.parse(json.stdout) as { items: { name: string }[] }).items.map((g) => g.name);
    expect(names).toEqual(expect.arrayContaining(['production-gateway', 'shop']));
  });
});
