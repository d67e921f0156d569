/**
 * @module The embedded event log: one SQLite file (`events.db`, WAL). Every append runs synchronously in
 * one transaction in the platform's process, so the version check and the insert cannot interleave with
 * another instance's append; the row id is the global position projections follow. WAL with
 * `synchronous = NORMAL` survives a crash of the platform (SIGKILL) with every committed append; a power
 * loss may lose the last few, as for `ctx.state`.
 */

import Database from 'better-sqlite3';
import {
  type AppendResult,
  type EventLog,
  type NewStreamEvent,
  type Snapshot,
  type StoredStreamEvent,
  type StreamScope,
  streamConflict,
} from './index.js';

interface EventRow {
  position: number;
  scope: string;
  stream: string;
  version: number;
  id: string;
  type: string;
  data: string;
  time: number;
  traceparent: string | null;
}

export class SqliteEventLog implements EventLog {
  readonly kind = 'embedded' as const;
  private readonly db: Database.Database;
  private readonly statements: {
    version: Database.Statement<[string, string], { version: number }>;
    setVersion: Database.Statement<[string, string, number]>;
    insert: Database.Statement<[string, string, number, string, string, string, number, string | null]>;
    read: Database.Statement<[string, string, number, number], EventRow>;
    readAll: Database.Statement<[number, number], EventRow>;
    head: Database.Statement<[], { position: number | null }>;
    putSnapshot: Database.Statement<[string, string, number, string]>;
    snapshot: Database.Statement<[string, string], { version: number; state: string }>;
  };
  private readonly appendTx: (
    scope: string,
    stream: string,
    events: readonly NewStreamEvent[],
    expectedVersion: number | undefined,
  ) => AppendResult;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS events (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        time INTEGER NOT NULL,
        traceparent TEXT,
        UNIQUE (scope, stream, version)
      );
      CREATE TABLE IF NOT EXISTS streams (
        scope TEXT NOT NULL,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (scope, stream)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS snapshots (
        scope TEXT NOT NULL,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (scope, stream)
      ) WITHOUT ROWID;
    `);
    this.statements = {
      version: this.db.prepare('SELECT version FROM streams WHERE scope = ? AND stream = ?'),
      setVersion: this.db.prepare(
        'INSERT INTO streams (scope, stream, version) VALUES (?, ?, ?) ON CONFLICT (scope, stream) DO UPDATE SET version = excluded.version',
      ),
      insert: this.db.prepare(
        'INSERT INTO events (scope, stream, version, id, type, data, time, traceparent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      read: this.db.prepare(
        'SELECT * FROM events WHERE scope = ? AND stream = ? AND version >= ? ORDER BY version LIMIT ?',
      ),
      readAll: this.db.prepare('SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?'),
      head: this.db.prepare('SELECT MAX(position) AS position FROM events'),
      putSnapshot: this.db.prepare(
        'INSERT INTO snapshots (scope, stream, version, state) VALUES (?, ?, ?, ?) ON CONFLICT (scope, stream) DO UPDATE SET version = excluded.version, state = excluded.state WHERE excluded.version >= snapshots.version',
      ),
      snapshot: this.db.prepare('SELECT version, state FROM snapshots WHERE scope = ? AND stream = ?'),
    };
    this.appendTx = this.db.transaction(
      (
        scope: string,
        stream: string,
        events: readonly NewStreamEvent[],
        expectedVersion: number | undefined,
      ): AppendResult => {
        const current = this.statements.version.get(scope, stream)?.version ?? 0;
        if (expectedVersion !== undefined && expectedVersion !== current)
          throw streamConflict(stream, expectedVersion, current);
        const time = Date.now();
        const stored: StoredStreamEvent[] = [];
        let version = current;
        for (const event of events) {
          version += 1;
          const position = Number(
            this.statements.insert.run(
              scope,
              stream,
              version,
              event.id,
              event.type,
              event.data,
              time,
              event.traceparent ?? null,
            ).lastInsertRowid,
          );
          stored.push({
            scope,
            stream,
            id: event.id,
            type: event.type,
            data: event.data,
            version,
            position,
            time,
            traceparent: event.traceparent,
          });
        }
        if (events.length > 0) this.statements.setVersion.run(scope, stream, version);
        return { version, events: stored };
      },
    );
  }

  async append(
    scope: StreamScope,
    stream: string,
    events: readonly NewStreamEvent[],
    expectedVersion: number | undefined,
  ): Promise<AppendResult> {
    return this.appendTx(scope, stream, events, expectedVersion);
  }

  async read(scope: StreamScope, stream: string, from: number, limit: number): Promise<StoredStreamEvent[]> {
    return this.statements.read.all(scope, stream, from, limit).map(fromRow);
  }

  async version(scope: StreamScope, stream: string): Promise<number> {
    return this.statements.version.get(scope, stream)?.version ?? 0;
  }

  async snapshot(scope: StreamScope, stream: string, version: number, state: string): Promise<void> {
    this.statements.putSnapshot.run(scope, stream, version, state);
  }

  async latestSnapshot(scope: StreamScope, stream: string): Promise<Snapshot | undefined> {
    return this.statements.snapshot.get(scope, stream);
  }

  async readAll(after: number, limit: number): Promise<StoredStreamEvent[]> {
    return this.statements.readAll.all(after, limit).map(fromRow);
  }

  async head(): Promise<number> {
    return this.statements.head.get()?.position ?? 0;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

function fromRow(row: EventRow): StoredStreamEvent {
  return {
    scope: row.scope,
    stream: row.stream,
    id: row.id,
    type: row.type,
    data: row.data,
    version: row.version,
    position: row.position,
    time: row.time,
    traceparent: row.traceparent ?? undefined,
  };
}
