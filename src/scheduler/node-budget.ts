/**
 * @module The node's budget: instances alive or starting, and the memory they reserve (each its
 * `limits.memory` divided by the operator's `memoryOvercommit`, or an isolate's fixed reservation), against
 * `maxInstances` and `maxMemory`; and eviction, which makes room by stopping idle instances other functions
 * can spare, in the order the scaling policy expects them to stay unused longest.
 */

import { functionKey } from '../domain/function.js';
import type { PooledInstance } from './function-pool.js';

/** What the budget reads of one version's pool (a `VersionPool`). */
export interface BudgetedPool<I extends PooledInstance> {
  readonly instances: readonly I[];
  readonly starting: number;
  readonly live: number;
  readonly version: {
    readonly ref: { readonly namespace: string; readonly name: string };
    readonly spec: {
      readonly isolation: string;
      readonly limits: { readonly memoryBytes: number };
      readonly scaling: { readonly min: number };
    };
  };
}

/** What the budget reads of one function (a `FunctionPool`). */
export interface BudgetedFunction<I extends PooledInstance> {
  readonly active: BudgetedPool<I>;
  readonly draining: Iterable<BudgetedPool<I>>;
  readonly scaling: {
    readonly desired: number;
    readonly decision?: { readonly keepIdleMs: number } | undefined;
  };
}

export interface NodeBudgetOptions<I extends PooledInstance, F extends BudgetedFunction<I>> {
  readonly maxInstances: number;
  readonly maxMemoryBytes: number;
  /**
   * Declared memory per reserved byte (≥ 1; 1 reserves every `limits.memory` in full). Each instance's
   * cgroup still holds it to its declared limit; the ratio only says how many such walls the node stacks
   * on its RAM, since an idle instance uses a small part of it (issue 11: 9-14 MiB PSS against 128 MiB).
   */
  readonly memoryOvercommit?: number;
  /** Every function on the node, by key. */
  readonly functions: () => Iterable<readonly [string, F]>;
  /**
   * The same functions without their keys, where the caller has them so: `use` runs on every instance start
   * and reads no key (a key string per function per start, 100 functions started at once: 10,000 of them).
   */
  readonly functionPools?: () => Iterable<F>;
  /** The policy's expected milliseconds until a function is used again (0: in use now). */
  readonly expectedIdleMs: (key: string, now: number) => number;
  /** Stops `instance` of `fn`; `reason` says why, for its log and the function's decisions. */
  readonly evict: (fn: F, instance: I, reason: string) => void;
}

/**
 * What one function of `isolation: isolate` reserves: its V8 isolate in a shared host process, about 1 MiB
 * idle (bench/RESULTS.md, isolate section), with room for a warm heap. The isolate's own heap limit is
 * still its `limits.memory`; the host process is held by its cgroup (see runtime/isolate).
 */
export const ISOLATE_RESERVATION_BYTES = 4 * 1024 ** 2;

export interface BudgetUse {
  readonly instances: number;
  readonly memory: number;
}

interface EvictionCandidate<I, F> {
  readonly fn: F;
  readonly instance: I;
  /** Above its function's desired count: nobody will miss it. */
  readonly excess: boolean;
  /** The policy's expected milliseconds until the function is used again. */
  readonly expected: number;
  readonly idleFor: number;
  readonly memory: number;
}

export class NodeBudget<I extends PooledInstance, F extends BudgetedFunction<I>> {
  readonly maxInstances: number;
  readonly maxMemoryBytes: number;
  readonly memoryOvercommit: number;

  constructor(private readonly options: NodeBudgetOptions<I, F>) {
    this.maxInstances = options.maxInstances;
    this.maxMemoryBytes = options.maxMemoryBytes;
    this.memoryOvercommit = Math.max(1, options.memoryOvercommit ?? 1);
  }

  /** The memory one instance of `version` reserves in the budget. */
  reservation(version: BudgetedPool<I>['version']): number {
    if (version.spec.isolation === 'isolate') return ISOLATE_RESERVATION_BYTES;
    return Math.ceil(version.spec.limits.memoryBytes / this.memoryOvercommit);
  }

  /** Instances alive or starting on this node, and the memory they reserve. */
  use(): BudgetUse {
    let instances = 0;
    let memory = 0;
    const count = (pool: BudgetedPool<I>): void => {
      let live = pool.starting;
      for (const instance of pool.instances) if (instance.state !== 'stopped') live += 1;
      if (live === 0) return;
      instances += live;
      memory += live * this.reservation(pool.version);
    };
    const pools = this.options.functionPools;
    if (pools !== undefined)
      for (const fn of pools()) {
        count(fn.active);
        for (const pool of fn.draining) count(pool);
      }
    else
      for (const [, fn] of this.options.functions()) {
        count(fn.active);
        for (const pool of fn.draining) count(pool);
      }
    return { instances, memory };
  }

  /** "3/192 instances, 384/18432 MiB", for messages. */
  describe(use: BudgetUse = this.use()): string {
    return `${use.instances}/${this.maxInstances} instances, ${mib(use.memory)}/${mib(this.maxMemoryBytes)} MiB`;
  }

