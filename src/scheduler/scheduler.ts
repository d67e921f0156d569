/**
 * @module The scheduler: per function, the active version's instances and a wait queue; per node, the
 * stem-cell pools and an instance budget. A request takes a free slot on a warm instance, or waits while
 * instances start (held, not dropped) until its deadline.
 */

import { totalmem } from 'node:os';
import type { DeployedVersion, InvocationRequest, InvocationResponse } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import {
  type InstanceEvent,
  instanceChannel,
  type QueueDecisionEvent,
  queueChannel,
  type ScalingEvent,
  scalingChannel,
} from '../domain/events.js';
import { type FunctionRef, functionKey, type IsolationName, type RuntimeName } from '../domain/function.js';
import { formatBytes } from '../domain/units.js';
import type { GuestCall, Isolation, NetworkMode, Runtime, SlotManager } from '../runtime/index.js';
import {
  type AutoscalerTiming,
  DEFAULT_TIMING,
  type FunctionLiveStats,
  FunctionScaling,
  type NodeLiveStats,
  type ScalingAction,
  type ScalingPolicy,
  type ScalingRecord,
  type ScalingStatus,
  StemCellSizer,
} from './autoscaler/index.js';
import { DEFAULT_BREAKER, FunctionBreaker, instanceIsolated, isFailure } from './breaker.js';
import type {
  CodeProvider,
  FunctionStatus,
  InvokeCallback,
  LogSink,
  Scheduler,
  SchedulerOptions,
} from './index.js';
import { Instance } from './instance.js';
import { StemCellPool, type StemCellPoolStats } from './stem-cells.js';
import { WaitQueue } from './wait-queue.js';

interface Waiter {
  readonly request: InvocationRequest;
  readonly priority: number;
  readonly enqueuedAt: number;
  timer: NodeJS.Timeout | undefined;
  resolve(assignment: { instance: Instance; cold: boolean }): void;
  reject(error: HearthError): void;
}

class VersionPool {
  readonly instances: Instance[] = [];
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

  pick(): Instance | undefined {
    // Oldest first: packing requests onto the oldest instances lets newer ones go idle and be released.
    for (const instance of this.instances) if (instance.hasRoom) return instance;
    return undefined;
  }
}

class FunctionPool {
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

/** Timeouts fire within this many milliseconds of their deadline. */
const DEADLINE_SWEEP_MS = 10;

/**
 * Function pools by namespace, then name. The per-request lookups (`lookup`, `submit`) would otherwise
 * build the `namespace/name` key and hash it anew each time; here names are hashed once per string.
 * Iterates as `[functionKey, pool]`, like the Map it replaces.
 */
class PoolsByRef {
  private readonly byNamespace = new Map<string, Map<string, FunctionPool>>();

  get(ref: FunctionRef): FunctionPool | undefined {
    return this.byNamespace.get(ref.namespace)?.get(ref.name);
  }

  set(ref: FunctionRef, pool: FunctionPool): void {
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

  *values(): IterableIterator<FunctionPool> {
    for (const names of this.byNamespace.values()) yield* names.values();
  }

  *[Symbol.iterator](): IterableIterator<[string, FunctionPool]> {
    for (const [namespace, names] of this.byNamespace)
      for (const [name, pool] of names) yield [functionKey({ namespace, name }), pool];
  }
}
const BIND_TIMEOUT_MS = 30_000;

export class NodeScheduler implements Scheduler {
  private readonly functions = new PoolsByRef();
  private readonly poolOf = new Map<Instance, VersionPool>();
  private readonly stemPools = new Map<string, StemCellPool>();
  private readonly runtimes: ReadonlyMap<RuntimeName, Runtime>;
  private readonly isolations: ReadonlyMap<IsolationName, Isolation>;
  private readonly slots: SlotManager;
  private readonly code: CodeProvider;
  private readonly logs: LogSink;
  private readonly policy: ScalingPolicy;
  private readonly sweeper: NodeJS.Timeout;
  private readonly timing: AutoscalerTiming;
  private readonly sizer: StemCellSizer;
  private readonly maxMemoryBytes: number;
  private startingTotal = 0;
  /** How long an instance start takes on this node lately (a moving average), so pre-warms begin in time. */
  private startMs = 10;
  private readonly busy = new Set<Instance>();
  /** Per-function instance caps from EventGateway `concurrency` entries. */
  private readonly caps = new Map<string, number>();
  private deadlineTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: SchedulerOptions) {
    this.runtimes = options.runtimes;
    this.isolations = options.isolations;
    this.slots = options.slots;
    this.code = options.code;
    this.logs = options.logs;
    this.policy = options.policy;
    this.timing = { ...DEFAULT_TIMING, ...options.autoscaler };
    this.sizer = new StemCellSizer(this.timing, options.autoscaler?.stemCellsMax ?? DEFAULT_STEM_CELLS_MAX);
    this.maxMemoryBytes = options.maxMemoryBytes ?? Math.floor((totalmem() * 3) / 4);
    this.sweeper = setInterval(() => this.sweep(), this.timing.tickMs);
    this.sweeper.unref();
  }

  /** Starts the stem-cell pools of the default isolation and waits until they are filled. */
  async warm(): Promise<void> {
    const isolation = this.isolations.get('sandbox');
    const waits: Promise<void>[] = [];
    for (const runtime of this.runtimes.values()) {
      if (runtime.unavailable !== undefined || isolation === undefined || isolation.unavailable !== undefined)
        continue;
      waits.push(this.stemPool(runtime, isolation, 'none').warm());
    }
    await Promise.all(waits);
  }

  lookup(ref: FunctionRef): DeployedVersion | undefined {
    return this.functions.get(ref)?.active.version;
  }

  async prepare(version: DeployedVersion): Promise<Instance> {
    return this.createInstance(version);
  }

  activate(version: DeployedVersion, prepared?: Instance): void {
    const next = new VersionPool(version);
    if (prepared !== undefined) {
      next.instances.push(prepared);
      next.capacityHint = prepared.capacity;
      this.poolOf.set(prepared, next);
      this.watchExit(prepared);
    }
    const fn = this.functions.get(version.ref);
    if (fn === undefined) {
      this.functions.set(version.ref, new FunctionPool(next, this.newBreaker(version.ref)));
    } else {
      const previous = fn.active;
      fn.active = next;
      // Requests still waiting were never started: they go to the new version, in their order.
      for (const waiter of previous.waiters.drain()) next.waiters.push(waiter);
      this.retire(fn, previous, 'redeployed');
    }
    if (prepared !== undefined) {
      this.publish(prepared, 'started', 'deploy verified the handler', prepared.readyAt - prepared.startedAt);
      this.dispatch(next, prepared, false);
    }
    this.scale(next);
    this.ensureMinimum(next, true);
  }

