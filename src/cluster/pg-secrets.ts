/**
 * @module The cluster's secrets (issue 13 in cluster mode, table `secrets`, migration 9) with a copy of the
 * sealed rows on every node. An instance start opens the secrets its function names from that copy: the
 * Store's client (`SyncPostgres`) blocks the gateway thread for a whole round trip, which the cold path
 * must not pay.
 *
 * The copy is filled at start, and kept true as the cluster's other state is: a write on this node
 * re-reads its rows once its transaction ends (commit or rollback) and is announced on NATS
 * (`StoreChange` kind `secret`); a node told of one re-reads that row on its own asynchronous connection
 * and says so, and the writing node's API answers once every live node has (`Cluster.awaitSecretsSeen`).
 * So a secret changed on any node is what the next instance any node starts gets. A missed notice is
 * caught by the periodic resync (`reload`), and a row the copy lacks is read through (a secret set
 * elsewhere a moment ago, or a missing one: an error path).
 *
 * Only sealed bytes are kept: values are opened at bind, as in the embedded mode.
 */

import pg from 'pg';
import {
  SECRET_INSERT_COLUMNS,
  type SecretRow,
  type SecretTable,
  secretInsertValues,
} from '../compliance/index.js';
import type { SyncPostgres } from './pg-sync.js';

export interface ClusterSecretsOptions {
  readonly url: string;
  /** The store's connection: writes, and reads that must see this node's open transaction. */
  readonly db: SyncPostgres;
  /** The store's transaction (savepoints when nested). */
  readonly transaction: <T>(work: () => T) => T;
  /** Whether no transaction of the store is open. */
  readonly atRest: () => boolean;
  /** A row written here, for the other nodes (the store tells them once the transaction commits). */
  readonly changed: (namespace: string, name: string) => void;
  readonly warn?: (message: string) => void;
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function toRow(found: Record<string, unknown>): SecretRow {
  const sealed = found.sealed as Uint8Array;
  return {
    ...(found as unknown as SecretRow),
    sealed: Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength),
  };
}

export class ClusterSecrets {
  /** `namespace/name` → the sealed row, as PostgreSQL last said. */
  private readonly rows = new Map<string, SecretRow>();
  /** Rows written in the store's open transaction: read through it until it ends, then re-read. */
  private readonly dirty = new Map<string, { readonly namespace: string; readonly name: string }>();
  /**
   * How many times this node re-read a row after its own write. An asynchronous read begun before such a
   * write may answer after it with the older row: it is dropped when the count moved meanwhile.
   */
  private readonly writes = new Map<string, number>();
  /** One connection, so notices' re-reads land in the order they were asked. */
  private reader: Promise<pg.Client> | undefined;
  private closed = false;

  constructor(private readonly options: ClusterSecretsOptions) {}

  /** Fills the copy (at start, before the node serves anything). */
  load(): void {
    this.rows.clear();
    for (const found of this.options.db.query<Record<string, unknown>>('SELECT * FROM secrets')) {
      const row = toRow(found);
      this.rows.set(keyOf(row.namespace, row.name), row);
    }
  }

  /** The `SecretTable` the node's `SecretStore` uses. */
  table(): SecretTable {
    const { db } = this.options;
    return {
      get: (namespace, name) => this.get(namespace, name),
      // Listings are the API's and the control path's, never an instance start's: PostgreSQL itself.
      list: (namespace) =>
        (namespace === undefined
          ? db.query<Record<string, unknown>>('SELECT * FROM secrets ORDER BY namespace, name')
          : db.query<Record<string, unknown>>('SELECT * FROM secrets WHERE namespace = $1 ORDER BY name', [
              namespace,
            ])
        ).map(toRow),
      upsert: (row) => {
        db.query(
          `INSERT INTO secrets (${SECRET_INSERT_COLUMNS})
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (namespace, name) DO UPDATE SET keys = EXCLUDED.keys, algorithm = EXCLUDED.algorithm,
             key_id = EXCLUDED.key_id, sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at`,
          secretInsertValues(row),
        );
        this.wrote(row.namespace, row.name);
      },
      restore: (row) => {
        db.query(
          `UPDATE secrets SET keys = $1, algorithm = $2, key_id = $3, sealed = $4, updated_at = $5
           WHERE namespace = $6 AND name = $7`,
          [row.keys, row.algorithm, row.key_id, row.sealed, row.updated_at, row.namespace, row.name],
        );
        this.wrote(row.namespace, row.name);
      },
      delete: (namespace, name) => {
        const removed =
          db.query('DELETE FROM secrets WHERE namespace = $1 AND name = $2 RETURNING name', [namespace, name])
            .length > 0;
        if (removed) this.wrote(namespace, name);
        return removed;
      },
      transaction: (work) => this.options.transaction(work),
      // The store is closed by the platform, last.
      close: () => undefined,
    };
  }

