/**
 * @module The audit log (issue 13): an append-only SQLite file (`audit.db`) whose records are chained
 * with SM3 — each record's hash covers the previous record's hash and its own canonical JSON, sequence
 * number included — with an Ed25519-signed checkpoint every `checkpointEvery` records (and on a clean
 * stop). `verify` walks the chain and names the first record that was edited, removed or moved.
 */

import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify as verifySignature,
} from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Actor } from './actor.js';

export type AuditOutcome = 'success' | 'failure' | 'refused';

/** What a caller appends. */
export interface AuditEntry {
  /** `PUT /api/v1/namespaces/:namespace/secrets/:name`, `invoke`, `login`… */
  readonly action: string;
  /** The concrete resource: the request path, or `namespace/function`. */
  readonly target: string;
  readonly outcome: AuditOutcome;
  /** The HTTP status answered, when there was one. */
  readonly status?: number;
  readonly actor: Actor;
  /** Non-secret particulars: an error code, a package signer, a payload's SM3, a duration. */
  readonly detail?: Readonly<Record<string, string | number | boolean | null>>;
}

/** A stored record: the entry, when, its place in the chain. */
export interface AuditRecord extends AuditEntry {
  readonly seq: number;
  readonly time: string;
  readonly prevHash: string;
  readonly hash: string;
}

export interface AuditCheckpoint {
  readonly seq: number;
  readonly hash: string;
  readonly time: string;
  /** Ed25519 signature (base64) of `hearth-audit-checkpoint\n<seq>\n<hash>\n<time>`. */
  readonly signature: string;
}

export interface VerifyResult {
  readonly ok: boolean;
  readonly records: number;
  readonly checkpoints: number;
  /** The first record (or checkpoint) that does not hold, and why. */
  readonly firstBad?: { readonly seq: number; readonly reason: string };
}

