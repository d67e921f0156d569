/**
 * @module The cluster's store: the `Store` (and `SecurityStore`) contract on PostgreSQL, shared by every
 * node. Same tables as the embedded SQLite store, plus `code_packages`: each version's code package as
 * bytea, written in the transaction that commits the version, so no node can see a version whose code
 * it cannot fetch. Schema migrations run at start under an advisory lock, so nodes starting together
 * apply each one once.
 */

import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SecretTable } from '../compliance/index.js';
import type {
  NewVersion,
  Store,
  StoredDeployment,
  StoredFunction,
  StoredGateway,
  StoredVersion,
} from '../control/store/index.js';
import type { FunctionManifest, FunctionRef } from '../domain/function.js';
import type { GatewayManifest } from '../domain/gateway.js';
import type { ResolvedImage } from '../domain/image.js';
import type { NamespaceManifest, SecurityStore, StoredKey, StoredNamespace } from '../security/index.js';
import type { ClaimOutcome } from '../triggers/index.js';
import { QUEUE_ALIVE, QUEUE_PUBLISHED, QUEUE_TABLES } from './js-queue.js';
import { LAYER_TABLES } from './pg-layers.js';
import { ClusterSecrets } from './pg-secrets.js';
import { SyncPostgres } from './pg-sync.js';

/** As the embedded store keeps them. */
const RETAINED_VERSIONS = 10;
/** A version's share of its namespace's `codeBytes` quota: its code package and its image's layers. */
const VERSION_BYTES = "code_bytes + COALESCE((image::jsonb->>'sizeBytes')::bigint, 0)";
const RETAINED_DEPLOYMENTS = 20;
/** pg_advisory_lock key for migrations: any constant the cluster agrees on ("hearth" in ASCII). */
const MIGRATION_LOCK = 0x6865617274;

/** Append-only: a node applies the ones the database has not seen, in order, each in its own transaction. */
export const MIGRATIONS: readonly { readonly id: number; readonly sql: string }[] = [
  {
    id: 1,
    sql: `
CREATE TABLE functions (
  namespace TEXT NOT NULL, name TEXT NOT NULL, active_version INTEGER NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (namespace, name));
CREATE TABLE versions (
  namespace TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, manifest TEXT NOT NULL,
  code_hash TEXT NOT NULL, code_files INTEGER NOT NULL, code_bytes BIGINT NOT NULL,
  deps_key TEXT, deps_mount TEXT, created_at TEXT NOT NULL, PRIMARY KEY (namespace, name, version));
CREATE TABLE deployments (
  id TEXT PRIMARY KEY, seq BIGSERIAL, namespace TEXT NOT NULL, name TEXT NOT NULL, version INTEGER,
  status TEXT NOT NULL, error TEXT, phases TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT);
CREATE INDEX deployments_by_function ON deployments (namespace, name, started_at);
CREATE TABLE gateways (
  namespace TEXT NOT NULL, name TEXT NOT NULL, manifest TEXT NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (namespace, name));
CREATE TABLE trigger_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE version_counters (
  namespace TEXT NOT NULL, name TEXT NOT NULL, last_version INTEGER NOT NULL, PRIMARY KEY (namespace, name));
CREATE TABLE code_packages (hash TEXT PRIMARY KEY, archive BYTEA NOT NULL, stored_at TEXT NOT NULL);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, namespaces TEXT NOT NULL, hash TEXT NOT NULL,
  created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE namespaces (name TEXT PRIMARY KEY, manifest TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE security_secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
`,
  },
  {
    id: 2,
    sql: 'CREATE TABLE trigger_claims (key TEXT PRIMARY KEY, claimed_at TIMESTAMPTZ NOT NULL DEFAULT now());',
  },
  // Issue 17: the image a `runtime: image` version pins (a ResolvedImage as JSON).
  { id: 3, sql: 'ALTER TABLE versions ADD COLUMN image TEXT;' },
  // The durable queue's records (js-queue.ts): the messages themselves travel on NATS JetStream.
  { id: 4, sql: QUEUE_TABLES },
  // A cron time's claim is a lease: who holds it, until when, and whether its run is queued. Claims taken
  // before this count as done (their runs were queued, or lost as before).
  {
    id: 5,
    sql: `
ALTER TABLE trigger_claims ADD COLUMN node TEXT, ADD COLUMN lease_until TIMESTAMPTZ NOT NULL DEFAULT now(),
  ADD COLUMN done BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE trigger_claims ALTER COLUMN done SET DEFAULT false;`,
  },
  // Whether a queued message reached the JetStream work stream (js-queue.ts sweeps the ones that did not).
  { id: 6, sql: QUEUE_PUBLISHED },
  // When the node running a queued message last said it still is (js-queue.ts: no second copy beside it).
  { id: 7, sql: QUEUE_ALIVE },
  // Dependency layers built once in the cluster and fetched by the other nodes (pg-layers.ts).
  { id: 8, sql: LAYER_TABLES },
  // Secrets (issue 13) shared by every node: sealed as the embedded store seals them, under the master
  // key the nodes share ($HEARTH_MASTER_KEY); PostgreSQL never holds a value in clear.
  {
    id: 9,
    sql: `
CREATE TABLE secrets (
  namespace TEXT NOT NULL, name TEXT NOT NULL, keys TEXT NOT NULL, algorithm TEXT NOT NULL,
  key_id TEXT NOT NULL, sealed BYTEA NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (namespace, name));`,
  },
];

