/**
 * @module The queue of requests waiting for an instance: higher priority first, first-come first-served
 * within a priority. Priorities are few small integers (0–100), so one FIFO bucket per priority in
 * descending order beats a heap and keeps FIFO order exact.
 */

export interface Prioritised {
  readonly priority: number;
}

class Bucket<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  constructor(readonly priority: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head += 1;
    // Compact now and then so a long-lived queue does not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  last(): T | undefined {
    for (let i = this.items.length - 1; i >= this.head; i--) {
      const item = this.items[i];
      if (item !== undefined) return item;
    }
    return undefined;
  }

  remove(item: T): boolean {
    const index = this.items.indexOf(item, this.head);
    if (index < 0) return false;
    this.items.splice(index, 1);
    return true;
  }

  *values(): IterableIterator<T> {
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i];
      if (item !== undefined) yield item;
    }
  }
}

export class WaitQueue<T extends Prioritised> {
  /** Non-empty and empty buckets, highest priority first. */
  private readonly buckets: Bucket<T>[] = [];
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    let index = this.buckets.findIndex((bucket) => bucket.priority <= item.priority);
    if (index < 0) index = this.buckets.length;
    let bucket = this.buckets[index];
    if (bucket === undefined || bucket.priority !== item.priority) {
      bucket = new Bucket<T>(item.priority);
      this.buckets.splice(index, 0, bucket);
    }
    bucket.push(item);
    this.count += 1;
  }

  /** The highest-priority, longest-waiting item. */
  shift(): T | undefined {
    for (const bucket of this.buckets) {
      if (bucket.length === 0) continue;
      const item = bucket.shift();
      if (item !== undefined) {
        this.count -= 1;
        return item;
      }
    }
    return undefined;
  }

  remove(item: T): boolean {
    for (const bucket of this.buckets) {
      if (bucket.priority !== item.priority) continue;
      if (bucket.remove(item)) {
        this.count -= 1;
        return true;
      }
    }
    return false;
  }

  /** The newest item of the lowest priority: the one to shed when a higher priority needs the room. */
  lowest(): T | undefined {
    for (let index = this.buckets.length - 1; index >= 0; index--) {
      const bucket = this.buckets[index];
      if (bucket !== undefined && bucket.length > 0) return bucket.last();
    }
    return undefined;
  }

  /** Removes and returns everything, in service order. */
  drain(): T[] {
    const all: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) all.push(item);
    return all;
  }

  /** Counts per priority, highest first, for status and metrics. */
  depthByPriority(): { priority: number; waiting: number }[] {
    return this.buckets
      .filter((bucket) => bucket.length > 0)
      .map((bucket) => ({ priority: bucket.priority, waiting: bucket.length }));
  }

  *values(): IterableIterator<T> {
    for (const bucket of this.buckets) yield* bucket.values();
  }
}
