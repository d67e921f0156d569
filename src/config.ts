/** @module Platform configuration: defaults, the optional YAML file (`hearth up --config`), validated once, then frozen. */

import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { type ComplianceConfig, complianceConfigSchema, resolveCompliance } from './compliance/config.js';
import { HearthError } from './domain/errors.js';
import { validationError } from './domain/function.js';
import { parseBytes, parseCpu, parseDuration } from './domain/units.js';
import { parseAllowEntry } from './queue/callbacks.js';

const bytes = z
  .union([z.string(), z.number()])
  .refine((v) => parseBytes(v) !== undefined, { message: 'a size such as "1Gi"' });
/** `"10%"` of the machine's memory, or a size (`"2Gi"`, bytes); undefined when it is neither. */
function shareOrBytes(value: string | number): number | undefined {
  if (typeof value === 'string') {
    const share = /^(\d+(?:\.\d+)?)%$/.exec(value.trim());
    if (share !== null) {
      const percent = Number(share[1]);
      // Whole MiB: the figure is logged and shown, and a byte more or less of a share means nothing.
      return percent <= 100 ? Math.floor((totalmem() * percent) / 100 / 1024 ** 2) * 1024 ** 2 : undefined;
    }
  }
  return parseBytes(value);
}

const duration = z
  .union([z.string(), z.number()])
  .refine((v) => parseDuration(v) !== undefined, { message: 'a duration such as "5m"' });

const httpUrl = z
  .string()
  .refine((v) => /^https?:\/\/[^\s/]/.test(v) && URL.canParse(v), { message: 'an http(s):// URL' });

const observabilityConfigSchema = z.strictObject({
  metrics: z.boolean().optional(),
  serverTiming: z.boolean().optional(),
  otlp: z
    .strictObject({
      endpoint: httpUrl,
      protocol: z.enum(['http/protobuf', 'http/json'], { message: 'http/protobuf or http/json' }).optional(),
      headers: z.record(z.string(), z.string()).optional(),
      serviceName: z.string().min(1).optional(),
    })
    .optional(),
  loki: z
    .strictObject({
      url: httpUrl,
      labels: z.record(z.string().regex(/^[a-zA-Z_]\w*$/), z.string()).optional(),
    })
    .optional(),
  state: z
    .strictObject({
      redis: z
        .strictObject({
          url: z.string().refine((v) => /^rediss?:\/\//.test(v) && URL.canParse(v), {
            message: 'a redis:// or rediss:// URL',
          }),
        })
        .optional(),
    })
    .optional(),
});

const window = (min: number, max: number) =>
  z.union([z.string(), z.number()]).refine(
    (v) => {
      const ms = parseDuration(v);
      return ms !== undefined && ms >= min && ms <= max;
    },
    { message: `a duration such as "500ms" or "60s" between ${min}ms and ${max / 1000}s` },
  );

/** The autoscaler's windows (issue 4); the trace replay shrinks them with its time compression. */
const autoscalerConfigSchema = z
  .strictObject({
    policy: z.enum(['hybrid', 'fixed'], { message: 'hybrid or fixed' }).optional(),
    tick: window(5, 60_000).optional(),
    stableWindow: window(10, 3_600_000).optional(),
    panicWindow: window(5, 3_600_000).optional(),
    panicThreshold: z.number().min(1).max(100).optional(),
    maxScaleDownRate: z.number().min(1).max(100).optional(),
    stemCellsMax: z.int().min(0).max(256).optional(),
  })
  .refine((a) => windowMs(a.panicWindow, 6_000) <= windowMs(a.stableWindow, 60_000), {
    message: 'a panicWindow no longer than stableWindow',
    path: ['panicWindow'],
  })
  .refine((a) => windowMs(a.tick, 500) <= windowMs(a.panicWindow, 6_000), {
    message: 'a tick no longer than panicWindow',
    path: ['tick'],
  });

function windowMs(value: string | number | undefined, fallback: number): number {
  return value === undefined ? fallback : (parseDuration(value) ?? fallback);
}

