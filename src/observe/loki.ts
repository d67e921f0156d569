/**
 * @module Ships function log lines to Grafana Loki's push API (`POST /loki/api/v1/push`) when `loki.url`
 * is configured. Streams are labelled by namespace, function and stream (low cardinality, as Loki wants);
 * the invocation and instance ids travel inside each line as JSON, so `{function="x"} | json |
 * invocation="…"` finds one invocation's output. Lines are batched once a second; while Loki is down the
 * buffer is bounded and the oldest lines are dropped (and counted) rather than memory growing.
 */

import type { FunctionLogRecord } from '../scheduler/index.js';

export interface LokiOptions {
  /** Loki's base URL (`http://loki:3100`) or the full push URL. */
  readonly url: string;
  /** Extra labels on every stream (`env: prod`). */
  readonly labels: Readonly<Record<string, string>>;
  readonly flushIntervalMs?: number;
  readonly maxBuffered?: number;
  readonly onError?: (message: string) => void;
}

interface Line {
  readonly ns: bigint;
  readonly record: FunctionLogRecord | SystemRecord;
}

/** Platform notes about a function (instance started, stopped) that also go to its log. */
interface SystemRecord {
  readonly ref: FunctionLogRecord['ref'];
  readonly version: number;
  readonly instanceId: string;
  readonly invocationId: string | undefined;
  readonly stream: 'system';
  readonly text: string;
}

export class LokiShipper {
  private readonly pushUrl: string;
  private buffer: Line[] = [];
  private readonly timer: NodeJS.Timeout;
  private sending: Promise<void> | undefined;
  private failures = 0;
  private lastNs = 0n;
  shipped = 0;
  dropped = 0;

  constructor(private readonly options: LokiOptions) {
    this.pushUrl = /\/loki\/api\/v1\/push\/?$/.test(options.url)
      ? options.url
      : `${options.url.replace(/\/+$/, '')}/loki/api/v1/push`;
    this.timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 1000);
    this.timer.unref();
  }

  write(record: FunctionLogRecord | SystemRecord): void {
    // Loki orders a stream's entries by timestamp; nanoseconds made unique keep a burst's lines in order.
    let ns = BigInt(Date.now()) * 1_000_000n;
    if (ns <= this.lastNs) ns = this.lastNs + 1n;
    this.lastNs = ns;
    this.buffer.push({ ns, record });
    const max = this.options.maxBuffered ?? 10_000;
    if (this.buffer.length > max) {
      const excess = this.buffer.length - max;
      this.buffer.splice(0, excess);
      this.dropped += excess;
    }
  }

  /** Sends what is buffered (one request); concurrent calls share it. */
  flush(): Promise<void> {
    if (this.sending !== undefined) return this.sending;
    if (this.buffer.length === 0) return Promise.resolve();
    const batch = this.buffer;
    this.buffer = [];
    this.sending = this.send(batch).finally(() => {
      this.sending = undefined;
    });
    return this.sending;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    await this.flush();
  }

  private async send(batch: Line[]): Promise<void> {
    const streams = new Map<string, { stream: Record<string, string>; values: [string, string][] }>();
    for (const { ns, record } of batch) {
      const key = `${record.ref.namespace}\u0000${record.ref.name}\u0000${record.stream}`;
      let entry = streams.get(key);
      if (entry === undefined) {
        entry = {
          stream: {
            ...this.options.labels,
            service: 'hearth',
            namespace: record.ref.namespace,
            function: record.ref.name,
            stream: record.stream,
          },
          values: [],
        };
        streams.set(key, entry);
      }
      const line = JSON.stringify({
        msg: record.text.replace(/\r?\n$/, ''),
        invocation: record.invocationId ?? null,
        instance: record.instanceId,
        version: record.version,
      });
      entry.values.push([ns.toString(), line]);
    }
    try {
      const response = await fetch(this.pushUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ streams: [...streams.values()] }),
        signal: AbortSignal.timeout(10_000),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status} ${(await response.text()).slice(0, 200)}`);
      this.shipped += batch.length;
      this.failures = 0;
    } catch (error) {
      this.failures += 1;
      // Put the batch back in front, within the buffer's bound; report the first failure of a run.
      this.buffer = [...batch, ...this.buffer];
      const max = this.options.maxBuffered ?? 10_000;
      if (this.buffer.length > max) {
        const excess = this.buffer.length - max;
        this.buffer.splice(0, excess);
        this.dropped += excess;
      }
      if (this.failures === 1)
        this.options.onError?.(`Loki push to ${this.pushUrl} failed: ${(error as Error).message}`);
    }
  }
}
