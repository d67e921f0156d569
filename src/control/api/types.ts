/** @module Wire types of the control API (`/api/v1`), shared by the server and the CLI. */

import type { ErrorBody } from '../../domain/errors.js';
import type { FunctionManifest, IsolationName } from '../../domain/function.js';
import type { ImageConfig } from '../../domain/image.js';
import type { TriggerStatus } from '../../domain/triggers.js';
import type { EventTriggerDetail } from '../../eventing/types.js';
import type { GatewayDetail } from './events-types.js';

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
  readonly isolation: IsolationName;
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
  /** The handler convention in force, as the guest resolved `spec.eventFormat`; null until an instance loaded it. */
  readonly convention?: string | null;
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
      readonly pids: number;
      readonly tmp: string;
    };
    readonly scaling: {
      readonly min: number;
      readonly max: number;
      readonly targetConcurrency: number;
      readonly idleTimeout: string;
      readonly warmPoolRatio: number;
    };
    readonly isolation: IsolationName;
    readonly egress: 'none' | 'allow' | readonly string[];
    readonly priority: number;
    readonly eventFormat: string;
    /** Whether the dependency build runs packages' install scripts. */
    readonly build: { readonly scripts: boolean };
    /** Who may invoke it (its own setting; a Namespace with `functionAuth: key` raises `public` to `key`). */
    readonly auth: 'public' | 'key' | 'jwt';
  };
  /** One line on what the isolation class means; warns when it is `process`. */
  readonly isolationNote: string;
  /** For `runtime: image` (issue 17): the image the active version pins, and its config. */
  readonly image?: {
    readonly reference: string;
    readonly manifestDigest: string;
    readonly sizeBytes: number;
    readonly config: ImageConfig;
    readonly command?: readonly string[];
    readonly args?: readonly string[];
  };
  /**
   * The sandbox's resource walls on this node (memory, cpu, pids, tmp, seccomp) and whether each holds;
   * absent for `isolation: process`, which has none.
   */
  readonly walls?: readonly { readonly wall: string; readonly inForce: boolean; readonly detail: string }[];
  readonly code: { readonly hash: string; readonly files: number; readonly bytes: number };
  readonly dependencies: { readonly key: string } | null;
  readonly activeInstances: readonly InstanceSummary[];
  readonly startingInstances: number;
  readonly queuedRequests: number;
  /** The function's circuit breaker (issue 3). */
  readonly circuit?: {
    readonly state: 'closed' | 'open' | 'half-open';
    readonly failures: number;
    readonly retryAfterMs: number;
  };
  /** Max instances set by an EventGateway's `concurrency`, when one applies. */
  readonly instanceCap?: number;
  /** Its triggers (Kafka, MQTT, NATS, cron): state, lag, delivered/failed counts, last error. */
  readonly triggers?: readonly TriggerStatus[];
  /** The autoscaler's view of the function; null while the function is not loaded on this node. */
  readonly autoscaling: AutoscalingDetail | null;
  readonly versions: readonly {
    readonly version: number;
    readonly createdAt: string;
    readonly codeHash: string;
  }[];
  readonly lastDeployment: DeploymentSummary | null;
  readonly createdAt: string;
}

/** One scaling decision the node acted on. */
export interface ScalingDecisionSummary {
  readonly at: string;
  /** scale-up, scale-down, prewarm, scale-to-zero, evict, blocked, panic, stable. */
  readonly action: string;
  /** Instances (ready + starting) before and after. */
  readonly from: number;
  readonly to: number;
  readonly desired: number;
  readonly mode: 'stable' | 'panic';
  readonly reason: string;
  /** The figures it was decided from: concurrency (stable window), panicConcurrency, rps, idleForMs. */
  readonly figures: Readonly<Record<string, number>>;
}

export interface AutoscalingDetail {
  /** `hybrid` or `fixed-keep-alive`. */
  readonly policy: string;
  /** `panic` while a burst is being absorbed (no scale-down), `stable` otherwise. */
  readonly mode: 'stable' | 'panic';
  /** Ready and starting instances of the active version, and what the autoscaler wants. */
  readonly ready: number;
  readonly starting: number;
  readonly desired: number;
  /** Why `desired`, with the figure it came from. */
  readonly reason: string;
  readonly load: {
    /** In-flight + queued requests, averaged over the stable window. */
    readonly concurrency: number;
    /** The same over the panic window. */
    readonly panicConcurrency: number;
    readonly rps: number;
  };
  /** Idle, ready instances now, and how many the warm pool ratio asks for at the current load. */
  readonly warmPool: { readonly idle: number; readonly target: number; readonly ratio: number };
  /** How long the last instance stays once idle, and whether it is released early and pre-warmed. */
  readonly keepAlive: {
    readonly strategy: 'fixed' | 'histogram';
    readonly idlePeriods: number;
    /** Idle time after which an instance is started ahead of the predicted next request; null = kept from the start. */
    readonly prewarmAfter: string | null;
    readonly keepUntil: string;
    readonly reason: string;
  };
  readonly coldStarts: {
    /** The window the figures cover, e.g. "5m". */
    readonly window: string;
    readonly requests: number;
    readonly coldStarts: number;
    /** coldStarts / requests; null without requests. */
    readonly ratio: number | null;
  };
  /** The latest decisions, newest last. */
  readonly decisions: readonly ScalingDecisionSummary[];
}

/** `GET /api/v1/stats`: the node's live figures per function, as `hearth top` shows them. */
export interface StatsResponse {
  readonly time: string;
  readonly policy: string;
  readonly node: {
    readonly instances: number;
    readonly maxInstances: number;
    /** Instance memory reserved (the sum of `limits.memory`), and the node's budget. */
    readonly memoryBytes: number;
    readonly maxMemoryBytes: number;
    readonly stemCells: HealthResponse['stemCells'];
  };
  readonly functions: readonly FunctionStats[];
}

