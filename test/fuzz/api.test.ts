/**
 * @module Fuzzing the control API of a real platform: JSON bodies (any value, mutated resources, deep
 * nesting, huge strings, bytes that are not UTF-8, wrong content types) to every route that reads one,
 * paths with odd segments and percent-escapes on every route, malformed list queries, and archives to
 * the deploy route. No answer is a 5xx, every error is the platform's JSON error without a stack or a
 * path of this machine, each comes within a bound, and the platform serves on afterwards.
 */

import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fuzzParams, fuzzTimeout, requestBytes, shortly } from '../support/fuzz.js';
import { applyEdits, dataEdits, deepJson, hostileJson, materialize } from './arbitraries.js';
import {
  ask,
  assertOnPlatform,
  ECHO,
  type FuzzPlatform,
  pathSegment,
  stackedErrors,
  startFuzzPlatform,
  stillServing,
  TARGET,
} from './platform.js';
import { build, byteEdit, entry, tarOf, VALID } from './tar.js';

let platform: FuzzPlatform;

beforeAll(async () => {
  platform = await startFuzzPlatform();
});

afterAll(async () => {
  await platform?.stop();
});

// A case that ends the platform fails its own test; the next test gets a new platform.
beforeEach(async () => {
  if (platform.exited() === undefined) return;
  await platform.stop();
  platform = await startFuzzPlatform();
});

/** A valid resource whose name is not the one in the URL: however it is mutated, it is never applied. */
const OTHER_FUNCTION = {
  apiVersion: 'hearth.dev/v1',
  kind: 'Function',
  metadata: { name: 'not-the-target', labels: { a: 'b' } },
  spec: {
    runtime: 'node20',
    env: { A: '1' },
    limits: { memory: '128Mi', timeout: '10s' },
    scaling: { max: 2 },
    rateLimit: '100qps',
    triggers: [{ cron: { schedule: '0 3 * * *', data: { x: 1 } } }],
  },
};

const OTHER_GATEWAY = {
  apiVersion: 'hearth.dev/v1',
  kind: 'EventGateway',
  metadata: { name: 'not-the-target' },
  spec: {
    protocols: [{ http: { rateLimit: '10qps' } }],
    functions: [{ name: ECHO, match: { path: '/fuzz/:id', method: 'POST' }, retry: { attempts: 2 } }],
  },
};

/** The routes that read a body, with the body's base for mutations. */
const BODY_ROUTES = [
  { method: 'PUT', path: `/api/v1/namespaces/default/functions/${TARGET}`, base: OTHER_FUNCTION },
  { method: 'PUT', path: '/api/v1/namespaces/default/gateways/fuzz-gw', base: OTHER_GATEWAY },
  { method: 'POST', path: '/api/v1/dlq/redrive', base: { function: 'missing-fn', namespace: 'default' } },
  { method: 'POST', path: '/api/v1/dlq/not-an-id/redrive', base: {} },
  { method: 'POST', path: `/api/v1/namespaces/default/functions/${TARGET}/deploy`, base: {} },
  { method: 'POST', path: `/async-function/${ECHO}`, base: { hello: 'world' } },
  { method: 'POST', path: `/function/${ECHO}`, base: { hello: 'world' } },
  { method: 'PUT', path: `/function/${ECHO}/a/b`, base: [1, 2] },
] as const;

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=latin1',
  'application/merge-patch+json',
  'text/plain',
  '',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/gzip',
  'application/json, text/plain',
];

/** A body: a mutated resource, any JSON value, deep nesting, a huge string, or JSON with non-UTF-8 bytes. */
const body = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('edit' as const), edits: dataEdits }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('value' as const), value: hostileJson }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('deep' as const),
      depth: fc.constantFrom(1000, 10_000, 100_000),
      brackets: fc.constantFrom('[]', '{}'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('huge' as const), chars: fc.constantFrom(70_000, 1_100_000) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('bytes' as const),
      at: fc.nat(),
      bytes: fc.constantFrom(
        [0xff],
        [0xc0, 0xaf],
        [0xed, 0xa0, 0x80],
        [0xe0, 0xa4],
        [0x00],
        [0xf8, 0x88, 0x80, 0x80, 0x80],
      ),
    }),
  },
);
type Body = typeof body extends fc.Arbitrary<infer T> ? T : never;

