/**
 * @module The durable invocation queue's contract: async invocations, cron firings and trigger events
 * waiting to run, with leases (a crash re-delivers), retries with backoff, a dead-letter list and kept
 * results. The embedded implementation is SQLite (WAL) in its own file; a NATS JetStream one (cluster
 * mode) implements the same interface and passes the same conformance suite (queue.test.ts).
 */

import type { CloudEventAttributes } from '../domain/deployment.js';
import type { FunctionRef } from '../domain/function.js';

export type MessageState = 'queued' | 'running' | 'succeeded' | 'failed' | 'dead';
export type CallbackState = 'pending' | 'delivered' | 'failed';

/** What to invoke: the request as received (async) or the event (triggers, cron). */
export interface QueuedRequest {
  readonly method: string;
  readonly path: string;
  readonly rawQuery: string;
  /** `[name, value, ...]`. */
  readonly headers: readonly string[];
  readonly body: Buffer;
  readonly event?: CloudEventAttributes;
  readonly priority?: number;
  /** The caller's claims (`ctx.auth`) for a function with `auth: key | jwt`, checked when it was accepted. */
  readonly auth?: Readonly<Record<string, unknown>>;
}

export interface NewMessage {
  readonly ref: FunctionRef;
  /** `async`, or `<kind>:<the trigger that produced it>` (`cron:default/report/nightly`). */
  readonly source: string;
  readonly request: QueuedRequest;
  /** Deliveries in all before the message is dead-lettered. */
  readonly maxAttempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly callbackUrl?: string;
  /** A message with a key already in the queue is not added again (cron: one message per scheduled time). */
  readonly dedupeKey?: string;
  /** Epoch ms before which it is not delivered (default now). */
  readonly availableAt?: number;
  /** The id to use (default a random UUID). */
  readonly id?: string;
  /** Store it straight into the dead-letter list (a trigger whose own retries ran out), with this error. */
  readonly deadLetter?: MessageError;
  /** Deliveries already made elsewhere (a trigger's own retries), shown with the dead letter. */
  readonly attempts?: number;
}

export interface StoredResult {
  readonly status: number;
  /** `[name, value, ...]`, names lower-case. */
  readonly headers: readonly string[];
  readonly body: Buffer;
}

export interface MessageError {
  readonly code: string;
  readonly message: string;
}

export interface QueueMessage {
  readonly id: string;
  readonly ref: FunctionRef;
  readonly source: string;
  readonly request: QueuedRequest;
  readonly state: MessageState;
  /** Deliveries started so far. */
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly acceptedAt: number;
  readonly availableAt: number;
  readonly startedAt: number | undefined;
  readonly finishedAt: number | undefined;
  readonly lastError: MessageError | undefined;
  readonly result: StoredResult | undefined;
  readonly callback:
    | {
        readonly url: string;
        readonly state: CallbackState;
        readonly attempts: number;
        readonly lastError: string | undefined;
      }
    | undefined;
  readonly dedupeKey: string | undefined;
}

export interface ListFilter {
  readonly state?: MessageState;
  readonly ref?: FunctionRef;
  readonly source?: string;
  readonly limit?: number;
  /** Only messages accepted before this id's message (cursor, newest first). */
  readonly before?: string;
}

export interface QueueStats {
  readonly queued: number;
  readonly running: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly dead: number;
  /** Epoch ms of the earliest queued message not yet due, for the worker's timer. */
  readonly nextDueAt: number | undefined;
}

export interface Queue {
  /** Resolves once the message is durable (it survives a crash of the platform from then on). */
  enqueue(message: NewMessage): Promise<QueueMessage>;
  /**
   * Takes up to `max` due messages for `leaseMs`; each delivery counts as an attempt. A lease that is
   * neither completed nor renewed in time expires, and the message is delivered again.
   */
  lease(max: number, leaseMs: number): Promise<QueueMessage[]>;
  /** The delivery finished: `succeeded`, or `failed` for good (a final failure that is not retried). */
  complete(
    id: string,
    state: 'succeeded' | 'failed',
    result: StoredResult | undefined,
    error?: MessageError,
  ): Promise<void>;
  /** The delivery failed and will be tried again at `availableAt`. */
  retry(id: string, error: MessageError, availableAt: number): Promise<void>;
  /** Retries are exhausted: the message joins the dead-letter list. */
  deadLetter(id: string, error: MessageError): Promise<void>;
  get(id: string): Promise<QueueMessage | undefined>;
  list(filter: ListFilter): Promise<QueueMessage[]>;
  /** Puts dead-lettered messages back in the queue with fresh attempts; returns how many moved. */
  redrive(ids: readonly string[] | { readonly ref?: FunctionRef; readonly source?: string }): Promise<number>;
  /** Messages whose callback is due, leased for `leaseMs`. */
  leaseCallbacks(max: number, leaseMs: number): Promise<QueueMessage[]>;
  /** Records a callback attempt: delivered, failed for good, or due again at `retryAt`. */
  callbackAttempt(
    id: string,
    outcome: CallbackState,
    error: string | undefined,
    retryAt?: number,
  ): Promise<void>;
  /** Drops finished messages (succeeded/failed, callback settled) older than `olderThan` (epoch ms). */
  purge(olderThan: number): Promise<number>;
  stats(): Promise<QueueStats>;
  close(): Promise<void>;
}

/**
 * A queue other nodes feed too (cluster mode's JetStream queue): messages arrive without this node's
 * enqueue, so it wakes the worker itself.
 */
export interface SharedQueue extends Queue {
  onAvailable(wake: () => void): void;
}

export { CallbackPolicy, parseAllowEntry } from './callbacks.js';
export { type MessageRow, messageFromRow } from './row.js';
export { SqliteQueue } from './sqlite.js';
export { type AsyncWorkerOptions, QueueWorker, type WorkerInvoke } from './worker.js';
