/**
 * @module A table of in-flight entries keyed by a sequence number, for the per-request hot path.
 *
 * Not a `Map`: a long-lived Map with one insert and one delete per request rehashes constantly, and V8
 * links each discarded hash table to its successor (for live iterators). Once a table has been promoted
 * to the old generation (after a few idle seconds, by the memory reducer's GCs), that dead table keeps
 * every later table and the requests they hold alive through each scavenge: measured, scavenges went
 * from 0.4 ms to 8 ms and promoted everything, halving throughput and giving a 13 ms p99
 * (bench/RESULTS.md). Fixed slots and a free list allocate nothing per request.
 *
 * A key is `generation << 16 | slot`, so a late answer for a slot that has since been reused is ignored.
 */

const SLOT_BITS = 16;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const MAX_GENERATION = 0x7fff;

export class SlotTable<T> {
  private readonly values: (T | undefined)[] = [];
  private readonly generations: number[] = [];
  private readonly free: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Stores `value` and returns its key (a positive integer below 2^31). */
  add(value: T): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.values.length;
      if (slot > SLOT_MASK) throw new Error('too many entries in flight');
      this.values.push(undefined);
      this.generations.push(0);
    }
    const generation = ((this.generations[slot] ?? 0) % MAX_GENERATION) + 1;
    this.generations[slot] = generation;
    this.values[slot] = value;
    this.count += 1;
    return (generation << SLOT_BITS) | slot;
  }

  get(key: number): T | undefined {
    const slot = key & SLOT_MASK;
    return this.generations[slot] === key >>> SLOT_BITS ? this.values[slot] : undefined;
  }

  /** Removes and returns the entry, or undefined if the key is stale or unknown. */
  take(key: number): T | undefined {
    const slot = key & SLOT_MASK;
    if (this.generations[slot] !== key >>> SLOT_BITS) return undefined;
    const value = this.values[slot];
    if (value === undefined) return undefined;
    this.values[slot] = undefined;
    this.free.push(slot);
    this.count -= 1;
    return value;
  }

  /** Every live entry with its key. */
  *entries(): IterableIterator<[number, T]> {
    for (let slot = 0; slot < this.values.length; slot++) {
      const value = this.values[slot];
      if (value !== undefined) yield [((this.generations[slot] ?? 0) << SLOT_BITS) | slot, value];
    }
  }

  /** Removes every entry and returns them. */
  drain(): T[] {
    const all: T[] = [];
    for (const [key, value] of this.entries()) {
      this.take(key);
      all.push(value);
    }
    return all;
  }
}