  async deactivate(ref: FunctionRef): Promise<void> {
    const key = functionKey(ref);
    const fn = this.functions.get(ref);
    if (fn === undefined) return;
    this.functions.delete(ref);
    this.policy.forget(key);
    for (const waiter of fn.active.waiters.drain()) {
      clearTimeout(waiter.timer);
      waiter.reject(new HearthError('HEARTH_E_FN_NOT_FOUND', `function ${key} was removed`));
    }
    const stops: Promise<void>[] = [];
    for (const pool of [fn.active, ...fn.draining]) {
      for (const instance of pool.instances) {
        instance.drain('removed');
        if (instance.inFlight === 0) stops.push(this.stopInstance(instance, 'removed'));
      }
    }
    await Promise.all(stops);
  }

  invoke(ref: FunctionRef, request: InvocationRequest): Promise<InvocationResponse> {
    return new Promise((resolve, reject) => {
      this.submit(ref, request, (error, response) => {
        if (error !== undefined) reject(error);
        else if (response !== undefined) resolve(response);
      });
    });
  }

  submit(ref: FunctionRef, request: InvocationRequest, done: InvokeCallback): void {
    const fn = this.functions.get(ref);
    if (fn === undefined) {
      done(
        new HearthError(
          'HEARTH_E_FN_NOT_FOUND',
          `function ${ref.name} not found in namespace ${ref.namespace}`,
        ),
        undefined,
      );
      return;
    }
    // One addition: the autoscaler reads the count once per tick.
    fn.scaling.arrivals += 1;
    // An open circuit answers at once (issue 3); closed costs this one comparison.
    let probe = false;
    if (fn.breaker.state !== 'closed') {
      const admission = fn.breaker.admit(Date.now());
      if (admission instanceof HearthError) {
        done(admission, undefined);
        return;
      }
      probe = admission === 'probe';
    }
    const pool = fn.active;
    const instance = pool.pick();
    if (instance !== undefined) {
      instance.inFlight += 1;
      this.runOn(instance, request, false, 0, done, fn, probe);
      return;
    }
    const enqueuedAt = performance.now();
    this.enqueue(pool, request).then(
      (assignment) =>
        this.runOn(
          assignment.instance,
          request,
          assignment.cold,
          performance.now() - enqueuedAt,
          done,
          fn,
          probe,
        ),
      (error: HearthError) => {
        if (probe) fn.breaker.abandonProbe();
        done(error, undefined);
      },
    );
  }

  /** Max instances for a function (an EventGateway's `concurrency`); undefined lifts the cap. */
  setInstanceCap(ref: FunctionRef, cap: number | undefined): void {
    const key = functionKey(ref);
    if (cap === undefined) this.caps.delete(key);
    else this.caps.set(key, cap);
  }

  private maxInstances(pool: VersionPool): number {
    const cap = this.caps.size === 0 ? undefined : this.caps.get(functionKey(pool.version.ref));
    return cap === undefined ? pool.version.spec.scaling.max : Math.min(cap, pool.version.spec.scaling.max);
  }

  private newBreaker(ref: FunctionRef): FunctionBreaker {
    return new FunctionBreaker(ref, this.options.breaker ?? DEFAULT_BREAKER, (event) => {
      if (event.state === 'open') {
        const fn = this.functions.get(ref);
        // Requests waiting behind a failing function would only fail later: they get the 503 now.
        if (fn !== undefined)
          for (const waiter of fn.active.waiters.drain()) {
            clearTimeout(waiter.timer);
            waiter.reject(fn.breaker.refusal(fn.breaker.retryAfterMs));
          }
      }
      this.options.onWarning(`circuit of ${functionKey(ref)} ${event.state}: ${event.reason}`);
    });
  }

  private succeeded(fn: FunctionPool, instance: Instance, probe: boolean): 'closed' | undefined {
    fn.instanceFailures.delete(instance);
    return fn.breaker.success(probe);
  }

  private failed(
    fn: FunctionPool,
    instance: Instance,
    probe: boolean,
    error: HearthError,
  ): 'open' | undefined {
    if (!isFailure(error.code, error.details?.stage)) {
      if (probe) fn.breaker.abandonProbe();
      return undefined;
    }
    const threshold = (this.options.breaker ?? DEFAULT_BREAKER).failures;
    const count = (fn.instanceFailures.get(instance) ?? 0) + 1;
    fn.instanceFailures.set(instance, count);
    if (count >= threshold && instance.state === 'ready') {
      fn.instanceFailures.delete(instance);
      instance.drain(`isolated by the circuit breaker after ${count} consecutive failures`);
      instanceIsolated(instance.version.ref, instance.id, count, error.message, (event) =>
        this.options.onWarning(
          `instance ${event.instanceId} isolated: ${event.failures} consecutive failures (${event.reason})`,
        ),
      );
      if (instance.inFlight === 0) void this.stopInstance(instance, instance.drainReason);
      const pool = this.poolOf.get(instance);
      // Replaced at once while the function as a whole is healthy; an open circuit waits for its probe.
      if (pool !== undefined && fn.breaker.state === 'closed' && this.isCurrent(pool))
        this.startInto(pool, 'replacing an isolated instance');
    }
    return fn.breaker.failure(probe, error.message);
  }

