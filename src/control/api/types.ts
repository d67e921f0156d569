/** @module Wire types of the control API (`/api/v1`), shared by the server and the CLI. */

import type { ErrorBody } from '../../domain/errors.js';
import type { FunctionManifest } from '../../domain/function.js';

export interface InstanceSummary {
  readonly id: string;
  readonly version: number;
  readonly state: 'starting' | 'ready' | 'draining' | 'stopped';
  readonly inFlight: number;
  readonly capacity: number;
  readonly pid: number;
  readonly startedAt: string;
  readonly lastUsedAt: string;
  readonly served: number;
  readonly isolation: string;
}

export interface FunctionSummary {
  readonly namespace: string;
  readonly name: string;
  readonly runtime: string;
  readonly version: number;
  readonly isolation: 'sandbox' | 'process';
  /** Live instances of any version. */
  readonly instances: number;
  /** URL path that invokes the function through the gateway. */
  readonly url: string;
  readonly updatedAt: string;
}

export interface DeploymentSummary {
  readonly id: string;
  readonly version: number | null;
  readonly status: 'running' | 'succeeded' | 'failed';
  readonly error: ErrorBody['error'] | null;
  readonly startedAt: string;
  readonly finishedAt: string | null;
  /** Milliseconds per phase, e.g. { unpack: 3, dependencies: 0, verify: 12 }. */
  readonly phases: Readonly<Record<string, number>>;
}

export interface FunctionDetail extends FunctionSummary {
  /** The resource as applied (units as the user wrote them). */
  readonly manifest: FunctionManifest;
  /** The spec with defaults applied, units normalised. */
  readonly spec: {
    readonly runtime: string;
    readonly handler: string;
    readonly env: Readonly<Record<string, string>>;
    readonly limits: {
      readonly memory: string;
      readonly cpu: number;
      readonly timeout: string;
      readonly maxBody: string;
    };
    readonly scaling: {
      readonly min: number;
      readonly max: number;
      readonly targetConcurrency: number;
      readonly idleTimeout: string;
      readonly warmPoolRatio: number;
    };
    readonly isolation: 'sandbox' | 'process';
    readonly egress: 'none' | 'allow' | readonly string[];
    readonly priority: number;
    readonly eventFormat: string;
  };
  /** One line on what the isolation class means; warns when it is `process`. */
  readonly isolationNote: string;
  readonly code: { readonly hash: string; readonly files: number; readonly bytes: number };
  readonly dependencies: { readonly key: string } | null;
  readonly activeInstances: readonly InstanceSummary[];
  readonly startingInstances: number;
  readonly queuedRequests: number;
  readonly versions: readonly {
    readonly version: number;
    readonly createdAt: string;
    readonly codeHash: string;
  }[];
  readonly lastDeployment: DeploymentSummary | null;
  readonly createdAt: string;
}

export interface ListResponse<T> {
  readonly items: readonly T[];
}

/** Events of a streamed deploy (`Accept: application/x-ndjson`), one JSON object per line. */
export type DeployEvent =
  | {
      readonly event: 'progress';
      readonly phase: DeployPhase;
      readonly message: string;
      readonly elapsedMs: number;
    }
  | { readonly event: 'output'; readonly phase: DeployPhase; readonly line: string }
  | { readonly event: 'result'; readonly function: FunctionDetail; readonly deployment: DeploymentSummary }
  | { readonly event: 'error'; readonly error: ErrorBody['error'] };

export type DeployPhase = 'upload' | 'unpack' | 'store' | 'dependencies' | 'verify' | 'activate';

export interface LogRecord {
  /** Monotonic id, usable as a cursor (`?after=`). */
  readonly id: number;
  readonly time: string;
  readonly namespace: string;
  readonly function: string;
  readonly version: number;
  readonly invocationId: string | null;
  readonly instanceId: string;
  readonly stream: 'stdout' | 'stderr' | 'system';
  readonly message: string;
}

export interface HealthResponse {
  readonly status: 'ok';
  readonly version: string;
  readonly sandbox: {
    readonly available: boolean;
    readonly reason: string | null;
    readonly codeBinding: 'mount' | 'link';
  };
  readonly runtimes: Readonly<
    Record<string, { readonly available: boolean; readonly reason: string | null }>
  >;
  readonly functions: number;
  readonly instances: number;
  /** The runtime cache: pre-started generic runtimes per runtime/isolation/network. */
  readonly stemCells: readonly {
    readonly runtime: string;
    readonly isolation: string;
    readonly network: string;
    readonly ready: number;
    readonly starting: number;
    readonly target: number;
    readonly taken: number;
    readonly misses: number;
  }[];
}
