/**
 * @module Kafka triggers (@platformatic/kafka): a consumer group per trigger, offsets committed only past
 * messages whose function succeeded (or that were dead-lettered), so a crash redelivers, never skips.
 * Ordering: one delivery at a time per partition (default), per message key, or none, with up to
 * `parallelism` deliveries in flight. A failing message is retried in place with exponential backoff
 * (holding its partition or key, which keeps the order), then produced to the dead-letter topic.
 */

import { Consumer, type Message, type MessagesStream, Producer } from '@platformatic/kafka';
import type { CloudEventAttributes } from '../../domain/deployment.js';
import type { KafkaSource, TriggerStatus } from '../../domain/triggers.js';
import {
  countersStatus,
  deliverWithRetries,
  type EventTarget,
  enqueueDeadLetter,
  errorText,
  newCounters,
  publishDelivery,
  reconnectDelay,
  sleep,
  sniffContentType,
  type TriggerCounters,
} from '../delivery.js';
import type { Trigger, TriggerConfig, TriggerHost } from '../index.js';

type KafkaMessage = Message<Buffer, Buffer, Buffer, Buffer>;

/** Commits are batched: at most one commit request per partition per interval (commit after success). */
const COMMIT_EVERY_MS = 100;
const LAG_EVERY_MS = 2000;

/** Offsets of one partition in arrival order; the commit point moves past the finished prefix only. */
class PartitionProgress {
  private readonly pending: KafkaMessage[] = [];
  private head = 0;
  private readonly finished = new Set<bigint>();
  committable: KafkaMessage | undefined;

  add(message: KafkaMessage): void {
    this.pending.push(message);
  }

  finish(message: KafkaMessage): void {
    this.finished.add(message.offset);
    while (this.head < this.pending.length) {
      const first = this.pending[this.head];
      if (first === undefined || !this.finished.has(first.offset)) break;
      this.finished.delete(first.offset);
      this.committable = first;
      this.head += 1;
    }
    if (this.head > 1024) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
  }
}

interface Lane {
  readonly queue: KafkaMessage[];
  busy: boolean;
}

export class KafkaTrigger implements Trigger {
  private consumer: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined;
  private producer: Producer | undefined;
  private stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  private readonly counters: TriggerCounters = newCounters();
  private state: TriggerStatus['state'] = 'connecting';
  private readonly abort = new AbortController();
  private readonly lanes = new Map<string, Lane>();
  private readonly ready: string[] = [];
  private readonly progress = new Map<string, PartitionProgress>();
  /** Per partition, the offset after the last record taken in this consumer session. */
  private readonly nextOffset = new Map<string, bigint>();
  private active = 0;
  private buffered = 0;
  private paused = false;
  private lag: number | null = null;
  private loop: Promise<void> = Promise.resolve();
  private commitTimer: NodeJS.Timeout | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private readonly deliveries = new Set<Promise<void>>();
  private readonly parallelism: number;
  private readonly group: string;
  private readonly deadLetterTopic: string;

  constructor(
    private readonly source: KafkaSource,
    readonly config: TriggerConfig,
    private readonly host: TriggerHost,
  ) {
    this.parallelism = source.parallelism ?? 1;
    this.group = source.group ?? `hearth.${config.owner}`;
    this.deadLetterTopic = source.deadLetterTopic ?? `${source.topic}.dlq`;
  }

  async start(): Promise<void> {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.state = 'stopped';
    await Promise.allSettled([...this.deliveries]);
    await this.commit();
    clearInterval(this.commitTimer);
    clearInterval(this.lagTimer);
    await this.stream?.close().catch(() => undefined);
    await (this.consumer?.close(true) as Promise<void> | undefined)?.catch(() => undefined);
    await this.producer?.close().catch(() => undefined);
    await this.loop;
  }

  status(): TriggerStatus {
    return {
      id: this.config.id,
      name: this.config.name,
      kind: 'kafka',
      state: this.state,
      lag: this.lag,
      ...countersStatus(this.counters),
      detail: {
        brokers: this.source.brokers,
        topic: this.source.topic,
        group: this.group,
        ordering: this.source.ordering ?? 'partition',
        parallelism: this.parallelism,
        deadLetterTopic: this.deadLetterTopic,
      },
    };
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let failures = 0;
    while (!signal.aborted) {
      try {
        await this.connect();
        return;
      } catch (error) {
        if (signal.aborted) return;
        failures += 1;
        const message = errorText(error);
        const delay = reconnectDelay(failures);
        this.state = 'error';
        this.counters.lastError = {
          message: `Kafka ${this.source.brokers.join(',')}: ${message}`,
          at: new Date().toISOString(),
        };
        this.host.warn(`trigger ${this.config.id}: ${message}; retrying in ${delay / 1000}s`);
        await (this.consumer?.close(true) as Promise<void> | undefined)?.catch(() => undefined);
        this.consumer = undefined;
        await sleep(delay, signal);
      }
    }
  }

