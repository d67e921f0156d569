/**
 * @module Fixed-bucket histograms cheap enough for every invocation: a bucket search and two additions,
 * no allocation. prom-client's own `observe` hashes a label object on every call (about 1 µs, measured:
 * five of them per request would cost the gateway ~13% of its throughput), so observations land here and
 * prom-client reads them at scrape time (`metrics.ts`).
 */

/** Seconds: from half a millisecond (a warm hello) to a minute (long timeouts). */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** What an exemplar points at: the invocation, whose trace id is derived only when scraped. */
export interface ExemplarSource {
  readonly invocationId: string;
  readonly traceId: string | undefined;
}

export interface Exemplar {
  source: ExemplarSource;
  value: number;
  /** Epoch seconds. */
  timestamp: number;
}

export class Histogram {
  /** Per-bucket counts (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  /** The latest observation per bucket, for OpenMetrics exemplars; filled only when asked. */
  readonly exemplars: (Exemplar | undefined)[];

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS) {
    this.counts = new Float64Array(bounds.length + 1);
    this.exemplars = new Array<Exemplar | undefined>(bounds.length + 1).fill(undefined);
  }

  observe(value: number, exemplar?: ExemplarSource, nowMs?: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i += 1;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count += 1;
    if (exemplar === undefined) return;
    const slot = this.exemplars[i];
    const timestamp = (nowMs ?? Date.now()) / 1000;
    if (slot === undefined) this.exemplars[i] = { source: exemplar, value, timestamp };
    else {
      slot.source = exemplar;
      slot.value = value;
      slot.timestamp = timestamp;
    }
  }
}

/**
 * Quantiles over a short window from log-spaced buckets (ratio √2 from 0.25 ms): good to ±20%, which
 * is what a p50/p99 chart needs, in 38 counters per slot (up to ~90 s).
 */
export const SKETCH_BUCKETS = 38;
const SKETCH_BASE_MS = 0.25;
const LOG_SQRT2 = Math.log(Math.SQRT2);

export function sketchIndex(ms: number): number {
  if (ms <= SKETCH_BASE_MS) return 0;
  const index = Math.ceil(Math.log(ms / SKETCH_BASE_MS) / LOG_SQRT2);
  return index >= SKETCH_BUCKETS ? SKETCH_BUCKETS - 1 : index;
}

/** The upper bound (ms) of a sketch bucket. */
export function sketchBound(index: number): number {
  return SKETCH_BASE_MS * Math.SQRT2 ** index;
}

/** The `q` quantile (0..1) of merged sketch counts, as a bucket's upper bound; undefined when empty. */
export function sketchQuantile(counts: ArrayLike<number>, q: number): number | undefined {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i] as number;
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i] as number;
    if (seen >= rank) return sketchBound(i);
  }
  return sketchBound(counts.length - 1);
}
