/**
 * @module The scheduler: the request path (a free slot on a warm instance, or a wait while instances start,
 * held, not dropped, until the deadline), the circuit breakers, version activation and draining, and the
 * autoscaler's tick. Its parts live beside it: a function's instance pool (`function-pool.ts`), the node's
 * budget and eviction (`node-budget.ts`), and the cold-start path over the stem cells (`cold-start.ts`).
 */

import { availableParallelism, totalmem } from 'node:os';
import type { Readable } from 'node:stream';
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
import { type FunctionRef, functionKey } from '../domain/function.js';
import { formatBytes } from '../domain/units.js';
import {
  type AutoscalerTiming,
  DEFAULT_TIMING,
  type FunctionLiveStats,
  type NodeLiveStats,
  type ScalingAction,
  type ScalingPolicy,
  type ScalingRecord,
  type ScalingStatus,
  StemCellSizer,
} from './autoscaler/index.js';
import { DEFAULT_BREAKER, FunctionBreaker, failureWeight, instanceIsolated, isFailure } from './breaker.js';
import { ColdStarter, stemPoolKey } from './cold-start.js';
import { FunctionPool, PoolsByRef, VersionPool, type Waiter } from './function-pool.js';
import type { FunctionStatus, InvokeCallback, LogSink, Scheduler, SchedulerOptions } from './index.js';
import type { Instance } from './instance.js';
import { NodeBudget } from './node-budget.js';
import type { StemCellPoolStats } from './stem-cells.js';

/** Timeouts fire within this many milliseconds of their deadline. */
const DEADLINE_SWEEP_MS = 10;

