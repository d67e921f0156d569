/**
 * @module The scheduler's contract: the gateway invokes through `Scheduler`, the control plane activates
 * and retires versions through it; the scheduler reaches code and logs only through the ports below.
 */

import type { DeployedVersion, InvocationRequest, InvocationResponse } from '../domain/deployment.js';
import type { HearthError } from '../domain/errors.js';
import type { FunctionRef, IsolationName, RuntimeName } from '../domain/function.js';
import type { Isolation, Runtime, SlotManager } from '../runtime/index.js';
import type { Instance, InstanceInfo } from './instance.js';
import type { ScalingPolicy } from './keep-alive.js';
import { NodeScheduler } from './scheduler.js';
import type { StemCellPoolStats } from './stem-cells.js';

export type { Instance, InstanceInfo } from './instance.js';
export type { ScalingPolicy } from './keep-alive.js';
export { FixedKeepAlive } from './keep-alive.js';
export type { StemCellPoolStats } from './stem-cells.js';

/** Port: where the scheduler gets a function's files. */
export interface CodeProvider {
  /** The unpacked code tree, pinned in the node-local cache until `release`. */
  checkoutCode(hash: string): Promise<{ readonly dir: string; release(): void }>;
  /** The host directory of a built dependency layer, or undefined if it is missing. */
  layerDir(key: string): string | undefined;
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
  /** Node-wide cap on live instances; idle ones are evicted least recently used first. */
  readonly maxInstances: number;
  /** Requests one function may hold waiting for capacity before answering 503. */
  readonly queueLimit: number;
  readonly onWarning: (message: string) => void;
  /** Answers ctx.invoke / ctx.state calls; without it they fail with HEARTH_E_UNSUPPORTED. */
  readonly hostCalls?: HostCallHandler;
}

export interface Scheduler {
  /** Fills the stem-cell pools; resolves when they are ready. */
  warm(): Promise<void>;
  lookup(ref: FunctionRef): DeployedVersion | undefined;
  /** Starts and binds an instance of a version not yet active: a deploy's proof that the handler loads. */
  prepare(version: DeployedVersion): Promise<Instance>;
  /** Routes new requests to `version`; the previous version's in-flight requests finish where they are. */
  activate(version: DeployedVersion, prepared?: Instance): void;
  deactivate(ref: FunctionRef): Promise<void>;
  invoke(ref: FunctionRef, request: InvocationRequest): Promise<InvocationResponse>;
  /** `invoke` without promises, for the gateway's hot path: `done` is called exactly once. */
  submit(ref: FunctionRef, request: InvocationRequest, done: InvokeCallback): void;
  status(ref: FunctionRef): FunctionStatus | undefined;
  releaseIdle(ref: FunctionRef): Promise<number>;
  stemCellStats(): StemCellPoolStats[];
  instanceCount(): number;
  close(): Promise<void>;
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  return new NodeScheduler(options);
}
