/**
 * @module Runs what the durable queue holds: leases due messages, invokes them (through a port, so the
 * queue knows nothing of the scheduler), then completes, retries with exponential backoff, or
 * dead-letters them; POSTs results to callback URLs with their own retries; drops results past retention.
 */

import type { InvocationResponse } from '../domain/deployment.js';
import { isHearthError } from '../domain/errors.js';
import { type DeliveryEvent, deliveryChannel } from '../domain/events.js';
import { backoffDelay } from '../domain/triggers.js';
import type { CallbackPolicy } from './callbacks.js';
import type { MessageError, Queue, QueueMessage } from './index.js';

/** Invokes one queued message; rejects with a HearthError when the platform could not get an answer. */
export type WorkerInvoke = (message: QueueMessage) => Promise<InvocationResponse>;

export interface AsyncWorkerOptions {
  readonly queue: Queue;
  readonly invoke: WorkerInvoke;
  /** Deliveries in flight at once. */
  readonly concurrency: number;
  /** How long a delivery may hold its message before another delivery may take it (crash recovery). */
  readonly leaseMs: number;
  /** How long finished messages (and their results) are kept. */
  readonly retentionMs: number;
  readonly callback: { readonly attempts: number; readonly backoffMs: number; readonly timeoutMs: number };
  /** Sends callbacks only where they may go (vetted again at send time: DNS may have changed since). */
  readonly callbacks: CallbackPolicy;
  readonly onWarning: (message: string) => void;
  /** Called after each delivery settles (tests and metrics). */
  readonly onSettled?: (
    message: QueueMessage,
    outcome: DeliveryEvent['outcome'],
    error: string | undefined,
  ) => void;
}

/** Error codes that no retry can fix: the message goes to the dead-letter list at once. */
const FINAL_ERRORS = new Set(['HEARTH_E_FN_NOT_FOUND', 'HEARTH_E_VALIDATION', 'HEARTH_E_BODY_TOO_LARGE']);
const IDLE_POLL_MS = 1000;
const PURGE_EVERY_MS = 60_000;
const MAX_STORED_RESULT = 6 * 1024 * 1024;