export class NodeScheduler implements Scheduler {
  private readonly functions = new PoolsByRef<FunctionPool>();
  private readonly poolOf = new Map<Instance, VersionPool>();
  /** Verify instances no pool holds yet (see `preparing`), by namespace and memory. */
  private readonly unpooled = new Set<{ readonly namespace: string; readonly memoryBytes: number }>();
  private readonly unpooledInstances = new Map<
    Instance,
    { readonly namespace: string; readonly memoryBytes: number }
  >();
  /** The cold-start path: stem-cell pools, and instances made from them. */
  private readonly cold: ColdStarter;
  /** The node's instance and memory budget, and eviction. */
  private readonly budget: NodeBudget<Instance, FunctionPool>;
  private readonly logs: LogSink;
  private readonly policy: ScalingPolicy;
  private readonly sweeper: NodeJS.Timeout;
  private readonly timing: AutoscalerTiming;
  private readonly sizer: StemCellSizer;
  private startingTotal = 0;
  /** How long an instance start takes on this node lately (a moving average), so pre-warms begin in time. */
  private startMs = 10;
  /** Pre-warms started in this tick (see `PREWARMS_PER_TICK`). */
  private prewarmsThisTick = 0;
  private readonly busy = new Set<Instance>();
  /** Per-function instance caps from EventGateway `concurrency` entries. */
  private readonly caps = new Map<string, number>();
  private deadlineTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: SchedulerOptions) {
    this.cold = new ColdStarter({
      ...options,
      stemCellBurstLimit: options.autoscaler?.stemCellsMax ?? DEFAULT_STEM_CELLS_MAX,
    });
    this.budget = new NodeBudget<Instance, FunctionPool>({
      maxInstances: options.maxInstances,
      maxMemoryBytes: options.maxMemoryBytes ?? Math.floor((totalmem() * 3) / 4),
      ...(options.memoryOvercommit === undefined ? {} : { memoryOvercommit: options.memoryOvercommit }),
      functions: () => this.functions,
      functionPools: () => this.functions.values(),
      expectedIdleMs: (key, now) => this.policy.expectedIdleMs(key, now),
      evict: (fn, instance, reason) => {
        void this.stopInstance(instance, `evicted: ${reason}`);
        const live = fn.active.live + fn.active.starting;
        if (instance.version === fn.active.version) this.record(fn, 'evict', live + 1, live, reason);
      },
    });
    this.logs = options.logs;
    this.policy = options.policy;
    this.timing = { ...DEFAULT_TIMING, ...options.autoscaler };
    this.sizer = new StemCellSizer(
      this.timing,
      options.autoscaler?.stemCellsMax ?? DEFAULT_STEM_CELLS_MAX,
      options.stemCellFloor === undefined
        ? undefined
        : { ...options.stemCellFloor, cellBytes: (runtime) => idleStemCellBytes(runtime) },
    );
    this.sweeper = setInterval(() => this.sweep(), this.timing.tickMs);
    this.sweeper.unref();
  }

  /** Starts the stem-cell pools of the default isolation and waits until they are filled. */
  warm(): Promise<void> {
    return this.cold.warm();
  }

  lookup(ref: FunctionRef): DeployedVersion | undefined {
    return this.functions.get(ref)?.active.version;
  }

  async prepare(version: DeployedVersion): Promise<Instance> {
    // The deploy's verify instance is an instance of its namespace like any other (issue 10).
    const refused = this.options.admit?.(version);
    if (refused !== undefined) throw refused;
    const held = { namespace: version.ref.namespace, memoryBytes: version.spec.limits.memoryBytes };
    this.unpooled.add(held);
    let instance: Instance;
    try {
      instance = await this.cold.start(version);
    } catch (error) {
      this.unpooled.delete(held);
      throw error;
    }
    // Held until a pool takes it (`activate`) or it ends (a deploy that failed after verifying stops it).
    this.unpooledInstances.set(instance, held);
    instance.cell.guest.once('exit', () => {
      this.unpooled.delete(held);
      this.unpooledInstances.delete(instance);
    });
    return instance;
  }

  preparing(namespace: string): { instances: number; memoryBytes: number } {
    let instances = 0;
    let memoryBytes = 0;
    for (const held of this.unpooled)
      if (held.namespace === namespace) {
        instances += 1;
        memoryBytes += held.memoryBytes;
      }
    return { instances, memoryBytes };
  }

  activate(version: DeployedVersion, prepared?: Instance): void {
    const next = new VersionPool(version);
    if (prepared !== undefined) {
      const held = this.unpooledInstances.get(prepared);
      if (held !== undefined) this.unpooled.delete(held);
      this.unpooledInstances.delete(prepared);
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
        else if (response?.stream !== undefined)
          collectStream(response, this.lookup(ref)?.spec.limits.maxBodyBytes ?? 0, request.deadline).then(
            resolve,
            reject,
          );
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
    return fn.breaker.failure(probe, error.message, failureWeight(error.code, threshold));
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
            stream: result.stream,
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
      ...(this.cold.conventions.has(fn.active.version)
        ? { convention: this.cold.conventions.get(fn.active.version) }
        : {}),
    };
  }

  liveInstances(ref: FunctionRef): number {
    const fn = this.functions.get(ref);
    if (fn === undefined) return 0;
    let count = 0;
    for (const pool of [fn.active, ...fn.draining])
      for (const instance of pool.instances) if (instance.state !== 'stopped') count += 1;
    return count;
  }

  /** Stops the idle instances of a function now (scale to zero); returns how many were stopped. */
  async releaseIdle(ref: FunctionRef): Promise<number> {
    const fn = this.functions.get(ref);
    if (fn === undefined)
      throw new HearthError(
        'HEARTH_E_FN_NOT_FOUND',
        `function ${ref.name} not found in namespace ${ref.namespace}`,
      );
    const idle = [fn.active, ...fn.draining].flatMap((pool) => pool.idle());
    // Asked for zero: the autoscaler keeps nothing warm (beyond min) until the next request.
    fn.scaling.parked = true;
    fn.scaling.desired = fn.active.version.spec.scaling.min;
    await Promise.all(idle.map((instance) => this.stopInstance(instance, 'released on request')));
    return idle.length;
  }

  stemCellStats(): StemCellPoolStats[] {
    return this.cold.stats();
  }

  instanceCount(): number {
    let count = 0;
    for (const fn of this.functions.values())
      for (const pool of [fn.active, ...fn.draining]) count += pool.instances.length;
    return count;
  }

  liveStats(): NodeLiveStats {
    const now = Date.now();
    const use = this.budget.use();
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
      maxMemoryBytes: this.budget.maxMemoryBytes,
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
    await this.cold.close();
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
      this.record(
        fn,
        'blocked',
        pool.live + pool.starting,
        pool.live + pool.starting,
        `${pool.waiters.length} requests wait for capacity: the node is full (${this.budget.describe()}) and no idle instance can be evicted`,
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
    const refused = this.options.admit?.(pool.version);
    if (refused !== undefined) {
      // Over a namespace quota (src/security): requests no instance of it can serve get its error now.
      if (pool.live === 0 && pool.starting === 0)
        for (const waiter of pool.waiters.drain()) {
          clearTimeout(waiter.timer);
          waiter.reject(refused);
        }
      return false;
    }
    if (!this.budget.makeRoom(pool, demand)) return false;
    const stemKey = stemPoolKey(pool.version, this.options.allowNetwork);
    // A function one cold start away takes the cell its pool's floor kept for it: the floor falls by one.
    if (pool.instances.length === 0 && pool.starting === 0 && this.isCurrent(pool))
      this.cold.pools.get(stemKey)?.noteIdleStart();
    pool.starting += 1;
    this.startingTotal += 1;
    this.sizer.noteStart(stemKey);
    const began = performance.now();
    this.cold.start(pool.version).then(
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
        const fn = pool === undefined ? undefined : this.functions.get(pool.version.ref);
        if (exit.outOfMemory === true && fn !== undefined) fn.scaling.killedForMemoryAt = Date.now();
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

  /** Whether the stem-cell pool `pool` starts from has a ready cell to spare beyond the last one. */
  private spareStemCell(pool: VersionPool): boolean {
    const stem = this.cold.pools.get(stemPoolKey(pool.version, this.options.allowNetwork));
    if (stem === undefined) return true;
    const { ready, target } = stem.stats();
    return target === 0 || ready >= 2;
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
    this.prewarmsThisTick = 0;
    // Per stem-cell pool, the deployed functions one cold start away (no instance): the pools' floor.
    const idleFunctions = new Map<string, number>();
    for (const [key, fn] of this.functions) {
      for (const pool of fn.draining) {
        for (const instance of pool.instances)
          if (instance.inFlight === 0) void this.stopInstance(instance, instance.drainReason);
      }
      for (const instance of fn.active.instances)
        if (instance.state === 'draining' && instance.inFlight === 0)
          void this.stopInstance(instance, instance.drainReason);
      this.autoscale(key, fn, now);
      // Counted after this tick's starts: a function pre-warmed or scaled up from zero just now took its floor
      // cell, and counting it idle made its pool boot it another that the next tick let go unused (the trace
      // replay: 16 of its 18 cells booted and trimmed, each ~80 ms of a Node cell's CPU; issue 11).
      if (fn.active.instances.length === 0 && fn.active.starting === 0) {
        const stem = stemPoolKey(fn.active.version, this.options.allowNetwork);
        idleFunctions.set(stem, (idleFunctions.get(stem) ?? 0) + 1);
      }
    }
    this.budget.enforce();
    for (const change of this.sizer.tick(this.cold.pools, idleFunctions)) {
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
    // Nor after an instance was killed for memory, nor while the circuit is open (its probe is a request's):
    // a request that ran the function out of memory mostly does again, and each replacement booted ahead of
    // demand for it cost the node's other functions a boot, then a kill (bench/abuse.mjs, memory bomb: the
    // keep-warm replacement booted a second after each kill, its circuit open).
    const settled =
      (now - Math.max(state.startFailedAt, state.killedForMemoryAt) >= START_RETRY_MS &&
        fn.breaker.state === 'closed') ||
      have < spec.scaling.min;
    // A pre-warm (nothing in flight or waiting, nothing held for min) is due soon: a stem cell is booted for it
    // ahead, and when it is due it does not take the pool's last cell, which the next unpredicted cold start
    // needs (a start without a cell costs ~110 ms instead of ~6 ms; on the trace replay those set the p99).
    const prewarm = have === 0 && concurrency === 0 && spec.scaling.min === 0;
    if (prewarm && decision.prewarmInMs !== undefined)
      this.sizer.expectStart(stemPoolKey(pool.version, this.options.allowNetwork), decision.prewarmInMs);
    // At most PREWARMS_PER_TICK pre-warms a tick on the whole node; the rest wait for the next (their lead is a
    // tick and twice the start time): timers due together (cron's top of the hour) do not start at once.
    if (
      prewarm &&
      desired > have &&
      settled &&
      (this.prewarmsThisTick >= PREWARMS_PER_TICK || !this.spareStemCell(pool))
    ) {
      this.sizer.expectStart(stemPoolKey(pool.version, this.options.allowNetwork), 0);
    } else if (desired > have && settled) {
      let started = 0;
      while (
        have + started < desired &&
        this.startInto(pool, decision.reason, have + started < spec.scaling.min)
      )
        started += 1;
      if (prewarm) this.prewarmsThisTick += started;
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
/**
 * Pre-warms one tick starts on the node: one per core. Each takes a stem cell and binds it, and its pool's
 * refill boots a runtime; a pre-warm is speculative, so a crowd of them never takes the CPU from requests.
 */
const PREWARMS_PER_TICK = availableParallelism();
/** The most ready stem cells a pool grows to in bursts of starts, unless configured. */
const DEFAULT_STEM_CELLS_MAX = 8;

/**
 * What an idle stem cell costs (PSS, its sandbox's processes), for the memory floor's bound: the median of 20
 * ready cells of each, 30 s after boot (issue 11, 2026-12-07): node20 7.4 MiB (a waiting cell no longer loads
 * fetch, and runs one GC once quiet), python3 5.8 MiB; a wasm cell is a Node process. Rounded up.
 */
function idleStemCellBytes(runtime: string): number {
  const mib = runtime === 'python3' ? 6 : runtime === 'node20' || runtime === 'wasm' ? 8 : 16;
  return mib * 1024 ** 2;
}

function round2(value: number): number {
  return Number(value.toFixed(2));
}

/**
 * A streamed response read whole, for callers that answer with one body (triggers, the queue, ctx.invoke),
 * up to the function's maxBody: the guest is untrusted and the stream unbounded.
 */
async function collectStream(
  response: InvocationResponse,
  maxBytes: number,
  deadline: number,
): Promise<InvocationResponse> {
  const pieces: Buffer[] = [response.body];
  let length = response.body.length;
  const stream = response.stream;
  const timer = setTimeout(
    () =>
      stream?.destroy(
        new HearthError(
          'HEARTH_E_TIMEOUT',
          'the function did not finish its streamed response by its deadline',
        ),
      ),
    Math.max(0, deadline - Date.now()),
  );
  try {
    if (stream !== undefined) await readAll(stream, pieces, maxBytes, length);
  } finally {
    clearTimeout(timer);
  }
  length = pieces.reduce((sum, piece) => sum + piece.length, 0);
  return { ...response, body: Buffer.concat(pieces, length), stream: undefined };
}

async function readAll(stream: Readable, pieces: Buffer[], maxBytes: number, already: number): Promise<void> {
  let length = already;
  for await (const chunk of stream) {
    length += (chunk as Buffer).length;
    if (length > maxBytes) {
      stream.destroy();
      throw new HearthError(
        'HEARTH_E_FN_CRASHED',
        `the function streamed more than limits.maxBody (${maxBytes} bytes) to a caller that reads the whole answer`,
      );
    }
    pieces.push(chunk as Buffer);
  }
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
