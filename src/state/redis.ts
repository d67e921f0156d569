/**
 * @module The Redis state store (`state.redis.url`): the same semantics as the embedded store, for a
 * cluster of Hearth nodes sharing state. Keys are `hearth:state:<scope>:<key>`; increments and
 * compare-and-set run as Lua scripts, so they are atomic on the server whatever the number of nodes.
 */

import { Redis } from 'ioredis';
import { HearthError } from '../domain/errors.js';
import type { StateScope, StateStore } from './index.js';
import { notInteger } from './sqlite.js';

const PREFIX = 'hearth:state:';

/** INCRBY, then an expiry only for a key that has none (a new counter keeps its window). */
const INCR = `
local value = redis.call('GET', KEYS[1])
if value and not string.match(value, '^%-?%d+$') then return {'notint', value} end
local next = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {'ok', tostring(next)}
`;

/** SET only if the current value is ARGV[1] ('' = absent, flagged by ARGV[4]). */
const CAS = `
local current = redis.call('GET', KEYS[1])
if ARGV[4] == '1' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
if ARGV[3] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
`;

type ScriptedRedis = Redis & {
  hearthIncr(key: string, by: string, ttl: string): Promise<[string, string]>;
  hearthCas(key: string, expected: string, json: string, ttl: string, absent: string): Promise<number>;
};

export class RedisStateStore implements StateStore {
  readonly kind = 'redis' as const;

  private constructor(
    private readonly redis: ScriptedRedis,
    private readonly where: string,
  ) {}

  /** Connects and checks the server answers, so a wrong URL fails `hearth up` rather than the first call. */
  static async connect(url: string): Promise<RedisStateStore> {
    const redis = new Redis(url, {
      lazyConnect: true,
      // Calls fail fast while Redis is down instead of queueing until a function's deadline.
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      connectTimeout: 5000,
    });
    redis.on('error', () => {
      // ioredis reconnects by itself; each failed call reports HEARTH_E_STATE_UNAVAILABLE.
    });
    redis.defineCommand('hearthIncr', { numberOfKeys: 1, lua: INCR });
    redis.defineCommand('hearthCas', { numberOfKeys: 1, lua: CAS });
    const where = redactedUrl(url);
    try {
      await redis.connect();
      await redis.ping();
    } catch (error) {
      redis.disconnect();
      throw new HearthError(
        'HEARTH_E_STATE_UNAVAILABLE',
        `state.redis.url: cannot reach Redis at ${where} (${(error as Error).message})`,
      );
    }
    return new RedisStateStore(redis as ScriptedRedis, where);
  }

  async get(scope: StateScope, key: string): Promise<string | undefined> {
    const value = await this.call(() => this.redis.get(redisKey(scope, key)));
    return value ?? undefined;
  }

  async set(scope: StateScope, key: string, json: string, ttlMs: number | undefined): Promise<void> {
    const target = redisKey(scope, key);
    await this.call(() =>
      ttlMs === undefined ? this.redis.set(target, json) : this.redis.set(target, json, 'PX', ttlMs),
    );
  }

  async delete(scope: StateScope, key: string): Promise<boolean> {
    return (await this.call(() => this.redis.del(redisKey(scope, key)))) > 0;
  }

  async incr(scope: StateScope, key: string, by: number, ttlMs: number | undefined): Promise<number> {
    const [outcome, value] = await this.call(() =>
      this.redis.hearthIncr(redisKey(scope, key), String(by), ttlMs === undefined ? '' : String(ttlMs)),
    );
    if (outcome === 'notint') throw notInteger(key, value);
    return Number(value);
  }

  async cas(
    scope: StateScope,
    key: string,
    expected: string | undefined,
    json: string,
    ttlMs: number | undefined,
  ): Promise<boolean> {
    const done = await this.call(() =>
      this.redis.hearthCas(
        redisKey(scope, key),
        expected ?? '',
        json,
        ttlMs === undefined ? '' : String(ttlMs),
        expected === undefined ? '1' : '0',
      ),
    );
    return done === 1;
  }

  async keys(scope: StateScope, prefix: string, limit: number): Promise<string[]> {
    const base = `${PREFIX}${scope}:`;
    const pattern = `${globEscape(base + prefix)}*`;
    const found = new Set<string>();
    let cursor = '0';
    // SCAN walks the whole keyspace in slices; the cap bounds the work for a huge keyspace.
    do {
      const [next, batch] = await this.call(() => this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000));
      for (const key of batch) found.add(key.slice(base.length));
      cursor = next;
    } while (cursor !== '0');
    return [...found].sort().slice(0, limit);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private async call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (error instanceof HearthError) throw error;
      throw new HearthError(
        'HEARTH_E_STATE_UNAVAILABLE',
        `the state store (Redis at ${this.where}) failed: ${(error as Error).message}`,
      );
    }
  }
}

function redisKey(scope: StateScope, key: string): string {
  return `${PREFIX}${scope}:${key}`;
}

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** The URL without its password, for messages and logs. */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'an invalid URL';
  }
}