  private async connect(): Promise<void> {
    if (this.state !== 'error') this.state = 'connecting';
    const clientId = `hearth-${this.config.owner}`;
    const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      clientId,
      groupId: this.group,
      bootstrapBrokers: this.source.brokers,
      autocommit: false,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
      retries: 3,
    });
    this.consumer = consumer;
    // A new session starts from the committed offsets: what was taken before may legitimately come back.
    this.nextOffset.clear();
    const stream = await consumer.consume({
      topics: [this.source.topic],
      mode: 'committed',
      fallbackMode: this.source.startFrom ?? 'latest',
      autocommit: false,
      maxWaitTime: 200,
      highWaterMark: 1024,
    });
    this.stream = stream;
    if (this.abort.signal.aborted) {
      await stream.close().catch(() => undefined);
      return;
    }
    stream.on('data', (message: KafkaMessage) => this.accept(message));
    stream.on('error', (error: Error) => {
      this.state = 'error';
      this.counters.lastError = { message: `Kafka: ${error.message}`, at: new Date().toISOString() };
      this.host.warn(`trigger ${this.config.id}: ${error.message}`);
    });
    this.commitTimer = setInterval(() => void this.commit(), COMMIT_EVERY_MS);
    this.commitTimer.unref();
    this.lagTimer = setInterval(() => void this.refreshLag(), LAG_EVERY_MS);
    this.lagTimer.unref();
    this.state = 'running';
  }

  private accept(message: KafkaMessage): void {
    const partitionKey = String(message.partition);
    // The client can fetch a range twice when the stream is paused and resumed for backpressure (two
    // fetches race for the same offsets); seen as ~1-3% duplicates in bench/events.mjs. Within one session
    // offsets only grow, so anything below the next expected offset was already taken.
    const expected = this.nextOffset.get(partitionKey);
    if (expected !== undefined && message.offset < expected) return;
    this.nextOffset.set(partitionKey, message.offset + 1n);
    let progress = this.progress.get(partitionKey);
    if (progress === undefined) {
      progress = new PartitionProgress();
      this.progress.set(partitionKey, progress);
    }
    progress.add(message);
    const ordering = this.source.ordering ?? 'partition';
    const laneKey =
      ordering === 'partition'
        ? partitionKey
        : ordering === 'key'
          ? `${partitionKey}/${message.key?.toString('hex') ?? ''}`
          : `${partitionKey}@${message.offset}`;
    let lane = this.lanes.get(laneKey);
    if (lane === undefined) {
      lane = { queue: [], busy: false };
      this.lanes.set(laneKey, lane);
    }
    lane.queue.push(message);
    if (!lane.busy && lane.queue.length === 1) this.ready.push(laneKey);
    this.buffered += 1;
    // Backpressure: stop fetching while enough is waiting; the broker keeps the rest.
    if (!this.paused && this.buffered >= Math.max(256, this.parallelism * 8)) {
      this.paused = true;
      this.stream?.pause();
    }
    this.pump();
  }

  private pump(): void {
    while (this.active < this.parallelism && this.ready.length > 0) {
      const laneKey = this.ready.shift();
      if (laneKey === undefined) break;
      const lane = this.lanes.get(laneKey);
      const message = lane?.queue.shift();
      if (lane === undefined || message === undefined) continue;
      lane.busy = true;
      this.active += 1;
      const work = this.process(message).then((finished) => {
        this.active -= 1;
        lane.busy = false;
        this.buffered -= 1;
        if (finished) this.progress.get(String(message.partition))?.finish(message);
        if (lane.queue.length > 0) this.ready.push(laneKey);
        else this.lanes.delete(laneKey);
        if (this.paused && this.buffered < Math.max(128, this.parallelism * 4)) {
          this.paused = false;
          this.stream?.resume();
        }
        this.pump();
      });
      this.deliveries.add(work);
      void work.finally(() => this.deliveries.delete(work));
    }
  }

  /** Resolves true once the message may be committed past (delivered or dead-lettered); never rejects. */
  private async process(message: KafkaMessage): Promise<boolean> {
    try {
      return await this.deliver(message);
    } catch (error) {
      this.counters.lastError = { message: (error as Error).message, at: new Date().toISOString() };
      this.host.warn(
        `trigger ${this.config.id}: ${message.topic}[${message.partition}]@${message.offset}: ${(error as Error).message}`,
      );
      return false;
    }
  }

  private async deliver(message: KafkaMessage): Promise<boolean> {
    const header = (name: string): string | undefined => {
      for (const [key, value] of message.headers) if (key.toString() === name) return value.toString();
      return undefined;
    };
    const body = message.value ?? Buffer.alloc(0);
    const key =
      message.key === undefined || message.key === null || message.key.length === 0
        ? undefined
        : message.key.toString();
    const ceSubject = header('ce_subject');
    const event: CloudEventAttributes = {
      specversion: '1.0',
      id: header('ce_id') ?? `${message.topic}-${message.partition}-${message.offset}`,
      source: header('ce_source') ?? `kafka://${message.topic}`,
      type: header('ce_type') ?? 'dev.hearth.kafka.message',
      subject: ceSubject ?? key ?? `partition:${message.partition}#${message.offset}`,
      time: header('ce_time') ?? new Date(Number(message.timestamp)).toISOString(),
      datacontenttype: header('content-type') ?? header('ce_datacontenttype') ?? sniffContentType(body),
      extensions: {
        topic: message.topic,
        partition: message.partition,
        offset: message.offset.toString(),
        ...(key === undefined ? {} : { key }),
      },
    };
    const kind = { id: this.config.id, kind: 'kafka' as const };
    const target = this.config.route(message.topic, ceSubject);
    if (target === undefined) {
      await this.deadLetter(
        message,
        undefined,
        0,
        `no function of ${this.config.id} takes topic ${message.topic}`,
      );
      return true;
    }
    const outcome = await deliverWithRetries(
      this.host,
      kind,
      target,
      event,
      body,
      this.config.retry,
      this.counters,
      this.abort.signal,
    );
    if (outcome.failure === undefined) return true;
    // Stopped mid-retry: not finished, not committed; the group's next owner gets it again.
    if (outcome.aborted) return false;
    const { failure, attempts, started } = outcome;
    publishDelivery(kind, target.ref, 'dead-lettered', attempts, started, failure);
    await this.deadLetter(message, target, attempts, `${failure.code}: ${failure.message}`);
    return true;
  }

  /** Produces the message, its headers and why it failed to the dead-letter topic; the embedded DLQ if that fails. */
  private async deadLetter(
    message: KafkaMessage,
    target: EventTarget | undefined,
    attempts: number,
    reason: string,
  ): Promise<void> {
    const headers = new Map<string, string>();
    for (const [key, value] of message.headers) headers.set(key.toString(), value.toString());
    headers.set('hearth-error', reason.slice(0, 1000));
    headers.set('hearth-attempts', String(attempts));
    headers.set('hearth-source', `${message.topic}/${message.partition}/${message.offset}`);
    headers.set('hearth-trigger', this.config.id);
    try {
      this.producer ??= new Producer({
        clientId: `hearth-${this.config.owner}-dlq`,
        bootstrapBrokers: this.source.brokers,
        retries: 3,
        // The dead-letter topic usually does not exist until the first dead letter (broker permitting).
        autocreateTopics: true,
      });
      await this.producer.send({
        messages: [
          {
            topic: this.deadLetterTopic,
            value: message.value ?? Buffer.alloc(0),
            ...(message.key === undefined || message.key === null ? {} : { key: message.key }),
            headers: new Map([...headers].map(([k, v]) => [Buffer.from(k), Buffer.from(v)])),
          },
        ],
      });
      this.host.warn(
        `trigger ${this.config.id}: ${message.topic}[${message.partition}]@${message.offset} dead-lettered to ${this.deadLetterTopic}: ${reason}`,
      );
      // Counted once it is somewhere durable, so a status that says "dead-lettered" can be read back.
      this.counters.deadLettered += 1;
    } catch (error) {
      this.host.warn(
        `trigger ${this.config.id}: the dead-letter topic ${this.deadLetterTopic} refused the message (${(error as Error).message}); kept in the platform's dead-letter list`,
      );
      await enqueueDeadLetter(
        this.host,
        this.config,
        target?.ref,
        { headers: [...headers].flat(), body: message.value ?? Buffer.alloc(0) },
        attempts,
        reason,
        this.counters,
      );
    }
  }

  private async commit(): Promise<void> {
    const commits: Promise<void>[] = [];
    for (const progress of this.progress.values()) {
      const message = progress.committable;
      if (message === undefined) continue;
      progress.committable = undefined;
      commits.push(
        Promise.resolve(message.commit()).catch((error: unknown) => {
          // A partition moved to another member during a rebalance: it will redeliver from the last commit.
          this.host.warn(
            `trigger ${this.config.id}: commit of ${message.topic}[${message.partition}] failed: ${(error as Error).message}`,
          );
        }),
      );
    }
    await Promise.all(commits);
  }

  private async refreshLag(): Promise<void> {
    const consumer = this.consumer;
    if (consumer === undefined) return;
    try {
      const lags = await consumer.getLag({ topics: [this.source.topic] });
      let total = 0n;
      let known = false;
      for (const partitions of lags.values())
        for (const lag of partitions)
          if (lag >= 0n) {
            total += lag;
            known = true;
          }
      this.lag = known ? Number(total) : null;
    } catch {
      // keep the last figure
    }
  }
}
