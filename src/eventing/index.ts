/**
 * @module Eventing (issue 20): Trigger resources and everything that routes events to them without a
 * broker process. Events reach triggers three ways: `POST /events` events that name no function (queued,
 * one message per matching trigger, retried and dead-lettered by the queue worker); events functions emit
 * (`ctx.emit`, or a CloudEvent as the handler's reply), routed like ingress events with a hop limit, loop
 * detection and the trace carried; and appends to event-sourced streams, which each trigger follows in
 * log order with a durable cursor (projections). `Broker` is the one object the platform wires in.
 */

import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { CloudEventAttributes, InvocationRequest, InvocationResponse } from '../domain/deployment.js';
import { HearthError, isHearthError } from '../domain/errors.js';
import {
  deliveryPolicy,
  type EventTriggerManifest,
  filterMatches,
  parseEventTriggerManifest,
} from '../domain/eventing.js';
import type { FunctionRef } from '../domain/function.js';
import {
  executionSpanIdOf,
  formatTraceparent,
  parseTraceparent,
  traceFor,
  traceIdOf,
} from '../domain/trace.js';
import type { RetryPolicy } from '../domain/triggers.js';
import type { EventLog } from '../eventlog/index.js';
import {
  attributesFromHeaders,
  enqueueAll,
  eventFromJson,
  type RoutedEvent,
  routeEvent,
  type TriggerRouting,
  type TriggerTarget,
} from '../gateway/events-ingress.js';
import type { Queue, QueueMessage } from '../queue/index.js';
import type { HostCallContext, Scheduler } from '../scheduler/index.js';
import { countersStatus, newCounters, type TriggerCounters } from '../triggers/delivery.js';
import { ProjectionRunner } from './projection.js';
import { TriggerStore } from './store.js';
import type { EventTriggerDetail, EventTriggerSummary } from './types.js';

export type { EventTriggerDetail, EventTriggerSummary } from './types.js';

/** Emitted events may cause at most this many generations of further events (the first emit is hop 1). */
export const HOP_LIMIT = 16;
/** Extension attributes the platform keeps on emitted events: the generation and who emitted what. */
const HOPS = 'hearthhops';
const TRAIL = 'hearthtrail';
const STRUCTURED = 'application/cloudevents+json';
const BATCH = 'application/cloudevents-batch+json';
const MAX_EMIT = 100;

export interface BrokerOptions {
  readonly dataDir: string;
  readonly log: EventLog;
  readonly queue: Queue;
  readonly scheduler: Pick<Scheduler, 'lookup' | 'invoke'>;
  /** Wakes the queue worker after an enqueue. */
  readonly notifyQueue: () => void;
  /** The async retry policy: emitted events addressed to a function by subject are retried by it. */
  readonly retry: RetryPolicy;
  readonly warn: (message: string) => void;
  readonly info: (message: string) => void;
}

/** A validated Trigger resource, ready to store and activate. */
export interface PreparedEventTrigger {
  readonly namespace: string;
  readonly name: string;
  readonly manifest: EventTriggerManifest;
  readonly unchanged: boolean;
}

/** One Trigger in force: its resource, where it delivers, and its counters. */
export interface ActiveTrigger {
  readonly id: string;
  readonly namespace: string;
  readonly name: string;
  readonly manifest: EventTriggerManifest;
  readonly target: TriggerTarget & { readonly deadLetter: FunctionRef | undefined };
  readonly counters: TriggerCounters;
  runner: ProjectionRunner | undefined;
}

/** The chain an event delivery belongs to, for the events that delivery emits. */
interface Cause {
  readonly hops: number;
  readonly trail: string;
}

export class Broker implements TriggerRouting {
  private readonly store: TriggerStore;
  private readonly active = new Map<string, ActiveTrigger>();
  /** Event deliveries in flight whose events carry a chain (emitted ones), by invocation id. */
  private readonly causes = new Map<string, Cause>();
  private closed = false;

  constructor(private readonly options: BrokerOptions) {
    this.store = new TriggerStore(join(options.dataDir, 'eventing.db'));
  }

  /** Restores the stored triggers and starts following the log. */
  start(): void {
    for (const stored of this.store.list())
      this.activate({
        namespace: stored.namespace,
        name: stored.name,
        manifest: stored.manifest,
        unchanged: false,
      });
  }

