/**
 * @module Function logs: every line a function writes, tagged with its invocation, kept in a bounded
 * SQLite file beside the store, queryable by function, time, invocation and text, and followable live.
 * Writes are buffered and flushed in one transaction per tick so logging never stalls an invocation.
 */

import Database from 'better-sqlite3';
import type { LogRecord } from '../control/api/types.js';
import type { FunctionRef } from '../domain/function.js';

export interface LogEntry {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly instanceId: string;
  readonly invocationId: string | undefined;
  readonly stream: 'stdout' | 'stderr' | 'system';
  readonly text: string;
}

export interface LogQuery {
  readonly namespace: string;
  readonly function: string;
  /** Epoch ms. */
  readonly since?: number;
  /** Epoch ms: only records before this time (with `since`, a time range). */
  readonly until?: number;
  readonly invocationId?: string;
  readonly text?: string;
  /** Only records with a larger id (a follow cursor). */
  readonly afterId?: number;
  readonly limit: number;
}

export interface LogStoreOptions {
  readonly file: string;
  /** Rows kept; the oldest are trimmed beyond this. */
  readonly maxRecords: number;
  readonly flushIntervalMs?: number;
}

/** Longest single record kept; a function printing megabytes in one write is truncated, not stored whole. */
const MAX_MESSAGE_BYTES = 16 * 1024;

interface Row {
  id: number;
  time: number;
  namespace: string;
  function: string;
  version: number;
  invocation_id: string | null;
  instance_id: string;
  stream: LogRecord['stream'];
  message: string;
}

type Follower = {
  readonly namespace: string;
  readonly function: string;
  readonly invocationId?: string;
  readonly text?: string;
  send(record: LogRecord): void;
};

export class LogStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private buffer: { time: number; entry: LogEntry }[] = [];
  private readonly followers = new Set<Follower>();
  private readonly timer: NodeJS.Timeout;
  private inserted = 0;

  constructor(private readonly options: LogStoreOptions) {
    this.db = new Database(options.file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = OFF');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        namespace TEXT NOT NULL,
        function TEXT NOT NULL,
        version INTEGER NOT NULL,
        invocation_id TEXT,
        instance_id TEXT NOT NULL,
        stream TEXT NOT NULL,
        message TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS logs_by_function ON logs (namespace, function, id);
      CREATE INDEX IF NOT EXISTS logs_by_invocation ON logs (invocation_id);
    `);
    this.insert = this.db.prepare(
      'INSERT INTO logs (time, namespace, function, version, invocation_id, instance_id, stream, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.timer = setInterval(() => this.flush(), options.flushIntervalMs ?? 50);
    this.timer.unref();
  }

  write(entry: LogEntry): void {
    this.buffer.push({ time: Date.now(), entry });
    if (this.buffer.length >= 1000) this.flush();
  }

  flush(): void {
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    const records: LogRecord[] = [];
    const run = this.db.transaction(() => {
      for (const { time, entry } of batch) {
        const message = truncate(entry.text);
        const result = this.insert.run(
          time,
          entry.ref.namespace,
          entry.ref.name,
          entry.version,
          entry.invocationId ?? null,
          entry.instanceId,
          entry.stream,
          message,
        );
        records.push({
          id: Number(result.lastInsertRowid),
          time: new Date(time).toISOString(),
          namespace: entry.ref.namespace,
          function: entry.ref.name,
          version: entry.version,
          invocationId: entry.invocationId ?? null,
          instanceId: entry.instanceId,
          stream: entry.stream,
          message,
        });
      }
    });
    run();
    this.inserted += batch.length;
    if (this.inserted >= 1000) {
      this.inserted = 0;
      this.trim();
    }
    if (this.followers.size > 0) {
      for (const record of records)
        for (const follower of this.followers) if (matches(follower, record)) follower.send(record);
    }
  }

  query(query: LogQuery): LogRecord[] {
    this.flush();
    const clauses = ['namespace = ?', 'function = ?'];
    const params: (string | number)[] = [query.namespace, query.function];
    if (query.since !== undefined) {
      clauses.push('time >= ?');
      params.push(query.since);
    }
    if (query.until !== undefined) {
      clauses.push('time < ?');
      params.push(query.until);
    }
    if (query.invocationId !== undefined) {
      clauses.push('invocation_id = ?');
      params.push(query.invocationId);
    }
    if (query.text !== undefined) {
      clauses.push('instr(message, ?) > 0');
      params.push(query.text);
    }
    if (query.afterId !== undefined) {
      clauses.push('id > ?');
      params.push(query.afterId);
    }
    const rows = this.db
      .prepare(`SELECT * FROM logs WHERE ${clauses.join(' AND ')} ORDER BY id DESC LIMIT ?`)
      .all(...params, query.limit) as Row[];
    return rows.reverse().map(toRecord);
  }

  /** Calls `send` for each new matching record until the returned function is called. */
  follow(filter: Omit<Follower, 'send'>, send: (record: LogRecord) => void): () => void {
    const follower: Follower = { ...filter, send };
    this.followers.add(follower);
    return () => this.followers.delete(follower);
  }

  deleteFunction(ref: FunctionRef): void {
    this.flush();
    this.db.prepare('DELETE FROM logs WHERE namespace = ? AND function = ?').run(ref.namespace, ref.name);
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
    this.followers.clear();
    this.db.close();
  }

  private trim(): void {
    const row = this.db.prepare('SELECT MAX(id) AS id FROM logs').get() as { id: number | null };
    if (row.id !== null)
      this.db.prepare('DELETE FROM logs WHERE id <= ?').run(row.id - this.options.maxRecords);
  }
}

function truncate(text: string): string {
  if (text.length <= MAX_MESSAGE_BYTES) return text;
  return `${text.slice(0, MAX_MESSAGE_BYTES)}… [truncated ${text.length - MAX_MESSAGE_BYTES} characters]\n`;
}

function matches(follower: Follower, record: LogRecord): boolean {
  return (
    follower.namespace === record.namespace &&
    follower.function === record.function &&
    (follower.invocationId === undefined || follower.invocationId === record.invocationId) &&
    (follower.text === undefined || record.message.includes(follower.text))
  );
}

function toRecord(row: Row): LogRecord {
  return {
    id: row.id,
    time: new Date(row.time).toISOString(),
    namespace: row.namespace,
    function: row.function,
    version: row.version,
    invocationId: row.invocation_id,
    instanceId: row.instance_id,
    stream: row.stream,
    message: row.message,
  };
}
