/**
 * @module One Trigger following the event log (projections): it reads the log in global order after its
 * durable cursor, delivers each event its filter takes to its function (retrying in place, so a stream's
 * events stay in order), dead-letters an event whose retries ran out, and moves the cursor only past
 * events that are settled. A crash between a delivery and the cursor's write delivers that event again:
 * at-least-once, so projections are idempotent by event id.
 */

import { randomUUID } from 'node:crypto';
import {
  binaryModeHeaders,
  type CloudEventAttributes,
  type InvocationRequest,
  type InvocationResponse,
} from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import { filterMatches } from '../domain/eventing.js';
import { type InvocationEvent, invocationChannel } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import { parseTraceparent, type TraceContext, traceFor } from '../domain/trace.js';
import { backoffDelay } from '../domain/triggers.js';
import type { EventLog, StoredStreamEvent } from '../eventlog/index.js';
import type { Scheduler } from '../scheduler/index.js';
import { countDelivery, deliveryFailure, retryable, sleep } from '../triggers/delivery.js';
import type { ActiveTrigger } from './index.js';
import type { TriggerStore } from './store.js';

const BATCH = 256;
/** Appends in this process wake the runner at once; this poll only covers a missed wake-up. */
const POLL_MS = 1000;
const ERROR_PAUSE_MS = 1000;

export interface ProjectionDeps {
  readonly log: EventLog;
  readonly store: TriggerStore;
  readonly scheduler: Pick<Scheduler, 'lookup' | 'invoke'>;
  readonly startFrom: 'latest' | 'earliest';
  readonly deadLetter: (
    event: CloudEventAttributes,
    body: Buffer,
    attempts: number,
    reason: string,
  ) => Promise<void>;
  readonly replied: (
    ref: FunctionRef,
    response: InvocationResponse,
    cause: { hops: number; trail: string; invocationId: string; trace: TraceContext | undefined },
  ) => Promise<void>;
  readonly warn: (message: string) => void;
}

/** The CloudEvent a stream event is delivered as. */
export function streamEventAttributes(event: StoredStreamEvent): CloudEventAttributes {
  const colon = event.scope.indexOf(':');
  const owner = event.scope.slice(colon + 1);
  return {
    specversion: '1.0',
    id: event.id,
    source: `/streams/${owner}`,
    type: event.type,
    subject: event.stream,
    time: new Date(event.time).toISOString(),
    datacontenttype: 'application/json',
    extensions: {
      streamversion: event.version,
      streamposition: event.position,
      ...(event.traceparent === undefined ? {} : { traceparent: event.traceparent }),
    },
  };
}

/** The namespace a stream belongs to: `fn:<ns>/<name>` or `ns:<ns>`. */
export function namespaceOfScope(scope: string): string {
  const rest = scope.slice(scope.indexOf(':') + 1);
  const slash = rest.indexOf('/');
  return slash < 0 ? rest : rest.slice(0, slash);
}

