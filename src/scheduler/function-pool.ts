/**
 * @module A function's instance pool: the active version's instances and its wait queue (`VersionPool`),
 * the versions still draining, the breaker's per-instance counts and the autoscaler's state (`FunctionPool`),
 * and the node's pools by reference (`PoolsByRef`), looked up on every request.
 */

import type { DeployedVersion, InvocationRequest } from '../domain/deployment.js';
import type { HearthError } from '../domain/errors.js';
import { type FunctionRef, functionKey } from '../domain/function.js';
import { FunctionScaling } from './autoscaler/index.js';
import type { FunctionBreaker } from './breaker.js';
import type { Instance } from './instance.js';
import { WaitQueue } from './wait-queue.js';

/** A request held until an instance has room. */
export interface Waiter {
  readonly request: InvocationRequest;
  readonly priority: number;
  readonly enqueuedAt: number;
  timer: NodeJS.Timeout | undefined;
  resolve(assignment: { instance: Instance; cold: boolean }): void;
  reject(error: HearthError): void;
}

/** One version's instances (oldest first), the requests waiting for them, and the starts under way. */
export class VersionPool<I extends PooledInstance = Instance> {
  readonly instances: I[] = [];
  readonly waiters = new WaitQueue<Waiter>();
  starting = 0;
  /** In-flight capacity of one instance, learned from the first bound instance. */
  capacityHint: number;

  constructor(readonly version: DeployedVersion) {
    this.capacityHint = version.spec.runtime === 'python3' ? 1 : version.spec.scaling.targetConcurrency;
  }

  get live(): number {
    let count = 0;
    for (const instance of this.instances) if (instance.state === 'ready') count += 1;
    return count;
  }

  pick(): I | undefined {
    // Oldest first: packing requests onto the oldest instances lets newer ones go idle and be released.
    for (const instance of this.instances) if (instance.hasRoom) return instance;
    return undefined;
  }

  /** Ready instances with nothing in flight. */
  idle(): I[] {
    return this.instances.filter((instance) => instance.state === 'ready' && instance.inFlight === 0);
  }
}

/** What a pool needs of an instance (an `Instance`; plain objects in the pool's own tests). */
export interface PooledInstance {
  readonly state: 'starting' | 'ready' | 'draining' | 'stopped';
  readonly inFlight: number;
  readonly lastUsedAt: number;
  readonly hasRoom: boolean;
}

export class FunctionPool {
  readonly draining = new Set<VersionPool>();
  /** Consecutive failures per instance, for the per-instance breaker; empty while all is well. */
  readonly instanceFailures = new Map<Instance, number>();
  /** The autoscaler's per-function state; it outlives versions, so history survives a redeploy. */
  readonly scaling = new FunctionScaling(Date.now());
  constructor(
    public active: VersionPool,
    readonly breaker: FunctionBreaker,
  ) {}
}

/**
 * Function pools by namespace, then name. The per-request lookups (`lookup`, `submit`) would otherwise
 * build the `namespace/name` key and hash it anew each time; here names are hashed once per string.
 * Iterates as `[functionKey, pool]`, like the Map it replaces.
 */
export class PoolsByRef<P> {
  private readonly byNamespace = new Map<string, Map<string, P>>();

  get(ref: FunctionRef): P | undefined {
    return this.byNamespace.get(ref.namespace)?.get(ref.name);
  }

  set(ref: FunctionRef, pool: P): void {
    let names = this.byNamespace.get(ref.namespace);
    if (names === undefined) {
      names = new Map();
      this.byNamespace.set(ref.namespace, names);
    }
    names.set(ref.name, pool);
  }

  delete(ref: FunctionRef): void {
    const names = this.byNamespace.get(ref.namespace);
    names?.delete(ref.name);
    if (names?.size === 0) this.byNamespace.delete(ref.namespace);
  }

  clear(): void {
    this.byNamespace.clear();
  }

  *values(): IterableIterator<P> {
    for (const names of this.byNamespace.values()) yield* names.values();
  }

  *[Symbol.iterator](): IterableIterator<[string, P]> {
    for (const [namespace, names] of this.byNamespace)
      for (const [name, pool] of names) yield [functionKey({ namespace, name }), pool];
  }
}
