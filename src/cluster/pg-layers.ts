/**
 * @module The cluster's shared dependency layers (issue 12): a layer one node built, stored in PostgreSQL
 * under its key as a gzipped tar split into 1 MiB bytea rows, so the other nodes fetch it instead of
 * building it again (and without reaching the package registries). Streamed both ways: a layer of
 * hundreds of MiB never sits in memory whole.
 *
 * A layer is written in one transaction (its `layers` row first, then its chunks, then its checksum), so no
 * node sees a half-stored layer; it is read in one REPEATABLE READ snapshot, so a collector deleting it
 * meanwhile cannot cut a fetch short; and its sha256 is checked before the fetching node renames it into
 * place. The advisory lock of `exclusive` lets one node build a key while the others wait: it is a
 * session lock, so a node that dies mid-build releases it with its connection.
 */

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import * as tar from 'tar';
import type { SharedLayers } from '../control/build/index.js';

/** Rows of this size: small enough to stream, large enough that a 500 MiB layer is 500 statements. */
const CHUNK_BYTES = 1024 * 1024;
/** First key of the two-key advisory locks on layer keys ("LAYR"), apart from the migration lock's one-key form. */
export const LOCK_CLASS = 0x4c415952;
const POOL_SIZE = 4;

/** The tables (a pg-store migration): a layer's row is written before its chunks, in the same transaction. */
export const LAYER_TABLES = `
CREATE TABLE layers (
  key TEXT PRIMARY KEY, namespace TEXT NOT NULL, node TEXT NOT NULL, chunks INTEGER NOT NULL DEFAULT 0,
  archive_bytes BIGINT NOT NULL DEFAULT 0, sha256 TEXT NOT NULL DEFAULT '',
  stored_at TIMESTAMPTZ NOT NULL DEFAULT now(), used_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE layer_chunks (
  key TEXT NOT NULL REFERENCES layers (key) ON DELETE CASCADE, seq INTEGER NOT NULL, data BYTEA NOT NULL,
  PRIMARY KEY (key, seq));
`;

export interface PgLayersOptions {
  readonly url: string;
  /** The node storing layers (recorded with each, for operators). */
  readonly nodeId: string;
  readonly warn: (message: string) => void;
}

export class PgLayers implements SharedLayers {
  private readonly pool: pg.Pool;

  constructor(private readonly options: PgLayersOptions) {
    this.pool = new pg.Pool({ connectionString: options.url, max: POOL_SIZE });
    this.pool.on('error', (error) => options.warn(`layers: PostgreSQL connection lost: ${error.message}`));
  }

