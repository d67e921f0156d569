/**
 * @module Where Trigger resources and their projection cursors live: a small SQLite file (`eventing.db`,
 * WAL) of the platform's own, apart from the event log so a log on JetStream (issue 12) keeps them here.
 */

import Database from 'better-sqlite3';
import type { EventTriggerManifest } from '../domain/eventing.js';

export interface StoredTrigger {
  readonly namespace: string;
  readonly name: string;
  readonly manifest: EventTriggerManifest;
  readonly createdAt: string;
  readonly updatedAt: string;
}

interface TriggerRow {
  namespace: string;
  name: string;
  manifest: string;
  created_at: string;
  updated_at: string;
}

export class TriggerStore {
  private readonly db: Database.Database;
  private readonly statements: {
    list: Database.Statement<[], TriggerRow>;
    get: Database.Statement<[string, string], TriggerRow>;
    put: Database.Statement<[string, string, string, string, string]>;
    remove: Database.Statement<[string, string]>;
    cursor: Database.Statement<[string], { position: number }>;
    setCursor: Database.Statement<[string, number]>;
    dropCursor: Database.Statement<[string]>;
  };

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS triggers (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        manifest TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (namespace, name)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS cursors (
        trigger TEXT PRIMARY KEY,
        position INTEGER NOT NULL
      ) WITHOUT ROWID;
    `);
    this.statements = {
      list: this.db.prepare('SELECT * FROM triggers ORDER BY namespace, name'),
      get: this.db.prepare('SELECT * FROM triggers WHERE namespace = ? AND name = ?'),
      put: this.db.prepare(
        'INSERT INTO triggers (namespace, name, manifest, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace, name) DO UPDATE SET manifest = excluded.manifest, updated_at = excluded.updated_at',
      ),
      remove: this.db.prepare('DELETE FROM triggers WHERE namespace = ? AND name = ?'),
      cursor: this.db.prepare('SELECT position FROM cursors WHERE trigger = ?'),
      setCursor: this.db.prepare(
        'INSERT INTO cursors (trigger, position) VALUES (?, ?) ON CONFLICT (trigger) DO UPDATE SET position = excluded.position',
      ),
      dropCursor: this.db.prepare('DELETE FROM cursors WHERE trigger = ?'),
    };
  }

  list(): StoredTrigger[] {
    return this.statements.list.all().map(fromRow);
  }

  get(namespace: string, name: string): StoredTrigger | undefined {
    const row = this.statements.get.get(namespace, name);
    return row === undefined ? undefined : fromRow(row);
  }

  put(namespace: string, name: string, manifest: EventTriggerManifest): StoredTrigger {
    const now = new Date().toISOString();
    this.statements.put.run(namespace, name, JSON.stringify(manifest), now, now);
    return this.get(namespace, name) as StoredTrigger;
  }

  delete(namespace: string, name: string): boolean {
    const removed = this.statements.remove.run(namespace, name).changes > 0;
    this.statements.dropCursor.run(`${namespace}/${name}`);
    return removed;
  }

  /** The log position a trigger has handled every event up to; undefined before its first run. */
  cursor(trigger: string): number | undefined {
    return this.statements.cursor.get(trigger)?.position;
  }

  setCursor(trigger: string, position: number): void {
    this.statements.setCursor.run(trigger, position);
  }

  close(): void {
    this.db.close();
  }
}

function fromRow(row: TriggerRow): StoredTrigger {
  return {
    namespace: row.namespace,
    name: row.name,
    manifest: JSON.parse(row.manifest) as EventTriggerManifest,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
