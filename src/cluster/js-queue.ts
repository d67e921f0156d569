/**
 * @module The durable queue in cluster mode (issue 12): the `Queue` contract on NATS JetStream, with each
 * message's record (request, state, attempts, result, callback) in PostgreSQL so status, listing and
 * redrive work from any node.
 *
 * - Delivery: a work-queue stream (`HEARTH_WORK`) and one durable pull consumer (`hearth-workers`) shared
 *   by every node, so whichever node has room runs the next message. An accept is answered only once the
 *   record is committed and JetStream has acknowledged the publish (both are durable before the 202).
 * - At-least-once: a message is acked after its delivery settled; while it runs the node keeps telling
 *   JetStream it is still working on it (every third of the ack wait), so a node killed mid-work stops
 *   doing so and the message is redelivered to another node after the ack wait. A retry is a nak with
 *   the backoff as its delay. A redelivery whose record already settled (the node died between the
 *   record and the ack) is acked and not run again.
 * - Max deliveries: the record counts deliveries; once they are spent (failures, or nodes dying under it)
 *   the message is dead-lettered: record `dead`, a copy published to the `HEARTH_DEAD` stream (subject
 *   `hearth.dead.<id>`, purged on redrive), the work message acked. The DLQ API and CLI list the records.
 *
 * The embedded mode never loads this module.
 */