  async fetch(key: string, dir: string): Promise<{ readonly archiveBytes: number } | undefined> {
    const client = await this.pool.connect();
    let failed = false;
    let found = false;
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const { rows } = await client.query<{ chunks: number; archive_bytes: string; sha256: string }>(
        'SELECT chunks, archive_bytes, sha256 FROM layers WHERE key = $1',
        [key],
      );
      const layer = rows[0];
      if (layer === undefined) return undefined;
      found = true;
      await mkdir(dir, { recursive: true, mode: 0o755 });
      const hash = createHash('sha256');
      let received = 0;
      const count = layer.chunks;
      const read = (seq: number): Promise<Buffer> => {
        const row = client
          .query<{ data: Buffer }>('SELECT data FROM layer_chunks WHERE key = $1 AND seq = $2', [key, seq])
          .then((answer) => {
            const data = answer.rows[0]?.data;
            if (data === undefined) throw new Error(`dependency layer ${key}: chunk ${seq} is missing`);
            return data;
          });
        // Awaited in turn below; a read left behind by a failed unpack must not be an unhandled rejection.
        row.catch(() => undefined);
        return row;
      };
      async function* chunks(): AsyncGenerator<Buffer> {
        // The next row is on its way while tar unpacks this one.
        let next = count > 0 ? read(0) : undefined;
        for (let seq = 0; seq < count; seq += 1) {
          const data = await (next as Promise<Buffer>);
          next = seq + 1 < count ? read(seq + 1) : undefined;
          hash.update(data);
          received += data.length;
          yield data;
        }
      }
      await untar(Readable.from(chunks()), dir, key);
      const digest = hash.digest('hex');
      if (digest !== layer.sha256 || received !== Number(layer.archive_bytes))
        throw new Error(
          `dependency layer ${key}: the stored copy does not match its checksum (sha256 ${digest.slice(0, 12)}, expected ${layer.sha256.slice(0, 12)})`,
        );
      return { archiveBytes: received };
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      await client.query(failed ? 'ROLLBACK' : 'COMMIT').catch(() => undefined);
      // A connection that failed mid-layer is not handed out again (its state is unknown).
      client.release(failed);
      // Fetched: its grace period against the collector runs from now, as a reuse's does.
      if (found && !failed) await this.touch(key).catch(() => undefined);
    }
  }

  async publish(
    key: string,
    namespace: string,
    dir: string,
  ): Promise<{ readonly archiveBytes: number } | undefined> {
    const client = await this.pool.connect();
    let failed = false;
    try {
      await client.query('BEGIN');
      // Another node storing the same key at once: this insert waits for its transaction, then does nothing.
      const claimed = await client.query(
        'INSERT INTO layers (key, namespace, node) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING RETURNING key',
        [key, namespace, this.options.nodeId],
      );
      if (claimed.rowCount === 0) {
        await client.query('ROLLBACK');
        return undefined;
      }
      const hash = createHash('sha256');
      let seq = 0;
      let archiveBytes = 0;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let inflight: Promise<unknown> | undefined;
      const flush = async (): Promise<void> => {
        if (pendingBytes === 0) return;
        const data = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        // One row in flight while the next is packed, so packing and PostgreSQL overlap; a failed insert
        // is thrown at the next flush (or the last).
        await inflight;
        inflight = client.query('INSERT INTO layer_chunks (key, seq, data) VALUES ($1, $2, $3)', [
          key,
          seq,
          data,
        ]);
        inflight.catch(() => undefined);
        seq += 1;
      };
      // portable: no uids or gids, and modes 0644/0755, which `untar` keeps. gzip level 1: a 160 MiB numpy +
      // pandas layer packed in 6 s instead of 10 s (level 6) for 13% more bytes (bench/layers.mjs).
      for await (const chunk of tar.c({ cwd: dir, gzip: { level: 1 }, portable: true }, ['.'])) {
        hash.update(chunk);
        archiveBytes += chunk.length;
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= CHUNK_BYTES) await flush();
      }
      await flush();
      await inflight;
      await client.query('UPDATE layers SET chunks = $2, archive_bytes = $3, sha256 = $4 WHERE key = $1', [
        key,
        seq,
        archiveBytes,
        hash.digest('hex'),
      ]);
      await client.query('COMMIT');
      return { archiveBytes };
    } catch (error) {
      failed = true;
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release(failed);
    }
  }

  async exclusive<T>(key: string, waitMs: number, work: () => Promise<T>): Promise<T> {
    // A connection of its own: the lock lives as long as it, and a pool must not hand it to another job.
    const client = new pg.Client({ connectionString: this.options.url, lock_timeout: waitMs });
    client.on('error', () => undefined);
    await client.connect();
    let held = false;
    try {
      try {
        await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [LOCK_CLASS, key]);
        held = true;
      } catch (error) {
        // 55P03 lock_not_available: the builder holding it has taken longer than a build may.
        if ((error as { code?: string }).code !== '55P03') throw error;
        this.options.warn(
          `layers: waited ${(waitMs / 1000).toFixed(1)} s for another node building ${key}; building it here too`,
        );
      }
      return await work();
    } finally {
      if (held)
        await client
          .query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_CLASS, key])
          .catch(() => undefined);
      await client.end().catch(() => undefined);
    }
  }

  async touch(key: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('UPDATE layers SET used_at = now() WHERE key = $1', [key]);
    return (rowCount ?? 0) > 0;
  }

  async list(): Promise<{ key: string; usedAt: number; archiveBytes: number }[]> {
    const { rows } = await this.pool.query<{ key: string; used_ms: number; archive_bytes: string }>(
      'SELECT key, (EXTRACT(EPOCH FROM used_at) * 1000)::float8 AS used_ms, archive_bytes FROM layers',
    );
    return rows.map((row) => ({
      key: row.key,
      usedAt: Number(row.used_ms),
      archiveBytes: Number(row.archive_bytes),
    }));
  }

  async remove(key: string, unusedSince: number): Promise<number | undefined> {
    // One statement decides: a version committed meanwhile that names the layer keeps it.
    const { rows } = await this.pool.query<{ archive_bytes: string }>(
      `DELETE FROM layers WHERE key = $1 AND used_at < to_timestamp($2 / 1000.0)
         AND NOT EXISTS (SELECT 1 FROM versions WHERE deps_key = $1)
       RETURNING archive_bytes`,
      [key, unusedSince],
    );
    return rows[0] === undefined ? undefined : Number(rows[0].archive_bytes);
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}

/**
 * Unpacks a gzipped tar streamed in into `dir` with GNU tar, not node-tar: the numpy + pandas layer (6,280
 * files) took node-tar 5.1-5.6 s and GNU tar 1.5 s on this machine, and this is the time a node takes to
 * serve a version another node built. GNU tar refuses members naming `..`, drops a leading `/`, and
 * defers links that point outside; the archive is one `PgLayers.publish` packed from a directory walk (no
 * member written through a link), checked against its sha256 once unpacked. Owners are not kept (the
 * files are this node's user's); modes are (`-p`: 0644/0755, as packed), whatever the process umask.
 */
async function untar(archive: Readable, dir: string, key: string): Promise<void> {
  const child = spawn('tar', ['-x', '-z', '-p', '--no-same-owner', '-f', '-', '-C', dir], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (data: Buffer) => {
    stderr = (stderr + data.toString()).slice(-2000);
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  let fed: unknown;
  try {
    await pipeline(archive, child.stdin);
  } catch (error) {
    fed = error;
    child.kill('SIGKILL');
  }
  const code = await exited;
  if (code === 0 && fed === undefined) return;
  // tar's own complaint says more than the broken pipe it left behind.
  const reason = stderr.trim() !== '' ? stderr.trim().split('\n').slice(-2).join('; ') : String(fed);
  throw new Error(`dependency layer ${key}: unpacking failed (tar exit ${code}): ${reason}`);
}
