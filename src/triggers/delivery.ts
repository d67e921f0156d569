/**
 * @module Turning one event into one invocation: the CloudEvent, the request the guest turns into the
 * handler's `event`, and the success rule every trigger shares (an answer below 500). Counters and the
 * last error feed each trigger's status.
 */

import { randomUUID } from 'node:crypto';
import {
  binaryModeHeaders,
  type CloudEventAttributes,
  type InvocationRequest,
} from '../domain/deployment.js';
import { HearthError, isHearthError } from '../domain/errors.js';
import {
  type DeliveryEvent,
  deliveryChannel,
  type InvocationEvent,
  invocationChannel,
} from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import { backoffDelay, type RetryPolicy, type TriggerKind, type TriggerStatus } from '../domain/triggers.js';
import type { QueuedRequest } from '../queue/index.js';
import type { TriggerConfig, TriggerHost } from './index.js';

export interface TriggerCounters {
  delivered: number;
  failed: number;
  retried: number;
  deadLettered: number;
  inFlight: number;
  lastError: { message: string; at: string } | undefined;
  lastDeliveryAt: string | undefined;
}

/** The counter half of a trigger's status, the same for every source. */
export function countersStatus(
  counters: TriggerCounters,
): Pick<
  TriggerStatus,
  'delivered' | 'failed' | 'retried' | 'deadLettered' | 'inFlight' | 'lastError' | 'lastDeliveryAt'
> {
  return {
    delivered: counters.delivered,
    failed: counters.failed,
    retried: counters.retried,
    deadLettered: counters.deadLettered,
    inFlight: counters.inFlight,
    lastError: counters.lastError ?? null,
    lastDeliveryAt: counters.lastDeliveryAt ?? null,
  };
}

export function newCounters(): TriggerCounters {
  return {
    delivered: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
    inFlight: 0,
    lastError: undefined,
    lastDeliveryAt: undefined,
  };
}

export interface EventTarget {
  readonly ref: FunctionRef;
  readonly priority?: number;
  /** A gateway route's `timeout`, when shorter than the function's. */
  readonly timeoutMs?: number;
}

/** Guesses the content type of an event without one: JSON if it parses, text if it is UTF-8, else bytes. */
export function sniffContentType(body: Buffer): string {
  if (body.length === 0) return 'application/json';
  const first = body[0];
  if (first === 0x7b || first === 0x5b || first === 0x22) {
    try {
      JSON.parse(body.toString('utf8'));
      return 'application/json';
    } catch {
      // not JSON
    }
  }
  const text = body.toString('utf8');
  return Buffer.byteLength(text) === body.length && !text.includes('\uFFFD')
    ? 'text/plain'
    : 'application/octet-stream';
}

/** The request a trigger hands the scheduler: a POST carrying the event's data, CloudEvents attributes in `event`. */
export function eventRequest(
  host: TriggerHost,
  target: EventTarget,
  event: CloudEventAttributes,
  body: Buffer,
): InvocationRequest {
  const deployed = host.lookup(target.ref);
  if (deployed === undefined)
    throw new HearthError(
      'HEARTH_E_FN_NOT_FOUND',
      `function ${target.ref.name} not found in namespace ${target.ref.namespace}`,
    );
  const fnTimeout = deployed.spec.limits.timeoutMs;
  const timeoutMs =
    target.timeoutMs !== undefined && target.timeoutMs < fnTimeout ? target.timeoutMs : fnTimeout;
  const headers = binaryModeHeaders(event);
  return {
    invocationId: randomUUID(),
    method: 'POST',
    path: '/',
    rawQuery: '',
    rawHeaders: headers,
    body,
    sourceIp: '',
    deadline: Date.now() + timeoutMs,
    timeoutMs,
    timeoutSource: timeoutMs < fnTimeout ? 'route.timeout' : 'limits.timeout',
    event,
    ...(target.priority === undefined ? {} : { priority: target.priority }),
  };
}

/** What a delivery that threw failed with, as a HearthError. */
export function deliveryFailure(error: unknown): HearthError {
  return isHearthError(error)
    ? error
    : new HearthError('HEARTH_E_INTERNAL', error instanceof Error ? error.message : String(error));
}

/** Books one finished delivery (not in flight any more) in its trigger's counters. */
export function countDelivery(counters: TriggerCounters, failure: HearthError | undefined): void {
  counters.lastDeliveryAt = new Date().toISOString();
  if (failure === undefined) counters.delivered += 1;
  else {
    counters.failed += 1;
    counters.lastError = { message: `${failure.code}: ${failure.message}`, at: counters.lastDeliveryAt };
  }
}

/**
 * Invokes `target` with one event; resolves with undefined on success (an answer below 500) or with the
 * failure as a HearthError. Never rejects.
 */