function bodyBytes(route: (typeof BODY_ROUTES)[number], given: Body): Buffer {
  switch (given.kind) {
    case 'edit':
      try {
        return Buffer.from(JSON.stringify(applyEdits(route.base, given.edits)) ?? 'null');
      } catch {
        // An edit nested a value deeper than JSON.stringify goes: send that much nesting by hand.
        return Buffer.from(deepJson(100_000));
      }
    case 'value': {
      let text: string;
      try {
        text = JSON.stringify(materialize(given.value)) ?? 'null';
      } catch {
        // Nesting JSON.stringify cannot write is written by hand.
        text = deepJson((given.value as { depth: number }).depth);
      }
      return Buffer.from(text);
    }
    case 'deep':
      return Buffer.from(
        given.brackets === '[]'
          ? deepJson(given.depth)
          : `${'{"a":'.repeat(given.depth)}1${'}'.repeat(given.depth)}`,
      );
    case 'huge':
      return Buffer.from(JSON.stringify({ ...route.base, big: 'x'.repeat(given.chars) }));
    case 'bytes': {
      const text = Buffer.from(JSON.stringify({ ...route.base, note: 'abc' }));
      const at = text.indexOf('abc') + 1;
      return Buffer.concat([text.subarray(0, at), Buffer.from(given.bytes), text.subarray(at)]);
    }
  }
}