export interface FunctionStats {
  readonly namespace: string;
  readonly name: string;
  readonly version: number;
  readonly instances: {
    readonly ready: number;
    readonly busy: number;
    readonly idle: number;
    readonly starting: number;
    readonly desired: number;
  };
  readonly mode: 'stable' | 'panic';
  readonly inFlight: number;
  readonly queued: number;
  /** Requests per second over the last 10 s. */
  readonly rps: number;
  /** 99th percentile latency over the last 10 s through the gateway, in ms; null without data. */
  readonly p99Ms: number | null;
  /** Cold starts / requests over the last 5 minutes; null without requests. */
  readonly coldStartRatio: number | null;
  readonly memoryBytesPerInstance: number;
  /** Since the function was loaded on this node. */
  readonly totals: {
    readonly requests: number;
    readonly coldStarts: number;
    /** Idle instance memory·time, MiB·s: idle instances × their memory, summed over time. */
    readonly idleMemoryMiBSeconds: number;
  };
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
  /** A dependency build's scratch disk use while it runs (every few seconds), against `build.maxDisk`. */
  | {
      readonly event: 'disk';
      readonly phase: DeployPhase;
      readonly bytes: number;
      readonly maxBytes: number;
      readonly elapsedMs: number;
    }
  | { readonly event: 'result'; readonly function: FunctionDetail; readonly deployment: DeploymentSummary }
  /** `?stage=true`: the package is stored and checked; `POST /api/v1/apply` releases it by this id. */
  | { readonly event: 'staged'; readonly staged: string; readonly expiresAt: string }
  | { readonly event: 'error'; readonly error: ErrorBody['error'] };

/** One document's outcome in `POST /api/v1/apply`, in the order the documents were given. */
export interface ApplyDocumentOutcome {
  readonly index: number;
  readonly kind: 'Function' | 'EventGateway' | 'Trigger' | 'Secret' | 'Namespace';
  readonly namespace: string;
  readonly name: string;
  /** Nothing changed: the resource already had this spec (and code). */
  readonly unchanged: boolean;
  /** Functions: the active version afterwards. */
  readonly version?: number;
  readonly function?: FunctionDetail | null;
  readonly deployment?: DeploymentSummary | null;
  /** EventGateways: the gateway as applied. */
  readonly gateway?: GatewayDetail;
  /** Triggers: the trigger as applied (issue 20). */
  readonly trigger?: EventTriggerDetail;
}

export interface ApplyResponse {
  readonly dryRun: boolean;
  readonly items: readonly ApplyDocumentOutcome[];
}

export type DeployPhase = 'upload' | 'unpack' | 'store' | 'dependencies' | 'image' | 'verify' | 'activate';

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
  /** Cluster mode: the node whose record it is (ids are per node). */
  readonly node?: string;
}

/** The logs listing in cluster mode: which nodes answered, and which did not (their lines are missing). */
export interface LogListResponse extends ListResponse<LogRecord> {
  readonly nodes?: {
    readonly answered: readonly string[];
    readonly unreachable: readonly { readonly node: string; readonly reason: string }[];
  };
}

/**
 * `GET /readyz`: 200 once the platform can serve what it was started with (the store open, the stem-cell
 * pools started, the bundled examples deployed), 503 with the same body until then. `/healthz` is liveness.
 */
export interface ReadinessResponse {
  readonly status: 'ready' | 'starting';
  readonly checks: {
    readonly store: boolean;
    readonly stemCells: boolean;
    readonly examples: boolean;
  };
  /** The checks not yet passed, by name. */
  readonly waitingFor: readonly ('store' | 'stemCells' | 'examples')[];
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
    /** The memory wall the pool's runtimes are sized for (a Node pool), in MiB. */
    readonly memoryMiB?: number;
    /** A container function's pool: the image its cells make their container of ahead. */
    readonly image?: string;
    readonly ready: number;
    readonly starting: number;
    readonly target: number;
    readonly taken: number;
    readonly misses: number;
    /** Cells kept ready beyond `target` while takes come in a burst (issue 11). */
    readonly burst: number;
    /** How long a cell boots here lately, in ms: the gap a take leaves in the pool. */
    readonly bootMs?: number;
  }[];
}

// --- keys, tokens and namespaces (issue 10, src/security) ---------------------------------------------

export interface ApiKeySummary {
  readonly id: string;
  readonly name: string;
  readonly role: 'admin' | 'deployer' | 'invoker' | 'viewer';
  readonly namespaces: readonly string[];
  readonly createdAt: string;
  readonly revokedAt: string | null;
}

/** `POST /api/v1/keys`: the key itself is in this answer only; the platform keeps its hash. */
export interface CreatedApiKey extends ApiKeySummary {
  readonly key: string;
  /** The key's AWS credentials, for SigV4 clients of the Lambda Invoke API (derived, shown only here). */
  readonly awsAccessKeyId: string;
  readonly awsSecretAccessKey: string;
}

export interface IssuedToken {
  readonly token: string;
  readonly expiresAt: string;
  readonly role: ApiKeySummary['role'];
  readonly namespaces: readonly string[];
}

export interface NamespaceDetail {
  readonly name: string;
  /** False for a namespace that only has functions (no Namespace resource): no quotas, public functions. */
  readonly defined: boolean;
  readonly functionAuth: 'public' | 'key';
  /** Limits as numbers (bytes for memory and codeBytes); absent ones are unlimited. */
  readonly quotas: Readonly<Record<string, number>>;
  readonly usage: Readonly<Record<string, number>>;
  readonly createdAt: string | null;
  readonly updatedAt: string | null;
}
