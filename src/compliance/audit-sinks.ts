/**
 * @module Real-time audit sinks (issue 13): webhook (HMAC-SM3 signed), syslog (RFC 5424 over TCP,
 * octet-counted framing per RFC 6587) and Kafka. Delivery is at least once: each sink has a durable
 * cursor in audit.db that moves only after the receiver took a batch, retried with backoff while it is
 * down; after a crash the sink resends from its cursor, so a receiver may see a record twice (dedupe by
 * `seq`) and never misses one.
 */

import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { hostname } from 'node:os';
import { connect as connectTls } from 'node:tls';
import { ProduceAcks, Producer } from '@platformatic/kafka';
import type { AuditLog, AuditRecord } from './audit.js';
import type { KafkaSinkConfig, SinkConfig, SyslogSinkConfig, WebhookSinkConfig } from './config.js';

/** One receiver. `deliver` resolves only once the receiver has the batch. */
export interface AuditSink {
  readonly name: string;
  deliver(records: readonly AuditRecord[]): Promise<void>;
  close(): Promise<void>;
}

const BATCH = 100;
const MIN_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 30_000;

export function createSink(config: SinkConfig): AuditSink {
  if (config.kind === 'webhook') return new WebhookSink(config);
  if (config.kind === 'syslog') return new SyslogSink(config);
  return new KafkaSink(config);
}

/** Runs one sink: reads after its cursor, delivers, moves the cursor, waits for more. */
export class SinkRunner {
  private running = false;
  private wake: (() => void) | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private backoffMs = MIN_BACKOFF_MS;
  lastError: string | undefined;

  constructor(
    private readonly log: AuditLog,
    readonly sink: AuditSink,
    private readonly onWarning: (message: string) => void,
  ) {}

  /** Records appended but not yet delivered. */
  get lag(): number {
    return this.log.lastSeq - this.log.cursor(this.sink.name);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.log.onAppend(() => this.wake?.());
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    await this.sink.close().catch(() => undefined);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const records = this.log.list(this.log.cursor(this.sink.name), BATCH);
      if (records.length === 0) {
        await this.sleep(5_000);
        continue;
      }
      try {
        await this.sink.deliver(records);
        this.log.setCursor(this.sink.name, (records.at(-1) as AuditRecord).seq);
        if (this.lastError !== undefined) this.onWarning(`audit sink ${this.sink.name}: delivering again`);
        this.lastError = undefined;
        this.backoffMs = MIN_BACKOFF_MS;
      } catch (error) {
        const message = (error as Error).message;
        if (this.lastError !== message)
          this.onWarning(
            `audit sink ${this.sink.name}: ${message}; retrying (records from ${records[0]?.seq} wait)`,
          );
        this.lastError = message;
        await this.sleep(this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }
}

/** The JSON a receiver gets for one record: the record as stored, hash chain included. */
function recordJson(record: AuditRecord): string {
  return JSON.stringify(record);
}

/**
 * POSTs `{"records": [...]}`; the body's HMAC-SM3 under the sink's secret is in
 * `X-Hearth-Signature: hmac-sm3=<hex>`. Any 2xx is taken as received.
 */
class WebhookSink implements AuditSink {
  readonly name: string;

  constructor(private readonly config: WebhookSinkConfig) {
    this.name = `webhook:${config.url}`;
  }

  async deliver(records: readonly AuditRecord[]): Promise<void> {
    const body = `{"records":[${records.map(recordJson).join(',')}]}`;
    const signature = createHmac('sm3', this.config.secret).update(body).digest('hex');
    const response = await fetch(this.config.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-hearth-signature': `hmac-sm3=${signature}`,
        'x-hearth-audit-seq': `${records[0]?.seq}-${records.at(-1)?.seq}`,
      },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    await response.arrayBuffer().catch(() => undefined);
    if (!response.ok) throw new Error(`${this.config.url} answered HTTP ${response.status}`);
  }

  async close(): Promise<void> {}
}

/**
 * RFC 5424 messages over one TCP (or, with `tls`, RFC 5425 TLS) connection with octet-counting framing: facility authpriv (10),
 * severity notice (5), app-name `hearth`, msgid `AUDIT`, structured data `[audit@32473 seq= outcome=]`
 * and the record's JSON as the message. A write is taken as received once the kernel accepted it and
 * the connection is still up; a dropped connection resends from the cursor.
 */
class SyslogSink implements AuditSink {
  readonly name: string;
  private socket: Socket | undefined;
  private readonly host: string;
  private readonly port: number;
  private readonly ca: Buffer | undefined;

  constructor(private readonly config: SyslogSinkConfig) {
    this.name = `syslog${config.tls === undefined ? '' : '+tls'}:${config.address}`;
    const at = config.address.lastIndexOf(':');
    this.host = config.address.slice(0, at);
    this.port = Number(config.address.slice(at + 1));
    this.ca = config.tls?.ca === undefined ? undefined : readFileSync(config.tls.ca);
  }

  async deliver(records: readonly AuditRecord[]): Promise<void> {
    const socket = await this.connect();
    const frames = records.map((record) => {
      const message = Buffer.from(syslogLine(record));
      return Buffer.concat([Buffer.from(`${message.length} `), message]);
    });
    await new Promise<void>((resolve, reject) => {
      socket.write(Buffer.concat(frames), (error) =>
        error === undefined || error === null ? resolve() : reject(error),
      );
    });
    if (socket.destroyed) throw new Error(`${this.name}: the connection closed`);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (this.socket === undefined || this.socket.destroyed) resolve();
      else this.socket.end(resolve);
    });
  }