/** Claims are kept this long (a node that restarts re-plans from the shared last fire, not from them). */
const CLAIM_RETENTION = '1 day';
/** Old claims are pruned at every this many claims a node takes. */
const PRUNE_EVERY = 500;
/** How long a node holds a claimed key before another may take it over (its run not queued by then). */
const CLAIM_LEASE_MS = 10_000;

interface VersionRow {
  namespace: string;
  name: string;
  version: number;
  manifest: string;
  code_hash: string;
  code_files: number;
  code_bytes: string;
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

interface GatewayRow {
  namespace: string;
  name: string;
  manifest: string;
  created_at: string;
  updated_at: string;
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

const FUNCTION_SELECT = `
SELECT v.*, f.created_at AS fn_created_at, f.updated_at
FROM functions f JOIN versions v
  ON v.namespace = f.namespace AND v.name = f.name AND v.version = f.active_version`;

export interface PostgresStoreOptions {
  readonly url: string;
  /** The node's code packages (`<dataDir>/packages`): a committed version's package is copied from here. */
  readonly packagesDir: string;
  /** Told after a write that other nodes must learn of is committed (outside any open transaction). */
  readonly onCommitted?: (change: StoreChange) => void;
}

/** What changed, for the nodes that serve it. */
export type StoreChange =
  | { readonly kind: 'function'; readonly ref: FunctionRef }
  | { readonly kind: 'gateway'; readonly namespace: string; readonly name: string }
  /** API keys or namespaces: every node re-reads them (its `Security` keeps them in memory). */
  | { readonly kind: 'security' }
  /** A secret: every node re-reads its row into its copy (pg-secrets.ts). */
  | { readonly kind: 'secret'; readonly namespace: string; readonly name: string };

export class PostgresStore implements Store, SecurityStore {
  private readonly db: SyncPostgres;
  private depth = 0;
  private pending: StoreChange[] = [];
  private claims = 0;
  /** The sealed secrets, with this node's copy that instance starts read (pg-secrets.ts). */
  readonly secrets: ClusterSecrets;

  private constructor(private readonly options: PostgresStoreOptions) {
    this.db = new SyncPostgres(options.url);
    this.secrets = new ClusterSecrets({
      url: options.url,
      db: this.db,
      transaction: (work) => this.transaction(work),
      atRest: () => this.depth === 0,
      changed: (namespace, name) => this.changed({ kind: 'secret', namespace, name }),
    });
  }

  /** Connects and migrates; throws with PostgreSQL's reason when it cannot. */
  static open(options: PostgresStoreOptions): PostgresStore {
    const store = new PostgresStore(options);
    try {
      store.migrate();
      store.secrets.load();
    } catch (error) {
      void store.db.close();
      throw error;
    }
    return store;
  }

  /** The migrations this database has applied, in order (for tests and `hearth` diagnostics). */
  appliedMigrations(): number[] {
    return this.db.query<{ id: number }>('SELECT id FROM hearth_migrations ORDER BY id').map((row) => row.id);
  }

