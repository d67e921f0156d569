/**
 * @module The scheduler's contract: the gateway invokes through `Scheduler`, the control plane activates
 * and retires versions through it; the scheduler reaches code and logs only through the ports below.
 */

import type { DeployedVersion, InvocationRequest, InvocationResponse } from '../domain/deployment.js';
import type { HearthError } from '../domain/errors.js';
import type { FunctionRef, IsolationName, RuntimeName } from '../domain/function.js';
import type { TraceContext } from '../domain/trace.js';
import type { AllowNetwork, Isolation, Runtime, SlotManager } from '../runtime/index.js';
import type { AutoscalerTiming, NodeLiveStats, ScalingPolicy, ScalingStatus } from './autoscaler/index.js';
import type { BreakerOptions } from './breaker.js';
import type { Instance, InstanceInfo } from './instance.js';
import { NodeScheduler } from './scheduler.js';
import type { StemCellPoolStats } from './stem-cells.js';

export {
  type AutoscalerTiming,
  createScalingPolicy,
  DEFAULT_TIMING,
  FixedKeepAlive,
  type FunctionLiveStats,
  formatMs,
  HybridAutoscaler,
  type NodeLiveStats,
  POLICIES,
  type PolicyName,
  type ScalingPolicy,
  type ScalingRecord,
  type ScalingStatus,
} from './autoscaler/index.js';
export { type BreakerOptions, DEFAULT_BREAKER } from './breaker.js';
export type { Instance, InstanceInfo } from './instance.js';
export type { StemCellPoolStats } from './stem-cells.js';

/** Port: where the scheduler gets a function's files. */
export interface CodeProvider {
  /** The unpacked code tree, pinned in the node-local cache until `release`. */
  checkoutCode(hash: string): Promise<{ readonly dir: string; release(): void }>;
  /** The host directory of a built dependency layer, or undefined if it is missing. */
  layerDir(key: string): string | undefined;
  /** The layer's directory, held against garbage collection until `release`; without it, `layerDir`. */
  checkoutLayer?(key: string): { readonly dir: string; release(): void };
}

export interface FunctionLogRecord {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly instanceId: string;
  readonly invocationId: string | undefined;
  readonly stream: 'stdout' | 'stderr';
  readonly text: string;
}

/** Who is calling into the platform from inside a function (ctx.invoke, ctx.state). */
export interface HostCallContext {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly instanceId: string;
  /** The invocation the call was made for, when it is still in flight. */
  readonly invocationId: string | undefined;
  /** Epoch ms by which that invocation must answer; calls made for it inherit it. */
  readonly deadline: number | undefined;
  /** The trace that invocation continues; undefined when it started its own (ids derive from its id). */
  readonly trace?: TraceContext | undefined;
}

/** Port: answers a guest's call into the platform; a rejection becomes the guest's error. */
export type HostCallHandler = (context: HostCallContext, method: string, args: unknown) => Promise<unknown>;

/** Port: where function output goes. */
export interface LogSink {
  write(record: FunctionLogRecord): void;
}

export type InvokeCallback = (
  error: HearthError | undefined,
  response: InvocationResponse | undefined,
) => void;

export interface FunctionStatus {
  readonly activeVersion: number;
  readonly instances: readonly InstanceInfo[];
  readonly starting: number;
  readonly queued: number;
  /** The autoscaler's view (desired instances, warm pool, keep-alive, recent cold starts, decisions). */
  readonly scaling?: ScalingStatus;
  /** The function's circuit breaker: `closed`, `open` (refusing) or `half-open` (one probe). */
  readonly circuit?: {
    readonly state: 'closed' | 'open' | 'half-open';
    readonly failures: number;
    readonly retryAfterMs: number;
  };
  /** An EventGateway's instance cap, when one applies. */
  readonly instanceCap?: number;
  /**
   * The handler convention in force for the active version, as its guest resolved `spec.eventFormat`
   * (`auto` included), once an instance of it has loaded the handler.
   */
  readonly convention?: string;
}

