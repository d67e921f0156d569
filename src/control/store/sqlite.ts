/** @module The embedded store: one SQLite file (WAL) under the data directory. */

import { randomBytes, randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import type { FunctionManifest, FunctionRef } from '../../domain/function.js';
import type { GatewayManifest } from '../../domain/gateway.js';
import type { ResolvedImage } from '../../domain/image.js';
import type { NamespaceManifest, SecurityStore, StoredKey, StoredNamespace } from '../../security/index.js';
import type {
  NewVersion,
  Store,
  StoredDeployment,
  StoredFunction,
  StoredGateway,
  StoredVersion,
} from './index.js';

/** Versions kept per function for history and rollback. */
const RETAINED_VERSIONS = 10;
/** What a version holds in the code store: its package, and its image's compressed layers (issue 17). */
const VERSION_BYTES = "code_bytes + COALESCE(json_extract(image, '$.sizeBytes'), 0)";
const RETAINED_DEPLOYMENTS = 20;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS functions (
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  active_version INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS versions (
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  version INTEGER NOT NULL,
  manifest TEXT NOT NULL,
  code_hash TEXT NOT NULL,
  code_files INTEGER NOT NULL,
  code_bytes INTEGER NOT NULL,
  deps_key TEXT,
  deps_mount TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (namespace, name, version)
);
CREATE TABLE IF NOT EXISTS deployments (
  id TEXT PRIMARY KEY,
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  version INTEGER,
  status TEXT NOT NULL,
  error TEXT,
  phases TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT
);
CREATE INDEX IF NOT EXISTS deployments_by_function ON deployments (namespace, name, started_at);
CREATE TABLE IF NOT EXISTS gateways (
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  manifest TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS trigger_state (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS version_counters (
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  last_version INTEGER NOT NULL,
  PRIMARY KEY (namespace, name)
);
`;

/** Keys, namespaces and the token secret (issue 10, src/security); kept apart from SCHEMA for merges. */
const SECURITY_SCHEMA = `
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  namespaces TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS namespaces (
  name TEXT PRIMARY KEY,
  manifest TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS security_secrets (
  name TEXT PRIMARY KEY,
  value BLOB NOT NULL
);
`;

interface VersionRow {
  namespace: string;
  name: string;
  version: number;
  manifest: string;
  code_hash: string;
  code_files: number;
  code_bytes: number;
  deps_key: string | null;
  deps_mount: string | null;
  image: string | null;
  created_at: string;
}

interface FunctionRow extends VersionRow {
  fn_created_at: string;
  updated_at: string;
}

interface DeploymentRow {
  id: string;
  namespace: string;
  name: string;
  version: number | null;
  status: StoredDeployment['status'];
  error: string | null;
  phases: string;
  started_at: string;
  finished_at: string | null;
}

const FUNCTION_SELECT = `
SELECT v.*, f.created_at AS fn_created_at, f.updated_at
FROM functions f JOIN versions v
  ON v.namespace = f.namespace AND v.name = f.name AND v.version = f.active_version`;

export class SqliteStore implements Store, SecurityStore {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.db.exec(SECURITY_SCHEMA);
    // Issue 17: the image a version pins. Added to stores made before it.
    const columns = this.db.prepare('PRAGMA table_info(versions)').all() as { name: string }[];
    if (!columns.some((column) => column.name === 'image'))
      this.db.exec('ALTER TABLE versions ADD COLUMN image TEXT');
  }

  listFunctions(namespace?: string): StoredFunction[] {
    const rows =
      namespace === undefined
        ? (this.db.prepare(`${FUNCTION_SELECT} ORDER BY f.namespace, f.name`).all() as FunctionRow[])
        : (this.db
            .prepare(`${FUNCTION_SELECT} WHERE f.namespace = ? ORDER BY f.name`)
            .all(namespace) as FunctionRow[]);
    return rows.map(toFunction);
  }

  getFunction(ref: FunctionRef): StoredFunction | undefined {
    const row = this.db
      .prepare(`${FUNCTION_SELECT} WHERE f.namespace = ? AND f.name = ?`)
      .get(ref.namespace, ref.name) as FunctionRow | undefined;
    return row === undefined ? undefined : toFunction(row);
  }

  versions(ref: FunctionRef, limit: number): StoredVersion[] {
    const rows = this.db
      .prepare('SELECT * FROM versions WHERE namespace = ? AND name = ? ORDER BY version DESC LIMIT ?')
      .all(ref.namespace, ref.name, limit) as VersionRow[];
    return rows.map(toVersion);
  }

  nextVersion(ref: FunctionRef): number {
    const row = this.db
      .prepare('SELECT last_version FROM version_counters WHERE namespace = ? AND name = ?')
      .get(ref.namespace, ref.name) as { last_version: number } | undefined;
    return (row?.last_version ?? 0) + 1;
  }

  retainedCodeBytes(namespace: string): number {
    const row = this.db
      .prepare(`SELECT COALESCE(SUM(${VERSION_BYTES}), 0) AS bytes FROM versions WHERE namespace = ?`)
      .get(namespace) as { bytes: number };
    return row.bytes;
  }

  codeBytesReleasedByNext(ref: FunctionRef): number {
    const row = this.db
      .prepare(
        `SELECT COALESCE(SUM(${VERSION_BYTES}), 0) AS bytes FROM versions WHERE namespace = ? AND name = ? AND version <= ?`,
      )
      .get(ref.namespace, ref.name, this.nextVersion(ref) - RETAINED_VERSIONS) as { bytes: number };
    return row.bytes;
  }

  commitVersion(ref: FunctionRef, version: number, data: NewVersion): StoredVersion {
    const now = new Date().toISOString();
    const commit = this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO versions (namespace, name, version, manifest, code_hash, code_files, code_bytes, deps_key, deps_mount, image, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          ref.namespace,
          ref.name,
          version,
          JSON.stringify(data.manifest),
          data.codeHash,
          data.codeFiles,
          data.codeBytes,
          data.depsKey,
          data.depsMount,
          data.image === null ? null : JSON.stringify(data.image),
          now,
        );
      this.db
        .prepare(
          `INSERT INTO functions (namespace, name, active_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (namespace, name) DO UPDATE SET active_version = excluded.active_version, updated_at = excluded.updated_at`,
        )
        .run(ref.namespace, ref.name, version, now, now);
      this.db
        .prepare(
          `INSERT INTO version_counters (namespace, name, last_version) VALUES (?, ?, ?)
           ON CONFLICT (namespace, name) DO UPDATE SET last_version = MAX(last_version, excluded.last_version)`,
        )
        .run(ref.namespace, ref.name, version);
      this.db
        .prepare('DELETE FROM versions WHERE namespace = ? AND name = ? AND version <= ?')
        .run(ref.namespace, ref.name, version - RETAINED_VERSIONS);
    });
    commit();
    return { namespace: ref.namespace, name: ref.name, version, createdAt: now, ...data };
  }

  deleteFunction(ref: FunctionRef): boolean {
    const remove = this.db.transaction(() => {
      const result = this.db
        .prepare('DELETE FROM functions WHERE namespace = ? AND name = ?')
        .run(ref.namespace, ref.name);
      this.db.prepare('DELETE FROM versions WHERE namespace = ? AND name = ?').run(ref.namespace, ref.name);
      this.db
        .prepare('DELETE FROM deployments WHERE namespace = ? AND name = ?')
        .run(ref.namespace, ref.name);
      this.db
        .prepare('DELETE FROM version_counters WHERE namespace = ? AND name = ?')
        .run(ref.namespace, ref.name);
      return result.changes > 0;
    });
    return remove();
  }

  startDeployment(ref: FunctionRef): string {
    const id = randomUUID();
    this.db
      .prepare(
        `INSERT INTO deployments (id, namespace, name, version, status, error, phases, started_at) VALUES (?, ?, ?, NULL, 'running', NULL, '{}', ?)`,
      )
      .run(id, ref.namespace, ref.name, new Date().toISOString());
    this.db
      .prepare(
        `DELETE FROM deployments WHERE namespace = ? AND name = ? AND id NOT IN (
           SELECT id FROM deployments WHERE namespace = ? AND name = ? ORDER BY started_at DESC LIMIT ?)`,
      )
      .run(ref.namespace, ref.name, ref.namespace, ref.name, RETAINED_DEPLOYMENTS);
    return id;
  }

  finishDeployment(
    id: string,
    outcome: Pick<StoredDeployment, 'status' | 'version' | 'error' | 'phases'>,
  ): void {
    this.db
      .prepare(
        'UPDATE deployments SET status = ?, version = ?, error = ?, phases = ?, finished_at = ? WHERE id = ?',
      )
      .run(
        outcome.status,
        outcome.version,
        outcome.error === null ? null : JSON.stringify(outcome.error),
        JSON.stringify(outcome.phases),
        new Date().toISOString(),
        id,
      );
  }

  lastDeployment(ref: FunctionRef): StoredDeployment | undefined {
    const row = this.db
      .prepare(
        'SELECT * FROM deployments WHERE namespace = ? AND name = ? ORDER BY started_at DESC, rowid DESC LIMIT 1',
      )
      .get(ref.namespace, ref.name) as DeploymentRow | undefined;
    if (row === undefined) return undefined;
    return {
      id: row.id,
      namespace: row.namespace,
      name: row.name,
      version: row.version,
      status: row.status,
      error: row.error === null ? null : (JSON.parse(row.error) as StoredDeployment['error']),
      phases: JSON.parse(row.phases) as Record<string, number>,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
    };
  }

  depsKeysInUse(): Set<string> {
    const rows = this.db
      .prepare('SELECT DISTINCT deps_key FROM versions WHERE deps_key IS NOT NULL')
      .all() as { deps_key: string }[];
    return new Set(rows.map((row) => row.deps_key));
  }

  imageDigestsInUse(): Set<string> {
    const rows = this.db.prepare('SELECT image FROM versions WHERE image IS NOT NULL').all() as {
      image: string;
    }[];
    return new Set(rows.map((row) => (JSON.parse(row.image) as ResolvedImage).manifestDigest));
  }

  codeHashesInUse(): Set<string> {
    const rows = this.db.prepare('SELECT DISTINCT code_hash FROM versions').all() as { code_hash: string }[];
    return new Set(rows.map((row) => row.code_hash));
  }

  listGateways(namespace?: string): StoredGateway[] {
    const rows = (
      namespace === undefined
        ? this.db.prepare('SELECT * FROM gateways ORDER BY namespace, name').all()
        : this.db.prepare('SELECT * FROM gateways WHERE namespace = ? ORDER BY name').all(namespace)
    ) as GatewayRow[];
    return rows.map(toGateway);
  }

  getGateway(namespace: string, name: string): StoredGateway | undefined {
    const row = this.db
      .prepare('SELECT * FROM gateways WHERE namespace = ? AND name = ?')
      .get(namespace, name) as GatewayRow | undefined;
    return row === undefined ? undefined : toGateway(row);
  }

  putGateway(namespace: string, name: string, manifest: GatewayManifest): StoredGateway {
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO gateways (namespace, name, manifest, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (namespace, name) DO UPDATE SET manifest = excluded.manifest, updated_at = excluded.updated_at`,
      )
      .run(namespace, name, JSON.stringify(manifest), now, now);
    const stored = this.getGateway(namespace, name);
    if (stored === undefined) throw new Error(`gateway ${namespace}/${name} was not stored`);
    return stored;
  }

  deleteGateway(namespace: string, name: string): boolean {
    return (
      this.db.prepare('DELETE FROM gateways WHERE namespace = ? AND name = ?').run(namespace, name).changes >
      0
    );
  }

  getTriggerState(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM trigger_state WHERE key = ?').get(key) as
      | { value: string }
      | undefined;
    return row?.value;
  }

  setTriggerState(key: string, value: string): void {
    this.db
      .prepare(
        'INSERT INTO trigger_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      )
      .run(key, value);
  }

  transaction<T>(work: () => T): T {
    // better-sqlite3 nests the transactions of commitVersion inside this one as savepoints.
    return this.db.transaction(work)();
  }

  close(): void {
    this.db.close();
  }

  // --- security (src/security/store.ts) --------------------------------------------------------------

  listKeys(): StoredKey[] {
    const rows = this.db.prepare('SELECT * FROM api_keys ORDER BY created_at').all() as KeyRow[];
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      role: row.role as StoredKey['role'],
      namespaces: JSON.parse(row.namespaces) as string[],
      hash: row.hash,
      createdAt: row.created_at,
      revokedAt: row.revoked_at,
    }));
  }

  insertKey(key: StoredKey): void {
    this.db
      .prepare(
        'INSERT INTO api_keys (id, name, role, namespaces, hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, NULL)',
      )
      .run(key.id, key.name, key.role, JSON.stringify(key.namespaces), key.hash, key.createdAt);
  }

  revokeKey(id: string, at: string): boolean {
    return (
      this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, id)
        .changes > 0
    );
  }

  listNamespaces(): StoredNamespace[] {
    const rows = this.db.prepare('SELECT * FROM namespaces ORDER BY name').all() as NamespaceRow[];
    return rows.map(toNamespace);
  }

  putNamespace(manifest: NamespaceManifest): StoredNamespace {
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO namespaces (name, manifest, created_at, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest, updated_at = excluded.updated_at`,
      )
      .run(manifest.metadata.name, JSON.stringify(manifest), now, now);
    const row = this.db
      .prepare('SELECT * FROM namespaces WHERE name = ?')
      .get(manifest.metadata.name) as NamespaceRow;
    return toNamespace(row);
  }

  deleteNamespace(name: string): boolean {
    return this.db.prepare('DELETE FROM namespaces WHERE name = ?').run(name).changes > 0;
  }

  tokenSecret(): Buffer {
    this.db
      .prepare('INSERT OR IGNORE INTO security_secrets (name, value) VALUES (?, ?)')
      .run('token', randomBytes(32));
    const row = this.db.prepare('SELECT value FROM security_secrets WHERE name = ?').get('token') as {
      value: Buffer;
    };
    return row.value;
  }
}

interface KeyRow {
  id: string;
  name: string;
  role: string;
  namespaces: string;
  hash: string;
  created_at: string;
  revoked_at: string | null;
}

interface NamespaceRow {
  name: string;
  manifest: string;
  created_at: string;
  updated_at: string;
}

function toNamespace(row: NamespaceRow): StoredNamespace {
  return {
    name: row.name,
    manifest: JSON.parse(row.manifest) as NamespaceManifest,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

interface GatewayRow {
  namespace: string;
  name: string;
  manifest: string;
  created_at: string;
  updated_at: string;
}

function toGateway(row: GatewayRow): StoredGateway {
  return {
    namespace: row.namespace,
    name: row.name,
    manifest: JSON.parse(row.manifest) as GatewayManifest,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toVersion(row: VersionRow): StoredVersion {
  return {
    namespace: row.namespace,
    name: row.name,
    version: row.version,
    manifest: JSON.parse(row.manifest) as FunctionManifest,
    codeHash: row.code_hash,
    codeFiles: row.code_files,
    codeBytes: row.code_bytes,
    depsKey: row.deps_key,
    depsMount: row.deps_mount,
    image: row.image === null ? null : (JSON.parse(row.image) as ResolvedImage),
    createdAt: row.created_at,
  };
}

function toFunction(row: FunctionRow): StoredFunction {
  return {
    namespace: row.namespace,
    name: row.name,
    createdAt: row.fn_created_at,
    updatedAt: row.updated_at,
    active: toVersion(row),
  };
}
