/**
 * @module `POST /events`: CloudEvents 1.0 over HTTP (the HTTP protocol binding) in binary mode (`ce-*`
 * headers, the body is the data), structured mode (`application/cloudevents+json`) and batched mode
 * (`application/cloudevents-batch+json`, a JSON array). The event's `subject` names the function
 * (`name` or `name.namespace`); it reaches the handler exactly as a trigger's event does (attributes in
 * `InvocationRequest.event`, the data as the body). A single event is answered by the function unless the
 * client sends `Prefer: respond-async`; a batch, and an event that asked for it, is put in the durable
 * queue (retries, dead letters, as `/async-function/`) and answered 202 with the queued ids. Everything is
 * checked before anything is accepted: a batch goes in whole or not at all.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  binaryModeHeaders,
  type CloudEventAttributes,
  type DeployedVersion,
  type InvocationRequest,
} from '../domain/deployment.js';
import { HearthError, invalidField, isHearthError } from '../domain/errors.js';
import { type InvocationEvent, invocationChannel } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import { parseTraceparent, type TraceContext, traceFor } from '../domain/trace.js';
import type { RetryPolicy } from '../domain/triggers.js';
import type { NewMessage, Queue, QueueMessage } from '../queue/index.js';
import type { Scheduler } from '../scheduler/index.js';
import { parseJsonBody, readBody, sendError, sendJson, tooLarge } from './http.js';
import { clientKeyOf, takeTokens } from './rate-limit.js';
import { writeResponse } from './route-invoke.js';
import type { Traffic } from './traffic.js';

export const EVENTS_PATH = '/events';

/** Structured and batched bodies are read before the function is known, so they have a bound of their own. */
export const MAX_EVENTS_BODY_BYTES = 16 * 1024 * 1024;
export const MAX_BATCH_EVENTS = 1000;

const STRUCTURED = 'application/cloudevents+json';
const BATCH = 'application/cloudevents-batch+json';
/** The queue's `source` for events accepted here (`hearth dlq --source cloudevents`). */
export const EVENTS_QUEUE_SOURCE = 'cloudevents';

/** A Trigger resource an event matched: where it goes and how it is retried (issue 20). */
export interface TriggerTarget {
  /** `<namespace>/<trigger name>`, the queue source `trigger:<id>`. */
  readonly id: string;
  readonly ref: FunctionRef;
  readonly retry: RetryPolicy;
}

/** Port: the Trigger resources that take an event no function subject names. */
export interface TriggerRouting {
  matching(namespace: string, event: CloudEventAttributes): readonly TriggerTarget[];
}

export interface EventsIngressOptions {
  readonly scheduler: Scheduler;
  readonly triggers?: TriggerRouting;
  readonly queue: Queue;
  readonly traffic: Traffic;
  readonly retry: RetryPolicy;
  /** Wakes the queue worker: queued events can start at once. */
  readonly onAccepted: () => void;
  readonly onInternal: (error: unknown) => void;
}

/** `/events` and `/events?…`, not `/eventsx`. */
export function isEventsPath(url: string): boolean {
  return (
    url.startsWith(EVENTS_PATH) && (url.length === EVENTS_PATH.length || url[EVENTS_PATH.length] === '?')
  );
}

/**
 * One event, checked and routed: to the function its subject names (`deployed`), or else to the Trigger
 * resources that match it (`triggers`, never empty then).
 */
export type RoutedEvent =
  | {
      readonly attributes: CloudEventAttributes;
      readonly data: Buffer;
      readonly deployed: DeployedVersion;
      readonly triggers?: undefined;
    }
  | {
      readonly attributes: CloudEventAttributes;
      readonly data: Buffer;
      readonly deployed?: undefined;
      readonly triggers: readonly TriggerTarget[];
    };