describe('fuzz: control API', () => {
  it(
    'a hostile JSON body to any route that reads one gets a clean answer below 500, in time',
    async () => {
      await assertOnPlatform(
        platform,
        fc.asyncProperty(
          fc.nat({ max: BODY_ROUTES.length - 1 }),
          body,
          fc.constantFrom(...CONTENT_TYPES),
          async (index, given, contentType) => {
            const route = BODY_ROUTES[index] as (typeof BODY_ROUTES)[number];
            const bytes = bodyBytes(route, given);
            const headers: [string, string][] = [
              ['Host', 'fuzz'],
              ['Content-Length', String(bytes.length)],
            ];
            if (contentType !== '') headers.push(['Content-Type', contentType]);
            const { problems, answer } = await ask(
              platform,
              requestBytes(route.method, route.path, headers, bytes),
              bytes.length < 100_000 ? bytes.toString('latin1') : '',
              {
                label: `${route.method} ${route.path}, ${contentType || 'no type'}, body ${shortly(given, 200)}`,
              },
            );
            if (problems.length > 0)
              throw new Error(
                `${route.method} ${route.path} (${contentType || 'no type'}, ${bytes.length} bytes) → ${answer?.status}: ${problems.join('; ')}`,
              );
          },
        ),
        fuzzParams(60, 50),
      );
    },
    fuzzTimeout(60, 50),
  );

  it(
    'a JSON body with bytes that are not UTF-8 is refused (400), not read with replacement characters',
    async () => {
      const bad = fc.constantFrom(
        [0xff],
        [0xc0, 0xaf],
        [0xed, 0xa0, 0x80],
        [0xe0, 0xa4],
        [0xf8, 0x88, 0x80, 0x80, 0x80],
      );
      await assertOnPlatform(
        platform,
        fc.asyncProperty(bad, fc.boolean(), async (bytes, redrive) => {
          // Valid in every other way: a label of the target's own resource, or a dead-letter filter.
          const text = redrive
            ? JSON.stringify({ function: 'abc' })
            : JSON.stringify({
                apiVersion: 'hearth.dev/v1',
                kind: 'Function',
                metadata: { name: TARGET, labels: { note: 'abc' } },
                spec: { runtime: 'node20', scaling: { max: 2 } },
              });
          const raw = Buffer.from(text);
          const at = raw.indexOf('abc') + 1;
          const sent = Buffer.concat([raw.subarray(0, at), Buffer.from(bytes), raw.subarray(at)]);
          const path = redrive ? '/api/v1/dlq/redrive' : `/api/v1/namespaces/default/functions/${TARGET}`;
          const { problems, answer } = await ask(
            platform,
            requestBytes(
              redrive ? 'POST' : 'PUT',
              path,
              [
                ['Host', 'fuzz'],
                ['Content-Type', 'application/json'],
                ['Content-Length', String(sent.length)],
              ],
              sent,
            ),
            sent.toString('latin1'),
          );
          if (answer?.status !== 400)
            problems.push(
              `answered ${answer?.status} (${answer?.body.toString('utf8').slice(0, 160)}), expected 400`,
            );
          if (problems.length > 0)
            throw new Error(`${path} with bytes ${shortly(bytes)}: ${problems.join('; ')}`);
        }),
        fuzzParams(10, 100),
      );
    },
    fuzzTimeout(10, 100),
  );

  it(
    'a route path with odd segments and percent-escapes gets a clean answer below 500, in time',
    async () => {
      const openapi = (await fetch(`${platform.hearth.url}/api/v1/openapi.json`).then((r) => r.json())) as {
        paths: Record<string, Record<string, unknown>>;
      };
      const templates = Object.entries(openapi.paths).flatMap(([path, operations]) =>
        Object.keys(operations)
          .filter((method) => ['get', 'put', 'post', 'delete', 'patch'].includes(method))
          .map((method) => ({ method: method.toUpperCase(), path })),
      );
      expect(templates.length).toBeGreaterThan(10);
      const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE'];
      await assertOnPlatform(
        platform,
        fc.asyncProperty(
          fc.nat({ max: templates.length - 1 }),
          fc.array(pathSegment, { minLength: 3, maxLength: 3 }),
          fc.option(fc.constantFrom(...methods), { nil: undefined }),
          fc.option(pathSegment, { nil: undefined }),
          async (index, segments, otherMethod, extra) => {
            const template = templates[index] as { method: string; path: string };
            const method = otherMethod ?? template.method;
            let n = 0;
            let path = template.path.replace(/\{[^}]+\}/g, () => segments[n++] ?? '');
            // Deleting the functions under test would end the run: a DELETE names a function that does not exist.
            if (method === 'DELETE') path = path.replaceAll(TARGET, 'missing-fn');
            if (extra !== undefined) path = `${path}/${extra}`;
            const { problems, answer } = await ask(
              platform,
              requestBytes(method, path, [
                ['Host', 'fuzz'],
                ['Content-Length', '0'],
              ]),
              path,
              { head: method === 'HEAD' },
            );
            if (problems.length > 0)
              throw new Error(`${method} ${shortly(path, 200)} → ${answer?.status}: ${problems.join('; ')}`);
          },
        ),
        fuzzParams(120, 30),
      );
    },
    fuzzTimeout(120, 30),
  );

  it(
    'a malformed list query (?before=zzz, ?limit=abc, ?since=soon) is refused with 400, not ignored',
    async () => {
      const cases = [
        { path: '/api/v1/invocations', param: 'before', values: ['zzz', '-1', '2026-13-45'] },
        { path: '/api/v1/dlq', param: 'before', values: ['zzz', '-1'] },
        { path: '/api/v1/invocations', param: 'limit', values: ['abc', '0', '-5', '1.5', '100000'] },
        {
          path: `/api/v1/namespaces/default/functions/${ECHO}/logs`,
          param: 'since',
          values: ['soon', 'zzz', '5 parsecs'],
        },
        {
          path: `/api/v1/namespaces/default/functions/${ECHO}/logs`,
          param: 'until',
          values: ['later', 'zzz'],
        },
        {
          path: `/api/v1/namespaces/default/functions/${ECHO}/logs`,
          param: 'limit',
          values: ['abc', '-1', '0'],
        },
        { path: `/api/v1/namespaces/default/functions/${ECHO}/logs`, param: 'after', values: ['zzz', '-1'] },
        { path: '/api/v1/invocations', param: 'state', values: ['zzz'] },
        { path: '/api/v1/functions', param: 'namespace', values: ['NOT A LABEL', '%00'] },
      ];
      const query = fc
        .nat({ max: cases.length - 1 })
        .chain((index) => fc.tuple(fc.constant(index), fc.constantFrom(...(cases[index]?.values ?? ['x']))));
      await assertOnPlatform(
        platform,
        fc.asyncProperty(query, async ([index, value]) => {
          const { path, param } = cases[index] as (typeof cases)[number];
          const target = `${path}?${param}=${encodeURIComponent(value)}`;
          const { problems, answer } = await ask(
            platform,
            requestBytes('GET', target, [['Host', 'fuzz']]),
            target,
          );
          if (answer?.status !== 400) problems.push(`answered ${answer?.status}, expected 400`);
          if (problems.length > 0) throw new Error(`GET ${target}: ${problems.join('; ')}`);
        }),
        fuzzParams(25, 30),
      );
    },
    fuzzTimeout(25, 30),
  );

  it(
    'an edited or odd archive to the deploy route gets a clean answer below 500, in time',
    async () => {
      const archive = fc.oneof(
        fc.record({
          kind: fc.constant('edits' as const),
          edits: fc.array(byteEdit, { minLength: 1, maxLength: 3 }),
          end: fc.constantFrom(2, 0, 20),
        }),
        fc.record({
          kind: fc.constant('entries' as const),
          entries: fc.array(entry, { minLength: 1, maxLength: 4 }),
          end: fc.constantFrom(2, 40),
        }),
      );
      await assertOnPlatform(
        platform,
        fc.asyncProperty(archive, async (given) => {
          // The archive's hearth.yaml never names this function, so nothing it holds is ever deployed.
          const bytes =
            given.kind === 'edits'
              ? build(tarOf(VALID, given.end), given.edits)
              : build(tarOf(given.entries, given.end), []);
          const path = '/api/v1/namespaces/default/functions/fuzz-deploy/deploy';
          const { problems, answer } = await ask(
            platform,
            requestBytes(
              'POST',
              path,
              [
                ['Host', 'fuzz'],
                ['Content-Type', 'application/gzip'],
                ['Content-Length', String(bytes.length)],
              ],
              bytes,
            ),
            '',
          );
          if (problems.length > 0)
            throw new Error(`deploy of ${bytes.length} bytes → ${answer?.status}: ${problems.join('; ')}`);
        }),
        fuzzParams(40, 100),
      );
    },
    fuzzTimeout(40, 100),
  );

  it('still serves afterwards, and logged no internal error with a stack for any of it', async () => {
    expect(await stillServing(platform)).toEqual([]);
    // Give the asynchronous log a moment to reach us.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(stackedErrors(platform)).toEqual([]);
  });
});
