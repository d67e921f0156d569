/**
 * @module Synchronous PostgreSQL queries for the `Store` contract, which is synchronous (SQLite answers in
 * microseconds and the whole control plane is written against it). A worker thread holds the `pg`
 * connection; the main thread posts a batch and blocks on `Atomics.wait` until the worker answers.
 *
 * Hand-written (the synckit pattern, in 60 lines) so that one connection carries a whole transaction:
 * every statement between BEGIN and COMMIT goes through the same worker in order, and nothing else on the
 * main thread can interleave while it is blocked. Only the control plane queries here (deploys, listings,
 * the reconciler); invocations never do.
 */

import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';

export interface PgStatement {
  readonly text: string;
  readonly values?: readonly unknown[];
}

export interface PgBatch {
  readonly id: number;
  readonly statements: readonly PgStatement[];
}

export type PgOutcome = { readonly id: number } & (
  | { readonly ok: true; readonly results: Record<string, unknown>[][] }
  | { readonly ok: false; readonly message: string; readonly code: string | null }
);

export class PostgresError extends Error {
  constructor(
    message: string,
    readonly code: string | null,
  ) {
    super(message);
    this.name = 'PostgresError';
  }
}

/** Longer than the worker's connect timeout, so a refused connection reports its own reason first. */
const ANSWER_TIMEOUT_MS = 30_000;

export class SyncPostgres {
  private readonly worker: Worker;
  private readonly signal = new Int32Array(new SharedArrayBuffer(4));
  private readonly replies: MessageChannel['port1'];
  private closed = false;
  private nextId = 1;

  constructor(readonly url: string) {
    const channel = new MessageChannel();
    this.replies = channel.port1;
    this.worker = new Worker(new URL('./pg-worker.js', import.meta.url), {
      workerData: { url, port: channel.port2, signal: this.signal },
      transferList: [channel.port2],
    });
    // The worker stays for the platform's life; it must not keep a stopping process alive.
    this.worker.unref();
  }

  /** Rows of one statement. */
  query<Row>(text: string, values?: readonly unknown[]): Row[] {
    return this.batch([{ text, ...(values === undefined ? {} : { values }) }])[0] as Row[];
  }

  /** Runs statements in order on the one connection; the rows of each. Throws the first failure. */
  batch(statements: readonly PgStatement[]): Record<string, unknown>[][] {
    if (this.closed) throw new PostgresError('the PostgreSQL store is closed', null);
    const id = this.nextId++;
    this.worker.postMessage({ id, statements } satisfies PgBatch);
    const deadline = Date.now() + ANSWER_TIMEOUT_MS;
    for (;;) {
      // Cleared before draining: a reply landing after the drain sets it again, so the wait cannot miss it.
      Atomics.store(this.signal, 0, 0);
      // A reply to a batch that timed out earlier may still come first: it is skipped by its id.
      for (let message = receiveMessageOnPort(this.replies); message !== undefined; ) {
        const reply = message.message as PgOutcome;
        if (reply.id === id) {
          if (!reply.ok) throw new PostgresError(reply.message, reply.code);
          return reply.results;
        }
        message = receiveMessageOnPort(this.replies);
      }
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(this.signal, 0, 0, left) === 'timed-out')
        throw new PostgresError(`PostgreSQL did not answer in ${ANSWER_TIMEOUT_MS / 1000}s`, null);
    }
  }

  close(): Promise<number> {
    this.closed = true;
    this.replies.close();
    return this.worker.terminate();
  }
}