  private runOn(
    instance: Instance,
    request: InvocationRequest,
    cold: boolean,
    waitMs: number,
    done: InvokeCallback,
    fn: FunctionPool,
    probe: boolean,
  ): void {
    this.watchDeadlines(instance);
    const settled = (): void => {
      instance.inFlight -= 1;
      instance.served += 1;
      instance.lastUsedAt = Date.now();
      this.released(instance);
    };
    instance.run(
      request,
      (error, result) => {
        if (error !== undefined || result === undefined) {
          const failure = error ?? new HearthError('HEARTH_E_INTERNAL', 'no result');
          this.failed(fn, instance, probe, failure);
          done(failure, undefined);
          return;
        }
        if (result.ok) {
          // Breaker bookkeeping only when something failed recently or this is a probe.
          const circuit =
            probe || fn.breaker.consecutive !== 0 || fn.instanceFailures.size !== 0
              ? this.succeeded(fn, instance, probe)
              : undefined;
          done(undefined, {
            status: result.status,
            headers: result.headers,
            body: result.body,
            coldStart: cold,
            version: instance.version.version,
            instanceId: instance.id,
            waitMs,
            coldStartPhases: cold ? instance.coldStartPhases : undefined,
            // Always present, even undefined: one object shape on the hot path keeps its readers monomorphic.
            circuit,
          });
          return;
        }
        const { type, message, stack } = result.error;
        this.logs.write({
          ref: instance.version.ref,
          version: instance.version.version,
          instanceId: instance.id,
          invocationId: request.invocationId,
          stream: 'stderr',
          text: `${stack ?? `${type}: ${message}`}\n`,
        });
        const failure = new HearthError('HEARTH_E_FN_ERROR', `${type}: ${message}`, { details: { type } });
        const opened = this.failed(fn, instance, probe, failure);
        if (instance.version.spec.eventFormat === 'lambda-direct' || request.direct === true) {
          // Lambda's own answer to an unhandled error, which its clients and SDKs read; still a failure
          // (500) for the breaker, retries and metrics, where Lambda's Invoke API says 200 and the header.
          done(undefined, {
            status: 500,
            headers: [
              'content-type',
              'application/json',
              'x-amz-function-error',
              'Unhandled',
              ...(opened === undefined ? [] : ['x-hearth-circuit', 'open']),
            ],
            body: lambdaErrorBody(instance.version.spec.runtime, result.error, request.invocationId),
            coldStart: cold,
            version: instance.version.version,
            instanceId: instance.id,
            waitMs,
            coldStartPhases: cold ? instance.coldStartPhases : undefined,
            circuit: undefined,
          });
          return;
        }
        done(
          opened === undefined
            ? failure
            : new HearthError(failure.code, failure.message, {
                details: failure.details ?? {},
                headers: { 'x-hearth-circuit': 'open' },
              }),
          undefined,
        );
      },
      settled,
    );
  }

  /** One sweep every DEADLINE_SWEEP_MS while anything is in flight, instead of one timer per request. */
  private watchDeadlines(instance: Instance): void {
    this.busy.add(instance);
    if (this.deadlineTimer !== undefined) return;
    this.deadlineTimer = setInterval(() => {
      const now = Date.now();
      for (const candidate of this.busy) {
        candidate.expire(now);
        if (!candidate.hasInvocations) this.busy.delete(candidate);
      }
      if (this.busy.size === 0) {
        clearInterval(this.deadlineTimer);
        this.deadlineTimer = undefined;
      }
    }, DEADLINE_SWEEP_MS);
    this.deadlineTimer.unref();
  }

  status(ref: FunctionRef): FunctionStatus | undefined {
    const fn = this.functions.get(ref);
    if (fn === undefined) return undefined;
    const pools = [fn.active, ...fn.draining];
    return {
      activeVersion: fn.active.version.version,
      instances: pools.flatMap((pool) => pool.instances.map((instance) => instance.info())),
      starting: pools.reduce((sum, pool) => sum + pool.starting, 0),
      queued: fn.active.waiters.length,
      ...this.scalingStatus(fn),
      circuit: {
        state: fn.breaker.state,
        failures: fn.breaker.consecutive,
        retryAfterMs: fn.breaker.state === 'open' ? fn.breaker.retryAfterMs : 0,
      },
      ...(this.caps.has(functionKey(ref)) ? { instanceCap: this.caps.get(functionKey(ref)) } : {}),
    };
  }

  /** Stops the idle instances of a function now (scale to zero); returns how many were stopped. */
  async releaseIdle(ref: FunctionRef): Promise<number> {
    const fn = this.functions.get(ref);
    if (fn === undefined)
      throw new HearthError(
        'HEARTH_E_FN_NOT_FOUND',
        `function ${ref.name} not found in namespace ${ref.namespace}`,
      );
    const idle = [fn.active, ...fn.draining].flatMap((pool) =>
      pool.instances.filter((i) => i.state === 'ready' && i.inFlight === 0),
    );
    // Asked for zero: the autoscaler keeps nothing warm (beyond min) until the next request.
    fn.scaling.parked = true;
    fn.scaling.desired = fn.active.version.spec.scaling.min;
    await Promise.all(idle.map((instance) => this.stopInstance(instance, 'released on request')));
    return idle.length;
  }

  stemCellStats(): StemCellPoolStats[] {
    return [...this.stemPools.values()].map((pool) => pool.stats());
  }

  instanceCount(): number {
    let count = 0;
    for (const fn of this.functions.values())
      for (const pool of [fn.active, ...fn.draining]) count += pool.instances.length;
    return count;
  }

