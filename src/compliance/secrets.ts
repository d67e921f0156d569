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

interface SecretRow {
  namespace: string;
  name: string;
  keys: string;
  algorithm: SealAlgorithm;
  key_id: string;
  sealed: Buffer;
  created_at: string;
  updated_at: string;
}

export interface SecretStoreOptions {
  /** The platform's SQLite file (hearth.db). */
  readonly file: string;
  readonly keyring: Keyring;
  readonly algorithm: SealAlgorithm;
}

export class SecretStore {
  private readonly db: Database.Database;
  private readonly keyring: Keyring;
  private readonly algorithm: SealAlgorithm;

  constructor(options: SecretStoreOptions) {
    this.db = new Database(options.file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    // Deleted rows' pages are zeroed, so an old sealed value does not linger in the file's free pages.
    this.db.pragma('secure_delete = ON');
    this.db.exec(SCHEMA);
    this.keyring = options.keyring;
    this.algorithm = options.algorithm;
  }

  /** Creates or replaces a secret; returns what the previous one was, sealed, for undoing an apply. */
  put(namespace: string, name: string, values: ReadonlyMap<string, Buffer>): SecretSummary {
    const now = new Date().toISOString();
    const plain = Buffer.from(
      JSON.stringify(Object.fromEntries([...values].map(([key, value]) => [key, value.toString('base64')]))),
    );
    const sealed = seal(this.algorithm, this.keyring.current, plain, aadOf(namespace, name));
    plain.fill(0);
    this.db
      .prepare(
        `INSERT INTO secrets (namespace, name, keys, algorithm, key_id, sealed, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (namespace, name) DO UPDATE SET keys = excluded.keys, algorithm = excluded.algorithm,
           key_id = excluded.key_id, sealed = excluded.sealed, updated_at = excluded.updated_at`,
      )
      .run(
        namespace,
        name,
        JSON.stringify([...values.keys()].sort()),
        this.algorithm,
        this.keyring.current.id,
        sealed,
        now,
        now,
      );
    return this.summary(namespace, name) as SecretSummary;
  }

  /** Applies several secrets in one transaction; the returned undo puts back exactly what was there. */
  putAll(
    items: readonly { namespace: string; name: string; values: ReadonlyMap<string, Buffer> }[],
  ): () => void {
    const previous = items.map((item) => ({ item, row: this.row(item.namespace, item.name) }));
    this.db.transaction(() => {
      for (const { namespace, name, values } of items) this.put(namespace, name, values);
    })();
    return () =>
      this.db.transaction(() => {
        for (const { item, row } of previous) {
          if (row === undefined) this.delete(item.namespace, item.name);
          else
            this.db
              .prepare(
                `UPDATE secrets SET keys = ?, algorithm = ?, key_id = ?, sealed = ?, updated_at = ?
                 WHERE namespace = ? AND name = ?`,
              )
              .run(row.keys, row.algorithm, row.key_id, row.sealed, row.updated_at, row.namespace, row.name);
        }
      })();
  }

  summary(namespace: string, name: string): SecretSummary | undefined {
    const row = this.row(namespace, name);
    return row === undefined ? undefined : summaryOf(row);
  }

  list(namespace?: string): SecretSummary[] {
    const rows = (
      namespace === undefined
        ? this.db.prepare('SELECT * FROM secrets ORDER BY namespace, name').all()
        : this.db.prepare('SELECT * FROM secrets WHERE namespace = ? ORDER BY name').all(namespace)
    ) as SecretRow[];
    return rows.map(summaryOf);
  }

  delete(namespace: string, name: string): boolean {
    return (
      this.db.prepare('DELETE FROM secrets WHERE namespace = ? AND name = ?').run(namespace, name).changes > 0
    );
  }

  /** The secret's values, opened; undefined when it does not exist. */
  values(namespace: string, name: string): Map<string, Buffer> | undefined {
    const row = this.row(namespace, name);
    if (row === undefined) return undefined;
    const plain = open(this.keyring.keys, row.sealed, aadOf(namespace, name));
    const parsed = JSON.parse(plain.toString('utf8')) as Record<string, string>;
    plain.fill(0);
    return new Map(Object.entries(parsed).map(([key, value]) => [key, Buffer.from(value, 'base64')]));
  }

  /**
   * Re-seals every value under a new master key (`hearth secret rotate-key`), or finishes a rotation a
   * crash interrupted. Each row moves in its own small transaction, readable under either key meanwhile.
   */
  rotateKey(): { readonly keyId: string; readonly resealed: number } {
    const next = this.keyring.beginRotation();
    let resealed = 0;
    const stale = this.db
      .prepare('SELECT namespace, name FROM secrets WHERE key_id != ?')
      .all(next.id) as Pick<SecretRow, 'namespace' | 'name'>[];
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
        this.db
          .prepare(
            'UPDATE secrets SET key_id = ?, sealed = ?, algorithm = ? WHERE namespace = ? AND name = ?',
          )
          .run(
            next.id,
            seal(this.algorithm, next, plain, aadOf(namespace, name)),
            this.algorithm,
            row.namespace,
            row.name,
          );
        plain.fill(0);
        resealed++;
      })();
    }
    this.keyring.finishRotation();
    return { keyId: next.id, resealed };
  }

  /** Secrets sealed under a key that is not loaded (a changed `$HEARTH_MASTER_KEY`), for a start-up warning. */
  unreadable(): string[] {
    const rows = this.db.prepare('SELECT namespace, name, sealed FROM secrets').all() as SecretRow[];
    return rows
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

  close(): void {
    this.db.close();
  }

  private row(namespace: string, name: string): SecretRow | undefined {
    return this.db.prepare('SELECT * FROM secrets WHERE namespace = ? AND name = ?').get(namespace, name) as
      | SecretRow
      | undefined;
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
