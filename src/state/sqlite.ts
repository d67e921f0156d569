/**
 * @module The embedded state store: one SQLite file (`state.db`) beside the platform's store, in WAL
 * mode. Every instance's calls arrive at this one process and better-sqlite3 runs each operation
 * synchronously inside a transaction, so increments and compare-and-set from concurrent instances
 * cannot interleave; the busy timeout covers another process holding the file.
 */

import Database from 'better-sqlite3';
import { HearthError } from '../domain/errors.js';
import type { StateScope, StateStore } from './index.js';

/** Expired rows are invisible at once and deleted by a sweep this often. */
const SWEEP_MS = 60_000;

interface ValueRow {
  value: string;
  expires: number | null;
}

export class SqliteStateStore implements StateStore {
  readonly kind = 'embedded' as const;
  private readonly db: Database.Database;
  private readonly sweeper: NodeJS.Timeout;
  private readonly statements: {
    get: Database.Statement<[string, string, number], ValueRow>;
    put: Database.Statement<[string, string, string, number | null]>;
    remove: Database.Statement<[string, string, number]>;
    keys: Database.Statement<[string, string, number]>;
    sweep: Database.Statement<[number]>;
  };
  private readonly incrTx: (scope: string, key: string, by: number, ttlMs: number | undefined) => number;
  private readonly casTx: (
    scope: string,
    key: string,
    expected: string | undefined,
    json: string,
    ttlMs: number | undefined,
  ) => boolean;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS state (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires INTEGER,
        PRIMARY KEY (scope, key)
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS state_expiry ON state (expires) WHERE expires IS NOT NULL;
    `);
    this.statements = {
      get: this.db.prepare(
        'SELECT value, expires FROM state WHERE scope = ? AND key = ? AND (expires IS NULL OR expires > ?)',
      ),
      put: this.db.prepare(
        'INSERT INTO state (scope, key, value, expires) VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, expires = excluded.expires',
      ),
      remove: this.db.prepare(
        'DELETE FROM state WHERE scope = ? AND key = ? AND (expires IS NULL OR expires > ?)',
      ),
      keys: this.db.prepare(
        'SELECT key FROM state WHERE scope = ? AND key >= ? AND (expires IS NULL OR expires > ?) ORDER BY key',
      ),
      sweep: this.db.prepare('DELETE FROM state WHERE expires IS NOT NULL AND expires <= ?'),
    };
    this.incrTx = this.db.transaction((scope: string, key: string, by: number, ttlMs: number | undefined) => {
      const now = Date.now();
      const row = this.statements.get.get(scope, key, now);
      let current = 0;
      if (row !== undefined) {
        const parsed: unknown = JSON.parse(row.value);
        if (typeof parsed !== 'number' || !Number.isSafeInteger(parsed)) throw notInteger(key, row.value);
        current = parsed;
      }
      const next = current + by;
      if (!Number.isSafeInteger(next))
        throw new HearthError('HEARTH_E_VALIDATION', `state.incr: ${key} would overflow a safe integer`, {
          details: { field: 'by', value: by, expected: 'a result within ±2^53' },
        });
      const expires = row?.expires ?? (ttlMs === undefined ? null : now + ttlMs);
      this.statements.put.run(scope, key, String(next), expires);
      return next;
    });
    this.casTx = this.db.transaction(
      (scope: string, key: string, expected: string | undefined, json: string, ttlMs: number | undefined) => {
        const now = Date.now();
        const row = this.statements.get.get(scope, key, now);
        if (expected === undefined ? row !== undefined : row?.value !== expected) return false;
        this.statements.put.run(scope, key, json, ttlMs === undefined ? null : now + ttlMs);
        return true;
      },
    );
    this.sweeper = setInterval(() => this.statements.sweep.run(Date.now()), SWEEP_MS);
    this.sweeper.unref();
  }

  async get(scope: StateScope, key: string): Promise<string | undefined> {
    return this.statements.get.get(scope, key, Date.now())?.value;
  }

  async set(scope: StateScope, key: string, json: string, ttlMs: number | undefined): Promise<void> {
    this.statements.put.run(scope, key, json, ttlMs === undefined ? null : Date.now() + ttlMs);
  }

  async delete(scope: StateScope, key: string): Promise<boolean> {
    return this.statements.remove.run(scope, key, Date.now()).changes > 0;
  }

  async incr(scope: StateScope, key: string, by: number, ttlMs: number | undefined): Promise<number> {
    return this.incrTx(scope, key, by, ttlMs);
  }

  async cas(
    scope: StateScope,
    key: string,
    expected: string | undefined,
    json: string,
    ttlMs: number | undefined,
  ): Promise<boolean> {
    return this.casTx(scope, key, expected, json, ttlMs);
  }

  async keys(scope: StateScope, prefix: string, limit: number): Promise<string[]> {
    const found: string[] = [];
    // Rows come in key order from the prefix on; the first key without the prefix ends the range.
    for (const row of this.statements.keys.iterate(scope, prefix, Date.now()) as IterableIterator<{
      key: string;
    }>) {
      if (!row.key.startsWith(prefix) || found.length >= limit) break;
      found.push(row.key);
    }
    return found;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.db.close();
  }
}

export function notInteger(key: string, json: string): HearthError {
  const shown = json.length > 40 ? `${json.slice(0, 37)}...` : json;
  return new HearthError(
    'HEARTH_E_VALIDATION',
    `state.incr: the value at "${key}" is ${shown}, not an integer; incr only counts integers`,
    { details: { field: 'key', value: key, expected: 'a key holding an integer, or no value' } },
  );
}