  /**
   * Whether the node's budget (instances, and memory as the sum of reservations) has room for one more
   * instance of `pool`'s version, evicting idle instances when it has not. Never a busy instance, never
   * below a function's min, never one of a function in use right now unless it is above its desired count
   * and the start is for requests waiting now (`demand`: a pre-warm never takes from a function in use);
   * instances above desired go first, then those of the functions the policy expects to stay unused longest.
   * Nothing is evicted unless enough can go to make room.
   */
  makeRoom(pool: BudgetedPool<I>, demand: boolean): boolean {
    const need = this.reservation(pool.version);
    if (need > this.maxMemoryBytes) return false;
    return this.evictFor(1, need, pool, demand, `for ${functionKey(pool.version.ref)}`);
  }

  /**
   * Brings the node back within its budget when it is over: a deploy's verified instance, or a smaller
   * budget's first tick. The usual order; the newest function, with no history, tends to go first.
   */
  enforce(): void {
    const use = this.use();
    if (use.instances <= this.maxInstances && use.memory <= this.maxMemoryBytes) return;
    this.evictFor(0, 0, undefined, true, 'to get back within the budget');
  }

  /**
   * Evicts idle instances until `instances` more instances and `memory` more bytes fit the budget; false
   * (and nothing evicted) when they cannot. `demand`: for requests that are waiting now.
   */
  private evictFor(
    instances: number,
    memory: number,
    exclude: BudgetedPool<I> | undefined,
    demand: boolean,
    purpose: string,
  ): boolean {
    const maxInstances = this.maxInstances;
    const use = this.use();
    const fits = (count: number, bytes: number): boolean =>
      count + instances <= maxInstances && bytes + memory <= this.maxMemoryBytes;
    if (fits(use.instances, use.memory)) return true;
    const now = Date.now();
    const candidates: EvictionCandidate<I, F>[] = [];
    for (const [key, fn] of this.options.functions()) {
      // A request in flight is use right now, whatever the policy's history says: it learns of activity at
      // its ticks, so between two it can count a function idle for a tick while one of its instances is
      // serving (on a loaded machine, when its clients' requests come a few hundred ms apart).
      const expected = fn.active.instances.some((instance) => instance.inFlight > 0)
        ? 0
        : this.options.expectedIdleMs(key, now);
      for (const candidatePool of [fn.active, ...fn.draining]) {
        if (candidatePool === exclude) continue;
        const active = candidatePool === fn.active;
        const idle = candidatePool.instances.filter((i) => i.state === 'ready' && i.inFlight === 0);
        if (idle.length === 0) continue;
        const min = active ? candidatePool.version.spec.scaling.min : 0;
        idle.sort((a, b) => a.lastUsedAt - b.lastUsedAt);
        let spare = active
          ? Math.max(0, candidatePool.live - Math.max(min, fn.scaling.desired))
          : idle.length;
        // A function in use now spares only what its own scale-down would stop this tick: its desired count
        // lags a ramp (it averages a stable window), and an instance idle for the few ms between a client's
        // requests is still in use — evicting it costs that function a cold start (the budget e2e test).
        if (active && expected === 0) {
          const keepIdleMs = fn.scaling.decision?.keepIdleMs ?? 0;
          let idleLongEnough = 0;
          for (const instance of idle) if (now - instance.lastUsedAt >= keepIdleMs) idleLongEnough += 1;
          spare = Math.min(spare, idleLongEnough);
        }
        let allowed = active ? Math.min(idle.length, candidatePool.live - min) : idle.length;
        // A speculative start, or a function in use now, gives up only what it does not need; a speculative
        // start (a pre-warm, a warm pool) takes nothing from a function in use now: its guess of a request to
        // come is worth less than the instance a client is between two requests on.
        if (!demand && active && expected === 0) allowed = 0;
        else if (!demand || expected === 0) allowed = Math.min(allowed, spare);
        if (allowed <= 0) continue;
        for (let i = 0; i < allowed; i++) {
          const instance = idle[i];
          if (instance === undefined) break;
          candidates.push({
            fn,
            instance,
            excess: i < spare,
            expected,
            idleFor: now - instance.lastUsedAt,
            memory: this.reservation(candidatePool.version),
          });
        }
      }
    }
    candidates.sort(
      (a, b) =>
        Number(b.excess) - Number(a.excess) ||
        compareDescending(a.expected, b.expected) ||
        b.idleFor - a.idleFor,
    );
    let count = use.instances;
    let bytes = use.memory;
    const victims: EvictionCandidate<I, F>[] = [];
    for (const candidate of candidates) {
      if (fits(count, bytes)) break;
      victims.push(candidate);
      count -= 1;
      bytes -= candidate.memory;
    }
    if (!fits(count, bytes)) return false;
    const full = `node full (${this.describe(use)})`;
    for (const victim of victims) {
      const why = victim.excess
        ? 'above its desired count'
        : `expected unused for ${formatExpected(victim.expected)}`;
      const reason = `${full}: evicted ${purpose}, ${why}, idle ${Math.round(victim.idleFor)}ms`;
      this.options.evict(victim.fn, victim.instance, reason);
    }
    return true;
  }
}

/** Larger first, with Infinity (never expected back) first of all. */
function compareDescending(a: number, b: number): number {
  if (a === b) return 0;
  return a > b ? -1 : 1;
}

function formatExpected(ms: number): string {
  return Number.isFinite(ms) ? `${Math.round(ms)}ms` : 'the foreseeable future';
}

export function mib(bytes: number): number {
  return Math.round(bytes / 1024 ** 2);
}