  private migrate(): void {
    // A session lock: held across the migrations' own transactions, released however they end.
    this.db.batch([
      { text: 'SELECT pg_advisory_lock($1)', values: [MIGRATION_LOCK] },
      {
        text: 'CREATE TABLE IF NOT EXISTS hearth_migrations (id INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)',
      },
    ]);
    try {
      const applied = new Set(this.appliedMigrations());
      for (const migration of MIGRATIONS) {
        if (applied.has(migration.id)) continue;
        this.transaction(() => {
          this.db.query(migration.sql);
          this.db.query('INSERT INTO hearth_migrations (id, applied_at) VALUES ($1, $2)', [
            migration.id,
            new Date().toISOString(),
          ]);
        });
      }
    } finally {
      this.db.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  }

  listFunctions(namespace?: string): StoredFunction[] {
    const rows =
      namespace === undefined
        ? this.db.query<FunctionRow>(`${FUNCTION_SELECT} ORDER BY f.namespace, f.name`)
        : this.db.query<FunctionRow>(`${FUNCTION_SELECT} WHERE f.namespace = $1 ORDER BY f.name`, [
            namespace,
          ]);
    return rows.map(toFunction);
  }

  getFunction(ref: FunctionRef): StoredFunction | undefined {
    const [row] = this.db.query<FunctionRow>(`${FUNCTION_SELECT} WHERE f.namespace = $1 AND f.name = $2`, [
      ref.namespace,
      ref.name,
    ]);
    return row === undefined ? undefined : toFunction(row);
  }

  versions(ref: FunctionRef, limit: number): StoredVersion[] {
    return this.db
      .query<VersionRow>(
        'SELECT * FROM versions WHERE namespace = $1 AND name = $2 ORDER BY version DESC LIMIT $3',
        [ref.namespace, ref.name, limit],
      )
      .map(toVersion);
  }

  nextVersion(ref: FunctionRef): number {
    const [row] = this.db.query<{ last_version: number }>(
      'SELECT last_version FROM version_counters WHERE namespace = $1 AND name = $2',
      [ref.namespace, ref.name],
    );
    return (row?.last_version ?? 0) + 1;
  }

  /**
   * The cluster-wide version switch: the version row, its code package and `functions.active_version` in
   * one transaction. Two nodes deploying the same function at once: the second's INSERT meets the first's
   * version number and fails, leaving the first one active.
   */
  commitVersion(ref: FunctionRef, version: number, data: NewVersion): StoredVersion {
    const now = new Date().toISOString();
    const archive = readFileSync(join(this.options.packagesDir, `${data.codeHash}.tar.gz`));
    this.transaction(() => {
      this.db.batch([
        {
          text: `INSERT INTO code_packages (hash, archive, stored_at) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING`,
          values: [data.codeHash, archive, now],
        },
        {
          text: `INSERT INTO versions (namespace, name, version, manifest, code_hash, code_files, code_bytes, deps_key, deps_mount, image, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
          values: [
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
          ],
        },
        {
          text: `INSERT INTO functions (namespace, name, active_version, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (namespace, name) DO UPDATE SET active_version = EXCLUDED.active_version, updated_at = EXCLUDED.updated_at`,
          values: [ref.namespace, ref.name, version, now],
        },
        {
          text: `INSERT INTO version_counters (namespace, name, last_version) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, name) DO UPDATE SET last_version = GREATEST(version_counters.last_version, EXCLUDED.last_version)`,
          values: [ref.namespace, ref.name, version],
        },
        {
          text: 'DELETE FROM versions WHERE namespace = $1 AND name = $2 AND version <= $3',
          values: [ref.namespace, ref.name, version - RETAINED_VERSIONS],
        },
      ]);
      this.changed({ kind: 'function', ref });
    });
    return { namespace: ref.namespace, name: ref.name, version, createdAt: now, ...data };
  }

  deleteFunction(ref: FunctionRef): boolean {
    return this.transaction(() => {
      const [removed] = this.db.batch(
        ['functions', 'versions', 'deployments', 'version_counters'].map((table) => ({
          text: `DELETE FROM ${table} WHERE namespace = $1 AND name = $2${table === 'functions' ? ' RETURNING name' : ''}`,
          values: [ref.namespace, ref.name],
        })),
      );
      const existed = (removed?.length ?? 0) > 0;
      if (existed) this.changed({ kind: 'function', ref });
      return existed;
    });
  }

  /** A code package by its hash, as the node that deployed it stored it; undefined when none has it. */
  codePackage(hash: string): Buffer | undefined {
    const [row] = this.db.query<{ archive: Uint8Array }>(
      'SELECT archive FROM code_packages WHERE hash = $1',
      [hash],
    );
    return row === undefined
      ? undefined
      : Buffer.from(row.archive.buffer, row.archive.byteOffset, row.archive.byteLength);
  }

  startDeployment(ref: FunctionRef): string {
    const id = randomUUID();
    this.db.batch([
      {
        text: `INSERT INTO deployments (id, namespace, name, version, status, error, phases, started_at) VALUES ($1, $2, $3, NULL, 'running', NULL, '{}', $4)`,
        values: [id, ref.namespace, ref.name, new Date().toISOString()],
      },
      {
        text: `DELETE FROM deployments WHERE namespace = $1 AND name = $2 AND id NOT IN (
                 SELECT id FROM deployments WHERE namespace = $1 AND name = $2 ORDER BY started_at DESC, seq DESC LIMIT $3)`,
        values: [ref.namespace, ref.name, RETAINED_DEPLOYMENTS],
      },
    ]);
    return id;
  }

  finishDeployment(
    id: string,
    outcome: Pick<StoredDeployment, 'status' | 'version' | 'error' | 'phases'>,
  ): void {
    this.db.query(
      'UPDATE deployments SET status = $1, version = $2, error = $3, phases = $4, finished_at = $5 WHERE id = $6',
      [
        outcome.status,
        outcome.version,
        outcome.error === null ? null : JSON.stringify(outcome.error),
        JSON.stringify(outcome.phases),
        new Date().toISOString(),
        id,
      ],
    );
  }

  lastDeployment(ref: FunctionRef): StoredDeployment | undefined {
    const [row] = this.db.query<DeploymentRow>(
      'SELECT * FROM deployments WHERE namespace = $1 AND name = $2 ORDER BY started_at DESC, seq DESC LIMIT 1',
      [ref.namespace, ref.name],
    );
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

  retainedCodeBytes(namespace: string): number {
    const [row] = this.db.query<{ bytes: string }>(
      `SELECT COALESCE(SUM(${VERSION_BYTES}), 0) AS bytes FROM versions WHERE namespace = $1`,
      [namespace],
    );
    return Number(row?.bytes ?? 0);
  }

  codeBytesReleasedByNext(ref: FunctionRef): number {
    const [row] = this.db.query<{ bytes: string }>(
      `SELECT COALESCE(SUM(${VERSION_BYTES}), 0) AS bytes FROM versions WHERE namespace = $1 AND name = $2 AND version <= $3`,
      [ref.namespace, ref.name, this.nextVersion(ref) - RETAINED_VERSIONS],
    );
    return Number(row?.bytes ?? 0);
  }

  codeHashesInUse(): Set<string> {
    return new Set(
      this.db
        .query<{ code_hash: string }>('SELECT DISTINCT code_hash FROM versions')
        .map((row) => row.code_hash),
    );
  }

  imageDigestsInUse(): Set<string> {
    return new Set(
      this.db
        .query<{ image: string }>('SELECT image FROM versions WHERE image IS NOT NULL')
        .map((row) => (JSON.parse(row.image) as ResolvedImage).manifestDigest),
    );
  }

  depsKeysInUse(): Set<string> {
    return new Set(
      this.db
        .query<{ deps_key: string }>('SELECT DISTINCT deps_key FROM versions WHERE deps_key IS NOT NULL')
        .map((row) => row.deps_key),
    );
  }

  listGateways(namespace?: string): StoredGateway[] {
    const rows =
      namespace === undefined
        ? this.db.query<GatewayRow>('SELECT * FROM gateways ORDER BY namespace, name')
        : this.db.query<GatewayRow>('SELECT * FROM gateways WHERE namespace = $1 ORDER BY name', [namespace]);
    return rows.map(toGateway);
  }

  getGateway(namespace: string, name: string): StoredGateway | undefined {
    const [row] = this.db.query<GatewayRow>('SELECT * FROM gateways WHERE namespace = $1 AND name = $2', [
      namespace,
      name,
    ]);
    return row === undefined ? undefined : toGateway(row);
  }

  putGateway(namespace: string, name: string, manifest: GatewayManifest): StoredGateway {
    const now = new Date().toISOString();
    const [row] = this.db.query<GatewayRow>(
      `INSERT INTO gateways (namespace, name, manifest, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
       ON CONFLICT (namespace, name) DO UPDATE SET manifest = EXCLUDED.manifest, updated_at = EXCLUDED.updated_at
       RETURNING *`,
      [namespace, name, JSON.stringify(manifest), now],
    );
    if (row === undefined) throw new Error(`gateway ${namespace}/${name} was not stored`);
    this.changed({ kind: 'gateway', namespace, name });
    return toGateway(row);
  }

  deleteGateway(namespace: string, name: string): boolean {
    const removed =
      this.db.query('DELETE FROM gateways WHERE namespace = $1 AND name = $2 RETURNING name', [
        namespace,
        name,
      ]).length > 0;
    if (removed) this.changed({ kind: 'gateway', namespace, name });
    return removed;
  }

  getTriggerState(key: string): string | undefined {
    return this.db.query<{ value: string }>('SELECT value FROM trigger_state WHERE key = $1', [key])[0]
      ?.value;
  }

  setTriggerState(key: string, value: string): void {
    this.db.query(
      'INSERT INTO trigger_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value',
      [key, value],
    );
  }

  /**
   * A lease on `key` (a cron run's time) for this node: taken when nobody holds it, or when its holder's
   * lease ran out before it marked the key done (the holder died between claim and enqueue). INSERT … ON
   * CONFLICT DO UPDATE … WHERE decides atomically: of nodes asking at once, one holds it.
   */
  claimLease(key: string, node: string, leaseMs: number = CLAIM_LEASE_MS): ClaimOutcome {
    this.claims += 1;
    if (this.claims % PRUNE_EVERY === 0)
      this.db.query(`DELETE FROM trigger_claims WHERE claimed_at < now() - interval '${CLAIM_RETENTION}'`);
    const [taken] = this.db.query<{ key: string }>(
      `INSERT INTO trigger_claims (key, node, lease_until) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
       ON CONFLICT (key) DO UPDATE SET node = EXCLUDED.node, lease_until = EXCLUDED.lease_until
         WHERE trigger_claims.done = false AND trigger_claims.lease_until < now()
       RETURNING key`,
      [key, node, leaseMs],
    );
    if (taken !== undefined) return { held: true };
    const [row] = this.db.query<{ done: boolean; remaining_ms: number }>(
      `SELECT done, GREATEST(0, EXTRACT(EPOCH FROM (lease_until - now())) * 1000)::float8 AS remaining_ms
       FROM trigger_claims WHERE key = $1`,
      [key],
    );
    // Gone between the two statements (pruned): asking again soon takes it.
    if (row === undefined) return { held: false, recheckInMs: 0 };
    return row.done ? { held: false } : { held: false, recheckInMs: Number(row.remaining_ms) };
  }

  /** Extends `node`'s lease on `key`, while it holds the key and the key is not done. */
  renewLease(key: string, node: string, leaseMs: number = CLAIM_LEASE_MS): void {
    this.db.query(
      `UPDATE trigger_claims SET lease_until = now() + $3 * interval '1 millisecond'
       WHERE key = $1 AND node = $2 AND done = false`,
      [key, node, leaseMs],
    );
  }

  /** A holder renews its lease this often while it enqueues (a third of the lease). */
  readonly renewEveryMs = Math.floor(CLAIM_LEASE_MS / 3);

  /** The run for a held key is queued: nobody takes the key over. */
  claimDone(key: string): void {
    this.db.query('UPDATE trigger_claims SET done = true WHERE key = $1', [key]);
  }

  /** BEGIN … COMMIT on the one connection; nested calls are savepoints, as better-sqlite3 nests them. */
  transaction<T>(work: () => T): T {
    const savepoint = `hearth_${this.depth}`;
    this.db.query(this.depth === 0 ? 'BEGIN' : `SAVEPOINT ${savepoint}`);
    this.depth += 1;
    let result: T;
    try {
      result = work();
    } catch (error) {
      this.depth -= 1;
      this.db.query(this.depth === 0 ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT ${savepoint}`);
      if (this.depth === 0) {
        this.pending = [];
        this.secrets.settle();
      }
      throw error;
    }
    this.depth -= 1;
    this.db.query(this.depth === 0 ? 'COMMIT' : `RELEASE SAVEPOINT ${savepoint}`);
    if (this.depth === 0) {
      // The copy first: a notice must not reach another node before this node's copy holds the row.
      this.secrets.settle();
      this.flushChanges();
    }
    return result;
  }

  close(): void {
    void this.secrets.close();
    void this.db.close();
  }

  // --- security (src/security/store.ts) --------------------------------------------------------------

  listKeys(): StoredKey[] {
    return this.db.query<KeyRow>('SELECT * FROM api_keys ORDER BY created_at').map((row) => ({
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
    this.db.query(
      'INSERT INTO api_keys (id, name, role, namespaces, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)',
      [key.id, key.name, key.role, JSON.stringify(key.namespaces), key.hash, key.createdAt],
    );
    this.changed({ kind: 'security' });
  }

  revokeKey(id: string, at: string): boolean {
    const revoked =
      this.db.query('UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING id', [
        at,
        id,
      ]).length > 0;
    if (revoked) this.changed({ kind: 'security' });
    return revoked;
  }

  listNamespaces(): StoredNamespace[] {
    return this.db.query<NamespaceRow>('SELECT * FROM namespaces ORDER BY name').map(toNamespace);
  }

  putNamespace(manifest: NamespaceManifest): StoredNamespace {
    const now = new Date().toISOString();
    const [row] = this.db.query<NamespaceRow>(
      `INSERT INTO namespaces (name, manifest, created_at, updated_at) VALUES ($1, $2, $3, $3)
       ON CONFLICT (name) DO UPDATE SET manifest = EXCLUDED.manifest, updated_at = EXCLUDED.updated_at RETURNING *`,
      [manifest.metadata.name, JSON.stringify(manifest), now],
    );
    if (row === undefined) throw new Error(`namespace ${manifest.metadata.name} was not stored`);
    this.changed({ kind: 'security' });
    return toNamespace(row);
  }

  deleteNamespace(name: string): boolean {
    const removed = this.db.query('DELETE FROM namespaces WHERE name = $1 RETURNING name', [name]).length > 0;
    if (removed) this.changed({ kind: 'security' });
    return removed;
  }

  tokenSecret(): Buffer {
    const [row] = this.db.batch([
      {
        text: 'INSERT INTO security_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING',
        values: ['token', randomBytes(32)],
      },
      { text: 'SELECT value FROM security_secrets WHERE name = $1', values: ['token'] },
    ])[1] as { value: Uint8Array }[];
    if (row === undefined) throw new Error('the token secret was not stored');
    return Buffer.from(row.value.buffer, row.value.byteOffset, row.value.byteLength);
  }

  // --- secrets (src/compliance/secrets.ts) ----------------------------------------------------------

  /**
   * The cluster's secrets, sealed; an instance start reads them from this node's copy, which every
   * write on any node brings up to date (pg-secrets.ts).
   */
  secretTable(): SecretTable {
    return this.secrets.table();
  }

  private changed(change: StoreChange): void {
    this.pending.push(change);
    if (this.depth === 0) this.flushChanges();
  }

  private flushChanges(): void {
    const changes = this.pending;
    this.pending = [];
    for (const change of changes) this.options.onCommitted?.(change);
  }
}

function toNamespace(row: NamespaceRow): StoredNamespace {
  return {
    name: row.name,
    manifest: JSON.parse(row.manifest) as NamespaceManifest,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
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
    // BIGINT arrives as text (it may pass 2^53); package sizes stay far below.
    codeBytes: Number(row.code_bytes),
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