export function createEventsIngress(
  options: EventsIngressOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const fail = (error: unknown): void => sendError(res, error, undefined, options.onInternal);
    if (req.method !== 'POST') {
      fail(
        new HearthError(
          'HEARTH_E_METHOD_NOT_ALLOWED',
          `${req.method ?? 'GET'} is not allowed on ${EVENTS_PATH}; send CloudEvents with POST`,
        ),
      );
      return;
    }
    let mediaType = '';
    let prefer = '';
    let traceparent: string | undefined;
    let tracestate: string | undefined;
    let hasCeHeader = false;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const value = raw[i + 1] ?? '';
      if (name === 'content-type') mediaType = (value.split(';')[0] ?? '').trim().toLowerCase();
      else if (name === 'prefer') prefer += `${value},`;
      else if (name === 'traceparent') traceparent = value;
      else if (name === 'tracestate') tracestate = value;
      else if (name.startsWith('ce-')) hasCeHeader = true;
    }
    const respondAsync = prefersAsync(prefer);
    let namespace: string;
    try {
      namespace = namespaceOf(req.url ?? EVENTS_PATH);
    } catch (error) {
      fail(error);
      return;
    }
    const client = (): string => clientKeyOf(raw, req.socket.remoteAddress);
    try {
      if (mediaType === BATCH) {
        readBody(req, MAX_EVENTS_BODY_BYTES, eventsTooLarge)
          .then((body) => {
            const events = parseBatch(body).map((value, index) =>
              routeEvent(options, namespace, eventFromJson(value, `[${index}].`), `[${index}].`),
            );
            for (const event of events)
              if (event.deployed !== undefined)
                takeFunctionToken(options.traffic, event.deployed.ref, client);
            return enqueueAll(
              options,
              events.map((event) => carryTrace(event, traceparent)),
            );
          })
          .then(
            (messages) =>
              sendJson(res, 202, { accepted: messages.length, invocations: messages.map(accepted) }),
            fail,
          );
        return;
      }
      if (mediaType.startsWith('application/cloudevents')) {
        if (mediaType !== STRUCTURED)
          throw new HearthError(
            'HEARTH_E_BAD_REQUEST',
            `content-type ${mediaType} is an event format this platform does not read; expected ${STRUCTURED} (structured mode), ${BATCH} (batched mode) or ce-* headers (binary mode)`,
            { details: { field: 'content-type', value: mediaType, expected: `${STRUCTURED} or ${BATCH}` } },
          );
        readBody(req, MAX_EVENTS_BODY_BYTES, eventsTooLarge)
          .then((body) => {
            const value = parseJsonBody(body);
            if (Array.isArray(value))
              throw new HearthError(
                'HEARTH_E_BAD_REQUEST',
                `a ${STRUCTURED} body is one event (a JSON object); a JSON array is a batch, sent as ${BATCH}`,
              );
            const event = routeEvent(options, namespace, eventFromJson(value, ''), '');
            deliver(
              options,
              req,
              res,
              event,
              respondAsync,
              client,
              trace(traceparent, tracestate),
              traceparent,
            );
          })
          .catch(fail);
        return;
      }
      if (!hasCeHeader)
        throw new HearthError(
          'HEARTH_E_BAD_REQUEST',
          `no CloudEvent in the request: it has no ce-* headers (binary mode) and its content-type is ${mediaType === '' ? 'absent' : mediaType}, not ${STRUCTURED} or ${BATCH}`,
          {
            details: {
              field: 'ce-specversion',
              expected: `ce-* headers, or content-type ${STRUCTURED} or ${BATCH}`,
            },
          },
        );
      // Binary mode: the attributes are all in the headers, so a bad event is refused before its body is read.
      const attributes = attributesFromHeaders(raw);
      const routed = routeEvent(options, namespace, { attributes, data: EMPTY }, 'ce-');
      readBody(req, maxBodyOf(options.scheduler, routed)).then(
        (data) =>
          deliver(
            options,
            req,
            res,
            { ...routed, data },
            respondAsync,
            client,
            trace(traceparent, tracestate),
            traceparent,
          ),
        fail,
      );
    } catch (error) {
      fail(error);
    }
  };
}