/** Traffic control and the durable queue (issue 3). */
const eventsConfigSchema = z.strictObject({
  queueMaxWait: duration.optional(),
  breaker: z
    .strictObject({ failures: z.int().min(1).max(1000).optional(), coolDown: duration.optional() })
    .optional(),
  async: z
    .strictObject({
      concurrency: z.int().min(1).max(10_000).optional(),
      retention: duration.optional(),
      retry: z
        .strictObject({
          attempts: z.int().min(1).max(100).optional(),
          backoff: duration.optional(),
          maxBackoff: duration.optional(),
        })
        .optional(),
      callback: z
        .strictObject({
          attempts: z.int().min(1).max(100).optional(),
          backoff: duration.optional(),
          timeout: duration.optional(),
          /** Destinations a callback may reach although private, loopback or link-local. */
          allow: z
            .array(
              z.string().refine((entry) => parseAllowEntry(entry) !== undefined, {
                message: 'an IP address, a CIDR such as "10.1.2.0/24" or a host name',
              }),
            )
            .max(1000)
            .optional(),
        })
        .optional(),
    })
    .optional(),
});

/** Cluster mode (issue 12): the shared services every node of the cluster is given. */
const urlWithScheme = (schemes: readonly string[], expected: string) =>
  z.string().refine((v) => URL.canParse(v) && schemes.includes(new URL(v).protocol.slice(0, -1)), {
    message: expected,
  });
const clusterConfigSchema = z.strictObject({
  postgres: urlWithScheme(['postgres', 'postgresql'], 'a postgres:// URL'),
  nats: urlWithScheme(['nats', 'tls'], 'a nats:// URL'),
  redis: urlWithScheme(['redis', 'rediss'], 'a redis:// or rediss:// URL'),
  nodeId: z
    .string()
    .regex(/^[\w.-]{1,64}$/, { message: 'letters, digits, ".", "_" or "-", at most 64' })
    .optional(),
  /** The gateway URL the other nodes reach this one at (default: the one it listens on). */
  advertise: httpUrl.optional(),
  heartbeat: window(100, 60_000).optional(),
  deadAfter: window(500, 600_000).optional(),
  /** Unacknowledged this long, an async delivery whose node went silent is given to another node. */
  ackWait: window(500, 900_000).optional(),
});

