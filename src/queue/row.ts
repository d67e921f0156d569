/**
 * @module The queue's row as both stores keep it (SQLite in the embedded mode, PostgreSQL in cluster mode,
 * src/cluster/js-queue.ts) and the message it stands for. PostgreSQL hands back its bigint times as strings.
 */
import type { CloudEventAttributes } from '../domain/deployment.js';
import type { CallbackState, MessageState, QueueMessage } from './index.js';

export interface MessageRow<Time extends number | string = number> {
  seq: Time;
  id: string;
  namespace: string;
  name: string;
  source: string;
  method: string;
  path: string;
  raw_query: string;
  headers: string;
  body: Buffer;
  event: string | null;
  priority: number | null;
  auth: string | null;
  state: MessageState;
  attempts: number;
  max_attempts: number;
  backoff_ms: number;
  max_backoff_ms: number;
  accepted_at: Time;
  available_at: Time;
  started_at: Time | null;
  finished_at: Time | null;
  error_code: string | null;
  error_message: string | null;
  result_status: number | null;
  result_headers: string | null;
  result_body: Buffer | null;
  callback_url: string | null;
  callback_state: CallbackState | null;
  callback_attempts: number;
  callback_error: string | null;
  callback_at: Time | null;
  dedupe_key: string | null;
}

export function messageFromRow(row: MessageRow<number | string>): QueueMessage {
  const optional = (value: number | string | null): number | undefined =>
    value === null ? undefined : Number(value);
  return {
    id: row.id,
    ref: { namespace: row.namespace, name: row.name },
    source: row.source,
    request: {
      method: row.method,
      path: row.path,
      rawQuery: row.raw_query,
      headers: JSON.parse(row.headers) as string[],
      body: row.body,
      ...(row.event === null ? {} : { event: JSON.parse(row.event) as CloudEventAttributes }),
      ...(row.priority === null ? {} : { priority: row.priority }),
      ...(row.auth === null ? {} : { auth: JSON.parse(row.auth) as Record<string, unknown> }),
    },
    state: row.state,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    backoffMs: row.backoff_ms,
    maxBackoffMs: row.max_backoff_ms,
    acceptedAt: Number(row.accepted_at),
    availableAt: Number(row.available_at),
    startedAt: optional(row.started_at),
    finishedAt: optional(row.finished_at),
    lastError:
      row.error_code === null ? undefined : { code: row.error_code, message: row.error_message ?? '' },
    result:
      row.result_status === null
        ? undefined
        : {
            status: row.result_status,
            headers: JSON.parse(row.result_headers ?? '[]') as string[],
            body: row.result_body ?? Buffer.alloc(0),
          },
    callback:
      row.callback_url === null
        ? undefined
        : {
            url: row.callback_url,
            state: row.callback_state ?? 'pending',
            attempts: row.callback_attempts,
            lastError: row.callback_error ?? undefined,
          },
    dedupeKey: row.dedupe_key ?? undefined,
  };
}