/** RFC 7240: `Prefer: respond-async` (a token among others, in any case; parameters ignored). */
function prefersAsync(prefer: string): boolean {
  if (prefer === '') return false;
  for (const part of prefer.split(',')) {
    if ((part.split(';')[0] ?? '').trim().toLowerCase() === 'respond-async') return true;
  }
  return false;
}

function trace(
  traceparent: string | undefined,
  tracestate: string | undefined,
): ((invocationId: string) => TraceContext) | undefined {
  const incoming = traceparent === undefined ? undefined : parseTraceparent(traceparent);
  return incoming === undefined
    ? undefined
    : (invocationId: string) => traceFor(invocationId, incoming, tracestate);
}

function eventsTooLarge(size: number, maxBytes: number): HearthError {
  return new HearthError(
    'HEARTH_E_BODY_TOO_LARGE',
    `request body is ${size} bytes or more; ${EVENTS_PATH} reads at most ${maxBytes} bytes of structured or batched events (send larger data in binary mode, bounded by the function's limits.maxBody)`,
    { details: { value: size, expected: `at most ${maxBytes} bytes` } },
  );
}

function parseBatch(body: Buffer): unknown[] {
  const value = parseJsonBody(body);
  if (!Array.isArray(value))
    throw new HearthError(
      'HEARTH_E_BAD_REQUEST',
      `a ${BATCH} body is a JSON array of events; got ${value === null ? 'null' : typeof value}`,
      { details: { expected: 'a JSON array of CloudEvents' } },
    );
  if (value.length > MAX_BATCH_EVENTS)
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `a batch holds ${value.length} events; at most ${MAX_BATCH_EVENTS} are accepted at once`,
      { details: { field: 'batch', value: value.length, expected: `at most ${MAX_BATCH_EVENTS} events` } },
    );
  return value;
}

// --- reading one event --------------------------------------------------------------------------------

const CONTEXT = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'subject',
  'time',
  'datacontenttype',
  'dataschema',
]);
/** Attribute names are lower-case letters and digits (CloudEvents 1.0, "Attribute Naming Convention"). */
const ATTRIBUTE_NAME = /^[a-z0-9]+$/;
/** RFC 3339 date-time, as the `time` attribute must be. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

interface ParsedEvent {
  readonly attributes: CloudEventAttributes;
  readonly data: Buffer;
}

/**
 * A missing or bad attribute, named with its place: `type`, `[3].type` in a batch, `ce-type` (the header)
 * in binary mode.
 */
function badAttribute(at: string, name: string, value: unknown, expected: string): HearthError {
  const field = `${at}${name}`;
  const where = at === 'ce-' ? ` (header ${field})` : at === '' ? '' : ` (event ${at.slice(0, -1)})`;
  if (value === undefined)
    return new HearthError(
      'HEARTH_E_VALIDATION',
      `CloudEvent attribute ${name} is missing${where}; expected ${expected}`,
      { details: { field, expected } },
    );
  const error = invalidField(field, value, expected);
  return new HearthError(
    'HEARTH_E_VALIDATION',
    `CloudEvent attribute ${name}${where}: ${error.message.slice(field.length + 2)}`,
    {
      ...(error.details === undefined ? {} : { details: error.details }),
    },
  );
}

function checkContext(get: (name: string) => unknown, at: string): void {
  const specversion = get('specversion');
  if (specversion !== '1.0')
    throw badAttribute(at, 'specversion', specversion, '"1.0" (the only CloudEvents version accepted)');
  for (const name of ['id', 'source', 'type']) {
    const value = get(name);
    if (typeof value !== 'string' || value === '')
      throw badAttribute(at, name, value, 'a non-empty string (a required CloudEvents attribute)');
  }
  for (const name of ['subject', 'datacontenttype', 'dataschema']) {
    const value = get(name);
    if (value !== undefined && typeof value !== 'string') throw badAttribute(at, name, value, 'a string');
  }
  const time = get('time');
  if (time !== undefined && (typeof time !== 'string' || !RFC3339.test(time)))
    throw badAttribute(at, 'time', time, 'an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z');
}

