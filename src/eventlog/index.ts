/**
 * @module Event-sourced state (`ctx.events`, issue 20): append-only streams with optimistic concurrency,
 * reads, snapshots, and one global order that projections follow with durable cursors. `EventLog` is the
 * contract; the embedded SQLite log implements it here, and a JetStream log (cluster mode, issue 12) is to
 * implement it too and pass the same conformance suite (`eventlog.test.ts`, `eventLogContract`).
 */

import { HearthError } from '../domain/errors.js';

export { createEventCalls, type EventCallHandler, type EventCallHooks, isShared } from './calls.js';
export { SqliteEventLog } from './sqlite.js';

/**
 * Whose streams: `fn:<namespace>/<name>` (one function's, the default) or `ns:<namespace>` (shared by the
 * functions of a namespace that declare the stream in `spec.streams.shared`), the scopes `ctx.state` uses.
 */
export type StreamScope = string;

/** An event as a function appends it: its type and JSON data; the id is generated when not given. */
export interface NewStreamEvent {
  readonly id: string;
  readonly type: string;
  /** JSON text. */
  readonly data: string;
  /** The appending invocation's `traceparent`, so projections continue its trace. */
  readonly traceparent?: string | undefined;
}

/** An event in the log. */
export interface StoredStreamEvent {
  readonly scope: StreamScope;
  readonly stream: string;
  readonly id: string;
  readonly type: string;
  /** JSON text. */
  readonly data: string;
  /** Its place in its stream, from 1. */
  readonly version: number;
  /** Its place in the whole log, increasing (not dense): what a projection's cursor records. */
  readonly position: number;
  /** Epoch ms of the append. */
  readonly time: number;
  readonly traceparent: string | undefined;
}

export interface AppendResult {
  /** The stream's version after the append (its last event's version). */
  readonly version: number;
  readonly events: readonly StoredStreamEvent[];
}

export interface Snapshot {
  readonly version: number;
  /** JSON text. */
  readonly state: string;
}

export interface EventLog {
  readonly kind: 'embedded';
  /**
   * Appends `events` atomically. With `expectedVersion` the stream must be at exactly that version (0: the
   * stream must not exist yet), else nothing is written and it throws HEARTH_E_STREAM_CONFLICT.
   */
  append(
    scope: StreamScope,
    stream: string,
    events: readonly NewStreamEvent[],
    expectedVersion: number | undefined,
  ): Promise<AppendResult>;
  /** Events of one stream from version `from` (inclusive), in order, at most `limit`. */
  read(scope: StreamScope, stream: string, from: number, limit: number): Promise<StoredStreamEvent[]>;
  /** The stream's current version (0 when it has no events). */
  version(scope: StreamScope, stream: string): Promise<number>;
  /** Keeps `state` as of `version` (at most the stream's version); a newer snapshot replaces an older one. */
  snapshot(scope: StreamScope, stream: string, version: number, state: string): Promise<void>;
  latestSnapshot(scope: StreamScope, stream: string): Promise<Snapshot | undefined>;
  /** Every stream's events after global `position`, in log order, at most `limit` (projections). */
  readAll(after: number, limit: number): Promise<StoredStreamEvent[]>;
  /** The position of the last event in the log (0 when empty). */
  head(): Promise<number>;
  close(): Promise<void>;
}

export function streamConflict(stream: string, expectedVersion: number, actualVersion: number): HearthError {
  return new HearthError(
    'HEARTH_E_STREAM_CONFLICT',
    `stream "${stream}" is at version ${actualVersion}, not the expected ${expectedVersion}: another append came first; read the stream again and retry`,
    {
      details: {
        field: 'expectedVersion',
        value: expectedVersion,
        expected: `${actualVersion}`,
        stream,
        actualVersion,
      },
    },
  );
}
