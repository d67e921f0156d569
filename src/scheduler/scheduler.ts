/**
 * @module The scheduler: per function, the active version's instances and a wait queue; per node, the
 * stem-cell pools and an instance budget. A request takes a free slot on a warm instance, or waits while
 * instances start (held, not dropped) until its deadline.
 */

import type { DeployedVersion, InvocationRequest, InvocationResponse } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import { type InstanceEvent, instanceChannel } from '../domain/events.js';
import { type FunctionRef, functionKey, type IsolationName, type RuntimeName } from '../domain/function.js';
import type { GuestCall, Isolation, NetworkMode, Runtime, SlotManager } from '../runtime/index.js';
import type {
  CodeProvider,
  FunctionStatus,
  InvokeCallback,
  LogSink,
  Scheduler,
  SchedulerOptions,
} from './index.js';
import { Instance } from './instance.js';
import type { ScalingPolicy } from './keep-alive.js';
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
  constructor(public active: VersionPool) {}
}

const SWEEP_INTERVAL_MS = 1000;
/** Timeouts fire within this many milliseconds of their deadline. */
const DEADLINE_SWEEP_MS = 10;
const BIND_TIMEOUT_MS = 30_000;

export class NodeScheduler implements Scheduler {
  private readonly functions = new Map<string, FunctionPool>();
  private readonly poolOf = new Map<Instance, VersionPool>();
  private readonly stemPools = new Map<string, StemCellPool>();
  private readonly runtimes: ReadonlyMap<RuntimeName, Runtime>;
  private readonly isolations: ReadonlyMap<IsolationName, Isolation>;
  private readonly slots: SlotManager;
  private readonly code: CodeProvider;
  private readonly logs: LogSink;
  private readonly policy: ScalingPolicy;
  private readonly sweeper: NodeJS.Timeout;
  private startingTotal = 0;
  private readonly busy = new Set<Instance>();
  private deadlineTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: SchedulerOptions) {
    this.runtimes = options.runtimes;
    this.isolations = options.isolations;
    this.slots = options.slots;
    this.code = options.code;
    this.logs = options.logs;
    this.policy = options.policy;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
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
    return this.functions.get(functionKey(ref))?.active.version;
  }

  async prepare(version: DeployedVersion): Promise<Instance> {
    return this.createInstance(version);
  }

  activate(version: DeployedVersion, prepared?: Instance): void {
    const key = functionKey(version.ref);
    const next = new VersionPool(version);
    if (prepared !== undefined) {
      next.instances.push(prepared);
      next.capacityHint = prepared.capacity;
      this.poolOf.set(prepared, next);
      this.watchExit(prepared);
    }
    const fn = this.functions.get(key);
    if (fn === undefined) {
      this.functions.set(key, new FunctionPool(next));
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
    this.ensureMinimum(next);
  }

  async deactivate(ref: FunctionRef): Promise<void> {
    const key = functionKey(ref);
    const fn = this.functions.get(key);
    if (fn === undefined) return;
    this.functions.delete(key);
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
    const fn = this.functions.get(functionKey(ref));
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
    const pool = fn.active;
    const instance = pool.pick();
    if (instance !== undefined) {
      instance.inFlight += 1;
      this.runOn(instance, request, false, 0, done);
      return;
    }
    const enqueuedAt = performance.now();
    this.enqueue(pool, request).then(
      (assignment) =>
        this.runOn(assignment.instance, request, assignment.cold, performance.now() - enqueuedAt, done),
      (error: HearthError) => done(error, undefined),
    );
  }

  private runOn(
    instance: Instance,
    request: InvocationRequest,
    cold: boolean,
    waitMs: number,
    done: InvokeCallback,
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
          done(error ?? new HearthError('HEARTH_E_INTERNAL', 'no result'), undefined);
          return;
        }
        if (result.ok) {
          done(undefined, {
            status: result.status,
            headers: result.headers,
            body: result.body,
            coldStart: cold,
            version: instance.version.version,
            instanceId: instance.id,
            waitMs,
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
        done(new HearthError('HEARTH_E_FN_ERROR', `${type}: ${message}`, { details: { type } }), undefined);
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
    const fn = this.functions.get(functionKey(ref));
    if (fn === undefined) return undefined;
    const pools = [fn.active, ...fn.draining];
    return {
      activeVersion: fn.active.version.version,
      instances: pools.flatMap((pool) => pool.instances.map((instance) => instance.info())),
      starting: pools.reduce((sum, pool) => sum + pool.starting, 0),
      queued: fn.active.waiters.length,
    };
  }

  /** Stops the idle instances of a function now (scale to zero); returns how many were stopped. */
  async releaseIdle(ref: FunctionRef): Promise<number> {
    const fn = this.functions.get(functionKey(ref));
    if (fn === undefined)
      throw new HearthError(
        'HEARTH_E_FN_NOT_FOUND',
        `function ${ref.name} not found in namespace ${ref.namespace}`,
      );
    const idle = [fn.active, ...fn.draining].flatMap((pool) =>
      pool.instances.filter((i) => i.state === 'ready' && i.inFlight === 0),
    );
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

  private enqueue(
    pool: VersionPool,
    request: InvocationRequest,
  ): Promise<{ instance: Instance; cold: boolean }> {
    if (pool.waiters.length >= this.options.queueLimit) {
      return Promise.reject(
        new HearthError(
          'HEARTH_E_SATURATED',
          `${pool.waiters.length} requests are already waiting for ${pool.version.ref.name}`,
          {
            retryAfter: 1,
          },
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        request,
        priority: request.priority ?? pool.version.spec.priority,
        enqueuedAt: Date.now(),
        timer: undefined,
        resolve,
        reject,
      };
      waiter.timer = setTimeout(
        () => {
          const fn = this.functions.get(functionKey(pool.version.ref));
          (fn?.active.waiters ?? pool.waiters).remove(waiter);
          reject(
            new HearthError(
              'HEARTH_E_TIMEOUT',
              `no instance of ${pool.version.ref.name} became free within the request's deadline (waited ${Date.now() - waiter.enqueuedAt}ms)`,
              { details: { stage: 'queue' } },
            ),
          );
        },
        Math.max(0, request.deadline - Date.now()),
      );
      pool.waiters.push(waiter);
      this.scale(pool);
    });
  }

  /** Starts as many instances as the waiting requests need, within the function's max. */
  private scale(pool: VersionPool): void {
    if (this.closed || pool.waiters.length === 0) return;
    const needed = Math.ceil(pool.waiters.length / pool.capacityHint) - pool.starting;
    const room = pool.version.spec.scaling.max - pool.live - pool.starting;
    const count = Math.min(needed, room);
    for (let i = 0; i < count; i++) this.startInto(pool, 'requests waiting');
  }

  private ensureMinimum(pool: VersionPool): void {
    const missing = this.policy.minInstances(pool.version) - pool.live - pool.starting;
    for (let i = 0; i < missing; i++) this.startInto(pool, 'minimum instances');
  }

  private startInto(pool: VersionPool, reason: string): void {
    if (!this.makeRoom()) return;
    pool.starting += 1;
    this.startingTotal += 1;
    const began = performance.now();
    this.createInstance(pool.version).then(
      (instance) => {
        pool.starting -= 1;
        this.startingTotal -= 1;
        if (!this.isCurrent(pool) && !this.hasWork(pool)) {
          void instance.stop();
          return;
        }
        pool.instances.push(instance);
        pool.capacityHint = instance.capacity;
        this.poolOf.set(instance, pool);
        this.watchExit(instance);
        this.publish(instance, 'started', reason, performance.now() - began);
        this.dispatch(pool, instance, true);
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
  }

  /** Whether the node budget allows one more instance, evicting the least recently used idle one if not. */
  private makeRoom(): boolean {
    if (this.instanceCount() + this.startingTotal < this.options.maxInstances) return true;
    let victim: Instance | undefined;
    for (const fn of this.functions.values()) {
      for (const pool of [fn.active, ...fn.draining]) {
        const spare = pool.live - this.policy.minInstances(pool.version);
        if (pool !== fn.active || spare > 0) {
          for (const instance of pool.instances) {
            if (instance.state !== 'ready' || instance.inFlight > 0) continue;
            if (victim === undefined || instance.lastUsedAt < victim.lastUsedAt) victim = instance;
          }
        }
      }
    }
    if (victim === undefined) return false;
    void this.stopInstance(victim, 'evicted: node instance budget reached');
    return true;
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
    const pool = this.stemPool(runtime, isolation, version.spec.egress === 'none' ? 'none' : 'host');
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
          env: version.spec.env,
          eventFormat: version.spec.eventFormat,
          memoryMiB: Math.round(version.spec.limits.memoryBytes / 1024 ** 2),
          timeoutMs: version.spec.limits.timeoutMs,
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
        const why = exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`;
        this.options.onWarning(`instance ${instance.id} exited unexpectedly (${why})`);
        this.publish(instance, 'stopped', `crashed (${why})`);
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
    const fn = this.functions.get(functionKey(pool.version.ref));
    if (fn !== undefined && pool !== fn.active && pool.instances.length === 0) fn.draining.delete(pool);
  }

  private isCurrent(pool: VersionPool): boolean {
    return this.functions.get(functionKey(pool.version.ref))?.active === pool;
  }

  private hasWork(pool: VersionPool): boolean {
    return pool.waiters.length > 0;
  }

  private sweep(): void {
    const now = Date.now();
    for (const fn of this.functions.values()) {
      for (const pool of fn.draining) {
        for (const instance of pool.instances)
          if (instance.inFlight === 0) void this.stopInstance(instance, instance.drainReason);
      }
      const pool = fn.active;
      let live = pool.live;
      for (const instance of [...pool.instances]) {
        if (instance.state === 'draining' && instance.inFlight === 0) {
          void this.stopInstance(instance, instance.drainReason);
          continue;
        }
        if (instance.state !== 'ready' || instance.inFlight > 0) continue;
        if (
          this.policy.shouldRelease({ version: pool.version, idleForMs: now - instance.lastUsedAt }, live)
        ) {
          live -= 1;
          void this.stopInstance(instance, 'idle');
        }
      }
      this.ensureMinimum(pool);
    }
  }

  private publish(instance: Instance, phase: InstanceEvent['phase'], reason: string, startMs?: number): void {
    if (!instanceChannel.hasSubscribers) return;
    instanceChannel.publish({
      ref: instance.version.ref,
      version: instance.version.version,
      instanceId: instance.id,
      runtime: instance.version.spec.runtime,
      phase,
      reason,
      ...(startMs === undefined ? {} : { startMs }),
      ...(phase === 'started' && instance.coldStartPhases !== undefined
        ? { phases: instance.coldStartPhases }
        : {}),
    } satisfies InstanceEvent);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HearthError('HEARTH_E_HANDLER_INVALID', message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