function contextOf(get: (name: string) => unknown): Omit<CloudEventAttributes, 'extensions'> {
  const out: Record<string, unknown> = {};
  for (const name of CONTEXT) {
    const value = get(name);
    if (value !== undefined) out[name] = value;
  }
  return out as unknown as Omit<CloudEventAttributes, 'extensions'>;
}

/** A structured-mode event (or one of a batch), its data turned into the bytes a binary-mode body would hold. */
export function eventFromJson(value: unknown, at: string): ParsedEvent {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new HearthError(
      'HEARTH_E_BAD_REQUEST',
      `${at === '' ? 'the event' : `event ${at.slice(0, -1)}`} is ${Array.isArray(value) ? 'an array' : describeType(value)}; expected a JSON object with the CloudEvents attributes`,
      { details: { ...(at === '' ? {} : { field: at.slice(0, -1) }), expected: 'a JSON object' } },
    );
  const object = value as Record<string, unknown>;
  // JSON format: a null attribute is an absent one.
  const get = (name: string): unknown => (object[name] === null ? undefined : object[name]);
  checkContext(get, at);
  let extensions: Record<string, string | number | boolean> | undefined;
  for (const name of Object.keys(object)) {
    if (CONTEXT.has(name) || name === 'data' || name === 'data_base64') continue;
    const extension = object[name];
    if (extension === null) continue;
    if (!ATTRIBUTE_NAME.test(name))
      throw badAttribute(at, name, extension, 'an attribute name of lower-case letters and digits only');
    if (typeof extension !== 'string' && typeof extension !== 'boolean' && !Number.isInteger(extension))
      throw badAttribute(at, name, extension, 'a string, an integer or a boolean (an extension attribute)');
    extensions ??= {};
    extensions[name] = extension as string | number | boolean;
  }
  const context = contextOf(get);
  const data = get('data');
  const base64 = get('data_base64');
  if (data !== undefined && base64 !== undefined)
    throw badAttribute(at, 'data_base64', '(present)', 'either data or data_base64, not both');
  let body = EMPTY;
  let contentType = context.datacontenttype;
  if (base64 !== undefined) {
    if (typeof base64 !== 'string' || !BASE64.test(base64.replace(/\s/g, '')))
      throw badAttribute(at, 'data_base64', base64, 'base64 text');
    body = Buffer.from(base64, 'base64');
    contentType ??= 'application/octet-stream';
  } else if (data !== undefined) {
    // A string with a textual, non-JSON content type is the data itself; anything else is JSON.
    if (typeof data === 'string' && contentType !== undefined && !isJsonType(contentType))
      body = Buffer.from(data, 'utf8');
    else {
      body = Buffer.from(JSON.stringify(data), 'utf8');
      contentType ??= 'application/json';
    }
  }
  return {
    attributes: {
      ...context,
      ...(contentType === undefined ? {} : { datacontenttype: contentType }),
      ...(extensions === undefined ? {} : { extensions }),
    } as CloudEventAttributes,
    data: body,
  };
}

