/**
 * @module NATS triggers: a JetStream durable pull consumer (created, with its stream when missing) that
 * acks a message only after the function succeeded. A failure is `nak`ed with an exponential delay, so
 * JetStream redelivers it (and a crash loses nothing: unacked messages come back after `ack_wait`); once
 * the attempts are used up the message is terminated and dead-lettered to the embedded queue.
 */

import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, nanos } from '@nats-io/transport-node';
import type { CloudEventAttributes } from '../../domain/deployment.js';
import { backoffDelay, type NatsSource, type TriggerStatus } from '../../domain/triggers.js';
import {
  countersStatus,
  deliverOnce,
  enqueueDeadLetter,
  errorText,
  newCounters,
  publishDelivery,
  reconnectDelay,
  retryable,
  sleep,
  sniffContentType,
  type TriggerCounters,
} from '../delivery.js';
import type { Trigger, TriggerConfig, TriggerHost } from '../index.js';

/** Unacked messages come back after this; in-flight ones are kept alive with `working()` meanwhile. */
const ACK_WAIT_MS = 30_000;
const WORKING_EVERY_MS = 10_000;
const LAG_EVERY_MS = 2000;

export class NatsTrigger implements Trigger {
  private connection: NatsConnection | undefined;
  private readonly counters: TriggerCounters = newCounters();
  private state: TriggerStatus['state'] = 'connecting';
  private readonly abort = new AbortController();
  private readonly inFlight = new Set<JsMsg>();
  private readonly deliveries = new Set<Promise<void>>();
  private lag: number | null = null;
  private loop: Promise<void> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private readonly stream: string;
  private readonly durable: string;

  constructor(
    private readonly source: NatsSource,
    readonly config: TriggerConfig,
    private readonly host: TriggerHost,
  ) {
    this.stream = source.stream ?? `HEARTH_${source.subject.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    this.durable = source.consumer ?? `hearth-${config.owner.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  }

  async start(): Promise<void> {
    this.loop = this.run();
    const working = setInterval(() => {
      for (const message of this.inFlight) message.working();
    }, WORKING_EVERY_MS);
    working.unref();
    this.timers.push(working);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.state = 'stopped';
    for (const timer of this.timers) clearInterval(timer);
    await Promise.allSettled([...this.deliveries]);
    // Flush sends the acks of the deliveries just settled (bounded, a broker gone away must not hold up
    // shutdown), then close. Not drain(): the consume loop's own close raced it and it never settled.
    const connection = this.connection;
    if (connection !== undefined) {
      const bound = new AbortController();
      await Promise.race([connection.flush().catch(() => undefined), sleep(2000, bound.signal)]);
      // A pending timer would keep a stopping platform alive for the rest of the 2 s.
      bound.abort();
      await connection.close().catch(() => undefined);
    }
    await this.loop;
  }

  status(): TriggerStatus {
    return {
      id: this.config.id,
      name: this.config.name,
      kind: 'nats',
      state: this.state,
      lag: this.lag,
      ...countersStatus(this.counters),
      detail: {
        url: this.source.url,
        subject: this.source.subject,
        stream: this.stream,
        consumer: this.durable,
      },
    };
  }

  /** Connects, consumes until stopped; on any failure reports it and tries again. */
  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let failures = 0;
    while (!signal.aborted) {
      let delay = reconnectDelay(1);
      try {
        await this.consume();
        failures = 0;
      } catch (error) {
        if (signal.aborted) break;
        failures += 1;
        const message = errorText(error);
        delay = reconnectDelay(failures);
        this.state = 'error';
        this.counters.lastError = {
          message: `NATS ${String(this.source.url)}: ${message}`,
          at: new Date().toISOString(),
        };
        this.host.warn(`trigger ${this.config.id}: ${message}; retrying in ${delay / 1000}s`);
      }
      // Stopping: stop() flushes the last acks and closes; closing here too raced its flush, which then
      // never settled (`hearth up` hung on SIGTERM).
      if (signal.aborted) break;
      await this.connection?.close().catch(() => undefined);
      this.connection = undefined;
      await sleep(delay, signal);
    }
  }

