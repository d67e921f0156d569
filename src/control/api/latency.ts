/**
 * @module Recent latency per function for `hearth top`: a log-bucketed histogram per second over the last
 * ten seconds, fed by the `hearth:invocation` channel. It subscribes only while someone is watching, so the
 * gateway does not build invocation events for nobody (the hot path pays only when observed).
 */

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { InvocationEvent } from '../../domain/events.js';

const SECONDS = 10;
/** Bucket upper edges grow by 20% from 0.1 ms to past 10 minutes: a p99 read within 20%. */
const FIRST_EDGE_MS = 0.1;
const GROWTH = 1.2;
const BUCKETS = Math.ceil(Math.log(600_000 / FIRST_EDGE_MS) / Math.log(GROWTH)) + 1;
/** Unsubscribes after this long without a reader. */
const IDLE_MS = 60_000;
const CHANNEL = 'hearth:invocation';

interface Series {
  /** Per second slot: the second it holds, and its bucket counts. */
  readonly seconds: Float64Array;
  readonly counts: Uint32Array[];
}

export class LatencyTracker {
  private readonly series = new Map<string, Series>();
  private subscribed = false;
  private lastRead = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly onEvent = (message: unknown): void => {
    const event = message as InvocationEvent;
    this.add(`${event.ref.namespace}/${event.ref.name}`, event.durationMs, Date.now());
  };

  /** The p99 latency (ms) of each function over the last ten seconds; starts listening if it was not. */
  p99s(now = Date.now()): Map<string, number> {
    this.watch(now);
    const result = new Map<string, number>();
    for (const [key, series] of this.series) {
      const p99 = percentile(series, 0.99, now);
      if (p99 === undefined) this.series.delete(key);
      else result.set(key, p99);
    }
    return result;
  }

  add(key: string, durationMs: number, now: number): void {
    let series = this.series.get(key);
    if (series === undefined) {
      series = {
        seconds: new Float64Array(SECONDS).fill(-1),
        counts: Array.from({ length: SECONDS }, () => new Uint32Array(BUCKETS)),
      };
      this.series.set(key, series);
    }
    const second = Math.floor(now / 1000);
    const slot = second % SECONDS;
    const counts = series.counts[slot];
    if (counts === undefined) return;
    if (series.seconds[slot] !== second) {
      series.seconds[slot] = second;
      counts.fill(0);
    }
    const bucket =
      durationMs <= FIRST_EDGE_MS
        ? 0
        : Math.min(BUCKETS - 1, Math.ceil(Math.log(durationMs / FIRST_EDGE_MS) / Math.log(GROWTH)));
    counts[bucket] = (counts[bucket] ?? 0) + 1;
  }

  close(): void {
    if (this.idleTimer !== undefined) clearInterval(this.idleTimer);
    this.idleTimer = undefined;
    if (this.subscribed) unsubscribe(CHANNEL, this.onEvent);
    this.subscribed = false;
    this.series.clear();
  }

  private watch(now: number): void {
    this.lastRead = now;
    if (!this.subscribed) {
      subscribe(CHANNEL, this.onEvent);
      this.subscribed = true;
    }
    if (this.idleTimer === undefined) {
      this.idleTimer = setInterval(() => {
        if (Date.now() - this.lastRead >= IDLE_MS) this.close();
      }, IDLE_MS / 4);
      this.idleTimer.unref();
    }
  }
}

function percentile(series: Series, q: number, now: number): number | undefined {
  const oldest = Math.floor(now / 1000) - SECONDS + 1;
  const totals = new Float64Array(BUCKETS);
  let count = 0;
  for (let slot = 0; slot < SECONDS; slot++) {
    if ((series.seconds[slot] ?? -1) < oldest) continue;
    const counts = series.counts[slot];
    if (counts === undefined) continue;
    for (let i = 0; i < BUCKETS; i++) {
      const n = counts[i] ?? 0;
      totals[i] = (totals[i] ?? 0) + n;
      count += n;
    }
  }
  if (count === 0) return undefined;
  const target = Math.ceil(q * count);
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += totals[i] ?? 0;
    if (seen >= target) return FIRST_EDGE_MS * GROWTH ** i;
  }
  return undefined;
}