import { randomUUID } from 'node:crypto';
import {
  AckPolicy,
  type Consumer,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { connect, type NatsConnection, nanos } from '@nats-io/transport-node';
import pg from 'pg';
import type { FunctionRef } from '../domain/function.js';
import {
  type CallbackState,
  type ListFilter,
  type MessageError,
  type MessageRow,
  type MessageState,
  messageFromRow,
  type NewMessage,
  type Queue,
  type QueueMessage,
  type QueueStats,
  type StoredResult,
} from '../queue/index.js';

const WORK_STREAM = 'HEARTH_WORK';
const WORK_SUBJECT = 'hearth.work.async';
const DEAD_STREAM = 'HEARTH_DEAD';
const DEAD_PREFIX = 'hearth.dead';
const WORKERS = 'hearth-workers';
/** How long one pull waits for messages before the next one is made. */
const PULL_EXPIRES_MS = 5_000;
/** A message due this soon is run now rather than put back. */
const DUE_SLACK_MS = 20;
/** Accepts stored by one INSERT at most (24 parameters each: well under PostgreSQL's 65535). */
const INSERT_BATCH = 500;
/** PostgreSQL connections per node for the records (accepts, leases and completions run in parallel). */
const POOL_SIZE = 10;
/** A message for a function this node does not serve yet is offered to the others for this long. */
const ELSEWHERE_DELAY_MS = 500;
/** Counts for `stats()` are shared this long: the worker asks after every pump. */
const STATS_TTL_MS = 1_000;
/** A queued record not in the work stream this long after its accept is published by the sweeper. */
const REPUBLISH_AFTER_MS = 5_000;
/** Records the sweeper publishes per round. */
const SWEEP_BATCH = 500;
/** Pulled messages a lease could not record (PostgreSQL failed) come back after this. */
const LEASE_FAILED_DELAY_MS = 1_000;

export interface JetStreamQueueOptions {
  readonly natsUrl: string;
  readonly postgresUrl: string;
  /** This node, recorded on the messages it runs. */
  readonly nodeId: string;
  /** Unacknowledged for this long, a delivery is given to another node (its node stopped working on it). */
  readonly ackWaitMs: number;
  /** Messages this node holds at once (pulled and running): the worker's concurrency. */
  readonly concurrency: number;
  readonly warn: (message: string) => void;
  /**
   * A queued record still unpublished this long after its accept (its node died between the INSERT and
   * the publish) is published by any node's sweeper. Default 5 s; tests shorten it.
   */
  readonly republishAfterMs?: number;
}

/** The records' table: migration 4 of the cluster store creates it. */
export const QUEUE_TABLES = `
CREATE TABLE queue_messages (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  namespace TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL,
  method TEXT NOT NULL, path TEXT NOT NULL, raw_query TEXT NOT NULL, headers TEXT NOT NULL, body BYTEA NOT NULL,
  event TEXT, priority INTEGER, auth TEXT,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
  backoff_ms INTEGER NOT NULL, max_backoff_ms INTEGER NOT NULL,
  accepted_at BIGINT NOT NULL, available_at BIGINT NOT NULL, started_at BIGINT, finished_at BIGINT, node TEXT,
  error_code TEXT, error_message TEXT,
  result_status INTEGER, result_headers TEXT, result_body BYTEA,
  callback_url TEXT, callback_state TEXT, callback_attempts INTEGER NOT NULL DEFAULT 0, callback_error TEXT,
  callback_at BIGINT,
  dedupe_key TEXT UNIQUE
);
CREATE INDEX queue_messages_state ON queue_messages (state, finished_at);
CREATE INDEX queue_messages_by_function ON queue_messages (namespace, name, seq);
CREATE INDEX queue_messages_callbacks ON queue_messages (callback_state, callback_at);
`;

/**
 * Migration 6 of the cluster store: whether a record reached the work stream. Records from before count
 * as published; new ones start unpublished and are marked once JetStream acknowledged their publish.
 */
export const QUEUE_PUBLISHED = `
ALTER TABLE queue_messages ADD COLUMN published BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE queue_messages ALTER COLUMN published SET DEFAULT false;
CREATE INDEX queue_messages_unpublished ON queue_messages (seq) WHERE NOT published;
`;

/**
 * Migration 7: when the node running a record last said it still is (every third of the ack wait, with
 * its in-progress notices to JetStream). A second copy of the message is run only once this is older
 * than the ack wait: the node died, rather than a long run.
 */
export const QUEUE_ALIVE = `
ALTER TABLE queue_messages ADD COLUMN alive_at BIGINT;
`;

type Row = MessageRow<string> & { readonly published?: boolean; readonly alive_at?: string | null };

/** What travels on the work stream: the record's id, and its function (a node that does not serve it passes). */
interface WorkItem {
  readonly id: string;
  readonly ref: FunctionRef;
}

export class JetStreamQueue implements Queue {
  /** Pulled from the consumer, not yet leased by the worker. */
  private ready: JsMsg[] = [];
  /** Leased: running on this node, by message id. */
  private readonly held = new Map<string, JsMsg>();
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;
  private readonly abort = new AbortController();
  private wakeUp: () => void = () => undefined;
  /** Resolves the pull loop's wait for room. */
  private roomFreed: (() => void) | undefined;
  private pulling: Promise<void> | undefined;
  /** Whether a message for this function may run on this node (see `start`). */
  private runsHere: (ref: FunctionRef) => boolean = () => true;
  private readonly pendingInserts: {
    readonly values: readonly unknown[];
    readonly resolve: (row: Row | undefined) => void;
    readonly reject: (error: unknown) => void;
  }[] = [];
  private cachedStats: { at: number; stats: Promise<QueueStats> } | undefined;
  /** Published ids not yet marked so in their records (marked in one UPDATE per event-loop turn). */
  private toMark: string[] = [];
  private marking: Promise<void> = Promise.resolve();
  private readonly sweeper: NodeJS.Timeout;
  private sweeping = false;

  private constructor(
    private readonly options: JetStreamQueueOptions,
    private readonly nats: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly consumer: Consumer,
    private readonly db: pg.Pool,
  ) {
    // Every held message is marked in progress well within its ack wait, so only a dead node's expire.
    this.heartbeat = setInterval(
      () => {
        for (const msg of [...this.ready, ...this.held.values()]) msg.working();
        void this.markAlive();
      },
      Math.max(100, Math.floor(options.ackWaitMs / 3)),
    );
    this.heartbeat.unref();
    const republishAfterMs = options.republishAfterMs ?? REPUBLISH_AFTER_MS;
    this.sweeper = setInterval(
      () => void this.sweep(republishAfterMs),
      Math.max(100, Math.min(options.ackWaitMs, republishAfterMs)),
    );
    this.sweeper.unref();
  }

  /**
   * Starts taking work, once the node serves what the cluster has deployed (before that, a message for a
   * function it has not fetched yet would fail here). `runsHere` false for a message's function (deployed
   * but not switched to on this node yet) hands the message back for another node, without an attempt.
   */
  start(runsHere: (ref: FunctionRef) => boolean): void {
    this.runsHere = runsHere;
    this.pulling ??= this.pull();
  }

  /** Connects, and creates the streams and the shared consumer when they are missing (any node may). */
  static async open(options: JetStreamQueueOptions): Promise<JetStreamQueue> {
    const nats = await connect({
      servers: options.natsUrl,
      name: `hearth queue ${options.nodeId}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
    try {
      const manager = await jetstreamManager(nats);
      await ensureStream(manager, {
        name: WORK_STREAM,
        subjects: [`${WORK_SUBJECT}`],
        retention: RetentionPolicy.Workqueue,
      });
      await ensureStream(manager, {
        name: DEAD_STREAM,
        subjects: [`${DEAD_PREFIX}.>`],
        retention: RetentionPolicy.Limits,
      });
      const consumerConfig = {
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(options.ackWaitMs),
        // Deliveries are counted in the record, which dead-letters; JetStream itself never gives up.
        max_deliver: -1,
        max_ack_pending: -1,
      };
      const existing = await manager.consumers.info(WORK_STREAM, WORKERS).catch(() => undefined);
      if (existing === undefined)
        await manager.consumers
          .add(WORK_STREAM, { durable_name: WORKERS, deliver_policy: DeliverPolicy.All, ...consumerConfig })
          .catch(async (error: unknown) => {
            // Another node created it first.
            if ((await manager.consumers.info(WORK_STREAM, WORKERS).catch(() => undefined)) === undefined)
              throw error;
          });
      else if (existing.config.ack_wait !== consumerConfig.ack_wait)
        await manager.consumers.update(WORK_STREAM, WORKERS, consumerConfig);
      const js = jetstream(nats);
      const consumer = await js.consumers.get(WORK_STREAM, WORKERS);
      const db = new pg.Pool({ connectionString: options.postgresUrl, max: POOL_SIZE });
      db.on('error', (error) => options.warn(`queue: PostgreSQL connection lost: ${error.message}`));
      return new JetStreamQueue(options, nats, js, consumer, db);
    } catch (error) {
      await nats.close().catch(() => undefined);
      throw error;
    }
  }

  /** Called when pulled messages are waiting to be leased (the worker's `notify`). */
  onAvailable(wake: () => void): void {
    this.wakeUp = wake;
    if (this.ready.length > 0) wake();
  }

  async enqueue(message: NewMessage): Promise<QueueMessage> {
    const now = Date.now();
    const dead = message.deadLetter !== undefined;
    const values = [
      message.id ?? randomUUID(),
      message.ref.namespace,
      message.ref.name,
      message.source,
      message.request.method,
      message.request.path,
      message.request.rawQuery,
      JSON.stringify(message.request.headers),
      message.request.body,
      message.request.event === undefined ? null : JSON.stringify(message.request.event),
      message.request.priority ?? null,
      message.request.auth === undefined ? null : JSON.stringify(message.request.auth),
      dead ? 'dead' : 'queued',
      message.attempts ?? 0,
      message.maxAttempts,
      message.backoffMs,
      message.maxBackoffMs,
      now,
      message.availableAt ?? now,
      dead ? now : null,
      message.deadLetter?.code ?? null,
      message.deadLetter?.message ?? null,
      message.callbackUrl ?? null,
      message.dedupeKey ?? null,
    ];
    const row = await this.insert(values);
    if (row === undefined) {
      // Already queued under this dedupe key (or id): the one stored is the answer, published once.
      const existing = await this.db.query<Row>(
        'SELECT * FROM queue_messages WHERE dedupe_key = $1 OR id = $2 LIMIT 1',
        [message.dedupeKey ?? null, values[0]],
      );
      const found = existing.rows[0];
      if (found === undefined) throw new Error(`queue: message ${String(values[0])} was not stored`);
      // Stored by a node that died before publishing it: published now (the stream drops a duplicate of
      // the same id, should that node's publish or a sweeper's be on its way too).
      if (found.published === false && found.state === 'queued') {
        await this.publishWork(found.id, { namespace: found.namespace, name: found.name }, found.id);
        this.markPublished(found.id);
      }
      return toMessage(found);
    }
    try {
      if (dead) await this.publishDead(row);
      else await this.publishWork(row.id, message.ref, row.id);
    } catch (error) {
      // Not in the stream: not accepted, the caller hears the failure. A record only this call knows of
      // goes. One with a dedupe key or a caller's id stays, for the sweeper to publish: another accept may
      // have met it meanwhile (a cron time taken over once this node's lease ran out during a slow
      // publish) and answered with it, and deleting it would lose that accept.
      if (message.dedupeKey === undefined && message.id === undefined)
        await this.db.query('DELETE FROM queue_messages WHERE id = $1', [row.id]).catch(() => undefined);
      throw error;
    }
    // Not awaited: the accept is durable already; should the mark be lost, the sweeper's publish of the
    // same id is dropped by the stream (or, past its duplicate window, acked as settled on delivery).
    this.markPublished(row.id);
    return toMessage(row);
  }

  async lease(max: number, _leaseMs: number): Promise<QueueMessage[]> {
    if (max <= 0 || this.closed || this.ready.length === 0) return [];
    const taken = this.ready.splice(0, max);
    const byId = new Map<string, JsMsg>();
    for (const msg of taken) {
      const item = workItem(msg);
      if (item === undefined) msg.term('not a Hearth work item');
      else if (this.held.has(item.id)) {
        // Redelivered while still running here (its in-progress notices came late): the newer delivery
        // is the one JetStream will take an ack for; the run already under way settles it.
        this.held.set(item.id, msg);
      } else if (byId.has(item.id)) msg.ack();
      else if (!this.runsHere(item.ref)) msg.nak(ELSEWHERE_DELAY_MS);
      else byId.set(item.id, msg);
    }
    if (byId.size === 0) {
      this.freeRoom();
      return [];
    }
    const now = Date.now();
    for (const [id, msg] of byId) this.held.set(id, msg);
    let leased: pg.QueryResult<Row>;
    try {
      // The common case in one statement: due, not settled, deliveries left. A running record is taken
      // over only once its node has been silent for the ack wait: sooner, that node may still be on it
      // (this is a second copy of it in the stream, from a sweeper's or a redrive's publish), and two
      // would run.
      leased = await this.db.query<Row>(
        `UPDATE queue_messages SET state = 'running', attempts = attempts + 1, started_at = $2, node = $3,
           alive_at = $2
         WHERE id = ANY($1) AND available_at <= $4
           AND (state = 'queued' OR (state = 'running' AND attempts < max_attempts
                                     AND COALESCE(alive_at, started_at) < $5))
         RETURNING *`,
        [[...byId.keys()], now, this.options.nodeId, now + DUE_SLACK_MS, now - this.options.ackWaitMs],
      );
    } catch (error) {
      // Nothing leased: handed back to JetStream now. Kept in `held`, they would be marked in progress for
      // ever, never redelivered, and take this node's pull room.
      this.handBack(byId, LEASE_FAILED_DELAY_MS);
      this.freeRoom();
      throw error;
    }
    for (const row of leased.rows) byId.delete(row.id);
    if (byId.size > 0)
      try {
        await this.setAside(byId, now);
      } catch (error) {
        // The ones leased above run; the rest go back to JetStream, to be looked at again.
        this.handBack(byId, LEASE_FAILED_DELAY_MS);
        this.options.warn(`queue: could not look up pulled messages: ${(error as Error).message}`);
      }
    this.freeRoom();
    return leased.rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map(toMessage);
  }

  /** Tells the records of the messages running here that this node is still on them. */
  private async markAlive(): Promise<void> {
    if (this.held.size === 0 || this.closed) return;
    await this.db
      .query(
        `UPDATE queue_messages SET alive_at = $2 WHERE id = ANY($1) AND state = 'running' AND node = $3`,
        [[...this.held.keys()], Date.now(), this.options.nodeId],
      )
      .catch((error: Error) => this.options.warn(`queue: could not mark runs alive: ${error.message}`));
  }

  /** Naks the pulled messages still held for these ids (each the delivery it was pulled as). */
  private handBack(byId: ReadonlyMap<string, JsMsg>, delayMs: number): void {
    for (const [id, msg] of byId) {
      if (this.held.get(id) !== msg) continue;
      this.held.delete(id);
      msg.nak(delayMs);
    }
  }

  /** Pulled messages that are not to run now: settled, not due yet, or out of deliveries. */
  private async setAside(byId: ReadonlyMap<string, JsMsg>, now: number): Promise<void> {
    const { rows } = await this.db.query<Row>('SELECT * FROM queue_messages WHERE id = ANY($1)', [
      [...byId.keys()],
    ]);
    const found = new Map(rows.map((row) => [row.id, row]));
    for (const [id, msg] of byId) {
      const row = found.get(id);
      if (row === undefined || (row.state !== 'queued' && row.state !== 'running')) {
        // Settled already (its node died between the record and the ack), or purged: done with.
        this.held.delete(id);
        msg.ack();
      } else if (row.state === 'running' && lastAlive(row) + this.options.ackWaitMs > now) {
        // Running on a node heard from within the ack wait (this is a second copy in the stream): looked
        // at again once that node could have gone silent; settled by then, this copy is acked.
        this.held.delete(id);
        msg.nak(Math.max(DUE_SLACK_MS, lastAlive(row) + this.options.ackWaitMs - now));
      } else if (row.state === 'running' && row.attempts >= row.max_attempts) {
        // Every delivery died with its node: no more tries.
        await this.deadLetter(id, {
          code: 'HEARTH_E_NODE_LOST',
          message: `the node running it stopped before it finished, ${row.attempts} time(s)`,
        });
      } else {
        this.held.delete(id);
        msg.nak(Math.max(0, Number(row.available_at) - now));
      }
    }
  }

  async complete(
    id: string,
    state: 'succeeded' | 'failed',
    result: StoredResult | undefined,
    error?: MessageError,
  ): Promise<void> {
    const now = Date.now();
    await this.db.query(
      `UPDATE queue_messages SET state = $2, finished_at = $3, error_code = $4, error_message = $5,
         result_status = $6, result_headers = $7, result_body = $8,
         callback_state = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END, callback_at = $3
       WHERE id = $1 AND state = 'running'`,
      [
        id,
        state,
        now,
        error?.code ?? null,
        error?.message ?? null,
        result?.status ?? null,
        result === undefined ? null : JSON.stringify(result.headers),
        result?.body ?? null,
      ],
    );
    // A plain ack: should it be lost, the redelivery finds the record settled and acks again.
    await this.release(id, async (msg) => msg.ack());
  }

  async retry(id: string, error: MessageError, availableAt: number): Promise<void> {
    await this.db.query(
      `UPDATE queue_messages SET state = 'queued', available_at = $2, error_code = $3, error_message = $4
       WHERE id = $1 AND state = 'running'`,
      [id, availableAt, error.code, error.message],
    );
    // The backoff is JetStream's: the message comes back (to any node) once the delay has passed.
    await this.release(id, async (msg) => msg.nak(Math.max(0, availableAt - Date.now())));
  }

  async deadLetter(id: string, error: MessageError): Promise<void> {
    const { rows } = await this.db.query<Row>(
      `UPDATE queue_messages SET state = 'dead', finished_at = $2, error_code = $3, error_message = $4,
         callback_state = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END, callback_at = $2
       WHERE id = $1 AND state = 'running' RETURNING *`,
      [id, Date.now(), error.code, error.message],
    );
    const row = rows[0];
    if (row !== undefined) await this.publishDead(row);
    await this.release(id, async (msg) => msg.ack());
  }

  async get(id: string): Promise<QueueMessage | undefined> {
    const { rows } = await this.db.query<Row>('SELECT * FROM queue_messages WHERE id = $1', [id]);
    const row = rows[0];
    return row === undefined ? undefined : toMessage(row);
  }

  async list(filter: ListFilter): Promise<QueueMessage[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (value: unknown): string => {
      params.push(value);
      return `$${params.length}`;
    };
    if (filter.state !== undefined) where.push(`state = ${param(filter.state)}`);
    if (filter.ref !== undefined)
      where.push(`namespace = ${param(filter.ref.namespace)} AND name = ${param(filter.ref.name)}`);
    if (filter.source !== undefined) where.push(`source = ${param(filter.source)}`);
    if (filter.before !== undefined)
      where.push(`seq < (SELECT seq FROM queue_messages WHERE id = ${param(filter.before)})`);
    const limit = param(Math.max(1, Math.min(filter.limit ?? 100, 10_000)));
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM queue_messages${where.length === 0 ? '' : ` WHERE ${where.join(' AND ')}`} ORDER BY seq DESC LIMIT ${limit}`,
      params,
    );
    return rows.map(toMessage);
  }

  async redrive(
    target:
      | readonly string[]
      | { readonly ref?: { namespace: string; name: string }; readonly source?: string },
  ): Promise<number> {
    const where = ["state = 'dead'"];
    const params: unknown[] = [Date.now()];
    if (Array.isArray(target)) {
      if (target.length === 0) return 0;
      params.push(target);
      where.push(`id = ANY($${params.length})`);
    } else {
      const filter = target as { ref?: { namespace: string; name: string }; source?: string };
      if (filter.ref !== undefined) {
        params.push(filter.ref.namespace, filter.ref.name);
        where.push(`namespace = $${params.length - 1} AND name = $${params.length}`);
      }
      if (filter.source !== undefined) {
        params.push(filter.source);
        where.push(`source = $${params.length}`);
      }
    }
    const { rows } = await this.db.query<{ id: string; namespace: string; name: string }>(
      // Unpublished until each is back in the stream: a node that dies mid-loop leaves the rest to the sweeper.
      `UPDATE queue_messages SET state = 'queued', attempts = 0, available_at = $1, finished_at = NULL,
         callback_state = NULL, callback_attempts = 0, callback_error = NULL, published = false
       WHERE ${where.join(' AND ')} RETURNING id, namespace, name`,
      params,
    );
    const manager = await jetstreamManager(this.nats);
    for (const { id, namespace, name } of rows) {
      // A fresh publish id: the first one may still be in the stream's duplicate window.
      await this.publishWork(id, { namespace, name }, `${id}.redrive.${randomUUID()}`);
      this.markPublished(id);
      await manager.streams.purge(DEAD_STREAM, { filter: deadSubject(id) }).catch(() => undefined);
    }
    return rows.length;
  }

  async leaseCallbacks(max: number, leaseMs: number): Promise<QueueMessage[]> {
    if (max <= 0 || this.closed) return [];
    const now = Date.now();
    // SKIP LOCKED: nodes asking at once each take different callbacks.
    const { rows } = await this.db.query<Row>(
      `UPDATE queue_messages SET callback_at = $2, callback_attempts = callback_attempts + 1
       WHERE id IN (SELECT id FROM queue_messages WHERE callback_state = 'pending' AND callback_at <= $1
                    ORDER BY callback_at LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [now, now + leaseMs, max],
    );
    return rows.map(toMessage);
  }

  async callbackAttempt(
    id: string,
    outcome: CallbackState,
    error: string | undefined,
    retryAt?: number,
  ): Promise<void> {
    await this.db.query(
      'UPDATE queue_messages SET callback_state = $2, callback_error = $3, callback_at = $4 WHERE id = $1',
      [id, outcome, error ?? null, outcome === 'pending' ? (retryAt ?? Date.now()) : null],
    );
  }

  async purge(olderThan: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM queue_messages WHERE state IN ('succeeded', 'failed') AND finished_at < $1
         AND (callback_state IS NULL OR callback_state != 'pending')`,
      [olderThan],
    );
    return rowCount ?? 0;
  }

  stats(): Promise<QueueStats> {
    const now = Date.now();
    if (this.cachedStats !== undefined && now - this.cachedStats.at < STATS_TTL_MS)
      return this.cachedStats.stats;
    const stats = this.db
      .query<{ state: MessageState; n: string }>(
        'SELECT state, COUNT(*) AS n FROM queue_messages GROUP BY state',
      )
      .then(({ rows }) => {
        const counts: Record<MessageState, number> = {
          queued: 0,
          running: 0,
          succeeded: 0,
          failed: 0,
          dead: 0,
        };
        for (const row of rows) counts[row.state] = Number(row.n);
        // Due messages arrive from JetStream (onAvailable): the worker has no timer to set for them.
        return { ...counts, nextDueAt: undefined };
      });
    stats.catch(() => {
      this.cachedStats = undefined;
    });
    this.cachedStats = { at: now, stats };
    return stats;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    clearInterval(this.sweeper);
    this.abort.abort();
    this.roomFreed?.();
    await this.marking;
    // Pulled but not started here: another node may take them at once.
    for (const msg of this.ready.splice(0)) msg.nak();
    for (const msg of this.held.values()) msg.nak();
    this.held.clear();
    await this.nats.drain().catch(() => undefined);
    await this.pulling?.catch(() => undefined);
    await this.db.end().catch(() => undefined);
  }

  /**
   * Stops as a killed node does: nothing handed back, nothing acknowledged, so JetStream redelivers what
   * it held once the ack wait has passed (tests use it to stand for `kill -9`).
   */
  async abandon(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeat);
    clearInterval(this.sweeper);
    this.abort.abort();
    this.roomFreed?.();
    await this.nats.close().catch(() => undefined);
    await this.pulling?.catch(() => undefined);
    await this.db.end().catch(() => undefined);
  }

  /**
   * Keeps up to `concurrency` messages pulled or running on this node: a pull asks for the room there
   * is and hands each message over as it arrives; with no room it waits for a delivery to settle.
   */
  private async pull(): Promise<void> {
    while (!this.closed) {
      const room = this.options.concurrency - this.held.size - this.ready.length;
      if (room <= 0) {
        await new Promise<void>((resolve) => {
          this.roomFreed = resolve;
        });
        this.roomFreed = undefined;
        continue;
      }
      try {
        const batch = await this.consumer.fetch({
          max_messages: room,
          expires: PULL_EXPIRES_MS,
        });
        const stop = (): void => void batch.close();
        this.abort.signal.addEventListener('abort', stop, { once: true });
        for await (const msg of batch) {
          if (this.closed) {
            msg.nak();
            continue;
          }
          this.ready.push(msg);
          this.wakeUp();
        }
        this.abort.signal.removeEventListener('abort', stop);
      } catch (error) {
        if (this.closed) return;
        this.options.warn(`queue: pulling from JetStream failed: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  private freeRoom(): void {
    this.roomFreed?.();
  }

  /**
   * Group commit: the accepts of one event-loop turn share one multi-row INSERT (one round trip, one
   * commit), as the embedded queue shares one transaction. Resolves with the row stored, or undefined when
   * its id or dedupe key was there already.
   */
  private insert(values: readonly unknown[]): Promise<Row | undefined> {
    return new Promise((resolve, reject) => {
      this.pendingInserts.push({ values, resolve, reject });
      if (this.pendingInserts.length === 1) setImmediate(() => void this.flushInserts());
    });
  }

  private async flushInserts(): Promise<void> {
    const batch = this.pendingInserts.splice(0, INSERT_BATCH);
    if (this.pendingInserts.length > 0) setImmediate(() => void this.flushInserts());
    const columns = batch[0]?.values.length ?? 0;
    const tuples = batch
      .map(
        (_, row) => `(${Array.from({ length: columns }, (_, column) => `$${row * columns + column + 1}`)})`,
      )
      .join(', ');
    try {
      const { rows } = await this.db.query<Row>(
        `INSERT INTO queue_messages (id, namespace, name, source, method, path, raw_query, headers, body, event,
           priority, auth, state, attempts, max_attempts, backoff_ms, max_backoff_ms, accepted_at, available_at,
           finished_at, error_code, error_message, callback_url, dedupe_key)
         VALUES ${tuples} ON CONFLICT DO NOTHING RETURNING *`,
        batch.flatMap((entry) => entry.values),
      );
      const stored = new Map(rows.map((row) => [row.id, row]));
      for (const entry of batch) entry.resolve(stored.get(entry.values[0] as string));
    } catch (error) {
      for (const entry of batch) entry.reject(error);
    }
  }

  /** Marks records published, the ids of one event-loop turn in one UPDATE. */
  private markPublished(id: string): void {
    this.toMark.push(id);
    if (this.toMark.length > 1) return;
    this.marking = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      const ids = this.toMark;
      this.toMark = [];
      await this.db.query('UPDATE queue_messages SET published = true WHERE id = ANY($1)', [ids]).then(
        () => undefined,
        (error: Error) => this.options.warn(`queue: could not mark messages published: ${error.message}`),
      );
    });
  }

  /**
   * The insert-then-die gap: a queued record its node stored but did not publish (it died in between) is
   * published by whichever node sweeps first, under its own id as the JetStream message id, so two
   * sweepers (or a late first publish) put it in the stream once.
   */
  private async sweep(republishAfterMs: number): Promise<void> {
    if (this.sweeping || this.closed) return;
    this.sweeping = true;
    try {
      const { rows } = await this.db.query<{ id: string; namespace: string; name: string }>(
        `SELECT id, namespace, name FROM queue_messages
         WHERE NOT published AND state = 'queued' AND accepted_at < $1 ORDER BY seq LIMIT $2`,
        [Date.now() - republishAfterMs, SWEEP_BATCH],
      );
      for (const { id, namespace, name } of rows) {
        await this.publishWork(id, { namespace, name }, id);
        this.markPublished(id);
      }
      if (rows.length > 0)
        this.options.warn(`queue: published ${rows.length} message(s) a node had left unpublished`);
    } catch (error) {
      if (!this.closed)
        this.options.warn(`queue: sweeping unpublished messages failed: ${(error as Error).message}`);
    } finally {
      this.sweeping = false;
    }
  }

  /** Hands the held message back to JetStream (ack or nak), then frees its room. */
  private async release(id: string, settle: (msg: JsMsg) => Promise<void>): Promise<void> {
    const msg = this.held.get(id);
    this.held.delete(id);
    this.freeRoom();
    if (msg === undefined) return;
    try {
      await settle(msg);
    } catch (error) {
      // The record is settled; the redelivery this causes is recognised and acked then.
      this.options.warn(`queue: could not acknowledge ${id} to JetStream: ${(error as Error).message}`);
    }
  }

  private async publishWork(id: string, ref: FunctionRef, publishId: string): Promise<void> {
    const item: WorkItem = { id, ref: { namespace: ref.namespace, name: ref.name } };
    await this.js.publish(WORK_SUBJECT, JSON.stringify(item), { msgID: publishId });
  }

  private async publishDead(row: Row): Promise<void> {
    const letter = {
      id: row.id,
      function: `${row.namespace}/${row.name}`,
      source: row.source,
      attempts: row.attempts,
      error: { code: row.error_code, message: row.error_message },
      deadAt: Number(row.finished_at ?? Date.now()),
    };
    await this.js.publish(deadSubject(row.id), JSON.stringify(letter));
  }
}

/** The subject of a message's dead letter: one per message, so a redrive can purge it. */
function deadSubject(id: string): string {
  return `${DEAD_PREFIX}.${id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

/** When the node running a record last said so (its lease, or a later heartbeat). */
function lastAlive(row: Row): number {
  return Number(row.alive_at ?? row.started_at ?? 0);
}

function workItem(msg: JsMsg): WorkItem | undefined {
  try {
    const item = msg.json<WorkItem>();
    return typeof item?.id === 'string' &&
      typeof item.ref?.namespace === 'string' &&
      typeof item.ref.name === 'string'
      ? item
      : undefined;
  } catch {
    return undefined;
  }
}

async function ensureStream(
  manager: JetStreamManager,
  config: { name: string; subjects: string[]; retention: RetentionPolicy },
): Promise<void> {
  if ((await manager.streams.info(config.name).catch(() => undefined)) !== undefined) return;
  await manager.streams
    .add({ ...config, storage: StorageType.File, duplicate_window: nanos(120_000) })
    .catch(async (error: unknown) => {
      // Another node created it first.
      if ((await manager.streams.info(config.name).catch(() => undefined)) === undefined) throw error;
    });
}

const toMessage = (row: Row): QueueMessage => messageFromRow(row);