export class ProjectionRunner {
  /** Every event up to here is settled (delivered, dead-lettered or not taken by the filter). */
  position = 0;
  private readonly abort = new AbortController();
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly trigger: ActiveTrigger,
    private readonly deps: ProjectionDeps,
  ) {}

  start(): void {
    this.loop = this.run().catch((error: unknown) =>
      this.deps.warn(`trigger ${this.trigger.id}: projection stopped: ${String(error)}`),
    );
  }

  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.wakeUp?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { store, log } = this.deps;
    const saved = store.cursor(this.trigger.id);
    if (saved === undefined) {
      // A new trigger: from the log's end (appends from now on), or from its start to rebuild a projection.
      this.position = this.deps.startFrom === 'earliest' ? 0 : await log.head();
      store.setCursor(this.trigger.id, this.position);
    } else this.position = saved;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        await this.step();
      } catch (error) {
        // The log or the cursor store failed (a busy file, a full disk): say so, wait, and go on from the
        // cursor, which only ever records settled events.
        if (signal.aborted) break;
        this.deps.warn(`trigger ${this.trigger.id}: projection paused: ${String(error)}`);
        await sleep(ERROR_PAUSE_MS, signal);
      }
    }
  }

  /** One batch of the log after the cursor: deliver what the filter takes, then record how far it got. */
  private async step(): Promise<void> {
    const { store, log } = this.deps;
    const signal = this.abort.signal;
    this.woken = false;
    const batch = await log.readAll(this.position, BATCH);
    if (batch.length === 0) {
      await this.idle();
      return;
    }
    for (const event of batch) {
      if (signal.aborted) break;
      const attributes = streamEventAttributes(event);
      if (
        namespaceOfScope(event.scope) === this.trigger.namespace &&
        filterMatches(this.trigger.manifest.spec.filter, attributes)
      ) {
        const settled = await this.deliver(event, attributes);
        if (!settled) break;
        store.setCursor(this.trigger.id, event.position);
      }
      this.position = event.position;
    }
    // Events the filter passed over need no write each; the batch's end is recorded once.
    store.setCursor(this.trigger.id, this.position);
  }

  private idle(): Promise<void> {
    if (this.woken || this.abort.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, POLL_MS);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        this.wakeUp = undefined;
        done();
      };
    });
  }

  /** Delivers with retries; false when stopped before the event was settled (it stays unsettled). */
  private async deliver(event: StoredStreamEvent, attributes: CloudEventAttributes): Promise<boolean> {
    const { retry } = this.trigger.target;
    const counters = this.trigger.counters;
    const signal = this.abort.signal;
    const body = Buffer.from(event.data, 'utf8');
    let failure: HearthError | undefined;
    let attempt = 1;
    for (; attempt <= retry.attempts; attempt++) {
      failure = await this.deliverOnce(event, attributes, body);
      if (failure === undefined) return true;
      if (!retryable(failure) || attempt === retry.attempts) break;
      counters.retried += 1;
      await sleep(backoffDelay(retry, attempt), signal);
      if (signal.aborted) return false;
    }
    const reason = failure === undefined ? 'unknown' : `${failure.code}: ${failure.message}`;
    try {
      await this.deps.deadLetter(attributes, body, Math.min(attempt, retry.attempts), reason);
    } catch (error) {
      this.deps.warn(`trigger ${this.trigger.id}: could not dead-letter event ${event.id}: ${String(error)}`);
      return false;
    }
    this.deps.warn(
      `trigger ${this.trigger.id}: stream event ${event.stream}@${event.version} (${event.id}) dead-lettered: ${reason}`,
    );
    return true;
  }

  private async deliverOnce(
    event: StoredStreamEvent,
    attributes: CloudEventAttributes,
    body: Buffer,
  ): Promise<HearthError | undefined> {
    const ref = this.trigger.target.ref;
    const counters = this.trigger.counters;
    const deployed = this.deps.scheduler.lookup(ref);
    const started = performance.now();
    const invocationId = randomUUID();
    let failure: HearthError | undefined;
    let status = 0;
    counters.inFlight += 1;
    try {
      if (deployed === undefined)
        throw new HearthError(
          'HEARTH_E_FN_NOT_FOUND',
          `function ${ref.name} not found in namespace ${ref.namespace}`,
        );
      const timeoutMs = deployed.spec.limits.timeoutMs;
      const incoming = parseTraceparent(event.traceparent);
      const trace = incoming === undefined ? undefined : traceFor(invocationId, incoming);
      const request: InvocationRequest = {
        invocationId,
        method: 'POST',
        path: '/',
        rawQuery: '',
        rawHeaders: binaryModeHeaders(attributes),
        body,
        sourceIp: '',
        deadline: Date.now() + timeoutMs,
        timeoutMs,
        timeoutSource: 'limits.timeout',
        event: attributes,
        ...(trace === undefined ? {} : { trace }),
      };
      const response = await this.deps.scheduler.invoke(ref, request);
      status = response.status;
      if (response.status >= 500)
        failure = new HearthError('HEARTH_E_FN_ERROR', `the function answered HTTP ${response.status}`);
      else if (response.status < 300)
        await this.deps.replied(ref, response, { hops: 0, trail: '', invocationId, trace });
    } catch (error) {
      failure = deliveryFailure(error);
      status = failure.status;
    } finally {
      counters.inFlight -= 1;
    }
    countDelivery(counters, failure);
    if (invocationChannel.hasSubscribers)
      invocationChannel.publish({
        ref,
        version: deployed?.version ?? 0,
        invocationId,
        status,
        durationMs: performance.now() - started,
        waitMs: 0,
        coldStart: false,
        errorCode: failure?.code,
        trigger: 'cloudevents',
      } satisfies InvocationEvent);
    return failure;
  }
}