  async close(): Promise<void> {
    this.closed = true;
    const stopping = [...this.active.values()].map((trigger) => trigger.runner?.stop());
    await Promise.allSettled(stopping);
    this.store.close();
  }

  // --- resources ---------------------------------------------------------------------------------------

  prepare(namespace: string, name: string, input: unknown): PreparedEventTrigger {
    const parsed = parseEventTriggerManifest(input, 'resource');
    if (parsed.metadata.name !== name || (parsed.metadata.namespace ?? namespace) !== namespace)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `resource: metadata: got ${parsed.metadata.namespace ?? namespace}/${parsed.metadata.name}, expected ${namespace}/${name}`,
        { details: { field: 'metadata.name', value: parsed.metadata.name, expected: name } },
      );
    const manifest: EventTriggerManifest = { ...parsed, metadata: { ...parsed.metadata, namespace } };
    const current = this.store.get(namespace, name);
    const unchanged = current !== undefined && JSON.stringify(current.manifest) === JSON.stringify(manifest);
    return { namespace, name, manifest, unchanged };
  }

  /** Stores a prepared trigger and puts it in force. */
  put(prepared: PreparedEventTrigger): void {
    if (prepared.unchanged) return;
    this.store.put(prepared.namespace, prepared.name, prepared.manifest);
    this.activate(prepared);
  }

  async delete(namespace: string, name: string): Promise<boolean> {
    const id = `${namespace}/${name}`;
    const current = this.active.get(id);
    this.active.delete(id);
    await current?.runner?.stop();
    return this.store.delete(namespace, name);
  }

  list(namespace?: string): EventTriggerSummary[] {
    return [...this.active.values()]
      .filter((trigger) => namespace === undefined || trigger.namespace === namespace)
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((trigger) => this.summary(trigger));
  }

  async detail(namespace: string, name: string): Promise<EventTriggerDetail> {
    const trigger = this.active.get(`${namespace}/${name}`);
    const stored = this.store.get(namespace, name);
    if (trigger === undefined || stored === undefined)
      throw new HearthError(
        'HEARTH_E_RESOURCE_NOT_FOUND',
        `trigger ${name} not found in namespace ${namespace}`,
      );
    const counters = countersStatus(trigger.counters);
    const head = await this.options.log.head();
    const position = trigger.runner?.position ?? this.store.cursor(trigger.id) ?? head;
    return {
      ...this.summary(trigger),
      manifest: trigger.manifest,
      delivery: {
        attempts: trigger.target.retry.attempts,
        backoffMs: trigger.target.retry.backoffMs,
        maxBackoffMs: trigger.target.retry.maxBackoffMs,
        deadLetter:
          trigger.target.deadLetter === undefined
            ? null
            : `${trigger.target.deadLetter.namespace}/${trigger.target.deadLetter.name}`,
      },
      retried: counters.retried,
      inFlight: counters.inFlight,
      lastDeliveryAt: counters.lastDeliveryAt,
      streams: { position, head, lag: Math.max(0, head - position) },
      createdAt: stored.createdAt,
    };
  }

  private summary(trigger: ActiveTrigger): EventTriggerSummary {
    const counters = countersStatus(trigger.counters);
    const ref = trigger.target.ref;
    return {
      namespace: trigger.namespace,
      name: trigger.name,
      subscriber: {
        function: ref.name,
        namespace: ref.namespace,
        deployed: this.options.scheduler.lookup(ref) !== undefined,
      },
      filter: trigger.manifest.spec.filter ?? {},
      delivered: counters.delivered,
      failed: counters.failed,
      deadLettered: counters.deadLettered,
      lastError: counters.lastError,
      updatedAt: this.store.get(trigger.namespace, trigger.name)?.updatedAt ?? '',
    };
  }

  private activate(prepared: PreparedEventTrigger): void {
    const id = `${prepared.namespace}/${prepared.name}`;
    const previous = this.active.get(id);
    const policy = deliveryPolicy(prepared.manifest);
    const trigger: ActiveTrigger = {
      id,
      namespace: prepared.namespace,
      name: prepared.name,
      manifest: prepared.manifest,
      target: {
        id,
        ref: refOf(prepared.manifest.spec.subscriber.function, prepared.namespace),
        retry: { attempts: policy.attempts, backoffMs: policy.backoffMs, maxBackoffMs: policy.maxBackoffMs },
        deadLetter:
          policy.deadLetter === undefined ? undefined : refOf(policy.deadLetter, prepared.namespace),
      },
      // A changed trigger keeps its counts: describe shows the resource's history, not the version's.
      counters: previous?.counters ?? newCounters(),
      runner: undefined,
    };
    this.active.set(id, trigger);
    this.options.info(
      `trigger ${id} ${previous === undefined ? 'in force' : 'changed'}: ${JSON.stringify(prepared.manifest.spec.filter ?? {})} → ${trigger.target.ref.namespace}/${trigger.target.ref.name}`,
    );
    const start = (): void => {
      if (this.closed || this.active.get(id) !== trigger) return;
      trigger.runner = new ProjectionRunner(trigger, {
        log: this.options.log,
        store: this.store,
        scheduler: this.options.scheduler,
        startFrom: prepared.manifest.spec.startFrom ?? 'latest',
        deadLetter: (event, body, attempts, reason) =>
          this.deadLetter(trigger, event, body, attempts, reason),
        replied: (ref, response, cause) => this.routeReply(ref, response, cause),
        warn: this.options.warn,
      });
      trigger.runner.start();
    };
    // The old runner lets go of the cursor before the new one reads it.
    if (previous?.runner !== undefined) void previous.runner.stop().then(start);
    else start();
  }

  // --- routing -----------------------------------------------------------------------------------------

  matching(namespace: string, event: CloudEventAttributes): readonly TriggerTarget[] {
    let found: TriggerTarget[] | undefined;
    for (const trigger of this.active.values()) {
      if (trigger.namespace !== namespace) continue;
      if (!filterMatches(trigger.manifest.spec.filter, event)) continue;
      found ??= [];
      found.push(trigger.target);
    }
    return found ?? [];
  }

  /** Wakes every projection: an append is durable. */
  appended(): void {
    for (const trigger of this.active.values()) trigger.runner?.wake();
  }

  /** The queue worker's report on a message it settled: a trigger's counters, its dead-letter function. */
  settled(
    message: QueueMessage,
    outcome: 'delivered' | 'retry' | 'dead-lettered',
    error: string | undefined,
  ): void {
    if (!message.source.startsWith('trigger:')) return;
    const trigger = this.active.get(message.source.slice('trigger:'.length));
    if (trigger === undefined) return;
    const counters = trigger.counters;
    counters.lastDeliveryAt = new Date().toISOString();
    if (outcome === 'delivered') counters.delivered += 1;
    else {
      counters.failed += 1;
      if (error !== undefined) counters.lastError = { message: error, at: counters.lastDeliveryAt };
      if (outcome === 'retry') counters.retried += 1;
      else {
        counters.deadLettered += 1;
        const event = message.request.event;
        if (event !== undefined && trigger.target.deadLetter !== undefined)
          void this.sendToDeadLetterFunction(trigger, event, message.request.body);
      }
    }
  }

  /** Projection deliveries whose retries ran out: the dead-letter list, and the trigger's dead-letter function. */
  private async deadLetter(
    trigger: ActiveTrigger,
    event: CloudEventAttributes,
    body: Buffer,
    attempts: number,
    reason: string,
  ): Promise<void> {
    await this.options.queue.enqueue({
      ref: trigger.target.ref,
      source: `trigger:${trigger.id}`,
      request: { method: 'POST', path: '/', rawQuery: '', headers: [], body, event },
      maxAttempts: trigger.target.retry.attempts,
      backoffMs: trigger.target.retry.backoffMs,
      maxBackoffMs: trigger.target.retry.maxBackoffMs,
      attempts,
      deadLetter: { code: 'HEARTH_E_FN_ERROR', message: reason },
    });
    trigger.counters.deadLettered += 1;
    if (trigger.target.deadLetter !== undefined) await this.sendToDeadLetterFunction(trigger, event, body);
  }

  private async sendToDeadLetterFunction(
    trigger: ActiveTrigger,
    event: CloudEventAttributes,
    body: Buffer,
  ): Promise<void> {
    const sink = trigger.target.deadLetter;
    if (sink === undefined) return;
    try {
      await enqueueAll(
        { queue: this.options.queue, retry: this.options.retry, onAccepted: this.options.notifyQueue },
        [
          {
            attributes: event,
            data: body,
            triggers: [{ id: `${trigger.id}:dead-letter`, ref: sink, retry: this.options.retry }],
          },
        ],
      );
    } catch (error) {
      this.options.warn(`trigger ${trigger.id}: dead-letter function not reached: ${String(error)}`);
    }
  }

  // --- emitted events ----------------------------------------------------------------------------------

  /** Invokes a queued message: an event message as {@link invokeEvent}, anything else as it is. */
  invokeQueued(message: QueueMessage, request: InvocationRequest): Promise<InvocationResponse> {
    return this.invokeEvent(message.ref, request);
  }

  /**
   * Invokes `ref` with a request; when it carries an event (a trigger's or a queued one), the delivery
   * continues the trace the event's `traceparent` extension carries, records the event's chain (so the
   * events it emits are counted and checked for loops), and a 2xx reply that is a CloudEvent is routed
   * before the delivery counts as done (at-least-once).
   */
  async invokeEvent(ref: FunctionRef, request: InvocationRequest): Promise<InvocationResponse> {
    const event = request.event;
    if (event === undefined) return this.options.scheduler.invoke(ref, request);
    const incoming = parseTraceparent(stringExtension(event, 'traceparent'));
    const traced: InvocationRequest =
      incoming === undefined || request.trace !== undefined
        ? request
        : { ...request, trace: traceFor(request.invocationId, incoming) };
    const cause = causeOf(event);
    this.causes.set(request.invocationId, cause);
    try {
      const response = await this.options.scheduler.invoke(ref, traced);
      if (response.status < 300)
        await this.routeReply(ref, response, {
          ...cause,
          invocationId: request.invocationId,
          trace: traced.trace,
        });
      return response;
    } finally {
      this.causes.delete(request.invocationId);
    }
  }

  /** `ctx.emit(event | events)`: each event is checked, routed and queued; answers their ids. */
  async emit(context: HostCallContext, args: unknown): Promise<{ accepted: number; ids: string[] }> {
    const list = (args ?? {}) as { events?: unknown };
    const raw = Array.isArray(list.events) ? list.events : [list.events];
    if (raw.length === 0 || raw.length > MAX_EMIT || raw.some((item) => item === undefined))
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `ctx.emit: got ${raw.length} events, expected 1 to ${MAX_EMIT} CloudEvents`,
        { details: { field: 'events', value: raw.length, expected: `1 to ${MAX_EMIT} events` } },
      );
    const invocationId = context.invocationId;
    const cause = (invocationId === undefined ? undefined : this.causes.get(invocationId)) ?? ROOT;
    const routed = raw.map((value, index) =>
      this.routeEmitted(context.ref, withDefaults(value, context.ref), `[${index}].`, {
        ...cause,
        invocationId,
        trace: context.trace,
      }),
    );
    await this.enqueue(routed);
    return { accepted: routed.length, ids: routed.map((event) => event.attributes.id) };
  }

  /** A handler's answer that is a CloudEvent (structured, batched or binary mode) is routed like an emit. */
  async routeReply(
    ref: FunctionRef,
    response: InvocationResponse,
    cause: Cause & { invocationId: string | undefined; trace: InvocationRequest['trace'] },
  ): Promise<void> {
    let routed: RoutedEvent[];
    try {
      const events = replyEvents(response, ref);
      if (events === undefined) return;
      routed = events.map((event, index) =>
        this.routeEmitted(ref, event, events.length > 1 ? `[${index}].` : '', cause),
      );
    } catch (error) {
      // The reply was the function's answer, and it was delivered: a reply event that cannot go anywhere is
      // reported, not retried (a retry would run the function again for the same answer).
      this.options.warn(
        `reply event of ${ref.namespace}/${ref.name} not routed: ${isHearthError(error) ? `${error.code}: ${error.message}` : String(error)}`,
      );
      return;
    }
    await this.enqueue(routed);
  }

  private routeEmitted(
    emitter: FunctionRef,
    value: unknown,
    at: string,
    cause: Cause & { invocationId: string | undefined; trace: InvocationRequest['trace'] },
  ): RoutedEvent {
    const parsed = eventFromJson(value, at);
    const hops = cause.hops + 1;
    const key = `${parsed.attributes.type}@${emitter.namespace}/${emitter.name}`;
    if (hops > HOP_LIMIT)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `event ${parsed.attributes.type} from ${emitter.namespace}/${emitter.name} would be generation ${hops} of one chain; at most ${HOP_LIMIT} are allowed (a loop of functions emitting events?); it was not sent`,
        { details: { field: `${at}${HOPS}`, value: hops, expected: `at most ${HOP_LIMIT}` } },
      );
    if (cause.trail.split(' ').includes(key))
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `event loop: ${emitter.namespace}/${emitter.name} already emitted a ${parsed.attributes.type} event earlier in this chain (${cause.trail}); it was not sent again`,
        {
          details: {
            field: `${at}type`,
            value: parsed.attributes.type,
            expected: 'an event that does not loop',
          },
        },
      );
    const traceparent =
      cause.invocationId === undefined
        ? undefined
        : formatTraceparent(
            cause.trace?.traceId ?? traceIdOf(cause.invocationId),
            cause.trace?.spanId ?? executionSpanIdOf(cause.invocationId),
            cause.trace?.flags ?? 1,
          );
    const attributes: CloudEventAttributes = {
      ...parsed.attributes,
      extensions: {
        ...parsed.attributes.extensions,
        [HOPS]: hops,
        [TRAIL]: cause.trail === '' ? key : `${cause.trail} ${key}`,
        ...(traceparent === undefined ? {} : { traceparent }),
      },
    };
    return routeEvent(
      { scheduler: this.options.scheduler, triggers: this },
      emitter.namespace,
      { attributes, data: parsed.data },
      at,
    );
  }

  private enqueue(events: readonly RoutedEvent[]): Promise<QueueMessage[]> {
    return enqueueAll(
      { queue: this.options.queue, retry: this.options.retry, onAccepted: this.options.notifyQueue },
      events,
    );
  }
}