  /** A row as an instance start asks for it: from the copy, unless it is being written here. */
  private get(namespace: string, name: string): SecretRow | undefined {
    const key = keyOf(namespace, name);
    const kept = this.dirty.has(key) ? undefined : this.rows.get(key);
    if (kept !== undefined) return kept;
    // Written in the open transaction, or not in the copy: PostgreSQL answers (an error path, or a notice
    // still on its way; neither is the warm or the usual cold path).
    const [found] = this.options.db.query<Record<string, unknown>>(
      'SELECT * FROM secrets WHERE namespace = $1 AND name = $2',
      [namespace, name],
    );
    const row = found === undefined ? undefined : toRow(found);
    if (row !== undefined && !this.dirty.has(key)) this.rows.set(key, row);
    return row;
  }

  private wrote(namespace: string, name: string): void {
    this.dirty.set(keyOf(namespace, name), { namespace, name });
    // Outside a transaction the copy is settled before the notice goes out (inside one, the store does both
    // at its end, in that order).
    if (this.options.atRest()) this.settle();
    this.options.changed(namespace, name);
  }

  /**
   * The store's transaction ended (committed or rolled back): the rows written in it are re-read, so the
   * copy holds what PostgreSQL holds. Called by the store, and after a write outside a transaction.
   */
  settle(): void {
    if (this.dirty.size === 0) return;
    const written = [...this.dirty];
    this.dirty.clear();
    for (const [key, { namespace, name }] of written) {
      const [found] = this.options.db.query<Record<string, unknown>>(
        'SELECT * FROM secrets WHERE namespace = $1 AND name = $2',
        [namespace, name],
      );
      if (found === undefined) this.rows.delete(key);
      else this.rows.set(key, toRow(found));
      this.writes.set(key, (this.writes.get(key) ?? 0) + 1);
    }
  }

  /** Re-reads one row another node changed, off the gateway thread's blocking client. */
  async refresh(namespace: string, name: string): Promise<void> {
    const key = keyOf(namespace, name);
    const before = this.writes.get(key) ?? 0;
    const client = await this.connection();
    const { rows } = await client.query('SELECT * FROM secrets WHERE namespace = $1 AND name = $2', [
      namespace,
      name,
    ]);
    if ((this.writes.get(key) ?? 0) !== before || this.dirty.has(key)) return;
    const found = rows[0] as Record<string, unknown> | undefined;
    if (found === undefined) this.rows.delete(key);
    else this.rows.set(key, toRow(found));
  }

  /** Re-reads every row (the periodic resync: a notice may have been missed while NATS was away). */
  async reload(): Promise<void> {
    const before = new Map(this.writes);
    const client = await this.connection();
    const { rows } = await client.query('SELECT * FROM secrets');
    const unchanged = (key: string): boolean =>
      (this.writes.get(key) ?? 0) === (before.get(key) ?? 0) && !this.dirty.has(key);
    const fresh = new Map<string, SecretRow>();
    for (const found of rows as Record<string, unknown>[]) {
      const row = toRow(found);
      fresh.set(keyOf(row.namespace, row.name), row);
    }
    for (const key of this.rows.keys()) if (!fresh.has(key) && unchanged(key)) this.rows.delete(key);
    for (const [key, row] of fresh) if (unchanged(key)) this.rows.set(key, row);
  }

  async close(): Promise<void> {
    this.closed = true;
    const reader = this.reader;
    this.reader = undefined;
    await reader?.then((client) => client.end()).catch(() => undefined);
  }

  private connection(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(new Error('the secrets copy is closed'));
    if (this.reader === undefined) {
      const client = new pg.Client({ connectionString: this.options.url });
      const connecting = client.connect().then(() => client);
      // A lost connection is made anew at the next read; the resync catches up what it missed.
      client.on('error', (error) => {
        this.options.warn?.(`cluster: the secrets connection to PostgreSQL failed: ${error.message}`);
        if (this.reader === connecting) this.reader = undefined;
      });
      connecting.catch(() => {
        if (this.reader === connecting) this.reader = undefined;
      });
      this.reader = connecting;
    }
    return this.reader;
  }
}
