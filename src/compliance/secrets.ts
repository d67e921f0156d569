/**
 * @module Secret resources (issue 13): sealed at rest in the platform's SQLite file (table `secrets`, its
 * own connection), opened only when an instance is bound, and handed to the guest in its Bind frame —
 * never returned by the API, logged or described (listing shows names and key names).
 */

import Database from 'better-sqlite3';
import type { EncryptionSpec, SecretRef } from '../domain/compliance.js';
import { HearthError } from '../domain/errors.js';
import type { Keyring } from './keyring.js';
import { open, type SealAlgorithm, seal, sealedKeyId } from './sealing.js';
import { parseSm4Key } from './sm4-gcm.js';

/** What anyone may see of a secret. */
export interface SecretSummary {
  readonly namespace: string;
  readonly name: string;
  readonly keys: readonly string[];
  /** Id of the master key it is sealed under (not the key). */
  readonly sealedUnder: string;
  readonly algorithm: SealAlgorithm;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** The env a function's instance is bound with, for its `spec.secrets`. */
export type SecretEnv = Readonly<Record<string, string>>;

/** The Bind env variable carrying `mountPath` files (JSON `{relative path: base64}`); the guest removes it. */
export const SECRET_FILES_ENV = 'HEARTH_SECRET_FILES';
/** The Bind env variable carrying the SM4 key of `spec.encryption` (32 hex digits); the guest removes it. */
export const SM4_KEY_ENV = 'HEARTH_SM4_KEY';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS secrets (
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  keys TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  key_id TEXT NOT NULL,
  sealed BLOB NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (namespace, name)
);`;

/** A stored secret: only ever sealed; the table never sees a value in clear. */
export interface SecretRow {
  readonly namespace: string;
  readonly name: string;
  /** JSON array of the key names. */
  readonly keys: string;
  readonly algorithm: SealAlgorithm;
  readonly key_id: string;
  readonly sealed: Buffer;
  readonly created_at: string;
  readonly updated_at: string;
}

/** A row's values in the order of the columns of `SECRET_INSERT_COLUMNS`. */
export function secretInsertValues(row: SecretRow): unknown[] {
  return [
    row.namespace,
    row.name,
    row.keys,
    row.algorithm,
    row.key_id,
    row.sealed,
    row.created_at,
    row.updated_at,
  ];
}

/** The `secrets` columns an insert names, in the order `secretInsertValues` gives them (SQLite and PostgreSQL). */
export const SECRET_INSERT_COLUMNS =
  'namespace, name, keys, algorithm, key_id, sealed, created_at, updated_at';

/**
 * Where sealed secrets rest: the platform's SQLite file (embedded mode), or PostgreSQL in cluster mode
 * (src/cluster/pg-store.ts), so a secret set on any node reaches every node's functions.
 */
export interface SecretTable {
  get(namespace: string, name: string): SecretRow | undefined;
  list(namespace?: string): SecretRow[];
  /** Inserts, or replaces all but `created_at` of the row already there. */
  upsert(row: SecretRow): void;
  /** Puts back exactly `row` over the existing one (an undone apply). */
  restore(row: SecretRow): void;
  delete(namespace: string, name: string): boolean;
  transaction(work: () => void): void;
  close(): void;
  /**
   * Cluster mode: resolves once every node's copy holds the writes made so far (the API answers after it),
   * with the nodes that had not taken them in time. Absent where there is one table.
   */
  settled?(): Promise<readonly string[]>;
}

/** Secrets in the platform's SQLite file, on their own connection. */
class SqliteSecretTable implements SecretTable {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    // Deleted rows' pages are zeroed, so an old sealed value does not linger in the file's free pages.
    this.db.pragma('secure_delete = ON');
    this.db.exec(SCHEMA);
  }

  get(namespace: string, name: string): SecretRow | undefined {
    return this.db.prepare('SELECT * FROM secrets WHERE namespace = ? AND name = ?').get(namespace, name) as
      | SecretRow
      | undefined;
  }

  list(namespace?: string): SecretRow[] {
    return (
      namespace === undefined
        ? this.db.prepare('SELECT * FROM secrets ORDER BY namespace, name').all()
        : this.db.prepare('SELECT * FROM secrets WHERE namespace = ? ORDER BY name').all(namespace)
    ) as SecretRow[];
  }

  upsert(row: SecretRow): void {
    this.db
      .prepare(
        `INSERT INTO secrets (${SECRET_INSERT_COLUMNS})
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (namespace, name) DO UPDATE SET keys = excluded.keys, algorithm = excluded.algorithm,
           key_id = excluded.key_id, sealed = excluded.sealed, updated_at = excluded.updated_at`,
      )
      .run(...secretInsertValues(row));
  }

  restore(row: SecretRow): void {
    this.db
      .prepare(
        `UPDATE secrets SET keys = ?, algorithm = ?, key_id = ?, sealed = ?, updated_at = ?
         WHERE namespace = ? AND name = ?`,
      )
      .run(row.keys, row.algorithm, row.key_id, row.sealed, row.updated_at, row.namespace, row.name);
  }

  delete(namespace: string, name: string): boolean {
    return (
      this.db.prepare('DELETE FROM secrets WHERE namespace = ? AND name = ?').run(namespace, name).changes > 0
    );
  }

  transaction(work: () => void): void {
    this.db.transaction(work)();
  }

  close(): void {
    this.db.close();
  }
}

export interface SecretStoreOptions {
  /** The platform's SQLite file (hearth.db), or the cluster's shared table. */
  readonly file?: string;
  readonly table?: SecretTable;
  readonly keyring: Keyring;
  readonly algorithm: SealAlgorithm;
  /**
   * Cluster mode: every node seals and opens with the same master key. Set with why this node may not
   * seal (its key is its own, made in its data directory), or undefined when its key is a shared one.
   */
  readonly shared?: { readonly refusal: string | undefined };
}

/** Where the cluster's nodes are told how to share a master key (README "Running on several machines"). */
const SHARED_KEY_HINT =
  'every node of a cluster needs the same master key: set $HEARTH_MASTER_KEY (64 hex digits, e.g. from `openssl rand -hex 32`) to the same value on every node, or point secrets.keyFile at the same key on each';

export class SecretStore {
  private readonly db: SecretTable;
  private readonly keyring: Keyring;
  private readonly algorithm: SealAlgorithm;
  private readonly shared: { readonly refusal: string | undefined } | undefined;

  constructor(options: SecretStoreOptions) {
    if (options.table === undefined && options.file === undefined)
      throw new Error('SecretStore: a file or a table is needed');
    this.db = options.table ?? new SqliteSecretTable(options.file as string);
    this.keyring = options.keyring;
    this.algorithm = options.algorithm;
    this.shared = options.shared;
  }

  /** Creates or replaces a secret; returns what the previous one was, sealed, for undoing an apply. */
  put(namespace: string, name: string, values: ReadonlyMap<string, Buffer>): SecretSummary {
    this.assertMaySeal();
    const now = new Date().toISOString();
    const plain = Buffer.from(
      JSON.stringify(Object.fromEntries([...values].map(([key, value]) => [key, value.toString('base64')]))),
    );
    const sealed = seal(this.algorithm, this.keyring.current, plain, aadOf(namespace, name));
    plain.fill(0);
    this.db.upsert({
      namespace,
      name,
      keys: JSON.stringify([...values.keys()].sort()),
      algorithm: this.algorithm,
      key_id: this.keyring.current.id,
      sealed,
      created_at: now,
      updated_at: now,
    });
    return this.summary(namespace, name) as SecretSummary;
  }

  /** Applies several secrets in one transaction; the returned undo puts back exactly what was there. */
  putAll(
    items: readonly { namespace: string; name: string; values: ReadonlyMap<string, Buffer> }[],
  ): () => void {
    if (items.length > 0) this.assertMaySeal();
    const previous = items.map((item) => ({ item, row: this.row(item.namespace, item.name) }));
    this.db.transaction(() => {
      for (const { namespace, name, values } of items) this.put(namespace, name, values);
    });
    return () =>
      this.db.transaction(() => {
        for (const { item, row } of previous) {
          if (row === undefined) this.delete(item.namespace, item.name);
          else this.db.restore(row);
        }
      });
  }

  summary(namespace: string, name: string): SecretSummary | undefined {
    const row = this.row(namespace, name);
    return row === undefined ? undefined : summaryOf(row);
  }

  list(namespace?: string): SecretSummary[] {
    return this.db.list(namespace).map(summaryOf);
  }

  delete(namespace: string, name: string): boolean {
    return this.db.delete(namespace, name);
  }

  /** The secret's values, opened; undefined when it does not exist. */
  values(namespace: string, name: string): Map<string, Buffer> | undefined {
    const row = this.row(namespace, name);
    if (row === undefined) return undefined;
    let plain: Buffer;
    try {
      plain = open(this.keyring.keys, row.sealed, aadOf(namespace, name));
    } catch (error) {
      if (this.shared === undefined) throw error;
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `secret ${namespace}/${name}: ${(error as Error).message}; ${SHARED_KEY_HINT}`,
      );
    }
    const parsed = JSON.parse(plain.toString('utf8')) as Record<string, string>;
    plain.fill(0);
    return new Map(Object.entries(parsed).map(([key, value]) => [key, Buffer.from(value, 'base64')]));
  }

  /**
   * Re-seals every value under a new master key (`hearth secret rotate-key`), or finishes a rotation a
   * crash interrupted. Each row moves in its own small transaction, readable under either key meanwhile.
   */
  rotateKey(): { readonly keyId: string; readonly resealed: number } {
    if (this.shared !== undefined)
      throw new HearthError(
        'HEARTH_E_UNSUPPORTED',
        'hearth secret rotate-key is not available in cluster mode yet: every node would need the new key at once; the master key stays as set on every node',
      );
    const next = this.keyring.beginRotation();
    let resealed = 0;
    const stale = this.db.list().filter((row) => row.key_id !== next.id);
    for (const { namespace, name } of stale) {
      this.db.transaction(() => {
        const values = this.values(namespace, name);
        if (values === undefined) return;
        const row = this.row(namespace, name) as SecretRow;
        const plain = Buffer.from(
          JSON.stringify(
            Object.fromEntries([...values].map(([key, value]) => [key, value.toString('base64')])),
          ),
        );
        this.db.restore({
          ...row,
          key_id: next.id,
          sealed: seal(this.algorithm, next, plain, aadOf(namespace, name)),
          algorithm: this.algorithm,
        });
        plain.fill(0);
        resealed++;
      });
    }
    this.keyring.finishRotation();
    return { keyId: next.id, resealed };
  }

  /** Secrets sealed under a key that is not loaded (a changed `$HEARTH_MASTER_KEY`), for a start-up warning. */
  unreadable(): string[] {
    return this.db
      .list()
      .filter((row) => !this.keyring.keys.has(sealedKeyId(row.sealed)))
      .map((row) => `${row.namespace}/${row.name}`);
  }

  /**
   * The env an instance of a function in `namespace` is bound with: `env` variables, and `mountPath`
   * files in SECRET_FILES_ENV. Runs on a cold start only. A missing secret or key names itself.
   */
  bindEnv(namespace: string, refs: readonly SecretRef[] | undefined): SecretEnv {
    if (refs === undefined || refs.length === 0) return {};
    const env: Record<string, string> = {};
    const files: Record<string, string> = {};
    for (const [index, ref] of refs.entries()) {
      const values = this.values(namespace, ref.name);
      if (values === undefined)
        throw new HearthError(
          'HEARTH_E_VALIDATION',
          `spec.secrets.${index}.name: secret "${ref.name}" does not exist in namespace ${namespace}; create it with: hearth secret set ${ref.name} --from-literal KEY=VALUE`,
          {
            details: { field: `spec.secrets.${index}.name`, value: ref.name, expected: 'an existing Secret' },
          },
        );
      for (const [variable, key] of Object.entries(ref.env ?? {})) {
        const value = values.get(key);
        if (value === undefined)
          throw new HearthError(
            'HEARTH_E_VALIDATION',
            `spec.secrets.${index}.env.${variable}: secret "${ref.name}" has no key "${key}" (it has ${[...values.keys()].join(', ')})`,
            {
              details: {
                field: `spec.secrets.${index}.env.${variable}`,
                value: key,
                expected: 'a key of the secret',
              },
            },
          );
        env[variable] = value.toString('utf8');
      }
      if (ref.mountPath !== undefined)
        for (const [key, value] of values) files[`${ref.mountPath}/${key}`] = value.toString('base64');
    }
    if (Object.keys(files).length > 0) env[SECRET_FILES_ENV] = JSON.stringify(files);
    return env;
  }

  /** The Bind env for `spec.encryption`: the SM4 key, from its secret, for the guest to take and remove. */
  encryptionEnv(namespace: string, encryption: EncryptionSpec | undefined): SecretEnv {
    if (encryption === undefined) return {};
    const { secret, key } = encryption.key;
    const value = this.values(namespace, secret)?.get(key);
    if (value === undefined)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `spec.encryption.key: secret "${secret}" in namespace ${namespace} has no key "${key}"; create it with: hearth secret set ${secret} --from-literal ${key}=$(openssl rand -hex 16)`,
        {
          details: {
            field: 'spec.encryption.key',
            value: `${secret}/${key}`,
            expected: 'an existing secret key',
          },
        },
      );
    const sm4Key = parseSm4Key(value);
    if (sm4Key === undefined)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `spec.encryption.key: secret "${secret}" key "${key}" is not a 128-bit SM4 key (32 hex digits or 16 bytes)`,
        { details: { field: 'spec.encryption.key', value: `${secret}/${key}`, expected: '32 hex digits' } },
      );
    return { [SM4_KEY_ENV]: sm4Key.toString('hex') };
  }

  /** Resolves once the writes made so far reach every node (cluster mode); at once otherwise. */
  async settled(): Promise<void> {
    await this.db.settled?.();
  }

  close(): void {
    this.db.close();
  }

  private row(namespace: string, name: string): SecretRow | undefined {
    return this.db.get(namespace, name);
  }

  /**
   * Cluster mode: a node seals only under the key the cluster shares. Its own data-directory key would
   * make values the other nodes cannot open, so it is refused, as is a key that differs from the one the
   * secrets already stored were sealed under (a node started with another $HEARTH_MASTER_KEY).
   */
  private assertMaySeal(): void {
    if (this.shared === undefined) return;
    if (this.shared.refusal !== undefined)
      throw new HearthError('HEARTH_E_VALIDATION', `${this.shared.refusal}; ${SHARED_KEY_HINT}`, {
        details: { field: 'HEARTH_MASTER_KEY', value: null, expected: 'the same master key on every node' },
      });
    const foreign = [
      ...new Set(
        this.db
          .list()
          .map((row) => sealedKeyId(row.sealed))
          .filter((id) => !this.keyring.keys.has(id)),
      ),
    ];
    if (foreign.length > 0)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `this node's master key (id ${this.keyring.current.id}, from ${this.keyring.source}) is not the one the cluster's secrets are sealed under (id ${foreign.join(', ')}); ${SHARED_KEY_HINT}`,
        {
          details: {
            field: 'HEARTH_MASTER_KEY',
            value: this.keyring.current.id,
            expected: `master key id ${foreign.join(', ')}`,
          },
        },
      );
  }
}

function aadOf(namespace: string, name: string): string {
  return `secret:${namespace}/${name}`;
}

function summaryOf(row: SecretRow): SecretSummary {
  return {
    namespace: row.namespace,
    name: row.name,
    keys: JSON.parse(row.keys) as string[],
    sealedUnder: row.key_id,
    algorithm: row.algorithm,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