const GENESIS = '0'.repeat(64);
/** Invocation records are written together at most this often, or once this many are waiting. */
const INVOCATION_FLUSH_MS = 50;
const INVOCATION_BATCH = 2000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  body TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  seq INTEGER PRIMARY KEY,
  hash TEXT NOT NULL,
  time TEXT NOT NULL,
  signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_cursors (
  sink TEXT PRIMARY KEY,
  seq INTEGER NOT NULL
);`;

interface Row {
  seq: number;
  body: string;
  prev_hash: string;
  hash: string;
}

export interface AuditLogOptions {
  readonly file: string;
  /** PEM of the platform's Ed25519 key; created 0600 when absent. */
  readonly signingKeyFile: string;
  readonly checkpointEvery: number;
}

export class AuditLog {
  private readonly db: Database.Database;
  private readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  private readonly checkpointEvery: number;
  private head: { seq: number; hash: string };
  private readonly listeners = new Set<() => void>();
  private readonly insert: Database.Statement;
  /** Invocation records waiting for the end of the event-loop turn, to share one transaction. */
  private pending: AuditEntry[] = [];
  private flushScheduled = false;

  constructor(options: AuditLogOptions) {
    this.db = new Database(options.file);
    this.db.pragma('journal_mode = WAL');
    // FULL: a record (and a sink's cursor) is on disk when append returns, so a crash loses nothing.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare('INSERT INTO audit (seq, body, prev_hash, hash) VALUES (?, ?, ?, ?)');
    if (!existsSync(options.signingKeyFile)) {
      const { privateKey } = generateKeyPairSync('ed25519');
      writeFileSync(options.signingKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), {
        mode: 0o600,
        flag: 'wx',
      });
    }
    this.privateKey = createPrivateKey(readFileSync(options.signingKeyFile));
    this.publicKey = createPublicKey(this.privateKey);
    this.checkpointEvery = options.checkpointEvery;
    const last = this.db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as
      | Pick<Row, 'seq' | 'hash'>
      | undefined;
    this.head = last === undefined ? { seq: 0, hash: GENESIS } : { seq: last.seq, hash: last.hash };
  }

  /** The platform's public key (PEM), for checking checkpoints anywhere. */
  publicKeyPem(): string {
    return this.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  /** Appends one record, durably, before returning it. */
  append(entry: AuditEntry): AuditRecord {
    this.flushPending();
    const record = this.db.transaction(() => this.write(entry))();
    this.notify();
    return record;
  }

  /**
   * Appends a record within INVOCATION_FLUSH_MS, in one transaction (one fsync) with the others of that
   * window, or at once past INVOCATION_BATCH: for invocations (`audit.invocations`), which must not cost
   * an fsync each. A crash can lose the last window's invocation records; control-plane records use
   * `append`, which is on disk before the answer.
   */
  appendSoon(entry: AuditEntry): void {
    this.pending.push(entry);
    if (this.pending.length >= INVOCATION_BATCH) {
      this.flushPending();
      this.notify();
      return;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setTimeout(() => {
      this.flushPending();
      this.notify();
    }, INVOCATION_FLUSH_MS).unref();
  }

  /** Records with seq > after, oldest first. */
  list(after: number, limit: number): AuditRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?')
      .all(after, limit) as Row[];
    return rows.map(recordOf);
  }

  /** The newest records, newest last. */
  tail(limit: number): AuditRecord[] {
    const rows = this.db.prepare('SELECT * FROM audit ORDER BY seq DESC LIMIT ?').all(limit) as Row[];
    return rows.reverse().map(recordOf);
  }

  get lastSeq(): number {
    return this.head.seq;
  }

  /** Writes a signed checkpoint of the head now (on a clean stop, and every checkpointEvery records). */
  checkpoint(): AuditCheckpoint | undefined {
    this.flushPending();
    if (this.head.seq === 0) return undefined;
    const existing = this.db.prepare('SELECT * FROM audit_checkpoints WHERE seq = ?').get(this.head.seq) as
      | AuditCheckpoint
      | undefined;
    if (existing !== undefined) return existing;
    const time = new Date().toISOString();
    const signature = sign(
      null,
      checkpointMessage(this.head.seq, this.head.hash, time),
      this.privateKey,
    ).toString('base64');
    const checkpoint = { seq: this.head.seq, hash: this.head.hash, time, signature };
    this.db
      .prepare('INSERT INTO audit_checkpoints (seq, hash, time, signature) VALUES (?, ?, ?, ?)')
      .run(checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.signature);
    return checkpoint;
  }

  /**
   * Walks every record: its seq follows the previous one, its prev hash is the previous record's hash,
   * its hash is SM3(prev hash ‖ body), the body's own seq is its place; then every checkpoint is signed
   * by the platform key and matches the record it names. The first failure is reported.
   */
  verify(): VerifyResult {
    this.flushPending();
    let expectedSeq = 1;
    let previous = GENESIS;
    let records = 0;
    const hashes = new Map<number, string>();
    for (const row of this.db
      .prepare('SELECT * FROM audit ORDER BY seq')
      .iterate() as IterableIterator<Row>) {
      const bad = (reason: string): VerifyResult => ({
        ok: false,
        records,
        checkpoints: 0,
        firstBad: { seq: row.seq, reason },
      });
      if (row.seq !== expectedSeq)
        return {
          ok: false,
          records,
          checkpoints: 0,
          firstBad: {
            seq: expectedSeq,
            reason: `record ${expectedSeq}${row.seq > expectedSeq + 1 ? `-${row.seq - 1}` : ''} is missing (removed)`,
          },
        };
      if (row.prev_hash !== previous) return bad('its previous-hash does not match the record before it');
      if (hashOf(previous, row.body) !== row.hash)
        return bad('its content does not match its SM3 hash (edited)');
      let bodySeq: unknown;
      try {
        bodySeq = (JSON.parse(row.body) as { seq?: unknown }).seq;
      } catch {
        return bad('its content is not valid JSON (edited)');
      }
      if (bodySeq !== row.seq) return bad(`it holds record ${String(bodySeq)} (moved)`);
      hashes.set(row.seq, row.hash);
      previous = row.hash;
      expectedSeq++;
      records++;
    }
    const checkpoints = this.db
      .prepare('SELECT * FROM audit_checkpoints ORDER BY seq')
      .all() as AuditCheckpoint[];
    for (const checkpoint of checkpoints) {
      const bad = (reason: string): VerifyResult => ({
        ok: false,
        records,
        checkpoints: checkpoints.length,
        firstBad: { seq: checkpoint.seq, reason },
      });
      const signed = verifySignature(
        null,
        checkpointMessage(checkpoint.seq, checkpoint.hash, checkpoint.time),
        this.publicKey,
        Buffer.from(checkpoint.signature, 'base64'),
      );
      if (!signed)
        return bad(`the checkpoint at record ${checkpoint.seq} is not signed by this platform's key`);
      const hash = hashes.get(checkpoint.seq);
      if (hash === undefined)
        return bad(`a signed checkpoint names record ${checkpoint.seq}, which is missing (removed)`);
      if (hash !== checkpoint.hash)
        return bad(`the chain up to record ${checkpoint.seq} differs from its signed checkpoint (rewritten)`);
    }
    return { ok: true, records, checkpoints: checkpoints.length };
  }

  /** A sink's durable cursor: the last seq it delivered. */
  cursor(sink: string): number {
    const row = this.db.prepare('SELECT seq FROM audit_cursors WHERE sink = ?').get(sink) as
      | { seq: number }
      | undefined;
    return row?.seq ?? 0;
  }

  setCursor(sink: string, seq: number): void {
    this.db
      .prepare(
        'INSERT INTO audit_cursors (sink, seq) VALUES (?, ?) ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq',
      )
      .run(sink, seq);
  }

  /** Called after records are appended (sinks wake up). */
  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.checkpoint();
    this.db.close();
  }

  private flushPending(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const entries = this.pending;
    this.pending = [];
    this.db.transaction(() => {
      for (const entry of entries) this.write(entry);
    })();
  }

  private write(entry: AuditEntry): AuditRecord {
    const seq = this.head.seq + 1;
    const time = new Date().toISOString();
    const body = canonicalBody(seq, time, entry);
    const hash = hashOf(this.head.hash, body);
    this.insert.run(seq, body, this.head.hash, hash);
    const record: AuditRecord = { ...entry, seq, time, prevHash: this.head.hash, hash };
    this.head = { seq, hash };
    if (seq % this.checkpointEvery === 0) this.checkpoint();
    return record;
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}