export async function deliverOnce(
  host: TriggerHost,
  source: { readonly id: string; readonly kind: TriggerKind },
  target: EventTarget,
  event: CloudEventAttributes,
  body: Buffer,
  attempt: number,
  counters: TriggerCounters,
): Promise<HearthError | undefined> {
  const started = performance.now();
  counters.inFlight += 1;
  let failure: HearthError | undefined;
  let status = 0;
  let invocationId = '';
  try {
    const request = eventRequest(host, target, event, body);
    invocationId = request.invocationId;
    const response = await host.invoke(target.ref, request);
    status = response.status;
    if (response.status >= 500)
      failure = new HearthError('HEARTH_E_FN_ERROR', `the function answered HTTP ${response.status}`);
  } catch (error) {
    failure = deliveryFailure(error);
    status = failure.status;
  } finally {
    counters.inFlight -= 1;
  }
  countDelivery(counters, failure);
  if (invocationChannel.hasSubscribers)
    invocationChannel.publish({
      ref: target.ref,
      version: host.lookup(target.ref)?.version ?? 0,
      invocationId,
      status,
      durationMs: performance.now() - started,
      waitMs: 0,
      coldStart: false,
      errorCode: failure?.code,
      trigger: source.kind,
    } satisfies InvocationEvent);
  publishDelivery(
    source,
    target.ref,
    failure === undefined ? 'delivered' : 'retry',
    attempt,
    started,
    failure,
  );
  return failure;
}

/** How {@link deliverWithRetries} ended: delivered (`failure` undefined), out of attempts, or stopped. */
export interface RetriedDelivery {
  readonly failure: HearthError | undefined;
  readonly attempts: number;
  readonly started: number;
  /** The trigger stopped mid-retry: the event is unfinished, so neither acked nor dead-lettered. */
  readonly aborted: boolean;
}

/** Delivers with the trigger's retry policy: exponential backoff between attempts, none for hopeless errors. */
export async function deliverWithRetries(
  host: TriggerHost,
  source: { readonly id: string; readonly kind: TriggerKind },
  target: EventTarget,
  event: CloudEventAttributes,
  body: Buffer,
  retry: RetryPolicy,
  counters: TriggerCounters,
  signal: AbortSignal,
): Promise<RetriedDelivery> {
  const started = performance.now();
  let failure: HearthError | undefined;
  let attempt = 1;
  for (; attempt <= retry.attempts; attempt++) {
    failure = await deliverOnce(host, source, target, event, body, attempt, counters);
    if (failure === undefined) break;
    if (!retryable(failure) || attempt === retry.attempts || signal.aborted) break;
    counters.retried += 1;
    await sleep(backoffDelay(retry, attempt), signal);
    if (signal.aborted) break;
  }
  return { failure, attempts: Math.min(attempt, retry.attempts), started, aborted: signal.aborted };
}

/**
 * Keeps an event in the platform's dead-letter list (`hearth dlq`), for sources without a dead-letter
 * destination of their own. Counted once stored, so a status that says "dead-lettered" can be read back.
 */
export async function enqueueDeadLetter(
  host: TriggerHost,
  trigger: Pick<TriggerConfig, 'id' | 'kind' | 'retry'>,
  ref: FunctionRef | undefined,
  request: Pick<QueuedRequest, 'headers' | 'body' | 'event'>,
  attempts: number,
  reason: string,
  counters: TriggerCounters,
): Promise<void> {
  await host.queue.enqueue({
    ref: ref ?? { namespace: 'default', name: 'unrouted' },
    source: `${trigger.kind}:${trigger.id}`,
    request: { method: 'POST', path: '/', rawQuery: '', ...request },
    maxAttempts: trigger.retry.attempts,
    backoffMs: trigger.retry.backoffMs,
    maxBackoffMs: trigger.retry.maxBackoffMs,
    attempts,
    deadLetter: { code: 'HEARTH_E_FN_ERROR', message: reason },
  });
  counters.deadLettered += 1;
}

export function publishDelivery(
  source: { readonly id: string; readonly kind: TriggerKind },
  ref: FunctionRef,
  outcome: DeliveryEvent['outcome'],
  attempt: number,
  started: number,
  failure: HearthError | undefined,
): void {
  if (!deliveryChannel.hasSubscribers) return;
  deliveryChannel.publish({
    source: source.id,
    kind: source.kind,
    ref,
    outcome,
    attempt,
    durationMs: performance.now() - started,
    error: failure === undefined ? undefined : `${failure.code}: ${failure.message}`,
  } satisfies DeliveryEvent);
}

/** Whether another attempt could help: a missing function or a bad request will not get better. */
export function retryable(error: HearthError): boolean {
  return (
    error.code !== 'HEARTH_E_FN_NOT_FOUND' &&
    error.code !== 'HEARTH_E_VALIDATION' &&
    error.code !== 'HEARTH_E_BODY_TOO_LARGE'
  );
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** An error's message with its causes (client libraries often hide the socket error in `cause`). */
export function errorText(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current.message !== '' && !parts.includes(current.message)) parts.push(current.message);
    const inner: unknown =
      current instanceof AggregateError && current.errors.length > 0 ? current.errors[0] : current.cause;
    current = inner;
  }
  return parts.join(': ') || String(error);
}

/** Reconnect delays: 1s, 2s, 4s… up to 30s, so a broker that stays away is not hammered or logged every second. */
export function reconnectDelay(failures: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.min(5, Math.max(0, failures - 1)));
}
