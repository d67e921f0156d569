/**
 * @module The platform side of `ctx.state`: validates a guest's `state.*` call, picks its scope (the
 * calling function's own, or its namespace's shared one) and runs it on the `StateStore`. Guests send
 * `[seq, "state.get", {key, shared?}]`-style calls over the existing Call/Reply frames.
 */

import { HearthError, invalidField } from '../domain/errors.js';
import type { FunctionRef } from '../domain/function.js';
import { parseDuration } from '../domain/units.js';
import { canonicalJson, functionScope, namespaceScope, type StateStore } from './index.js';

export type StateCallHandler = (ref: FunctionRef, method: string, args: unknown) => Promise<unknown>;

export const MAX_KEY_BYTES = 512;
export const MAX_VALUE_BYTES = 1024 * 1024;
const MAX_TTL_MS = 365 * 24 * 3_600_000;
const DEFAULT_KEYS_LIMIT = 1000;
const MAX_KEYS_LIMIT = 10_000;

interface StateArgs {
  key?: unknown;
  value?: unknown;
  expected?: unknown;
  ttl?: unknown;
  by?: unknown;
  prefix?: unknown;
  limit?: unknown;
  shared?: unknown;
}

/** Answers `state.get|set|delete|incr|cas|keys`; anything else under `state.` is a clear error. */
export function createStateCalls(store: StateStore): StateCallHandler {
  return async (ref, method, rawArgs) => {
    const args = (rawArgs ?? {}) as StateArgs;
    const scope =
      args.shared === true ? namespaceScope(ref.namespace) : functionScope(ref.namespace, ref.name);
    switch (method) {
      case 'state.get': {
        const json = await store.get(scope, keyOf(method, args.key));
        return json === undefined ? null : (JSON.parse(json) as unknown);
      }
      case 'state.set':
        await store.set(
          scope,
          keyOf(method, args.key),
          jsonOf(method, 'value', args.value),
          ttlOf(method, args.ttl),
        );
        return null;
      case 'state.delete':
        return store.delete(scope, keyOf(method, args.key));
      case 'state.incr': {
        const by = args.by ?? 1;
        if (typeof by !== 'number' || !Number.isSafeInteger(by))
          throw invalidField(`${method} by`, by, 'an integer');
        return store.incr(scope, keyOf(method, args.key), by, ttlOf(method, args.ttl));
      }
      case 'state.cas': {
        const expected =
          args.expected === undefined || args.expected === null
            ? undefined
            : jsonOf(method, 'expected', args.expected);
        return store.cas(
          scope,
          keyOf(method, args.key),
          expected,
          jsonOf(method, 'value', args.value),
          ttlOf(method, args.ttl),
        );
      }
      case 'state.keys': {
        const prefix = args.prefix ?? '';
        if (typeof prefix !== 'string') throw invalidField(`${method} prefix`, prefix, 'a string');
        const limit = args.limit ?? DEFAULT_KEYS_LIMIT;
        if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_KEYS_LIMIT)
          throw invalidField(`${method} limit`, limit, `an integer from 1 to ${MAX_KEYS_LIMIT}`);
        return store.keys(scope, prefix, limit);
      }
      default:
        throw new HearthError(
          'HEARTH_E_UNSUPPORTED',
          `${method} is not a state operation; use get, set, delete, incr, cas or keys`,
        );
    }
  };
}

function keyOf(method: string, key: unknown): string {
  if (typeof key !== 'string' || key === '' || Buffer.byteLength(key) > MAX_KEY_BYTES)
    throw invalidField(`${method} key`, key, `a non-empty string of at most ${MAX_KEY_BYTES} bytes`);
  return key;
}

function jsonOf(method: string, field: string, value: unknown): string {
  if (value === undefined || value === null)
    throw invalidField(`${method} ${field}`, value, 'a JSON value (not null; use delete to remove a key)');
  const json = canonicalJson(value);
  if (json === undefined) throw invalidField(`${method} ${field}`, value, 'a JSON value');
  if (Buffer.byteLength(json) > MAX_VALUE_BYTES)
    throw invalidField(
      `${method} ${field}`,
      `${Buffer.byteLength(json)} bytes of JSON`,
      `at most ${MAX_VALUE_BYTES} bytes of JSON`,
    );
  return json;
}

/** Seconds (a number, fractions allowed) or a duration such as "500ms" or "10m"; absent = no expiry. */
function ttlOf(method: string, ttl: unknown): number | undefined {
  if (ttl === undefined || ttl === null) return undefined;
  const ms = typeof ttl === 'number' ? ttl * 1000 : typeof ttl === 'string' ? parseDuration(ttl) : undefined;
  if (ms === undefined || !Number.isFinite(ms) || ms < 1 || ms > MAX_TTL_MS)
    throw invalidField(
      `${method} ttl`,
      ttl,
      'seconds (a number) or a duration such as "500ms" or "10m", at least 1ms and at most a year',
    );
  return Math.round(ms);
}