export class QueueWorker {
  private inFlight = 0;
  private callbacksInFlight = 0;
  private pumping = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private purgeTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly options: AsyncWorkerOptions) {}

  start(): void {
    this.purgeTimer = setInterval(() => {
      this.options.queue
        .purge(Date.now() - this.options.retentionMs)
        .catch((error: unknown) => this.options.onWarning(`queue purge failed: ${String(error)}`));
    }, PURGE_EVERY_MS);
    this.purgeTimer.unref();
    this.notify();
  }

  /** Something was enqueued or became due: look for work now (coalesced within the event-loop turn). */
  notify(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    setImmediate(() => void this.pump());
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.purgeTimer);
    await Promise.allSettled([...this.running]);
  }

  private async pump(): Promise<void> {
    try {
      do {
        this.again = false;
        const free = this.options.concurrency - this.inFlight;
        if (free > 0) {
          const messages = await this.options.queue.lease(free, this.options.leaseMs);
          for (const message of messages) this.track(this.deliver(message));
          if (messages.length === free) this.again = true;
        }
        const callbackRoom = Math.max(0, 16 - this.callbacksInFlight);
        if (callbackRoom > 0) {
          const callbacks = await this.options.queue.leaseCallbacks(
            callbackRoom,
            this.options.callback.timeoutMs * 2,
          );
          for (const message of callbacks) this.track(this.sendCallback(message));
        }
      } while (this.again && !this.closed && this.inFlight < this.options.concurrency);
    } catch (error) {
      if (!this.closed) this.options.onWarning(`queue worker: ${(error as Error).message}`);
    } finally {
      this.pumping = false;
      this.armTimer();
    }
  }

  /** Wakes up when the next retry is due, and at least every second for callbacks and expired leases. */
  private armTimer(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.options.queue.stats().then(
      (stats) => {
        if (this.closed) return;
        const untilDue = stats.nextDueAt === undefined ? IDLE_POLL_MS : stats.nextDueAt - Date.now();
        this.timer = setTimeout(() => this.notify(), Math.max(0, Math.min(IDLE_POLL_MS, untilDue)));
        this.timer.unref();
      },
      () => undefined,
    );
  }

  private track(work: Promise<void>): void {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }

  private async deliver(message: QueueMessage): Promise<void> {
    this.inFlight += 1;
    const started = performance.now();
    let outcome: DeliveryEvent['outcome'] = 'delivered';
    let failure: MessageError | undefined;
    try {
      const response = await this.options.invoke(message).then(
        (value) => value,
        (error: unknown) => {
          failure = isHearthError(error)
            ? { code: error.code, message: error.message }
            : { code: 'HEARTH_E_INTERNAL', message: error instanceof Error ? error.message : String(error) };
          return undefined;
        },
      );
      const { queue } = this.options;
      if (response !== undefined && response.status < 500) {
        const result = {
          status: response.status,
          headers: response.headers,
          body:
            response.body.length > MAX_STORED_RESULT
              ? response.body.subarray(0, MAX_STORED_RESULT)
              : response.body,
        };
        // A 4xx is the function's considered answer to this input: kept, not retried.
        await queue.complete(message.id, response.status < 400 ? 'succeeded' : 'failed', result);
      } else {
        failure ??= {
          code: 'HEARTH_E_FN_ERROR',
          message: `the function answered HTTP ${response?.status ?? 500}`,
        };
        if (message.attempts < message.maxAttempts && !FINAL_ERRORS.has(failure.code)) {
          outcome = 'retry';
          const delay = backoffDelay(
            {
              attempts: message.maxAttempts,
              backoffMs: message.backoffMs,
              maxBackoffMs: message.maxBackoffMs,
            },
            message.attempts,
          );
          await queue.retry(message.id, failure, Date.now() + delay);
        } else {
          outcome = 'dead-lettered';
          await queue.deadLetter(message.id, failure);
          this.options.onWarning(
            `invocation ${message.id} of ${message.ref.namespace}/${message.ref.name} dead-lettered after ${message.attempts} attempt(s): ${failure.code}: ${failure.message}`,
          );
        }
      }
    } catch (error) {
      this.options.onWarning(`queue worker could not record ${message.id}: ${(error as Error).message}`);
    } finally {
      this.inFlight -= 1;
      if (deliveryChannel.hasSubscribers) {
        deliveryChannel.publish({
          source: message.source,
          kind: kindOf(message.source),
          ref: message.ref,
          outcome,
          attempt: message.attempts,
          durationMs: performance.now() - started,
          error: failure === undefined ? undefined : `${failure.code}: ${failure.message}`,
        } satisfies DeliveryEvent);
      }
      this.options.onSettled?.(
        message,
        outcome,
        failure === undefined ? undefined : `${failure.code}: ${failure.message}`,
      );
      this.notify();
    }
  }

  /** POSTs the result to `X-Callback-Url`: the function's body, status in `X-Hearth-Status`. */
  private async sendCallback(message: QueueMessage): Promise<void> {
    const callback = message.callback;
    if (callback === undefined) return;
    this.callbacksInFlight += 1;
    const { attempts, backoffMs, timeoutMs } = this.options.callback;
    try {
      const headers: Record<string, string> = {
        'x-hearth-invocation-id': message.id,
        'x-hearth-function': `${message.ref.name}.${message.ref.namespace}`,
        'x-hearth-result': message.state,
      };
      let body: Buffer;
      if (message.result !== undefined) {
        const result = message.result;
        headers['x-hearth-status'] = String(result.status);
        headers['x-function-status'] = String(result.status);
        for (let i = 0; i + 1 < result.headers.length; i += 2)
          if (result.headers[i] === 'content-type') headers['content-type'] = result.headers[i + 1] ?? '';
        body = result.body;
      } else {
        headers['content-type'] = 'application/json';
        body = Buffer.from(
          JSON.stringify({ error: message.lastError ?? { code: 'HEARTH_E_INTERNAL', message: 'no result' } }),
        );
      }
      let error: string | undefined;
      try {
        const status = await this.options.callbacks.post(callback.url, headers, body, timeoutMs);
        if (status >= 300 && status < 400)
          error = `the callback answered HTTP ${status}; redirects are not followed`;
        else if (status < 200 || status >= 300) error = `the callback answered HTTP ${status}`;
      } catch (failure) {
        error = `the callback failed: ${(failure as Error).message}`;
      }
      if (error === undefined) await this.options.queue.callbackAttempt(message.id, 'delivered', undefined);
      else if (callback.attempts < attempts) {
        const delay = backoffDelay({ attempts, backoffMs, maxBackoffMs: 5 * 60_000 }, callback.attempts);
        await this.options.queue.callbackAttempt(message.id, 'pending', error, Date.now() + delay);
      } else {
        await this.options.queue.callbackAttempt(message.id, 'failed', error);
        this.options.onWarning(`callback for ${message.id} to ${callback.url} failed for good: ${error}`);
      }
    } catch (error) {
      this.options.onWarning(
        `queue worker could not record the callback of ${message.id}: ${(error as Error).message}`,
      );
    } finally {
      this.callbacksInFlight -= 1;
    }
  }
}

function kindOf(source: string): DeliveryEvent['kind'] {
  const kind = source.slice(0, source.indexOf(':'));
  return kind === 'kafka' || kind === 'mqtt' || kind === 'nats' || kind === 'cron' ? kind : 'async';
}