const ROOT: Cause = { hops: 0, trail: '' };

function causeOf(event: CloudEventAttributes): Cause {
  const hops = event.extensions?.[HOPS];
  const trail = event.extensions?.[TRAIL];
  return {
    hops: typeof hops === 'number' ? hops : Number(hops ?? 0) || 0,
    trail: typeof trail === 'string' ? trail : '',
  };
}

function stringExtension(event: CloudEventAttributes, name: string): string | undefined {
  const value = event.extensions?.[name];
  return typeof value === 'string' ? value : undefined;
}

function refOf(name: string, namespace: string): FunctionRef {
  const dot = name.indexOf('.');
  return dot < 0 ? { namespace, name } : { namespace: name.slice(dot + 1), name: name.slice(0, dot) };
}

/** An emitted event in structured form, its platform-filled attributes added: specversion, id, source. */
function withDefaults(value: unknown, emitter: FunctionRef): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const event = value as Record<string, unknown>;
  return {
    specversion: '1.0',
    id: randomUUID(),
    source: `/functions/${emitter.namespace}/${emitter.name}`,
    ...event,
  };
}

/** The CloudEvents in a function's answer, or undefined when it is an ordinary answer. */
function replyEvents(response: InvocationResponse, emitter: FunctionRef): unknown[] | undefined {
  let contentType = '';
  let binary = false;
  const headers = response.headers;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] as string;
    if (name === 'content-type')
      contentType = ((headers[i + 1] as string).split(';')[0] ?? '').trim().toLowerCase();
    else if (name === 'ce-specversion') binary = true;
  }
  if (contentType === STRUCTURED || contentType === BATCH) {
    let value: unknown;
    try {
      value = JSON.parse(response.body.toString('utf8'));
    } catch {
      return undefined;
    }
    const list = contentType === BATCH && Array.isArray(value) ? value : [value];
    return list.map((item) => withDefaults(item, emitter));
  }
  if (!binary) return undefined;
  // Binary mode: the ce-* headers are the attributes and the body the data, as the ingress reads them.
  const attributes = attributesFromHeaders(headers);
  const { extensions, ...context } = attributes;
  const structured: Record<string, unknown> = { ...extensions, ...context };
  if (response.body.length > 0) structured.data_base64 = response.body.toString('base64');
  return [structured];
}
