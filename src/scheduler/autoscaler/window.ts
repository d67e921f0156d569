/** @module Fixed-size sliding windows of per-tick samples, and time-bucketed rolling counters, without allocation per push. */

/** The last `size` samples, oldest overwritten first; the mean is over the samples seen so far. */
export class SlidingWindow {
  private readonly values: Float64Array;
  private next = 0;
  private filled = 0;
  private total = 0;
  private pushes = 0;

  constructor(readonly size: number) {
    this.values = new Float64Array(Math.max(1, Math.floor(size)));
  }

  get count(): number {
    return this.filled;
  }

  push(value: number): void {
    const capacity = this.values.length;
    if (this.filled === capacity) this.total -= this.values[this.next] ?? 0;
    else this.filled += 1;
    this.values[this.next] = value;
    this.total += value;
    this.next = (this.next + 1) % capacity;
    // A running sum of floats drifts; recompute it exactly once per full turn of the ring.
    this.pushes += 1;
    if (this.pushes % capacity === 0) this.total = this.sumOfLast(this.filled);
  }

  /** Mean of the whole window (of the samples so far, when it is not full yet); 0 when empty. */
  mean(): number {
    return this.filled === 0 ? 0 : Math.max(0, this.total) / this.filled;
  }

  /** Mean of the newest `k` samples. */
  meanOfLast(k: number): number {
    const n = Math.min(Math.max(1, Math.floor(k)), this.filled);
    return n === 0 ? 0 : this.sumOfLast(n) / n;
  }

  sumOfLast(k: number): number {
    const capacity = this.values.length;
    const n = Math.min(Math.floor(k), this.filled);
    let sum = 0;
    for (let i = 1; i <= n; i++) sum += this.values[(this.next - i + capacity) % capacity] ?? 0;
    return sum;
  }

  sum(): number {
    return Math.max(0, this.total);
  }

  max(): number {
    let best = 0;
    for (let i = 0; i < this.filled; i++) best = Math.max(best, this.values[i] ?? 0);
    return best;
  }
}

/**
 * Counts over the last `buckets × bucketMs` milliseconds of wall time, in buckets, so a figure such as
 * "requests in the last 5 minutes" costs a few additions per tick and no list of timestamps.
 */
export class RollingCounter {
  private readonly starts: Float64Array;
  private readonly counts: Float64Array[];

  constructor(
    private readonly bucketMs: number,
    private readonly buckets: number,
    series: number,
  ) {
    this.starts = new Float64Array(buckets).fill(Number.NEGATIVE_INFINITY);
    this.counts = Array.from({ length: series }, () => new Float64Array(buckets));
  }

  get spanMs(): number {
    return this.bucketMs * this.buckets;
  }

  /** Adds `values[i]` to series i at time `now`. */
  add(now: number, values: readonly number[]): void {
    const start = Math.floor(now / this.bucketMs) * this.bucketMs;
    const slot = Math.floor(now / this.bucketMs) % this.buckets;
    if (this.starts[slot] !== start) {
      this.starts[slot] = start;
      for (const series of this.counts) series[slot] = 0;
    }
    for (let i = 0; i < this.counts.length; i++) {
      const series = this.counts[i];
      if (series !== undefined) series[slot] = (series[slot] ?? 0) + (values[i] ?? 0);
    }
  }

  /** The sum of series `index` over the buckets still inside the span at `now`. */
  total(index: number, now: number): number {
    const series = this.counts[index];
    if (series === undefined) return 0;
    const oldest = now - this.spanMs;
    let sum = 0;
    for (let i = 0; i < this.buckets; i++) if ((this.starts[i] ?? 0) > oldest) sum += series[i] ?? 0;
    return sum;
  }
}
