/**
 * @module The platform side of `ctx.events`: validates a guest's `events.*` call, picks the stream's scope
 * (the calling function's own, or its namespace's when the function's spec declares the stream in
 * `streams.shared`) and runs it on the `EventLog`. Guests send
 * these over the same Call/Reply frames as `ctx.state`.
 */

import { randomUUID } from 'node:crypto';
import { HearthError, invalidField } from '../domain/errors.js';
import type { FunctionRef } from '../domain/function.js';
import { canonicalJson, functionScope, namespaceScope } from '../state/index.js';
import type { EventLog, NewStreamEvent, StoredStreamEvent } from './index.js';

export type EventCallHandler = (
  ref: FunctionRef,
  method: string,
  args: unknown,
  traceparent: string | undefined,
) => Promise<unknown>;

export interface EventCallHooks {
  /** After a durable append: projections can start (a wake-up, not the delivery itself). */
  readonly appended: () => void;
  /** The streams a function's spec declares shared by its namespace (`spec.streams.shared`). */
  readonly sharedStreams: (ref: FunctionRef) => readonly string[] | undefined;
}

/** A declared name, or a prefix when it ends in `*`. */
export function isShared(patterns: readonly string[] | undefined, stream: string): boolean {
  if (patterns === undefined) return false;
  for (const pattern of patterns)
    if (pattern.endsWith('*') ? stream.startsWith(pattern.slice(0, -1)) : stream === pattern) return true;
  return false;
}

const STREAM = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$/;
const TYPE = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/;
const ID = /^[\x21-\x7e]{1,200}$/;
export const MAX_EVENTS_PER_APPEND = 1000;
export const MAX_EVENT_DATA_BYTES = 1024 * 1024;
export const MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024;
const DEFAULT_READ_LIMIT = 1000;
const MAX_READ_LIMIT = 10_000;

interface EventArgs {
  stream?: unknown;
  events?: unknown;
  expectedVersion?: unknown;
  from?: unknown;
  limit?: unknown;
  version?: unknown;
  state?: unknown;
}

/** What a guest reads: an event with its data parsed. */
export interface ReadEvent {
  readonly id: string;
  readonly type: string;
  readonly data: unknown;
  readonly stream: string;
  readonly version: number;
  readonly position: number;
  readonly time: string;
}

/** Answers `events.append|read|version|snapshot|latestSnapshot`. */
export function createEventCalls(log: EventLog, hooks: EventCallHooks): EventCallHandler {
  return async (ref, method, rawArgs, traceparent) => {
    const args = (rawArgs ?? {}) as EventArgs;
    const stream = streamOf(method, args.stream);
    // A stream the spec declares shared is the namespace's; any other is the calling function's own.
    const scope = isShared(hooks.sharedStreams(ref), stream)
      ? namespaceScope(ref.namespace)
      : functionScope(ref.namespace, ref.name);
    switch (method) {
      case 'events.append': {
        const events = eventsOf(method, args.events, traceparent);
        const expected = args.expectedVersion;
        if (
          expected !== undefined &&
          expected !== null &&
          (typeof expected !== 'number' || !Number.isSafeInteger(expected) || expected < 0)
        )
          throw invalidField(
            `${method} expectedVersion`,
            expected,
            'the version the stream must be at (0: new)',
          );
        const result = await log.append(
          scope,
          stream,
          events,
          typeof expected === 'number' ? expected : undefined,
        );
        if (result.events.length > 0) hooks.appended();
        return {
          version: result.version,
          events: result.events.map((event) => ({ id: event.id, version: event.version })),
        };
      }
      case 'events.read': {
        const from = args.from ?? 1;
        if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < 1)
          throw invalidField(`${method} from`, from, 'a version from 1');
        const limit = args.limit ?? DEFAULT_READ_LIMIT;
        if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_READ_LIMIT)
          throw invalidField(`${method} limit`, limit, `an integer from 1 to ${MAX_READ_LIMIT}`);
        return (await log.read(scope, stream, from, limit)).map(readEvent);
      }
      case 'events.version':
        return log.version(scope, stream);
      case 'events.snapshot': {
        const version = args.version;
        const current = await log.version(scope, stream);
        if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1 || version > current)
          throw invalidField(
            `${method} version`,
            version,
            `the stream version the state was built from, 1 to ${current} (the stream's version)`,
          );
        if (args.state === undefined || args.state === null)
          throw invalidField(`${method} state`, args.state, 'a JSON value');
        const state = canonicalJson(args.state);
        if (Buffer.byteLength(state) > MAX_SNAPSHOT_BYTES)
          throw invalidField(
            `${method} state`,
            `${Buffer.byteLength(state)} bytes`,
            `at most ${MAX_SNAPSHOT_BYTES} bytes of JSON`,
          );
        await log.snapshot(scope, stream, version, state);
        return null;
      }
      case 'events.latestSnapshot': {
        const snapshot = await log.latestSnapshot(scope, stream);
        return snapshot === undefined
          ? null
          : { version: snapshot.version, state: JSON.parse(snapshot.state) as unknown };
      }
      default:
        throw new HearthError(
          'HEARTH_E_UNSUPPORTED',
          `${method} is not an event-log operation; use append, read, version, snapshot or latestSnapshot`,
        );
    }
  };
}

export function readEvent(event: StoredStreamEvent): ReadEvent {
  return {
    id: event.id,
    type: event.type,
    data: JSON.parse(event.data) as unknown,
    stream: event.stream,
    version: event.version,
    position: event.position,
    time: new Date(event.time).toISOString(),
  };
}

function streamOf(method: string, stream: unknown): string {
  if (typeof stream !== 'string' || !STREAM.test(stream))
    throw invalidField(
      `${method} stream`,
      stream,
      'a stream name of letters, digits and . _ : @ / - (at most 200 characters)',
    );
  return stream;
}

function eventsOf(method: string, value: unknown, traceparent: string | undefined): NewStreamEvent[] {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || list.length > MAX_EVENTS_PER_APPEND)
    throw invalidField(`${method} events`, value, `1 to ${MAX_EVENTS_PER_APPEND} events`);
  return list.map((item: unknown, index) => {
    const at = `${method} events[${index}]`;
    if (item === null || typeof item !== 'object' || Array.isArray(item))
      throw invalidField(at, item, 'an event {type, data, id?}');
    const { type, data, id } = item as { type?: unknown; data?: unknown; id?: unknown };
    if (typeof type !== 'string' || !TYPE.test(type))
      throw invalidField(
        `${at}.type`,
        type,
        'an event type such as "OrderPlaced" (letters, digits, . _ : / -)',
      );
    if (id !== undefined && id !== null && (typeof id !== 'string' || !ID.test(id)))
      throw invalidField(`${at}.id`, id, 'a printable id of at most 200 characters');
    const json = canonicalJson(data ?? null);
    if (Buffer.byteLength(json) > MAX_EVENT_DATA_BYTES)
      throw invalidField(
        `${at}.data`,
        `${Buffer.byteLength(json)} bytes`,
        `at most ${MAX_EVENT_DATA_BYTES} bytes of JSON`,
      );
    return {
      id: typeof id === 'string' ? id : randomUUID(),
      type,
      data: json,
      traceparent,
    };
  });
}
