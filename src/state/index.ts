/**
 * @module `ctx.state`: a small key-value store with TTL, counters and compare-and-set, namespaced per
 * function (or shared by a namespace). One interface, `StateStore`, two implementations registered here:
 * the embedded SQLite store (default) and Redis (`state.redis.url`); both pass the same contract suite.
 */

import { HOST_GATEWAY_NAME } from '../domain/function.js';
import { SqliteStateStore } from './sqlite.js';

export { createStateCalls, type StateCallHandler } from './calls.js';
export { RedisStateStore } from './redis.js';
export { SqliteStateStore } from './sqlite.js';

/**
 * Where a key lives: `fn:<namespace>/<name>` (one function's keys, the default) or `ns:<namespace>`
 * (shared by every function of a namespace). Scopes never overlap, so functions cannot read each other's.
 */
export type StateScope = string;

export function functionScope(namespace: string, name: string): StateScope {
  return `fn:${namespace}/${name}`;
}

export function namespaceScope(namespace: string): StateScope {
  return `ns:${namespace}`;
}

/**
 * Values travel as canonical JSON text (object keys sorted), so compare-and-set compares what the
 * caller means, not the key order a runtime happened to write.
 */
export interface StateStore {
  readonly kind: 'embedded' | 'redis';
  /** The JSON text stored at `key`, or undefined when it is absent or expired. */
  get(scope: StateScope, key: string): Promise<string | undefined>;
  /** Stores `json`, replacing any value and TTL; `ttlMs` undefined keeps it until deleted. */
  set(scope: StateScope, key: string, json: string, ttlMs: number | undefined): Promise<void>;
  /** Whether a value was there. */
  delete(scope: StateScope, key: string): Promise<boolean>;
  /**
   * Adds `by` to the integer at `key` (absent counts as 0) and returns the result. `ttlMs` applies when
   * the key has no expiry yet (a new counter), so a windowed counter keeps its window.
   * Throws HEARTH_E_VALIDATION when the stored value is not an integer.
   */
  incr(scope: StateScope, key: string, by: number, ttlMs: number | undefined): Promise<number>;
  /**
   * Sets `json` only if the current value equals `expected` (canonical JSON), or is absent when
   * `expected` is undefined; returns whether it did.
   */
  cas(
    scope: StateScope,
    key: string,
    expected: string | undefined,
    json: string,
    ttlMs: number | undefined,
  ): Promise<boolean>;
  /** Live keys starting with `prefix`, sorted, at most `limit`. */
  keys(scope: StateScope, prefix: string, limit: number): Promise<string[]>;
  close(): Promise<void>;
}

export interface StateConfig {
  /** Directory for the embedded store's `state.db`. */
  readonly dataDir: string;
  /** `redis://…` to keep state in Redis instead. */
  readonly redisUrl: string | undefined;
}

export async function createStateStore(config: StateConfig): Promise<StateStore> {
  if (config.redisUrl !== undefined) {
    const { RedisStateStore } = await import('./redis.js');
    return RedisStateStore.connect(config.redisUrl);
  }
  return new SqliteStateStore(`${config.dataDir}/state.db`);
}

/**
 * `REDIS_URL` as a function's network reaches the configured Redis: unchanged with egress `allow` (the
 * host's network); behind an allow-list the host's loopback is `host.hearth.internal`, which the list
 * must name (`host.hearth.internal:6379`). Egress `none` reaches nothing, so it gets no URL.
 */
export function redisUrlFor(
  url: string,
  egress: 'none' | 'allow' | readonly string[],
  allowNetwork: 'outbound' | 'host' = 'host',
): string | undefined {
  if (egress === 'none') return undefined;
  if (egress === 'allow') {
    if (allowNetwork === 'host') return url;
    // Its own namespace reaches the host's addresses but never its loopback: a Redis there is out of reach.
    const host = new URL(url).hostname;
    return ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host) || host.startsWith('127.')
      ? undefined
      : url;
  }
  const parsed = new URL(url);
  if (['127.0.0.1', 'localhost', '[::1]', '::1'].includes(parsed.hostname))
    parsed.hostname = HOST_GATEWAY_NAME;
  return parsed.toString();
}

/** JSON text with object keys in sorted order at every depth. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) => {
    if (inner === null || typeof inner !== 'object' || Array.isArray(inner)) return inner;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(inner).sort()) sorted[key] = (inner as Record<string, unknown>)[key];
    return sorted;
  });
}
