import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { isHearthError } from './errors.js';
import { parseFunctionManifest } from './function.js';
import { parseGatewayManifest } from './gateway.js';
import { backoffDelay, parseRate, resolveRateLimit, resolveRetry } from './triggers.js';

const seed = parse(
  readFileSync(new URL('../../test/fixtures/gateways/seed.yaml', import.meta.url), 'utf8'),
) as Record<string, unknown>;

function problem(run: () => unknown): { message: string; field: unknown } {
  try {
    run();
  } catch (error) {
    if (isHearthError(error)) return { message: error.message, field: error.details?.field };
    throw error;
  }
  throw new Error('expected a validation error');
}

const gateway = (spec: unknown) => ({
  apiVersion: 'hearth.dev/v1',
  kind: 'EventGateway',
  metadata: { name: 'gw' },
  spec,
});

describe('EventGateway resource', () => {
  it("accepts the seed's own example with only the apiVersion changed", () => {
    const manifest = parseGatewayManifest(seed);
    expect(manifest.metadata.name).toBe('production-gateway');
    expect(manifest.spec.functions?.[0]?.concurrency).toBe(50);
    expect(manifest.spec.functions?.[0]?.match?.method).toBe('POST');
  });

  it("refuses the seed's original apiVersion, naming the field and what is expected", () => {
    const { message, field } = problem(() =>
      parseGatewayManifest({ ...seed, apiVersion: 'serverless.example.com/v1' }),
    );
    expect(field).toBe('apiVersion');
    expect(message).toContain('"serverless.example.com/v1"');
    expect(message).toContain('hearth.dev/v1');
  });

  it('names the field, the value and the expectation for a bad rate, method, path or concurrency', () => {
    expect(
      problem(() => parseGatewayManifest(gateway({ protocols: [{ http: { rateLimit: 'fast' } }] }))).message,
    ).toMatch(/spec\.protocols\.0\.http\.rateLimit: got "fast", expected a rate such as "1000qps"/);
    expect(
      problem(() => parseGatewayManifest(gateway({ functions: [{ name: 'f', match: { method: 'FETCH' } }] })))
        .message,
    ).toMatch(/spec\.functions\.0\.match\.method: got "FETCH", expected an HTTP method/);
    expect(
      problem(() =>
        parseGatewayManifest(gateway({ functions: [{ name: 'f', match: { path: 'no-slash' } }] })),
      ).field,
    ).toBe('spec.functions.0.match.path');
    expect(
      problem(() =>
        parseGatewayManifest(gateway({ functions: [{ name: 'f', match: { path: '/function/x' } }] })),
      ).message,
    ).toContain("outside the platform's own");
    // `POST /events` is the CloudEvents ingress; a route there would be shadowed on the platform's port.
    expect(
      problem(() => parseGatewayManifest(gateway({ functions: [{ name: 'f', match: { path: '/events' } }] })))
        .message,
    ).toContain("outside the platform's own");
    expect(() =>
      parseGatewayManifest(gateway({ functions: [{ name: 'f', match: { path: '/eventstream' } }] })),
    ).not.toThrow();
    expect(
      problem(() => parseGatewayManifest(gateway({ functions: [{ name: 'f', concurrency: 0 }] }))).message,
    ).toMatch(/spec\.functions\.0\.concurrency: got 0, expected at least 1/);
    expect(problem(() => parseGatewayManifest(gateway({ protocols: [{ smtp: {} }] }))).field).toBe(
      'spec.protocols.0',
    );
  });

  it('understands qps, rps and qpm, with a tenth of a second of burst by default', () => {
    expect(parseRate('1000qps')).toBe(1000);
    expect(parseRate('1000rps')).toBe(1000);
    expect(parseRate('600qpm')).toBe(10);
    expect(parseRate('0qps')).toBeUndefined();
    expect(resolveRateLimit('1000qps')).toEqual({
      rate: 1000,
      burst: 100,
      perClient: undefined,
      clientBurst: 1,
    });
    expect(resolveRateLimit({ rate: '50rps', burst: 5, perClient: '2qps' })).toMatchObject({
      rate: 50,
      burst: 5,
      perClient: 2,
    });
  });

  it('backs off exponentially with jitter, capped', () => {
    const policy = resolveRetry({ attempts: 5, backoff: '100ms', maxBackoff: '1s' });
    const delays = [1, 2, 3, 4, 5].map((attempt) => backoffDelay(policy, attempt));
    expect(delays[0]).toBeGreaterThanOrEqual(80);
    expect(delays[0]).toBeLessThanOrEqual(120);
    expect(delays[2]).toBeGreaterThanOrEqual(320);
    expect(delays[4]).toBeLessThanOrEqual(1200);
  });
});

describe('Function triggers', () => {
  const fn = (triggers: unknown) => ({
    apiVersion: 'hearth.dev/v1',
    kind: 'Function',
    metadata: { name: 'f' },
    spec: { runtime: 'node20', triggers },
  });

  it('accepts kafka, mqtt, nats and cron triggers', () => {
    const manifest = parseFunctionManifest(
      fn([
        { kafka: { brokers: ['127.0.0.1:9092'], topic: 'orders', parallelism: 4, ordering: 'key' } },
        { mqtt: { url: 'mqtt://127.0.0.1:1883', topic: 'sensors/+/temp', qos: 1, shared: 'workers' } },
        { nats: { url: 'nats://127.0.0.1:4222', subject: 'orders.>' } },
        { cron: { schedule: '0 3 * * *', timezone: 'Europe/Paris', missed: 'fire-once' } },
      ]),
    );
    expect(manifest.spec.triggers).toHaveLength(4);
  });

  it('refuses a bad schedule, time zone, topic filter or duplicate name, naming the field', () => {
    expect(problem(() => parseFunctionManifest(fn([{ cron: { schedule: 'every day' } }]))).field).toBe(
      'spec.triggers.0.cron.schedule',
    );
    expect(
      problem(() => parseFunctionManifest(fn([{ cron: { schedule: '* * * * *', timezone: 'Mars/Base' } }])))
        .message,
    ).toMatch(/spec\.triggers\.0\.cron\.timezone: got "Mars\/Base", expected an IANA time zone/);
    expect(
      problem(() => parseFunctionManifest(fn([{ mqtt: { url: 'mqtt://h:1', topic: 'a/#/b' } }]))).field,
    ).toBe('spec.triggers.0.mqtt.topic');
    expect(
      problem(() =>
        parseFunctionManifest(
          fn([
            { cron: { name: 'tick', schedule: '* * * * *' } },
            { cron: { name: 'tick', schedule: '* * * * *' } },
          ]),
        ),
      ).field,
    ).toBe('spec.triggers.1.cron.name');
    expect(
      problem(() => parseFunctionManifest(fn([{ kafka: { brokers: ['nohost'], topic: 't' } }]))).field,
    ).toBe('spec.triggers.0.kafka.brokers.0');
  });
});

describe('EventGateway route paths', () => {
  it.each(['/a/../b', '/a/..', '/a/./b', '/a/%2E%2e/b', '/..'])('refuses the dot segments of %s', (path) => {
    const { message, field } = problem(() =>
      parseGatewayManifest(gateway({ functions: [{ name: 'f', match: { path } }] })),
    );
    expect(field).toBe('spec.functions.0.match.path');
    expect(message).toContain('without "." or ".." segments');
  });

  it('accepts dots inside a segment', () => {
    expect(() =>
      parseGatewayManifest(gateway({ functions: [{ name: 'f', match: { path: '/v1.2/..x/a..b/...' } }] })),
    ).not.toThrow();
  });
});
