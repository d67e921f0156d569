/**
 * @module The worker thread behind `SyncPostgres`: owns one `pg` connection and runs the batches the main
 * thread posts, in order, answering on the port it was given and waking the waiting main thread.
 */

import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import type { PgBatch, PgOutcome } from './pg-sync.js';

interface WorkerInput {
  readonly url: string;
  readonly port: MessagePort;
  readonly signal: Int32Array;
}

const input = workerData as WorkerInput;
let client: pg.Client | undefined;

/** One connection; a broken one (PostgreSQL restarted, network cut) is replaced at the next batch. */
async function connection(): Promise<pg.Client> {
  if (client !== undefined) return client;
  const fresh = new pg.Client({ connectionString: input.url, connectionTimeoutMillis: 10_000 });
  fresh.on('error', () => {
    if (client === fresh) client = undefined;
  });
  await fresh.connect();
  client = fresh;
  return fresh;
}

/** Structured cloning turns a Buffer into a plain Uint8Array: bytea parameters want a Buffer again. */
function asParameter(value: unknown): unknown {
  return value instanceof Uint8Array && !Buffer.isBuffer(value)
    ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    : value;
}

async function run(batch: PgBatch): Promise<PgOutcome> {
  const { id } = batch;
  try {
    const db = await connection();
    const results: Record<string, unknown>[][] = [];
    for (const statement of batch.statements) {
      const result = await db.query(statement.text, statement.values?.map(asParameter));
      // A multi-statement text (a migration) answers with one result per statement.
      results.push(Array.isArray(result) ? [] : (result.rows as Record<string, unknown>[]));
    }
    return { id, ok: true, results };
  } catch (error) {
    const failure = error as Error & { code?: string };
    if (failure.code === undefined || !/^[0-9A-Z]{5}$/.test(failure.code)) {
      // Not an answer from PostgreSQL (a connection error): start afresh next time.
      void client?.end().catch(() => undefined);
      client = undefined;
    }
    return { id, ok: false, message: failure.message, code: failure.code ?? null };
  }
}

/** Batches run one after another on the one connection, even when an earlier one outlived its wait. */
let previous: Promise<unknown> = Promise.resolve();
parentPort?.on('message', (batch: PgBatch) => {
  previous = previous
    .then(() => run(batch))
    .then((outcome) => {
      input.port.postMessage(outcome);
      Atomics.store(input.signal, 0, 1);
      Atomics.notify(input.signal, 0);
    });
});
