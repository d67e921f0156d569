/** @module The StateStore contract: one suite, run against the embedded SQLite store and a real Redis. */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningRedis, startRedis } from '../../test/support/redis.js';
import { HearthError } from '../domain/errors.js';
import {
  canonicalJson,
  createStateCalls,
  functionScope,
  namespaceScope,
  RedisStateStore,
  redisUrlFor,
  SqliteStateStore,
  type StateStore,
} from './index.js';

let redis: RunningRedis;
let dir: string;

beforeAll(async () => {
  redis = await startRedis();
  dir = await mkdtemp(join(tmpdir(), 'hearth-state-'));
});

afterAll(async () => {
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

let counter = 0;
const implementations: [string, () => Promise<StateStore>][] = [
  ['embedded (SQLite)', async () => new SqliteStateStore(join(dir, `state-${++counter}.db`))],
  ['Redis', () => RedisStateStore.connect(redis.url)],
];

describe.each(implementations)('StateStore contract: %s', (_name, open) => {
  let store: StateStore;
  // Each test works in scopes of its own, so the Redis side needs no flushing between tests.
  let scope: string;
  let test = 0;

  beforeAll(async () => {
    store = await open();
  });
  afterAll(async () => {
    await store?.close();
  });
  const fresh = (): string => {
    test += 1;
    scope = functionScope(`ns${test}-${Date.now()}`, 'fn');
    return scope;
  };

  it('reads nothing for an absent key, and what was set otherwise', async () => {
    fresh();
    expect(await store.get(scope, 'missing')).toBeUndefined();
    await store.set(scope, 'cart', '{"items":[1,2]}', undefined);
    expect(await store.get(scope, 'cart')).toBe('{"items":[1,2]}');
    await store.set(scope, 'cart', '"replaced"', undefined);
    expect(await store.get(scope, 'cart')).toBe('"replaced"');
  });

  it('expires a value after its TTL, and set without TTL clears an earlier one', async () => {
    fresh();
    await store.set(scope, 'session', '1', 150);
    expect(await store.get(scope, 'session')).toBe('1');
    await eventually('the value to expire', async () => (await store.get(scope, 'session')) === undefined);
    await store.set(scope, 'kept', '1', 150);
    await store.set(scope, 'kept', '2', undefined);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await store.get(scope, 'kept')).toBe('2');
  });

  it('deletes, telling whether the key was there', async () => {
    fresh();
    await store.set(scope, 'k', '1', undefined);
    expect(await store.delete(scope, 'k')).toBe(true);
    expect(await store.delete(scope, 'k')).toBe(false);
    expect(await store.get(scope, 'k')).toBeUndefined();
  });

  it('counts with incr from nothing, by any integer, and refuses a non-integer value', async () => {
    fresh();
    expect(await store.incr(scope, 'n', 1, undefined)).toBe(1);
    expect(await store.incr(scope, 'n', 41, undefined)).toBe(42);
    expect(await store.incr(scope, 'n', -2, undefined)).toBe(40);
    expect(await store.get(scope, 'n')).toBe('40');
    await store.set(scope, 'word', '"hello"', undefined);
    const failure = await store.incr(scope, 'word', 1, undefined).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(HearthError);
    expect((failure as HearthError).code).toBe('HEARTH_E_VALIDATION');
    expect((failure as HearthError).message).toContain('not an integer');
  });

  it('gives a new counter its TTL and keeps an existing window', async () => {
    fresh();
    expect(await store.incr(scope, 'window', 1, 200)).toBe(1);
    expect(await store.incr(scope, 'window', 1, 60_000)).toBe(2);
    await eventually(
      'the counter window to end',
      async () => (await store.get(scope, 'window')) === undefined,
    );
    expect(await store.incr(scope, 'window', 1, undefined)).toBe(1);
  });

  it('compare-and-sets only from the expected value, or from nothing', async () => {
    fresh();
    expect(await store.cas(scope, 'lock', undefined, '"a"', undefined)).toBe(true);
    expect(await store.cas(scope, 'lock', undefined, '"b"', undefined)).toBe(false);
    expect(await store.cas(scope, 'lock', '"x"', '"b"', undefined)).toBe(false);
    expect(await store.get(scope, 'lock')).toBe('"a"');
    expect(await store.cas(scope, 'lock', '"a"', '"b"', 150)).toBe(true);
    expect(await store.get(scope, 'lock')).toBe('"b"');
    await eventually(
      'the swapped value to expire',
      async () => (await store.get(scope, 'lock')) === undefined,
    );
    expect(await store.cas(scope, 'lock', undefined, '"c"', undefined)).toBe(true);
  });

  it('lists live keys by prefix, sorted and limited, within the scope only', async () => {
    fresh();
    for (const key of ['user:2', 'user:1', 'user:10', 'order:1', 'user*glob'])
      await store.set(scope, key, '1', undefined);
    await store.set(scope, 'user:gone', '1', 50);
    await store.set(functionScope('other', 'fn'), 'user:9', '1', undefined);
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(await store.keys(scope, 'user:', 100)).toEqual(['user:1', 'user:10', 'user:2']);
    expect(await store.keys(scope, 'user', 2)).toEqual(['user*glob', 'user:1']);
    expect(await store.keys(scope, '', 100)).toEqual(['order:1', 'user*glob', 'user:1', 'user:10', 'user:2']);
  });

  it('keeps function and namespace scopes apart', async () => {
    const ns = `iso-${Date.now()}`;
    await store.set(functionScope(ns, 'a'), 'k', '"a"', undefined);
    await store.set(functionScope(ns, 'b'), 'k', '"b"', undefined);
    await store.set(namespaceScope(ns), 'k', '"shared"', undefined);
    expect(await store.get(functionScope(ns, 'a'), 'k')).toBe('"a"');
    expect(await store.get(functionScope(ns, 'b'), 'k')).toBe('"b"');
    expect(await store.get(namespaceScope(ns), 'k')).toBe('"shared"');
  });

  it('loses no increment when many callers count at once', async () => {
    fresh();
    const results = await Promise.all(
      Array.from({ length: 200 }, () => store.incr(scope, 'hits', 1, undefined)),
    );
    expect(await store.get(scope, 'hits')).toBe('200');
    expect(new Set(results).size).toBe(200);
  });

  describe('through the guest call handler (ctx.state)', () => {
    const ref = { namespace: 'calls', name: `fn-${Date.now()}` };
    let calls: ReturnType<typeof createStateCalls>;
    beforeAll(() => {
      calls = createStateCalls(store);
    });

    it('round-trips JSON values and compares them whatever the key order', async () => {
      await calls(ref, 'state.set', { key: 'profile', value: { b: 2, a: [1, { d: 4, c: 3 }] } });
      expect(await calls(ref, 'state.get', { key: 'profile' })).toEqual({ a: [1, { c: 3, d: 4 }], b: 2 });
      expect(
        await calls(ref, 'state.cas', {
          key: 'profile',
          expected: { a: [1, { c: 3, d: 4 }], b: 2 },
          value: 'next',
        }),
      ).toBe(true);
      expect(await calls(ref, 'state.get', { key: 'profile' })).toBe('next');
      expect(await calls(ref, 'state.get', { key: 'absent' })).toBeNull();
    });

    it('takes TTLs in seconds or as durations, and shares a namespace store on request', async () => {
      await calls(ref, 'state.set', { key: 'short', value: 1, ttl: '100ms' });
      await calls(ref, 'state.set', { key: 'shared', value: 'yes', shared: true });
      expect(await calls({ ...ref, name: 'another' }, 'state.get', { key: 'shared', shared: true })).toBe(
        'yes',
      );
      expect(await calls({ ...ref, name: 'another' }, 'state.get', { key: 'shared' })).toBeNull();
      await eventually(
        'the short TTL',
        async () => (await calls(ref, 'state.get', { key: 'short' })) === null,
      );
      expect(await calls(ref, 'state.incr', { key: 'c', by: 5, ttl: 10 })).toBe(5);
      expect(await calls(ref, 'state.keys', { prefix: 's' })).toEqual([]);
    });

    it('names the field, the value and what was expected for bad input', async () => {
      const bad = async (method: string, args: unknown): Promise<string> => {
        const error = (await calls(ref, method, args).catch((e: unknown) => e)) as HearthError;
        expect(error).toBeInstanceOf(HearthError);
        return `${error.code}: ${error.message}`;
      };
      expect(await bad('state.get', { key: '' })).toMatch(
        /HEARTH_E_VALIDATION: state.get key: got "", expected a non-empty string/,
      );
      expect(await bad('state.set', { key: 'k', value: null })).toMatch(
        /state.set value: got null, expected a JSON value \(not null/,
      );
      expect(await bad('state.set', { key: 'k', value: 1, ttl: -1 })).toMatch(
        /state.set ttl: got -1, expected seconds/,
      );
      expect(await bad('state.incr', { key: 'k', by: 1.5 })).toMatch(
        /state.incr by: got 1.5, expected an integer/,
      );
      expect(await bad('state.keys', { limit: 0 })).toMatch(/state.keys limit: got 0/);
      expect(await bad('state.nope', {})).toMatch(
        /HEARTH_E_UNSUPPORTED: state.nope is not a state operation/,
      );
      expect(await bad('state.set', { key: 'x'.repeat(600), value: 1 })).toMatch(/at most 512 bytes/);
    });
  });
});

describe('Redis availability', () => {
  it('fails to connect with one clear error naming the URL, without its password', async () => {
    const error = (await RedisStateStore.connect('redis://:secret@127.0.0.1:1').catch(
      (e: unknown) => e,
    )) as HearthError;
    expect(error.code).toBe('HEARTH_E_STATE_UNAVAILABLE');
    expect(error.message).toContain('state.redis.url: cannot reach Redis at redis://:***@127.0.0.1:1');
    expect(error.message).not.toContain('secret');
  });

  it('reports HEARTH_E_STATE_UNAVAILABLE for calls while Redis is down', async () => {
    const own = await startRedis();
    const store = await RedisStateStore.connect(own.url);
    await store.set('fn:x/y', 'k', '1', undefined);
    await own.stop();
    const error = (await store.get('fn:x/y', 'k').catch((e: unknown) => e)) as HearthError;
    expect(error.code).toBe('HEARTH_E_STATE_UNAVAILABLE');
    await store.close();
  });
});

describe('helpers', () => {
  it('writes canonical JSON with sorted keys at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}',
    );
  });

  it('gives functions the Redis URL their network can reach', () => {
    expect(redisUrlFor('redis://127.0.0.1:6379', 'none')).toBeUndefined();
    expect(redisUrlFor('redis://127.0.0.1:6379', 'allow')).toBe('redis://127.0.0.1:6379');
    // `egress: allow` in a namespace of its own reaches no loopback of the host: no URL it cannot use.
    expect(redisUrlFor('redis://127.0.0.1:6379', 'allow', 'outbound')).toBeUndefined();
    expect(redisUrlFor('redis://cache.internal:6379', 'allow', 'outbound')).toBe(
      'redis://cache.internal:6379',
    );
    expect(redisUrlFor('redis://127.0.0.1:6379/0', ['host.hearth.internal:6379'])).toBe(
      'redis://host.hearth.internal:6379/0',
    );
    expect(redisUrlFor('redis://cache.internal:6379', ['cache.internal:6379'])).toBe(
      'redis://cache.internal:6379',
    );
  });
});