  private connect(): Promise<Socket> {
    if (this.socket !== undefined && !this.socket.destroyed) return Promise.resolve(this.socket);
    return new Promise((resolve, reject) => {
      const onReady = (): void => {
        socket.removeAllListeners('error');
        socket.on('error', () => socket.destroy());
        socket.on('close', () => {
          if (this.socket === socket) this.socket = undefined;
        });
        socket.setNoDelay(true);
        this.socket = socket;
        resolve(socket);
      };
      // RFC 5425 (TLS) frames messages exactly as RFC 6587's octet counting does over plain TCP.
      const socket: Socket =
        this.config.tls === undefined
          ? new Socket().connect(this.port, this.host, onReady)
          : connectTls(
              {
                host: this.host,
                port: this.port,
                servername: /^[\d.]+$/.test(this.host) ? undefined : this.host,
                ...(this.ca === undefined ? {} : { ca: this.ca }),
              },
              onReady,
            );
      socket.once('error', (error) => {
        this.socket = undefined;
        reject(new Error(`${this.host}:${this.port}: ${error.message}`));
      });
    });
  }
}

const SYSLOG_HOST = hostname().replace(/[^\x21-\x7e]/g, '') || '-';

export function syslogLine(record: AuditRecord): string {
  const pri = 10 * 8 + 5;
  const sd = `[audit@32473 seq="${record.seq}" outcome="${record.outcome}" action="${escapeSd(record.action)}"]`;
  return `<${pri}>1 ${record.time} ${SYSLOG_HOST} hearth ${process.pid} AUDIT ${sd} ${recordJson(record)}`;
}

function escapeSd(value: string): string {
  return value.replace(/["\\\]]/g, (char) => `\\${char}`);
}

/** One Kafka message per record, key = seq, acks from every in-sync replica. */
class KafkaSink implements AuditSink {
  readonly name: string;
  private producer: Producer<Buffer, Buffer, Buffer, Buffer> | undefined;

  constructor(private readonly config: KafkaSinkConfig) {
    this.name = `kafka:${config.topic}`;
  }

  async deliver(records: readonly AuditRecord[]): Promise<void> {
    this.producer ??= new Producer({
      clientId: 'hearth-audit',
      bootstrapBrokers: [...this.config.brokers],
      acks: ProduceAcks.ALL,
      retries: 0,
      autocreateTopics: true,
    });
    try {
      await this.producer.send({
        messages: records.map((record) => ({
          topic: this.config.topic,
          key: Buffer.from(String(record.seq)),
          value: Buffer.from(recordJson(record)),
        })),
      });
    } catch (error) {
      // A fresh client for the retry: one whose broker went away can keep a dead connection.
      const producer = this.producer;
      this.producer = undefined;
      await producer.close().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.producer?.close().catch(() => undefined);
  }
}
