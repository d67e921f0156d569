/** @module What the scheduler reports about scaling: per function for `describe`, per node for `top`. */

import type { FunctionRef } from '../../domain/function.js';
import type { StemCellPoolStats } from '../stem-cells.js';
import type { ScalingRecord } from './function-scaling.js';
import type { KeepAlive, ScalingFigures, ScalingMode } from './policy.js';

export interface ScalingStatus {
  readonly policy: string;
  readonly mode: ScalingMode;
  /** Ready and starting instances of the active version. */
  readonly ready: number;
  readonly starting: number;
  readonly desired: number;
  readonly reason: string;
  readonly figures: ScalingFigures;
  /** Idle ready instances now; the idle instances the warm pool ratio asks for at the current load. */
  readonly warmPool: { readonly idle: number; readonly target: number };
  readonly keepAlive: KeepAlive;
  readonly recent: { readonly windowMs: number; readonly requests: number; readonly coldStarts: number };
  readonly decisions: readonly ScalingRecord[];
}

export interface FunctionLiveStats {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly ready: number;
  /** Ready instances with a request in flight. */
  readonly busy: number;
  readonly idle: number;
  readonly starting: number;
  readonly desired: number;
  readonly mode: ScalingMode;
  readonly inFlight: number;
  readonly queued: number;
  /** Requests per second over the last 10 s. */
  readonly rps: number;
  readonly recentRequests: number;
  readonly recentColdStarts: number;
  readonly memoryBytesPerInstance: number;
  readonly totalRequests: number;
  readonly totalColdStarts: number;
  readonly idleMemoryMiBSeconds: number;
}

export interface NodeLiveStats {
  readonly policy: string;
  /** Instances alive or starting, and the node's budget. */
  readonly instances: number;
  readonly maxInstances: number;
  readonly memoryBytes: number;
  readonly maxMemoryBytes: number;
  readonly stemCells: readonly StemCellPoolStats[];
  readonly functions: readonly FunctionLiveStats[];
}