export const configFileSchema = z.strictObject({
  port: z.int().min(0).max(65535).optional(),
  host: z.string().min(1).optional(),
  dataDir: z.string().min(1).optional(),
  examples: z.boolean().optional(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional(),
  stemCells: z
    .strictObject({
      node20: z.int().min(0).max(64).optional(),
      python3: z.int().min(0).max(64).optional(),
      wasm: z.int().min(0).max(64).optional(),
    })
    .optional(),
  /** The stem-cell pools' floor sized from memory (issue 11): cells per idle deployed function, up to `memory`. */
  stemCellFloor: z
    .strictObject({
      perIdleFunction: z.number().min(0).max(4).optional(),
      memory: z
        .union([z.string(), z.number()])
        .refine((v) => shareOrBytes(v) !== undefined, {
          message: 'a share of the node\'s memory such as "10%", or a size such as "2Gi"',
        })
        .optional(),
    })
    .optional(),
  maxInstances: z.int().min(1).max(100_000).optional(),
  maxMemory: bytes.optional(),
  /** Declared instance memory per byte the budget reserves (issue 11); 1 reserves every limits.memory in full. */
  memoryOvercommit: z.number().min(1).max(64).optional(),
  /** `isolation: isolate` (issue 11): the memory cgroup of each namespace's host process, all its isolates together. */
  isolate: z.strictObject({ hostMemory: bytes.optional() }).optional(),
  autoscaler: autoscalerConfigSchema.optional(),
  queueLimit: z.int().min(0).max(1_000_000).optional(),
  codeCache: bytes.optional(),
  /** Garbage collection of unreferenced code packages and dependency layers (issue 11). */
  gc: z.strictObject({ grace: duration.optional(), interval: duration.optional() }).optional(),
  logRecords: z.int().min(1000).optional(),
  /**
   * What `egress: allow` gives a sandboxed function: `outbound` (default), a network namespace of its own
   * that reaches anything but this machine's loopback; `host`, the host's network, loopback included (one
   * trusted tenant only).
   */
  egressAllow: z.enum(['outbound', 'host']).optional(),
  /**
   * Whether Python guests are forked into their sandboxes from one pre-loaded process (sandbox/zygote.ts)
   * rather than booted in each: faster cold starts, but every Python function of the node then shares its
   * address-space layout and `str` hash secret with the others, tenants included. Off by default.
   */
  forkServer: z.boolean().optional(),
  /**
   * Whether the platform's process moves into a cpu cgroup of its own at ten times a sandbox's weight
   * (sandbox/cgroups.ts). Unset: only when started in the root cgroup; a platform a service manager put in
   * a cgroup (a systemd unit's, with its `CPUQuota=` and `MemoryMax=`) stays there unless this is true.
   */
  platformCpuCgroup: z.boolean().optional(),
  /** The OCI runtime of container functions: crun (the default, when installed) or runc. */
  containerRuntime: z.enum(['crun', 'runc']).optional(),
  images: z
    .strictObject({
      /** Takes `spec.image: dir:/PATH`, a rootfs folder on this node (development and tests; off by default). */
      localDirs: z.boolean().optional(),
    })
    .optional(),
  buildTimeout: duration.optional(),
  /** How long a stop (SIGTERM, Ctrl-C) waits for draining and brokers before it stops at once (default 30s). */
  stopTimeout: duration.optional(),
  build: z
    .strictObject({
      /** The most disk one dependency build's scratch dir may take (downloads, TMPDIR, the layer). */
      maxDisk: bytes.optional(),
      /** One build's memory cap (hard, no swap): a build past it fails naming it. */
      memory: bytes.optional(),
      /** One build's CPU cap, in cores (a CFS quota). */
      cpu: z
        .union([z.string(), z.number()])
        .refine((v) => (parseCpu(v) ?? 0) > 0 && (parseCpu(v) ?? 0) <= 1024, {
          message: 'CPU cores such as "0.5", 1 or "500m"',
        })
        .optional(),
    })
    .optional(),
  upload: z
    .strictObject({
      maxArchive: bytes.optional(),
      maxUnpacked: bytes.optional(),
      maxFiles: z.int().min(1).optional(),
      unpackTimeout: duration.optional(),
    })
    .optional(),
  python: z.string().min(1).optional(),
  /** HTTPS on every listener: PEM files, reloaded when they change. */
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  cluster: clusterConfigSchema.optional(),
  ...observabilityConfigSchema.shape,
  ...eventsConfigSchema.shape,
  ...complianceConfigSchema.shape,
});

export type ConfigFile = z.infer<typeof configFileSchema>;

/** The observability and state part of the platform config (issue 5), resolved. */
export interface ObservabilityConfig {
  /** `/metrics`, the dashboard's figures and the alerts (default on). */
  readonly metrics: boolean;
  /** A `Server-Timing` header on every invocation response (default on). */
  readonly serverTiming: boolean;
  /** OTLP/HTTP trace export; undefined = no tracing. */
  readonly otlp:
    | {
        readonly endpoint: string;
        readonly protocol: 'http/protobuf' | 'http/json';
        readonly headers: Readonly<Record<string, string>>;
        readonly serviceName: string;
      }
    | undefined;
  /** Loki push of function logs; undefined = none. */
  readonly loki: { readonly url: string; readonly labels: Readonly<Record<string, string>> } | undefined;
  /** Redis for `ctx.state` (and `REDIS_URL` for functions); undefined = the embedded store. */
  readonly redisUrl: string | undefined;
}

export interface PlatformConfig {
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  readonly examples: boolean;
  readonly logLevel: string;
  readonly stemCells: { readonly node20: number; readonly python3: number; readonly wasm: number };
  readonly maxInstances: number;
  /** Node-wide budget of instance memory (the sum of their reservations: `limits.memory` ÷ `memoryOvercommit`). */
  readonly maxMemoryBytes: number;
  /** Declared memory per reserved byte (default 4); each cgroup still enforces its declared limit. */
  readonly memoryOvercommit: number;
  /** The cgroup memory of one namespace's isolate host (default 1 GiB). */
  readonly isolateHostMemoryBytes: number;
  /** Ready stem cells per idle deployed function, up to `memoryBytes` for all pools (`stemCellFloor`). */
  readonly stemCellFloor: { readonly perIdleFunction: number; readonly memoryBytes: number };
  readonly autoscaler: AutoscalerConfig;
  readonly queueLimit: number;
  readonly codeCacheBytes: number;
  /** Unreferenced packages and layers are deleted once unused this long (default 1 h), checked every `intervalMs`. */
  readonly gc: { readonly graceMs: number; readonly intervalMs: number };
  readonly logRecords: number;
  /** What `egress: allow` gives a sandboxed function (`outbound` unless the operator chose `host`). */
  readonly egressAllow: 'outbound' | 'host';
  /** `forkServer`, or `HEARTH_ZYGOTE=on|off` in the platform's environment, which wins. */
  readonly forkServer: boolean;
  /** `platformCpuCgroup`: true moves the platform's process from anywhere, false never, undefined from `/` only. */
  readonly platformCpuCgroup: boolean | undefined;
  /** `containerRuntime`: the OCI runtime the operator chose, or undefined for crun with runc as the fallback. */
  readonly containerRuntime: 'crun' | 'runc' | undefined;
  /** `images.localDirs`: whether `spec.image: dir:/PATH` is taken (it runs a host folder the deployer names). */
  readonly localImageDirs: boolean;
  readonly buildTimeoutMs: number;
  /** `stopTimeout`: how long `hearth up` waits for a clean stop before it stops at once (exit 1). */
  readonly stopTimeoutMs: number;
  /** Dependency builds' scratch disk cap (`build.maxDisk`, default 4 GiB). */
  readonly buildMaxDiskBytes: number;
  /** One dependency build's memory cap (`build.memory`, default 2 GiB) and CPU cap (`build.cpu`, default 1). */
  readonly buildMemoryBytes: number;
  readonly buildCpu: number;
  readonly upload: {
    readonly maxArchiveBytes: number;
    readonly maxUnpackedBytes: number;
    readonly maxFiles: number;
    /** Vetting and extracting one upload, in a worker thread; past it the deploy is refused. */
    readonly unpackTimeoutMs: number;
  };
  readonly python: string | undefined;
  /** HTTPS on the gateway, the API and EventGateway listeners; undefined = plain HTTP. */
  readonly tls: { readonly certPath: string; readonly keyPath: string } | undefined;
  readonly observe: ObservabilityConfig;
  readonly events: EventsConfig;
  /** Secrets and the audit log (issue 13). */
  readonly compliance: ComplianceConfig;
  /** Cluster mode (issue 12); undefined = the embedded single-node mode. */
  readonly cluster: ClusterConfig | undefined;
}

/** Cluster mode, resolved (issue 12). */
export interface ClusterConfig {
  readonly postgresUrl: string;
  readonly natsUrl: string;
  readonly redisUrl: string;
  /** This node's name in the cluster; undefined: one made at first start and kept in the data dir. */
  readonly nodeId: string | undefined;
  /** The gateway URL other nodes use to reach this one; undefined: the URL it listens on. */
  readonly advertiseUrl: string | undefined;
  readonly heartbeatMs: number;
  /** Silence after which the other nodes count a node as dead. */
  readonly deadAfterMs: number;
  /** A queued delivery its node stopped confirming is redelivered (to any node) after this long. */
  readonly ackWaitMs: number;
}

/** The autoscaler, resolved (issue 4). */
export interface AutoscalerConfig {
  /** `hybrid` (default) or `fixed`: the baseline fixed keep-alive. */
  readonly policy: 'hybrid' | 'fixed';
  readonly tickMs: number;
  readonly stableWindowMs: number;
  readonly panicWindowMs: number;
  readonly panicThreshold: number;
  readonly maxScaleDownRate: number;
  /** The most ready stem cells a pool grows to in bursts of cold starts. */
  readonly stemCellsMax: number;
}

/**
 * The memory the stem-cell floor may hold by default: a tenth of the machine's (2.4 GiB, ~270 idle cells half Node half Python, on a
 * 24 GiB node). What it buys, measured by `bench/cold-burst.mjs`, is in bench/RESULTS.md (issue 11).
 */
const DEFAULT_STEM_CELL_FLOOR_SHARE = 0.1;

/** Instance memory a node reserves at most by default: three quarters of the machine's memory. */
function defaultMaxMemory(): number {
  return Math.floor((totalmem() * 3) / 4);
}

/**
 * Instances a node keeps at most by default: half the machine's memory at ~16 MiB per instance (an idle
 * sandboxed instance uses 9-14 MiB PSS, issue 11; it was 64 MiB, which held a 24 GiB node to 192).
 */
function defaultMaxInstances(): number {
  return Math.max(16, Math.min(2000, Math.floor(totalmem() / 2 / (16 * 1024 ** 2))));
}

export function loadConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `--config: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text) ?? {};
  } catch (error) {
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `${path}: not valid YAML (${(error as Error).message.split('\n')[0]})`,
    );
  }
  const result = configFileSchema.safeParse(parsed);
  if (!result.success) throw validationError(result.error, parsed, path);
  return result.data;
}

/** Merges defaults < config file < explicit overrides (CLI flags) and freezes the result. */
export function resolveConfig(
  file: ConfigFile,
  overrides: Partial<Omit<ConfigFile, 'stemCells' | 'upload'>> = {},
): PlatformConfig {
  const merged = {
    ...file,
    ...Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined)),
  } as ConfigFile;
  const size = (value: string | number | undefined, fallback: number): number =>
    value === undefined ? fallback : (parseBytes(value) ?? fallback);
  const dataDir = resolve(merged.dataDir ?? '.hearth');
  return Object.freeze({
    port: merged.port ?? 8080,
    host: merged.host ?? '127.0.0.1',
    dataDir,
    examples: merged.examples ?? true,
    logLevel: merged.logLevel ?? 'info',
    stemCells: Object.freeze({
      node20: merged.stemCells?.node20 ?? 2,
      python3: merged.stemCells?.python3 ?? 2,
      // One: most nodes run no wasm function, and a wasm stem cell is a Node process of its own (~13 MiB PSS).
      wasm: merged.stemCells?.wasm ?? 1,
    }),
    maxInstances: merged.maxInstances ?? defaultMaxInstances(),
    maxMemoryBytes: size(merged.maxMemory, defaultMaxMemory()),
    memoryOvercommit: merged.memoryOvercommit ?? 4,
    isolateHostMemoryBytes: size(merged.isolate?.hostMemory, 1024 ** 3),
    stemCellFloor: Object.freeze({
      perIdleFunction: merged.stemCellFloor?.perIdleFunction ?? 1,
      memoryBytes:
        shareOrBytes(merged.stemCellFloor?.memory ?? `${DEFAULT_STEM_CELL_FLOOR_SHARE * 100}%`) ?? 0,
    }),
    autoscaler: Object.freeze({
      policy: merged.autoscaler?.policy ?? 'hybrid',
      tickMs: windowMs(merged.autoscaler?.tick, 500),
      stableWindowMs: windowMs(merged.autoscaler?.stableWindow, 60_000),
      panicWindowMs: windowMs(merged.autoscaler?.panicWindow, 6_000),
      panicThreshold: merged.autoscaler?.panicThreshold ?? 2,
      maxScaleDownRate: merged.autoscaler?.maxScaleDownRate ?? 2,
      stemCellsMax: merged.autoscaler?.stemCellsMax ?? 8,
    }),
    queueLimit: merged.queueLimit ?? 10_000,
    codeCacheBytes: size(merged.codeCache, 1024 ** 3),
    gc: Object.freeze({
      graceMs: merged.gc?.grace === undefined ? 3_600_000 : (parseDuration(merged.gc.grace) ?? 3_600_000),
      intervalMs:
        merged.gc?.interval === undefined ? 600_000 : (parseDuration(merged.gc.interval) ?? 600_000),
    }),
    logRecords: merged.logRecords ?? 200_000,
    egressAllow: merged.egressAllow ?? 'outbound',
    forkServer:
      process.env.HEARTH_ZYGOTE === 'on'
        ? true
        : process.env.HEARTH_ZYGOTE === 'off'
          ? false
          : (merged.forkServer ?? false),
    platformCpuCgroup: merged.platformCpuCgroup,
    containerRuntime: merged.containerRuntime,
    localImageDirs: merged.images?.localDirs ?? false,
    buildTimeoutMs:
      merged.buildTimeout === undefined ? 10 * 60_000 : (parseDuration(merged.buildTimeout) ?? 10 * 60_000),
    stopTimeoutMs: merged.stopTimeout === undefined ? 30_000 : (parseDuration(merged.stopTimeout) ?? 30_000),
    buildMaxDiskBytes: size(merged.build?.maxDisk, 4 * 1024 ** 3),
    buildMemoryBytes: size(merged.build?.memory, 2 * 1024 ** 3),
    buildCpu: merged.build?.cpu === undefined ? 1 : (parseCpu(merged.build.cpu) ?? 1),
    upload: Object.freeze({
      maxArchiveBytes: size(merged.upload?.maxArchive, 64 * 1024 ** 2),
      maxUnpackedBytes: size(merged.upload?.maxUnpacked, 256 * 1024 ** 2),
      maxFiles: merged.upload?.maxFiles ?? 20_000,
      unpackTimeoutMs:
        merged.upload?.unpackTimeout === undefined
          ? 30_000
          : (parseDuration(merged.upload.unpackTimeout) ?? 30_000),
    }),
    python: merged.python,
    tls:
      merged.tls === undefined
        ? undefined
        : Object.freeze({ certPath: resolve(merged.tls.cert), keyPath: resolve(merged.tls.key) }),
    observe: resolveObservability(merged),
    events: resolveEvents(merged),
    compliance: resolveCompliance(merged, dataDir),
    cluster:
      merged.cluster === undefined
        ? undefined
        : Object.freeze({
            postgresUrl: merged.cluster.postgres,
            natsUrl: merged.cluster.nats,
            redisUrl: merged.cluster.redis,
            nodeId: merged.cluster.nodeId,
            advertiseUrl: merged.cluster.advertise,
            heartbeatMs: windowMs(merged.cluster.heartbeat, 1000),
            deadAfterMs: windowMs(merged.cluster.deadAfter, 3000),
            ackWaitMs: windowMs(merged.cluster.ackWait, 30_000),
          }),
  });
}

/** Traffic control and the durable queue (issue 3), resolved. */
export interface EventsConfig {
  /** The longest a request waits for capacity before a 503 (routes may set their own); undefined: its deadline. */
  readonly queueMaxWaitMs: number | undefined;
  readonly breaker: { readonly failures: number; readonly coolDownMs: number };
  readonly async: {
    readonly concurrency: number;
    readonly retentionMs: number;
    readonly retry: { readonly attempts: number; readonly backoffMs: number; readonly maxBackoffMs: number };
    readonly callback: {
      readonly attempts: number;
      readonly backoffMs: number;
      readonly timeoutMs: number;
      /** Private, loopback or link-local destinations (addresses, CIDRs, host names) callbacks may reach. */
      readonly allow: readonly string[];
    };
  };
}

function resolveEvents(file: ConfigFile): EventsConfig {
  const ms = (value: string | number | undefined, fallback: number): number =>
    value === undefined ? fallback : (parseDuration(value) ?? fallback);
  return Object.freeze({
    queueMaxWaitMs: file.queueMaxWait === undefined ? undefined : parseDuration(file.queueMaxWait),
    breaker: Object.freeze({
      failures: file.breaker?.failures ?? 5,
      coolDownMs: ms(file.breaker?.coolDown, 5000),
    }),
    async: Object.freeze({
      concurrency: file.async?.concurrency ?? 64,
      retentionMs: ms(file.async?.retention, 3_600_000),
      retry: Object.freeze({
        attempts: file.async?.retry?.attempts ?? 3,
        backoffMs: ms(file.async?.retry?.backoff, 1000),
        maxBackoffMs: ms(file.async?.retry?.maxBackoff, 300_000),
      }),
      callback: Object.freeze({
        attempts: file.async?.callback?.attempts ?? 5,
        backoffMs: ms(file.async?.callback?.backoff, 1000),
        timeoutMs: ms(file.async?.callback?.timeout, 10_000),
        allow: Object.freeze([...(file.async?.callback?.allow ?? [])]),
      }),
    }),
  });
}

function resolveObservability(file: ConfigFile): ObservabilityConfig {
  return Object.freeze({
    metrics: file.metrics ?? true,
    serverTiming: file.serverTiming ?? true,
    otlp:
      file.otlp === undefined
        ? undefined
        : Object.freeze({
            endpoint: file.otlp.endpoint,
            protocol: file.otlp.protocol ?? 'http/protobuf',
            headers: Object.freeze({ ...(file.otlp.headers ?? {}) }),
            serviceName: file.otlp.serviceName ?? 'hearth',
          }),
    loki:
      file.loki === undefined
        ? undefined
        : Object.freeze({ url: file.loki.url, labels: Object.freeze({ ...(file.loki.labels ?? {}) }) }),
    // A cluster keeps ctx.state in its Redis, unless state.redis names another.
    redisUrl: file.state?.redis?.url ?? file.cluster?.redis,
  });
}