export interface SchedulerOptions {
  readonly runtimes: ReadonlyMap<RuntimeName, Runtime>;
  readonly isolations: ReadonlyMap<IsolationName, Isolation>;
  readonly slots: SlotManager;
  readonly code: CodeProvider;
  readonly logs: LogSink;
  readonly policy: ScalingPolicy;
  /** Stem cells kept ready per runtime (sandbox isolation). */
  readonly stemCells: Readonly<Partial<Record<RuntimeName, number>>>;
  /**
   * The pools' floor sized from memory (issue 11): ready cells per deployed function without an instance, up to
   * `memoryBytes` for all pools together; none when unset.
   */
  readonly stemCellFloor?: { readonly perIdleFunction: number; readonly memoryBytes: number };
  /** What `egress: allow` gets (default `outbound`: a network namespace of its own, no host loopback). */
  readonly allowNetwork?: AllowNetwork;
  /** Node-wide cap on live instances; idle ones are evicted least recently used first. */
  readonly maxInstances: number;
  /** Node-wide cap on the memory instances reserve (the sum of their `limits.memory`); default ¾ of RAM. */
  readonly maxMemoryBytes?: number;
  /** Declared memory per reserved byte (`memoryOvercommit`, default 1 here, 4 in the platform config). */
  readonly memoryOvercommit?: number;
  /** The autoscaler's tick and windows (defaults: Knative's), and how far stem-cell pools may grow. */
  readonly autoscaler?: Partial<AutoscalerTiming> & { readonly stemCellsMax?: number };
  /** Requests one function may hold waiting for capacity before answering 503. */
  readonly queueLimit: number;
  readonly onWarning: (message: string) => void;
  /** Answers ctx.invoke / ctx.state calls; without it they fail with HEARTH_E_UNSUPPORTED. */
  readonly hostCalls?: HostCallHandler;
  /** The longest a request waits for capacity before a 503 (overridable per request); default: its deadline. */
  readonly queueTimeoutMs?: number;
  /** Circuit breakers: consecutive failures that isolate an instance / open a function's circuit, cool-down. */
  readonly breaker?: BreakerOptions;
  /** Platform-provided environment for every instance (e.g. `REDIS_URL`); the function's own `env` wins. */
  readonly bindEnv?: (version: DeployedVersion) => Readonly<Record<string, string>>;
  /** Namespace quotas (src/security): a refusal keeps the instance from starting; none = admitted. */
  readonly admit?: (version: DeployedVersion) => HearthError | undefined;
}

export interface Scheduler {
  /** Fills the stem-cell pools; resolves when they are ready. */
  warm(): Promise<void>;
  lookup(ref: FunctionRef): DeployedVersion | undefined;
  /** Starts and binds an instance of a version not yet active: a deploy's proof that the handler loads. */
  prepare(version: DeployedVersion): Promise<Instance>;
  /**
   * Instances a deploy started to verify a version and that no pool has taken yet (starting, or awaiting
   * `activate`), with their memory, in one namespace: they count against its quotas as any other.
   */
  preparing(namespace: string): { readonly instances: number; readonly memoryBytes: number };
  /** Routes new requests to `version`; the previous version's in-flight requests finish where they are. */
  activate(version: DeployedVersion, prepared?: Instance): void;
  deactivate(ref: FunctionRef): Promise<void>;
  invoke(ref: FunctionRef, request: InvocationRequest): Promise<InvocationResponse>;
  /** `invoke` without promises, for the gateway's hot path: `done` is called exactly once. */
  submit(ref: FunctionRef, request: InvocationRequest, done: InvokeCallback): void;
  status(ref: FunctionRef): FunctionStatus | undefined;
  /** Instances of the function not stopped (all versions): what a list shows, without building a status. */
  liveInstances(ref: FunctionRef): number;
  /** Caps a function's instances (an EventGateway's `concurrency`); undefined lifts the cap. */
  setInstanceCap(ref: FunctionRef, cap: number | undefined): void;
  releaseIdle(ref: FunctionRef): Promise<number>;
  stemCellStats(): StemCellPoolStats[];
  /** Live figures per function and the node's budget, for `hearth top`. */
  liveStats(): NodeLiveStats;
  instanceCount(): number;
  close(): Promise<void>;
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  return new NodeScheduler(options);
}