/** Binary mode: `ce-<attribute>` headers (percent-decoded), `content-type` as datacontenttype. */
export function attributesFromHeaders(raw: readonly string[]): CloudEventAttributes {
  const found = new Map<string, string>();
  let contentType: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name === 'content-type') contentType = raw[i + 1];
    else if (name.startsWith('ce-')) found.set(name.slice(3), percentDecoded(raw[i + 1] ?? ''));
  }
  checkContext((name) => found.get(name), 'ce-');
  let extensions: Record<string, string> | undefined;
  for (const [name, value] of found) {
    if (CONTEXT.has(name) || name === 'datacontenttype') continue;
    if (!ATTRIBUTE_NAME.test(name))
      throw badAttribute('ce-', name, value, 'an attribute name of lower-case letters and digits only');
    extensions ??= {};
    extensions[name] = value;
  }
  return {
    ...contextOf((name) => found.get(name)),
    ...(contentType === undefined ? {} : { datacontenttype: contentType }),
    ...(extensions === undefined ? {} : { extensions }),
  } as CloudEventAttributes;
}

/** The binding percent-encodes header values; a value that is not valid percent-encoding is taken as sent. */
function percentDecoded(value: string): string {
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function isJsonType(contentType: string): boolean {
  const media = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return media === 'application/json' || media.endsWith('+json') || media === 'text/json';
}

function describeType(value: unknown): string {
  return value === null ? 'null' : `a ${typeof value}`;
}

// --- routing and delivery -----------------------------------------------------------------------------

/** `?namespace=NAME` chooses whose Trigger resources take events that name no function; default `default`. */
function namespaceOf(url: string): string {
  const query = url.indexOf('?');
  if (query < 0) return 'default';
  const given = new URLSearchParams(url.slice(query + 1)).get('namespace');
  if (given === null) return 'default';
  if (!NAMESPACE.test(given))
    throw new HearthError('HEARTH_E_VALIDATION', `namespace: got "${given}", expected a namespace name`, {
      details: { field: 'namespace', value: given, expected: 'a lower-case DNS label' },
    });
  return given;
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The function a subject names: `name` or `name.namespace`, as in `/function/<name>.<namespace>`. */
function subjectRef(subject: string, namespace: string): FunctionRef {
  const dot = subject.indexOf('.');
  return dot < 0
    ? { namespace, name: subject }
    : { namespace: subject.slice(dot + 1), name: subject.slice(0, dot) };
}

function placeOf(at: string): string {
  return at === 'ce-' ? ' (header ce-subject)' : at === '' ? '' : ` (event ${at.slice(0, -1)})`;
}

/**
 * Routes one parsed event: to the function its subject names, else to the Trigger resources of `namespace`
 * whose filter takes it. Neither: 404 naming the subject, or 400 naming the missing subject.
 */
export function routeEvent(
  options: { readonly scheduler: Pick<Scheduler, 'lookup'>; readonly triggers?: TriggerRouting | undefined },
  namespace: string,
  event: ParsedEvent,
  at: string,
): RoutedEvent {
  const { subject } = event.attributes;
  if (subject !== undefined && subject !== '') {
    const ref = subjectRef(subject, namespace);
    const deployed = options.scheduler.lookup(ref);
    if (deployed !== undefined) {
      checkSize(event.data, deployed, at);
      return { ...event, deployed };
    }
  }
  const triggers = options.triggers?.matching(namespace, event.attributes) ?? [];
  if (triggers.length > 0) {
    for (const trigger of triggers) {
      const deployed = options.scheduler.lookup(trigger.ref);
      if (deployed !== undefined) checkSize(event.data, deployed, at);
    }
    return { ...event, triggers };
  }
  const field = `${at}subject`;
  if (subject === undefined || subject === '')
    throw badAttribute(
      at,
      'subject',
      subject,
      `the function to deliver the event to, as name or name.namespace (no Trigger of namespace ${namespace} matches this event)`,
    );
  const ref = subjectRef(subject, namespace);
  throw new HearthError(
    'HEARTH_E_FN_NOT_FOUND',
    `CloudEvent subject "${subject}"${placeOf(at)} names no deployed function (looked for ${ref.name} in namespace ${ref.namespace}) and no Trigger of namespace ${namespace} matches it; nothing was accepted`,
    { details: { field, value: subject, expected: 'name or name.namespace of a deployed function' } },
  );
}

function checkSize(data: Buffer, deployed: DeployedVersion, at: string): void {
  const max = deployed.spec.limits.maxBodyBytes;
  if (data.length > max) {
    const error = tooLarge(data.length, max);
    throw new HearthError(
      'HEARTH_E_BODY_TOO_LARGE',
      `${at === '' || at === 'ce-' ? '' : `event ${at.slice(0, -1)}: `}its data is ${data.length} bytes; function ${deployed.ref.name} accepts at most ${max} bytes (limits.maxBody)`,
      { details: { ...error.details, ...(at === '' || at === 'ce-' ? {} : { index: at.slice(1, -2) }) } },
    );
  }
}

/** The body bound of a binary-mode event: its function's, or the smallest of its triggers' targets. */
function maxBodyOf(scheduler: Scheduler, routed: RoutedEvent): number {
  if (routed.deployed !== undefined) return routed.deployed.spec.limits.maxBodyBytes;
  let max = MAX_EVENTS_BODY_BYTES;
  for (const trigger of routed.triggers) {
    const limit = scheduler.lookup(trigger.ref)?.spec.limits.maxBodyBytes;
    if (limit !== undefined && limit < max) max = limit;
  }
  return max;
}

function takeFunctionToken(traffic: Traffic, ref: FunctionRef, client: () => string): string[] | undefined {
  if (!traffic.functionLimited) return undefined;
  const rule = traffic.functionRule(ref);
  return rule === undefined ? undefined : takeTokens([rule], client())?.headers;
}

function deliver(
  options: EventsIngressOptions,
  req: IncomingMessage,
  res: ServerResponse,
  event: RoutedEvent,
  respondAsync: boolean,
  client: () => string,
  traceOf: ((invocationId: string) => TraceContext) | undefined,
  traceparent: string | undefined,
): void {
  const fail = (error: unknown, invocationId?: string): void =>
    sendError(res, error, invocationId, options.onInternal);
  let limitHeaders: string[] | undefined;
  try {
    if (event.deployed !== undefined)
      limitHeaders = takeFunctionToken(options.traffic, event.deployed.ref, client);
  } catch (error) {
    fail(error);
    return;
  }
  if (event.deployed === undefined) {
    // Trigger resources take it: like a Knative broker, the ingress answers once it is queued for each.
    enqueueAll(options, [carryTrace(event, traceparent)]).then(
      (messages) => sendJson(res, 202, { accepted: messages.length, invocations: messages.map(accepted) }),
      fail,
    );
    return;
  }
  if (respondAsync) {
    enqueueAll(options, [carryTrace(event, traceparent)]).then((messages) => {
      const message = messages[0] as QueueMessage;
      const headers: Record<string, string> = {
        'preference-applied': 'respond-async',
        'x-hearth-invocation-id': message.id,
        location: statusUrl(message.id),
      };
      for (let i = 0; limitHeaders !== undefined && i + 1 < limitHeaders.length; i += 2)
        headers[limitHeaders[i] as string] = limitHeaders[i + 1] as string;
      sendJson(res, 202, accepted(message), headers);
    }, fail);
    return;
  }
  const { deployed, attributes } = event;
  const invocationId = randomUUID();
  const started = performance.now();
  const timeoutMs = deployed.spec.limits.timeoutMs;
  const trace = traceOf?.(invocationId);
  const request: InvocationRequest = {
    invocationId,
    method: 'POST',
    path: '/',
    rawQuery: '',
    rawHeaders: binaryModeHeaders(attributes),
    body: event.data,
    sourceIp: req.socket.remoteAddress ?? '',
    deadline: Date.now() + timeoutMs,
    timeoutMs,
    timeoutSource: 'limits.timeout',
    event: attributes,
    ...(trace === undefined ? {} : { trace }),
  };
  options.scheduler.submit(deployed.ref, request, (error, response) => {
    const ok = error === undefined && response !== undefined;
    if (!ok) fail(error, invocationId);
    else if (!writeResponse(res, response, invocationId, limitHeaders ?? []))
      fail(
        new HearthError('HEARTH_E_FN_CRASHED', 'the function returned an invalid response header'),
        invocationId,
      );
    if (invocationChannel.hasSubscribers)
      invocationChannel.publish({
        ref: deployed.ref,
        version: response?.version ?? deployed.version,
        invocationId,
        status: res.statusCode,
        durationMs: performance.now() - started,
        waitMs: response?.waitMs ?? 0,
        coldStart: response?.coldStart ?? false,
        errorCode: ok ? undefined : isHearthError(error) ? error.code : 'HEARTH_E_INTERNAL',
        trigger: 'cloudevents',
        startedAt: performance.timeOrigin + started,
        trace,
        method: 'POST',
        path: '/',
        ...(response === undefined ? {} : { instanceId: response.instanceId }),
      } satisfies InvocationEvent);
  });
}

/**
 * Queues the events (all in one event-loop turn, so the queue's group commit writes them in one transaction),
 * one message per target: the subject's function, or each matching Trigger. An event's `source` and `id`
 * identify it (CloudEvents 1.0): a producer that sends one again — say after a lost 202 — gets the message
 * already queued for it, not a second delivery.
 */
export function enqueueAll(
  options: Pick<EventsIngressOptions, 'queue' | 'retry' | 'onAccepted'>,
  events: readonly RoutedEvent[],
): Promise<QueueMessage[]> {
  const messages: Promise<QueueMessage>[] = [];
  for (const event of events) {
    const request = {
      method: 'POST',
      path: '/',
      rawQuery: '',
      headers: binaryModeHeaders(event.attributes),
      body: event.data,
      event: event.attributes,
    };
    const identity = `${event.attributes.source}\n${event.attributes.id}`;
    const targets =
      event.deployed !== undefined
        ? [{ ref: event.deployed.ref, retry: options.retry, source: EVENTS_QUEUE_SOURCE, key: 'cloudevents' }]
        : event.triggers.map((trigger) => ({
            ref: trigger.ref,
            retry: trigger.retry,
            source: `trigger:${trigger.id}`,
            key: `trigger:${trigger.id}`,
          }));
    for (const target of targets) {
      const message: NewMessage = {
        ref: { namespace: target.ref.namespace, name: target.ref.name },
        source: target.source,
        request,
        maxAttempts: target.retry.attempts,
        backoffMs: target.retry.backoffMs,
        maxBackoffMs: target.retry.maxBackoffMs,
        dedupeKey: `${target.key}\n${target.ref.namespace}/${target.ref.name}\n${identity}`,
      };
      messages.push(options.queue.enqueue(message));
    }
  }
  return Promise.all(messages).then((queued) => {
    options.onAccepted();
    return queued;
  });
}

/**
 * A queued event keeps the client's `traceparent` as its distributed-tracing extension (CloudEvents'
 * `traceparent`), so whatever delivers it later continues the client's trace; one the event has wins.
 */
function carryTrace(event: RoutedEvent, traceparent: string | undefined): RoutedEvent {
  if (
    traceparent === undefined ||
    event.attributes.extensions?.traceparent !== undefined ||
    parseTraceparent(traceparent) === undefined
  )
    return event;
  return {
    ...event,
    attributes: {
      ...event.attributes,
      extensions: { ...event.attributes.extensions, traceparent },
    },
  };
}

function statusUrl(id: string): string {
  return `/api/v1/invocations/${id}`;
}

function accepted(message: QueueMessage): Record<string, unknown> {
  return {
    id: message.id,
    status: message.state,
    function: message.ref.name,
    namespace: message.ref.namespace,
    eventId: message.request.event?.id,
    eventSource: message.request.event?.source,
    statusUrl: statusUrl(message.id),
  };
}

const EMPTY = Buffer.alloc(0);