/** The record's JSON with its fields in one fixed order, so the hash is reproducible anywhere. */
function canonicalBody(seq: number, time: string, entry: AuditEntry): string {
  const detail =
    entry.detail === undefined
      ? null
      : Object.fromEntries(
          Object.keys(entry.detail)
            .sort()
            .map((key) => [key, entry.detail?.[key] ?? null]),
        );
  return JSON.stringify({
    seq,
    time,
    actor:
      entry.actor.key === undefined
        ? { remote: entry.actor.remote }
        : { key: entry.actor.key, remote: entry.actor.remote },
    action: entry.action,
    target: entry.target,
    outcome: entry.outcome,
    status: entry.status ?? null,
    detail,
  });
}

function hashOf(previous: string, body: string): string {
  return createHash('sm3').update(previous).update('\n').update(body).digest('hex');
}

function checkpointMessage(seq: number, hash: string, time: string): Buffer {
  return Buffer.from(`hearth-audit-checkpoint\n${seq}\n${hash}\n${time}`);
}

function recordOf(row: Row): AuditRecord {
  const body = JSON.parse(row.body) as {
    time: string;
    actor: Actor;
    action: string;
    target: string;
    outcome: AuditOutcome;
    status: number | null;
    detail: Record<string, string | number | boolean | null> | null;
  };
  return {
    seq: row.seq,
    time: body.time,
    actor: body.actor,
    action: body.action,
    target: body.target,
    outcome: body.outcome,
    ...(body.status === null ? {} : { status: body.status }),
    ...(body.detail === null ? {} : { detail: body.detail }),
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