  liveStats(): NodeLiveStats {
    const now = Date.now();
    const use = this.budgetUse();
    const functions: FunctionLiveStats[] = [];
    for (const fn of this.functions.values()) {
      const pool = fn.active;
      let ready = 0;
      let busy = 0;
      let inFlight = 0;
      for (const instance of pool.instances) {
        if (instance.state !== 'ready') continue;
        ready += 1;
        inFlight += instance.inFlight;
        if (instance.inFlight > 0) busy += 1;
      }
      const recent = fn.scaling.recentFigures(now);
      functions.push({
        ref: pool.version.ref,
        version: pool.version.version,
        ready,
        busy,
        idle: ready - busy,
        starting: pool.starting,
        desired: fn.scaling.desired,
        mode: fn.scaling.mode,
        inFlight,
        queued: pool.waiters.length,
        rps: fn.scaling.rps(now),
        recentRequests: recent.requests,
        recentColdStarts: recent.coldStarts,
        memoryBytesPerInstance: pool.version.spec.limits.memoryBytes,
        totalRequests: fn.scaling.totalRequests,
        totalColdStarts: fn.scaling.totalColdStarts,
        idleMemoryMiBSeconds: fn.scaling.idleMemoryMiBSeconds,
      });
    }
    return {
      policy: this.policy.name,
      instances: use.instances,
      maxInstances: this.options.maxInstances,
      memoryBytes: use.memory,
      maxMemoryBytes: this.maxMemoryBytes,
      stemCells: this.stemCellStats(),
      functions,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    clearInterval(this.deadlineTimer);
    const stops: Promise<void>[] = [];
    for (const fn of this.functions.values()) {
      for (const waiter of fn.active.waiters.drain()) {
        clearTimeout(waiter.timer);
        waiter.reject(
          new HearthError('HEARTH_E_SHUTTING_DOWN', 'the platform is shutting down', { retryAfter: 1 }),
        );
      }
      for (const pool of [fn.active, ...fn.draining])
        for (const instance of pool.instances) stops.push(this.stopInstance(instance, 'shutdown', 1000));
    }
    this.functions.clear();
    await Promise.all(stops);
    await Promise.all([...this.stemPools.values()].map((pool) => pool.close()));
  }

  // --- internals ----------------------------------------------------------------------------------

  /**
   * Holds a request until an instance has room. Bounded three ways (issue 3): the queue's length (a
   * higher-priority arrival displaces the newest lowest-priority waiter), the wait allowed (`queueTimeoutMs`
   * → 503 with Retry-After), and the request's own deadline (→ 504 naming the stage that used it up).
   */
  private enqueue(
    pool: VersionPool,
    request: InvocationRequest,
  ): Promise<{ instance: Instance; cold: boolean }> {
    const ref = pool.version.ref;
    const priority = request.priority ?? pool.version.spec.priority;
    if (pool.waiters.length >= this.options.queueLimit) {
      const victim = pool.waiters.lowest();
      if (victim === undefined || victim.priority >= priority) {
        this.publishQueue(ref, 'shed', 'queue-full', priority, pool.waiters.length, 0);
        return Promise.reject(
          this.shed(ref, 'queue-full', `${pool.waiters.length} requests are already waiting for ${ref.name}`),
        );
      }
      pool.waiters.remove(victim);
      clearTimeout(victim.timer);
      this.publishQueue(
        ref,
        'shed',
        'displaced',
        victim.priority,
        pool.waiters.length,
        Date.now() - victim.enqueuedAt,
      );
      victim.reject(
        this.shed(
          ref,
          'displaced',
          `a request of higher priority (${priority}) took its place in the full queue`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const enqueuedAt = Date.now();
      const waiter: Waiter = { request, priority, enqueuedAt, timer: undefined, resolve, reject };
      const maxWait = request.queueTimeoutMs ?? this.options.queueTimeoutMs;
      const untilDeadline = request.deadline - enqueuedAt;
      const shedFirst = maxWait !== undefined && maxWait < untilDeadline;
      waiter.timer = setTimeout(
        () => {
          const fn = this.functions.get(ref);
          const queue = fn?.active.waiters ?? pool.waiters;
          queue.remove(waiter);
          const waited = Date.now() - enqueuedAt;
          if (shedFirst) {
            this.publishQueue(ref, 'shed', 'max-wait', priority, queue.length, waited);
            reject(
              this.shed(
                ref,
                'max-wait',
                `no instance of ${ref.name} became free within ${maxWait}ms (queue.maxWait)`,
              ),
            );
            return;
          }
          // Waiting on an instance that is still starting, with none serving: the cold start used the time.
          const current = fn?.active ?? pool;
          const stage = current.live === 0 && current.starting > 0 ? 'cold-start' : 'queue';
          this.publishQueue(ref, 'expired', stage, priority, queue.length, waited);
          reject(
            new HearthError(
              'HEARTH_E_TIMEOUT',
              stage === 'cold-start'
                ? `${ref.name} did not finish starting within the request's ${request.timeoutMs}ms (${request.timeoutSource}; waited ${waited}ms for a cold start)`
                : `no instance of ${ref.name} became free within the request's ${request.timeoutMs}ms (${request.timeoutSource}; waited ${waited}ms in the queue)`,
              {
                details: {
                  stage,
                  timeoutMs: request.timeoutMs,
                  source: request.timeoutSource,
                  waitedMs: waited,
                },
              },
            ),
          );
        },
        Math.max(0, shedFirst ? maxWait : untilDeadline),
      );
      pool.waiters.push(waiter);
      this.publishQueue(ref, 'queued', undefined, priority, pool.waiters.length, 0);
      this.scale(pool);
    });
  }

  private shed(
    ref: FunctionRef,
    reason: 'queue-full' | 'displaced' | 'max-wait',
    message: string,
  ): HearthError {
    return new HearthError('HEARTH_E_SATURATED', `${ref.name} is saturated: ${message}`, {
      retryAfter: 1,
      headers: { 'x-hearth-shed': reason },
      details: { shed: reason },
    });
  }

  private publishQueue(
    ref: FunctionRef,
    decision: QueueDecisionEvent['decision'],
    reason: string | undefined,
    priority: number,
    depth: number,
    waitMs: number,
  ): void {
    if (queueChannel.hasSubscribers)
      queueChannel.publish({ ref, decision, reason, priority, depth, waitMs } satisfies QueueDecisionEvent);
  }

  /**
   * Starts as many instances as the waiting requests need, in parallel, within the function's max and the
   * node's budget. Starts are reported once per tick; a start the full node refuses is retried every tick.
   */
  private scale(pool: VersionPool): void {
    if (this.closed || pool.waiters.length === 0) return;
    const needed = Math.ceil(pool.waiters.length / pool.capacityHint) - pool.starting;
    const room = this.maxInstances(pool) - pool.live - pool.starting;
    const count = Math.min(needed, room);
    if (count <= 0) return;
    let started = 0;
    while (started < count && this.startInto(pool, 'requests waiting')) started += 1;
    const fn = this.functions.get(pool.version.ref);
    if (fn === undefined || fn.active !== pool) return;
    const state = fn.scaling;
    if (started > 0) {
      if (state.queueStarts === 0) state.queueStartsFrom = pool.live + pool.starting - started;
      state.queueStarts += started;
      state.queuePeak = Math.max(state.queuePeak, pool.waiters.length);
    }
    if (started < count && !state.blocked) {
      state.blocked = true;
      const use = this.budgetUse();
      this.record(
        fn,
        'blocked',
        pool.live + pool.starting,
        pool.live + pool.starting,
        `${pool.waiters.length} requests wait for capacity: the node is full (${use.instances}/${this.options.maxInstances} instances, ${mib(use.memory)}/${mib(this.maxMemoryBytes)} MiB) and no idle instance can be evicted`,
      );
    }
  }

  /**
   * Brings the active version up to its min and, with `carryOver` (a redeploy or config change), to the
   * instances the function runs now, within the new max: the new version takes over the load without a wave
   * of cold starts. Anything else above min is the tick's to decide.
   */
  private ensureMinimum(pool: VersionPool, carryOver = false): void {
    if (this.closed) return;
    const fn = this.functions.get(pool.version.ref);
    const min = pool.version.spec.scaling.min;
    const carried = carryOver && fn !== undefined && !fn.scaling.parked ? fn.scaling.desired : 0;
    const target = Math.min(this.maxInstances(pool), Math.max(min, carried));
    const have = pool.live + pool.starting;
    let started = 0;
    for (let i = have; i < target; i++) {
      const reason =
        i < min ? `min ${min}` : `desired ${target}, carried over to version ${pool.version.version}`;
      if (!this.startInto(pool, reason, i < min)) break;
      started += 1;
    }
    if (fn !== undefined && started > 0)
      this.record(
        fn,
        'scale-up',
        have,
        have + started,
        have + started <= min ? `min ${min}` : `desired ${target}`,
      );
  }

  /**
   * Starts one instance if the node budget allows it. A start for demand (waiting requests, min instances)
   * may evict idle instances other functions can spare; a speculative one (warm pool, pre-warm, scale-ahead)
   * only instances above their function's desired count. Returns whether it started.
   */
  private startInto(pool: VersionPool, reason: string, demand = true): boolean {
    if (!this.makeRoom(pool, demand)) return false;
    pool.starting += 1;
    this.startingTotal += 1;
    this.sizer.noteStart(stemPoolKey(pool.version));
    const began = performance.now();
    this.createInstance(pool.version).then(
      (instance) => {
        pool.starting -= 1;
        this.startingTotal -= 1;
        const fn = this.functions.get(pool.version.ref);
        // Scaled to zero (`DELETE …/instances`) while this one was starting: unless requests wait for it or
        // `min` needs it, it goes too, as the ready ones did.
        const parked = fn?.scaling.parked === true && pool.instances.length >= pool.version.spec.scaling.min;
        if ((!this.isCurrent(pool) || parked) && !this.hasWork(pool)) {
          void instance.stop();
          return;
        }
        pool.instances.push(instance);
        pool.capacityHint = instance.capacity;
        this.poolOf.set(instance, pool);
        this.watchExit(instance);
        const tookMs = performance.now() - began;
        this.startMs += 0.2 * (tookMs - this.startMs);
        this.publish(instance, 'started', reason, tookMs);
        this.dispatch(pool, instance, true);
        // The requests the new instance took from the queue waited for a cold start.
        if (fn !== undefined && fn.active === pool) fn.scaling.coldStarts += instance.inFlight;
      },
      (error: unknown) => {
        pool.starting -= 1;
        this.startingTotal -= 1;
        const failure =
          error instanceof HearthError
            ? error
            : new HearthError(
                'HEARTH_E_INTERNAL',
                `could not start an instance: ${(error as Error).message}`,
              );
        this.options.onWarning(
          `instance of ${functionKey(pool.version.ref)} failed to start: ${failure.message}`,
        );
        const owner = this.functions.get(pool.version.ref);
        if (owner?.active === pool) owner.scaling.startFailedAt = Date.now();
        if (failure.code === 'HEARTH_E_HANDLER_INVALID')
          this.functions.get(pool.version.ref)?.breaker.failure(false, failure.message);
        if (instanceChannel.hasSubscribers) {
          instanceChannel.publish({
            ref: pool.version.ref,
            version: pool.version.version,
            instanceId: '',
            runtime: pool.version.spec.runtime,
            phase: 'failed',
            reason: failure.message,
          } satisfies InstanceEvent);
        }
        // Nobody will free up for the waiting requests: fail them now rather than at their deadline.
        if (pool.live === 0 && pool.starting === 0) {
          const startFailure =
            failure.code === 'HEARTH_E_HANDLER_INVALID'
              ? new HearthError('HEARTH_E_FN_CRASHED', `the function failed to start: ${failure.message}`)
              : failure;
          for (const waiter of pool.waiters.drain()) {
            clearTimeout(waiter.timer);
            waiter.reject(startFailure);
          }
        }
      },
    );
    return true;
  }

  /**
   * Whether the node's budget (instances, and memory as the sum of `limits.memory`) has room for one more
   * instance of `pool`'s version, evicting idle instances when it has not. Never a busy instance, never
   * below a function's min, never one of a function in use right now unless it is above its desired count;
   * instances above desired go first, then those of the functions the policy expects to stay unused longest.
   * Nothing is evicted unless enough can go to make room.
   */
  private makeRoom(pool: VersionPool, demand: boolean): boolean {
    const refused = this.options.admit?.(pool.version);
    if (refused !== undefined) {
      // Over a namespace quota: requests no instance of it can serve get the quota's error now.
      if (pool.live === 0 && pool.starting === 0)
        for (const waiter of pool.waiters.drain()) {
          clearTimeout(waiter.timer);
          waiter.reject(refused);
        }
      return false;
    }
    const need = pool.version.spec.limits.memoryBytes;
    if (need > this.maxMemoryBytes) return false;
    return this.evictFor(1, need, pool, demand, `for ${functionKey(pool.version.ref)}`);
  }

  /**
   * Brings the node back within its budget when it is over: a deploy's verified instance, or a smaller
   * budget's first tick. The usual order; the newest function, with no history, tends to go first.
   */
  private enforceBudget(): void {
    const use = this.budgetUse();
    if (use.instances <= this.options.maxInstances && use.memory <= this.maxMemoryBytes) return;
    this.evictFor(0, 0, undefined, true, 'to get back within the budget');
  }

  /**
   * Evicts idle instances until `instances` more instances and `memory` more bytes fit the budget; false
   * (and nothing evicted) when they cannot. `demand`: for requests that are waiting now.
   */
  private evictFor(
    instances: number,
    memory: number,
    exclude: VersionPool | undefined,
    demand: boolean,
    purpose: string,
  ): boolean {
    const maxInstances = this.options.maxInstances;
    const use = this.budgetUse();
    const fits = (count: number, bytes: number): boolean =>
      count + instances <= maxInstances && bytes + memory <= this.maxMemoryBytes;
    if (fits(use.instances, use.memory)) return true;
    const now = Date.now();
    const candidates: EvictionCandidate[] = [];
    for (const [key, fn] of this.functions) {
      const expected = this.policy.expectedIdleMs(key, now);
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
        // A speculative start, or a function in use now, gives up only what it does not need.
        if (!demand || expected === 0) allowed = Math.min(allowed, spare);
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
            memory: candidatePool.version.spec.limits.memoryBytes,
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
    const victims: EvictionCandidate[] = [];
    for (const candidate of candidates) {
      if (fits(count, bytes)) break;
      victims.push(candidate);
      count -= 1;
      bytes -= candidate.memory;
    }
    if (!fits(count, bytes)) return false;
    const full = `node full (${use.instances}/${maxInstances} instances, ${mib(use.memory)}/${mib(this.maxMemoryBytes)} MiB)`;
    for (const victim of victims) {
      const why = victim.excess
        ? 'above its desired count'
        : `expected unused for ${formatExpected(victim.expected)}`;
      const reason = `${full}: evicted ${purpose}, ${why}, idle ${Math.round(victim.idleFor)}ms`;
      void this.stopInstance(victim.instance, `evicted: ${reason}`);
      const live = victim.fn.active.live + victim.fn.active.starting;
      if (victim.instance.version === victim.fn.active.version)
        this.record(victim.fn, 'evict', live + 1, live, reason);
    }
    return true;
  }

  /** Instances alive or starting on this node, and the memory they reserve. */
  private budgetUse(): { instances: number; memory: number } {
    let instances = 0;
    let memory = 0;
    for (const fn of this.functions.values()) {
      for (const pool of [fn.active, ...fn.draining]) {
        let count = pool.starting;
        for (const instance of pool.instances) if (instance.state !== 'stopped') count += 1;
        instances += count;
        memory += count * pool.version.spec.limits.memoryBytes;
      }
    }
    return { instances, memory };
  }

  private async createInstance(version: DeployedVersion): Promise<Instance> {
    const runtime = this.runtimes.get(version.spec.runtime);
    if (runtime === undefined || runtime.unavailable !== undefined) {
      throw new HearthError(
        'HEARTH_E_UNSUPPORTED',
        runtime?.unavailable ?? `runtime ${version.spec.runtime} is not available on this node`,
      );
    }
    const isolation = this.isolations.get(version.spec.isolation);
    if (isolation === undefined || isolation.unavailable !== undefined) {
      throw new HearthError(
        'HEARTH_E_SANDBOX_UNAVAILABLE',
        isolation?.unavailable ?? `isolation ${version.spec.isolation} is not available`,
        {
          retryAfter: 60,
        },
      );
    }
    const clock = performance.now();
    const phases = { code: 0, stemCell: 0, attach: 0, load: 0 };
    const code = await this.code.checkoutCode(version.code.hash);
    phases.code = performance.now() - clock;
    const network = networkModeOf(version.spec.egress);
    const pool = this.stemPool(runtime, isolation, network);
    let cell: Awaited<ReturnType<StemCellPool['take']>> | undefined;
    try {
      cell = await pool.take();
      phases.stemCell = performance.now() - clock - phases.code;
      const depsDir = version.deps === undefined ? undefined : this.code.layerDir(version.deps.key);
      await this.slots.attach(cell.slot, {
        codeDir: code.dir,
        codeFiles: version.code.files,
        deps:
          version.deps === undefined || depsDir === undefined
            ? undefined
            : { dir: depsDir, name: version.deps.mountName },
      });
      // A function with network access gets its own /etc/hosts names and, for an allow-list, its rules.
      if (network !== 'none' && isolation.configureNetwork !== undefined)
        await isolation.configureNetwork(cell.guest, cell.slot, {
          egress: version.spec.egress,
          hostAliases: version.spec.hostAliases,
        });
      await isolation.limit?.(cell.guest, {
        memoryBytes: version.spec.limits.memoryBytes,
        cpu: version.spec.limits.cpu,
        pids: version.spec.limits.pids,
        tmpBytes: version.spec.limits.tmpBytes,
      });
      phases.attach = performance.now() - clock - phases.code - phases.stemCell;
      const root = isolation.guestPathOf(cell.slot);
      const guest = cell.guest;
      const instance = new Instance(
        version,
        cell,
        isolation.name,
        (log) =>
          this.logs.write({ ...log, ref: version.ref, version: version.version, instanceId: instance.id }),
        () => {
          code.release();
          void this.slots.release(cell?.slot ?? { id: '', hostDir: '' });
        },
      );
      guest.on('call', (call) => this.answerCall(instance, call));
      const bound = await withTimeout(
        cell.guest.bind({
          namespace: version.ref.namespace,
          functionName: version.ref.name,
          version: version.version,
          handler: version.spec.handler,
          codeDir: `${root}/app`,
          depsDir: version.deps === undefined ? undefined : `${root}/${version.deps.mountName}`,
          env:
            this.options.bindEnv === undefined
              ? version.spec.env
              : { ...this.options.bindEnv(version), ...version.spec.env },
          eventFormat: version.spec.eventFormat,
          memoryMiB: Math.round(version.spec.limits.memoryBytes / 1024 ** 2),
          timeoutMs: version.spec.limits.timeoutMs,
          maxBodyBytes: version.spec.limits.maxBodyBytes,
        }),
        BIND_TIMEOUT_MS,
        `loading the handler took longer than ${BIND_TIMEOUT_MS / 1000}s`,
      );
      if (!bound.ok) {
        const error = bound.error ?? { type: 'Error', message: 'unknown error' };
        // The user's stack goes to the function's logs; an API answer never carries a stack trace.
        if (error.stack !== undefined) {
          this.logs.write({
            ref: version.ref,
            version: version.version,
            instanceId: instance.id,
            invocationId: undefined,
            stream: 'stderr',
            text: error.stack.endsWith('\n') ? error.stack : `${error.stack}\n`,
          });
        }
        throw new HearthError(
          'HEARTH_E_HANDLER_INVALID',
          `handler "${version.spec.handler}" could not be loaded: ${error.type}: ${error.message}`,
          { details: { type: error.type } },
        );
      }
      instance.capacity =
        version.spec.runtime === 'python3' && bound.concurrent !== true
          ? 1
          : version.spec.scaling.targetConcurrency;
      phases.load = performance.now() - clock - phases.code - phases.stemCell - phases.attach;
      instance.state = 'ready';
      instance.readyAt = Date.now();
      instance.coldStartPhases = phases;
      return instance;
    } catch (error) {
      if (cell !== undefined) await pool.discard(cell);
      code.release();
      throw error;
    }
  }

  private answerCall(instance: Instance, call: GuestCall): void {
    const handler = this.options.hostCalls;
    if (handler === undefined) {
      call.reply({
        ok: false,
        error: { type: 'HEARTH_E_UNSUPPORTED', message: `${call.method} is not available on this platform` },
      });
      return;
    }
    const invocation = instance.invocationFor(call.seq);
    handler(
      {
        ref: instance.version.ref,
        version: instance.version.version,
        instanceId: instance.id,
        invocationId: invocation?.invocationId,
        deadline: invocation?.deadline,
        trace: invocation?.trace,
      },
      call.method,
      call.args,
    ).then(
      (value) => call.reply({ ok: true, value }),
      (error: unknown) =>
        call.reply({
          ok: false,
          error: {
            type: error instanceof HearthError ? error.code : error instanceof Error ? error.name : 'Error',
            message: error instanceof Error ? error.message : String(error),
          },
        }),
    );
  }

  private stemPool(runtime: Runtime, isolation: Isolation, network: NetworkMode): StemCellPool {
    const key = `${runtime.name}/${isolation.name}/${network}`;
    let pool = this.stemPools.get(key);
    if (pool === undefined) {
      const configured = this.options.stemCells[runtime.name] ?? 1;
      // The default (sandboxed, no egress) gets the configured pool; other combinations keep one spare.
      const target =
        isolation.name === 'sandbox' && network === 'none' ? configured : Math.min(configured, 1);
      pool = new StemCellPool(runtime, isolation, network, this.slots, target, (message) =>
        this.options.onWarning(message),
      );
      this.stemPools.set(key, pool);
    }
    return pool;
  }

  private dispatch(pool: VersionPool, instance: Instance, cold: boolean): void {
    while (instance.hasRoom && pool.waiters.length > 0) {
      const waiter = pool.waiters.shift();
      if (waiter === undefined) break;
      clearTimeout(waiter.timer);
      instance.inFlight += 1;
      waiter.resolve({ instance, cold });
    }
  }

  private released(instance: Instance): void {
    const pool = this.poolOf.get(instance);
    if (pool === undefined) return;
    if (instance.state === 'draining') {
      if (instance.inFlight === 0) void this.stopInstance(instance, instance.drainReason);
      // A drained instance leaves a hole: requests still waiting may need a replacement.
      this.scale(pool);
      return;
    }
    if (instance.state === 'ready' && pool.waiters.length > 0) this.dispatch(pool, instance, false);
  }

  private retire(fn: FunctionPool, pool: VersionPool, reason: string): void {
    for (const instance of pool.instances) {
      instance.drain(reason);
      if (instance.inFlight === 0) void this.stopInstance(instance, reason);
    }
    if (pool.instances.some((instance) => instance.state !== 'stopped')) fn.draining.add(pool);
  }

  private watchExit(instance: Instance): void {
    instance.cell.guest.once('exit', (exit) => {
      const wasStopped = instance.state === 'stopped';
      instance.state = 'stopped';
      const pool = this.poolOf.get(instance);
      this.forget(instance);
      if (!wasStopped) {
        const why =
          exit.violation !== undefined
            ? `ended by the platform: ${exit.violation}`
            : exit.outOfMemory === true
              ? `out of memory: killed by the kernel at limits.memory ${formatBytes(instance.version.spec.limits.memoryBytes)}`
              : exit.signal === null
                ? `exit code ${exit.code}`
                : `signal ${exit.signal}`;
        this.options.onWarning(`instance ${instance.id} exited unexpectedly (${why})`);
        this.publish(instance, 'stopped', `crashed (${why})`, undefined, exit.outOfMemory === true);
        instance.releaseResources();
      }
      if (pool !== undefined) {
        this.scale(pool);
        if (this.isCurrent(pool)) this.ensureMinimum(pool);
      }
    });
  }

  private async stopInstance(instance: Instance, reason: string, graceMs?: number): Promise<void> {
    if (instance.state === 'stopped') return;
    this.publish(instance, 'stopped', reason);
    await instance.stop(graceMs);
    this.forget(instance);
  }

  private forget(instance: Instance): void {
    const pool = this.poolOf.get(instance);
    this.poolOf.delete(instance);
    if (pool === undefined) return;
    const index = pool.instances.indexOf(instance);
    if (index >= 0) pool.instances.splice(index, 1);
    const fn = this.functions.get(pool.version.ref);
    fn?.instanceFailures.delete(instance);
    if (fn !== undefined && pool !== fn.active && pool.instances.length === 0) fn.draining.delete(pool);
  }

  private isCurrent(pool: VersionPool): boolean {
    return this.functions.get(pool.version.ref)?.active === pool;
  }

  private hasWork(pool: VersionPool): boolean {
    return pool.waiters.length > 0;
  }

  /**
   * The autoscaler's tick: stops drained instances, then for each function samples its load, asks the policy
   * for the desired instances and starts or stops instances to match; last, sizes the stem-cell pools.
   */
  private sweep(): void {
    if (this.closed) return;
    const now = Date.now();
    for (const [key, fn] of this.functions) {
      for (const pool of fn.draining) {
        for (const instance of pool.instances)
          if (instance.inFlight === 0) void this.stopInstance(instance, instance.drainReason);
      }
      for (const instance of fn.active.instances)
        if (instance.state === 'draining' && instance.inFlight === 0)
          void this.stopInstance(instance, instance.drainReason);
      this.autoscale(key, fn, now);
    }
    this.enforceBudget();
    for (const change of this.sizer.tick(this.stemPools)) {
      if (scalingChannel.hasSubscribers)
        scalingChannel.publish({ kind: 'stem-cells', ...change } satisfies ScalingEvent);
    }
  }

  private autoscale(key: string, fn: FunctionPool, now: number): void {
    const pool = fn.active;
    const state = fn.scaling;
    const spec = pool.version.spec;
    let ready = 0;
    let inFlight = 0;
    let idle = 0;
    for (const instance of pool.instances) {
      if (instance.state !== 'ready') continue;
      ready += 1;
      inFlight += instance.inFlight;
      if (instance.inFlight === 0) idle += 1;
    }
    const { arrivals } = state.roll(now, idle, spec.limits.memoryBytes / 1024 ** 2);
    const concurrency = inFlight + pool.waiters.length;
    const decision = this.policy.decide(key, spec.scaling, {
      now,
      arrivals,
      concurrency,
      ready,
      starting: pool.starting,
      capacity: pool.capacityHint,
      startMs: this.startMs,
    });
    if (concurrency > 0 || arrivals > 0) state.parked = false;
    const desired = Math.min(
      this.maxInstances(pool),
      Math.max(spec.scaling.min, state.parked ? 0 : decision.desired),
    );
    state.decision = decision;
    state.desired = desired;
    const before = ready + pool.starting;
    if (decision.mode !== state.mode) {
      state.mode = decision.mode;
      this.record(fn, decision.mode, before, before, decision.reason);
    }
    if (state.queueStarts > 0) {
      const from = state.queueStartsFrom;
      this.record(
        fn,
        'scale-up',
        from,
        from + state.queueStarts,
        `${state.queueStarts} started for waiting requests (${state.queuePeak} queued at most)`,
      );
      state.queueStarts = 0;
      state.queuePeak = 0;
    }
    // Requests the full node could not serve yet get another chance every tick.
    if (pool.waiters.length > 0) this.scale(pool);
    else state.blocked = false;
    const have = ready + pool.starting;
    // After a failed start, no speculative ones for a while: they would fail every tick (min still applies).
    const settled = now - state.startFailedAt >= START_RETRY_MS || have < spec.scaling.min;
    if (desired > have && settled) {
      let started = 0;
      while (
        have + started < desired &&
        this.startInto(pool, decision.reason, have + started < spec.scaling.min)
      )
        started += 1;
      if (started > 0)
        this.record(
          fn,
          have === 0 && concurrency === 0 ? 'prewarm' : 'scale-up',
          have,
          have + started,
          decision.reason,
        );
    } else if (ready > desired) {
      const idleLongEnough = pool.instances
        .filter((i) => i.state === 'ready' && i.inFlight === 0 && now - i.lastUsedAt >= decision.keepIdleMs)
        .sort((a, b) => a.lastUsedAt - b.lastUsedAt)
        .slice(0, ready - desired);
      for (const instance of idleLongEnough) void this.stopInstance(instance, `idle: ${decision.reason}`);
      const after = have - idleLongEnough.length;
      if (idleLongEnough.length > 0)
        this.record(fn, after === 0 ? 'scale-to-zero' : 'scale-down', have, after, decision.reason);
    }
  }

  /** Notes a decision in the function's log for `describe` and publishes it on `hearth:scaling`. */
  private record(fn: FunctionPool, action: ScalingAction, from: number, to: number, reason: string): void {
    const state = fn.scaling;
    const figures = state.decision?.figures;
    const record: ScalingRecord = {
      at: Date.now(),
      action,
      from,
      to,
      desired: state.desired,
      mode: state.mode,
      reason,
      figures:
        figures === undefined
          ? {}
          : {
              concurrency: round2(figures.concurrency),
              panicConcurrency: round2(figures.panicConcurrency),
              rps: round2(figures.rps),
              idleForMs: Math.round(figures.idleForMs),
            },
    };
    state.note(record);
    if (scalingChannel.hasSubscribers) {
      const version = fn.active.version;
      scalingChannel.publish({
        kind: 'function',
        ref: version.ref,
        version: version.version,
        policy: this.policy.name,
        ...record,
      } satisfies ScalingEvent);
    }
  }

  /** `describe`'s view of the autoscaler, once the function has had its first tick. */
  private scalingStatus(fn: FunctionPool): { scaling?: ScalingStatus } {
    const decision = fn.scaling.decision;
    if (decision === undefined) return {};
    const pool = fn.active;
    let ready = 0;
    let idle = 0;
    for (const instance of pool.instances) {
      if (instance.state !== 'ready') continue;
      ready += 1;
      if (instance.inFlight === 0) idle += 1;
    }
    // The warm pool is what the desired count holds above the instances the load itself keeps busy.
    const busy = Math.ceil(decision.figures.concurrency / pool.capacityHint - 1e-6);
    return {
      scaling: {
        policy: this.policy.name,
        mode: fn.scaling.mode,
        ready,
        starting: pool.starting,
        desired: fn.scaling.desired,
        reason: decision.reason,
        figures: decision.figures,
        warmPool: { idle, target: Math.max(0, fn.scaling.desired - busy) },
        keepAlive: decision.keepAlive,
        recent: fn.scaling.recentFigures(Date.now()),
        decisions: [...fn.scaling.decisions],
      },
    };
  }

  private publish(
    instance: Instance,
    phase: InstanceEvent['phase'],
    reason: string,
    startMs?: number,
    outOfMemory?: boolean,
  ): void {
    if (!instanceChannel.hasSubscribers) return;
    instanceChannel.publish({
      ref: instance.version.ref,
      version: instance.version.version,
      instanceId: instance.id,
      runtime: instance.version.spec.runtime,
      phase,
      reason,
      ...(startMs === undefined ? {} : { startMs }),
      ...(outOfMemory === true ? { outOfMemory } : {}),
      ...(phase === 'started' && instance.coldStartPhases !== undefined
        ? { phases: instance.coldStartPhases }
        : {}),
    } satisfies InstanceEvent);
  }
}

/** How long the tick waits after a failed instance start before starting speculatively again. */
const START_RETRY_MS = 5_000;
/** The most ready stem cells a pool grows to in bursts of starts, unless configured. */
const DEFAULT_STEM_CELLS_MAX = 8;

interface EvictionCandidate {
  readonly fn: FunctionPool;
  readonly instance: Instance;
  /** Above its function's desired count: nobody will miss it. */
  readonly excess: boolean;
  /** The policy's expected milliseconds until the function is used again. */
  readonly expected: number;
  readonly idleFor: number;
  readonly memory: number;
}

/** Larger first, with Infinity (never expected back) first of all. */
function compareDescending(a: number, b: number): number {
  if (a === b) return 0;
  return a > b ? -1 : 1;
}

function formatExpected(ms: number): string {
  return Number.isFinite(ms) ? `${Math.round(ms)}ms` : 'the foreseeable future';
}

function mib(bytes: number): number {
  return Math.round(bytes / 1024 ** 2);
}

function round2(value: number): number {
  return Number(value.toFixed(2));
}

/** The stem-cell pool an instance of `version` takes its runtime from (the key `stemPool` files it under). */
function stemPoolKey(version: DeployedVersion): string {
  return `${version.spec.runtime}/${version.spec.isolation}/${networkModeOf(version.spec.egress)}`;
}

/** Egress `none` is an empty network namespace, `allow` the host's, an allow-list a filtered one of its own. */
function networkModeOf(egress: DeployedVersion['spec']['egress']): NetworkMode {
  return egress === 'none' ? 'none' : egress === 'allow' ? 'host' : 'filtered';
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HearthError('HEARTH_E_HANDLER_INVALID', message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * An unhandled error as Lambda's runtimes report it: Node's `{errorType, errorMessage, trace}`, Python's
 * `{errorMessage, errorType, requestId, stackTrace}`.
 */
function lambdaErrorBody(
  runtime: string,
  error: { readonly type: string; readonly message: string; readonly stack?: string },
  requestId: string,
): Buffer {
  const lines = (error.stack ?? '').split('\n').filter((line) => line.trim() !== '');
  const body =
    runtime === 'python3'
      ? {
          errorMessage: error.message,
          errorType: error.type,
          requestId,
          // One entry per frame: its `File …` line and the source line under it.
          stackTrace: lines.reduce<string[]>((frames, line) => {
            if (line.startsWith('  File ')) frames.push(`${line}\n`);
            else if (line.startsWith('    ') && frames.length > 0) frames[frames.length - 1] += `${line}\n`;
            return frames;
          }, []),
        }
      : { errorType: error.type, errorMessage: error.message, trace: lines };
  return Buffer.from(JSON.stringify(body));
}