  private async consume(): Promise<void> {
    if (this.state !== 'error') this.state = 'connecting';
    const servers = Array.isArray(this.source.url) ? this.source.url : [this.source.url];
    const connection = await connect({
      servers,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      name: `hearth ${this.config.id}`,
    });
    if (this.abort.signal.aborted) {
      // Stopped while connecting: stop() found no connection to flush and close, and this one, left open
      // (it reconnects for ever), kept a stopped `hearth up` from exiting.
      await connection.close().catch(() => undefined);
      return;
    }
    this.connection = connection;
    const manager = await jetstreamManager(connection);
    const existing = await manager.streams.info(this.stream).catch(() => undefined);
    if (existing === undefined) {
      await manager.streams.add({ name: this.stream, subjects: [this.source.subject] });
      this.host.info(
        `trigger ${this.config.id}: created JetStream stream ${this.stream} over ${this.source.subject}`,
      );
    }
    const parallelism = this.source.parallelism ?? 64;
    const config = {
      durable_name: this.durable,
      ack_policy: AckPolicy.Explicit,
      filter_subject: this.source.subject,
      max_ack_pending: parallelism,
      ack_wait: nanos(ACK_WAIT_MS),
    };
    const current = await manager.consumers.info(this.stream, this.durable).catch(() => undefined);
    if (current === undefined)
      await manager.consumers.add(this.stream, {
        ...config,
        deliver_policy: this.source.startFrom === 'earliest' ? DeliverPolicy.All : DeliverPolicy.New,
      });
    else
      await manager.consumers.update(this.stream, this.durable, {
        max_ack_pending: parallelism,
        ack_wait: config.ack_wait,
      });
    const consumer = await jetstream(connection).consumers.get(this.stream, this.durable);
    const lagTimer = setInterval(() => {
      consumer.info().then(
        (info) => {
          this.lag = info.num_pending + info.num_ack_pending;
        },
        () => undefined,
      );
    }, LAG_EVERY_MS);
    lagTimer.unref();
    this.timers.push(lagTimer);
    const messages = await consumer.consume({ max_messages: Math.min(1024, parallelism * 2) });
    this.abort.signal.addEventListener('abort', () => void messages.close(), { once: true });
    this.state = 'running';
    for await (const message of messages) {
      if (this.abort.signal.aborted) break;
      this.inFlight.add(message);
      const work = this.deliver(message).finally(() => this.inFlight.delete(message));
      this.deliveries.add(work);
      void work.finally(() => this.deliveries.delete(work));
    }
    clearInterval(lagTimer);
    if (!this.abort.signal.aborted) throw new Error('the consumer stopped delivering');
  }

  private async deliver(message: JsMsg): Promise<void> {
    const headers = message.headers;
    const header = (name: string): string | undefined => {
      const value = headers?.get(name);
      return value === undefined || value === '' ? undefined : value;
    };
    const body = Buffer.from(message.data);
    const ceSubject = header('ce-subject');
    const info = message.info;
    const event: CloudEventAttributes = {
      specversion: '1.0',
      id: header('ce-id') ?? header('Nats-Msg-Id') ?? `${info.stream}-${message.seq}`,
      source: header('ce-source') ?? `nats://${info.stream}/${message.subject}`,
      type: header('ce-type') ?? 'dev.hearth.nats.message',
      subject: ceSubject ?? message.subject,
      time: new Date(Math.floor(Number(info.timestampNanos) / 1e6)).toISOString(),
      datacontenttype: header('content-type') ?? header('Content-Type') ?? sniffContentType(body),
      extensions: { stream: info.stream, sequence: message.seq, deliveries: info.deliveryCount },
    };
    const kind = { id: this.config.id, kind: 'nats' as const };
    const attempt = info.deliveryCount;
    const target = this.config.route(message.subject, ceSubject);
    if (target === undefined) {
      await this.deadLetter(
        message,
        event,
        body,
        attempt,
        `no function of ${this.config.id} takes subject ${message.subject}`,
      );
      return;
    }
    const started = performance.now();
    const failure = await deliverOnce(this.host, kind, target, event, body, attempt, this.counters);
    if (failure === undefined) {
      message.ack();
      return;
    }
    const { retry } = this.config;
    if (retryable(failure) && attempt < retry.attempts) {
      this.counters.retried += 1;
      message.nak(backoffDelay(retry, attempt));
      return;
    }
    publishDelivery(kind, target.ref, 'dead-lettered', attempt, started, failure);
    await this.deadLetter(message, event, body, attempt, `${failure.code}: ${failure.message}`, target.ref);
  }

  private async deadLetter(
    message: JsMsg,
    event: CloudEventAttributes,
    body: Buffer,
    attempts: number,
    reason: string,
    ref = this.config.route(message.subject, undefined)?.ref,
  ): Promise<void> {
    this.host.warn(`trigger ${this.config.id}: event ${event.id} dead-lettered: ${reason}`);
    try {
      await enqueueDeadLetter(
        this.host,
        this.config,
        ref,
        { headers: ['content-type', event.datacontenttype ?? 'application/json'], body, event },
        attempts,
        reason,
        this.counters,
      );
      // A plain +TERM: servers before 2.10.4 (Debian's is 2.9) match the term exactly and ignore `+TERM <reason>`,
      // so the message stayed pending, came back after the ack wait and was dead-lettered again every 30 s. The
      // reason is in the dead-letter list and the log already.
      message.term();
    } catch (error) {
      // Not recorded: leave it unacked, JetStream redelivers it.
      this.host.warn(
        `trigger ${this.config.id}: could not dead-letter ${event.id}: ${(error as Error).message}`,
      );
      message.nak(this.config.retry.backoffMs);
    }
  }
}
