/**
 * @module The cold-start path: an instance of a function version made from a stem cell. Checks out the code
 * from the node-local cache, takes a pre-started sandboxed runtime from the pool for (runtime, isolation,
 * network), attaches the code and dependency layer to its slot, applies the function's limits, and binds the
 * handler. Owns the stem-cell pools, and answers the calls an instance makes into the platform.
 */

import type { DeployedVersion } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import { DEFAULTS, type IsolationName, type RuntimeName } from '../domain/function.js';
import type { ResolvedImage } from '../domain/image.js';
import { parseBytes } from '../domain/units.js';
import type {
  AllowNetwork,
  GuestCall,
  Isolation,
  NetworkMode,
  Runtime,
  SlotManager,
} from '../runtime/index.js';
import type { CodeProvider, HostCallHandler, LogSink } from './index.js';
import { Instance } from './instance.js';
import { DEFAULT_STEM_CELL_BURST, StemCellPool, type StemCellPoolStats } from './stem-cells.js';

const BIND_TIMEOUT_MS = 30_000;
/** The memory wall of a function that sets none: the stem cells kept ready are sized for it. */
const DEFAULT_MEMORY_BYTES = parseBytes(DEFAULTS.memory) ?? 128 * 1024 ** 2;

export interface ColdStartOptions {
  readonly runtimes: ReadonlyMap<RuntimeName, Runtime>;
  readonly isolations: ReadonlyMap<IsolationName, Isolation>;
  readonly slots: SlotManager;
  readonly code: CodeProvider;
  readonly logs: LogSink;
  /** Stem cells kept ready per runtime (sandbox isolation, no egress; other pools keep one). */
  readonly stemCells: Readonly<Partial<Record<RuntimeName, number>>>;
  /** What `egress: allow` gets (default `outbound`). */
  readonly allowNetwork?: AllowNetwork;
  /** The most cells a pool keeps ready during a burst of takes (`StemCellBurst.limit`; 0 turns it off). */
  readonly stemCellBurstLimit?: number | undefined;
  readonly onWarning: (message: string) => void;
  readonly hostCalls?: HostCallHandler | undefined;
  readonly bindEnv?: ((version: DeployedVersion) => Readonly<Record<string, string>>) | undefined;
  /** Resolves `spec.image` into an unpacked image on this node (issue 17); the image store plugs in here. */
}

export class ColdStarter {
  private readonly stemPools = new Map<string, StemCellPool>();
  /** Image pools evicted while takes still waited on them: they serve those, then close (`retire`). */
  private readonly retiringPools = new Set<StemCellPool>();
  /** The convention each version's guests resolved (describe shows it): learned at their first bind. */
  readonly conventions = new WeakMap<DeployedVersion, string>();

  constructor(private readonly options: ColdStartOptions) {}

  /** The stem-cell pools by `runtime/isolation/network`, for the sizer. */
  get pools(): ReadonlyMap<string, StemCellPool> {
    return this.stemPools;
  }

  /** Starts the stem-cell pools of the default isolation and waits until they are filled. */
  async warm(): Promise<void> {
    const isolation = this.options.isolations.get('sandbox');
    const waits: Promise<void>[] = [];
    for (const runtime of this.options.runtimes.values()) {
      if (runtime.unavailable !== undefined || isolation === undefined || isolation.unavailable !== undefined)
        continue;
      // Images run in their own isolation class, and `provided` is rare: their pools fill on first use.
      if (runtime.name === 'image' || runtime.name === 'provided') continue;
      waits.push(this.stemPool(runtime, isolation, 'none', DEFAULT_MEMORY_BYTES).warm());
    }
    await Promise.all(waits);
  }

  stats(): StemCellPoolStats[] {
    return [...this.stemPools.values()].map((pool) => pool.stats());
  }

  async close(): Promise<void> {
    await Promise.all([...this.stemPools.values(), ...this.retiringPools].map((pool) => pool.close()));
  }

  /** A ready instance of `version`, bound to its handler; `HEARTH_E_HANDLER_INVALID` when it does not load. */
  async start(version: DeployedVersion): Promise<Instance> {
    const runtime = this.options.runtimes.get(version.spec.runtime);
    if (runtime === undefined || runtime.unavailable !== undefined) {
      throw new HearthError(
        'HEARTH_E_UNSUPPORTED',
        runtime?.unavailable ?? `runtime ${version.spec.runtime} is not available on this node`,
      );
    }
    const isolation = this.options.isolations.get(version.spec.isolation);
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
    const network = networkModeOf(version.spec.egress, this.options.allowNetwork);
    // A start the autoscaler's tick makes is followed, in the same tick, by the pools' sizing, before it takes:
    // the cell it will take once its code is out is not one a lower target lets go meanwhile (a pre-warm's
    // spare was trimmed in the very tick the pre-warm took the other cell, leaving the pool empty and the
    // spare's boot wasted).
    const unreserve = this.stemPools
      .get(this.poolKeyOf(runtime, isolation, network, version.spec.limits.memoryBytes, version.image))
      ?.reserve();
    let code: Awaited<ReturnType<CodeProvider['checkoutCode']>>;
    try {
      code = await this.options.code.checkoutCode(version.code.hash);
    } catch (error) {
      unreserve?.();
      throw error;
    }
    phases.code = performance.now() - clock;
    // From here to the take nothing waits: the reservation has done its part.
    unreserve?.();
    const pool = this.stemPool(runtime, isolation, network, version.spec.limits.memoryBytes, version.image);
    // Held while the instance lives, so the garbage collector never takes a layer from under it.
    const layer =
      version.deps === undefined ? undefined : this.options.code.checkoutLayer?.(version.deps.key);
    let cell: Awaited<ReturnType<StemCellPool['take']>> | undefined;
    try {
      cell = await pool.take();
      phases.stemCell = performance.now() - clock - phases.code;
      const depsDir =
        version.deps === undefined ? undefined : (layer?.dir ?? this.options.code.layerDir(version.deps.key));
      // An isolation whose guests are sent their code reads it from the code cache: a copy would go unread.
      if (isolation.readsCodeOnPlatform !== true)
        await this.options.slots.attach(cell.slot, {
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
      const logs = this.options.logs;
      const slots = this.options.slots;
      const instance = new Instance(
        version,
        cell,
        isolation.name,
        (log) => logs.write({ ...log, ref: version.ref, version: version.version, instanceId: instance.id }),
        () => {
          code.release();
          layer?.release();
          void slots.release(cell?.slot ?? { id: '', hostDir: '' });
        },
      );
      guest.on('call', (call) => this.answerCall(instance, call));
      const env =
        this.options.bindEnv === undefined
          ? version.spec.env
          : { ...this.options.bindEnv(version), ...version.spec.env };
      const container = await this.containerEnv(isolation, cell.guest, version, env);
      const bound = await withTimeout(
        cell.guest.bind({
          namespace: version.ref.namespace,
          functionName: version.ref.name,
          version: version.version,
          handler: version.spec.handler,
          codeDir: isolation.readsCodeOnPlatform === true ? code.dir : `${root}/app`,
          codeHash: version.code.hash,
          depsDir: version.deps === undefined ? undefined : `${root}/${version.deps.mountName}`,
          env: container === undefined ? env : { ...env, ...container },
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
          logs.write({
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
      if (bound.eventFormat !== undefined) this.conventions.set(version, bound.eventFormat);
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
      layer?.release();
      throw error;
    }
  }

  /**
   * For a container function (spec.image): the Bind env entries that hand its image to the isolation's
   * supervisor; the image is resolved here, once per cold start, never per request.
   */
  private async containerEnv(
    isolation: Isolation,
    guest: Parameters<NonNullable<Isolation['bindContainer']>>[0],
    version: DeployedVersion,
    env: Readonly<Record<string, string>>,
  ): Promise<Readonly<Record<string, string>> | undefined> {
    const image = version.image;
    if (image === undefined) return undefined;
    if (isolation.bindContainer === undefined)
      throw new HearthError(
        'HEARTH_E_UNSUPPORTED',
        `isolation ${isolation.name} cannot run container images (use isolation: container)`,
      );
    return isolation.bindContainer(guest, {
      image,
      command: version.spec.command,
      args: version.spec.args,
      protocol: version.spec.protocol ?? 'http',
      env: lambdaEnv(version, env),
      tmpBytes: version.spec.limits.tmpBytes,
    });
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

  /**
   * Makes room for one more image's pool: retires the least recently used beyond MAX_IMAGE_STEM_POOLS - 1. A
   * retired pool keeps no cell, but the cold starts waiting on it are still served by their boots (closing
   * it failed them as "shutting down"); a later cold start of its image gets a fresh pool.
   */
  private evictImagePools(): void {
    const imagePools = [...this.stemPools].filter(([, pool]) => pool.image !== undefined);
    let over = imagePools.length - MAX_IMAGE_STEM_POOLS + 1;
    for (const [key, pool] of imagePools) {
      if (over <= 0) break;
      over -= 1;
      this.stemPools.delete(key);
      this.retiringPools.add(pool);
      void pool
        .retire()
        .catch(() => undefined)
        .then(() => this.retiringPools.delete(pool));
    }
  }

  private poolKeyOf(
    runtime: Runtime,
    isolation: Isolation,
    network: NetworkMode,
    memoryBytes: number,
    image?: ResolvedImage,
  ): string {
    return poolKey(
      runtime.name,
      isolation.name,
      network,
      runtime.heapFromMemory === true,
      memoryBytes,
      image === undefined ? undefined : imageKey(image),
    );
  }

  private stemPool(
    runtime: Runtime,
    isolation: Isolation,
    network: NetworkMode,
    memoryBytes: number,
    image?: ResolvedImage,
  ): StemCellPool {
    const key = this.poolKeyOf(runtime, isolation, network, memoryBytes, image);
    let pool = this.stemPools.get(key);
    if (pool !== undefined && image !== undefined) {
      // Most recently used last: the pool of the image unused longest is the one that goes.
      this.stemPools.delete(key);
      this.stemPools.set(key, pool);
    }
    if (pool === undefined) {
      if (image !== undefined) this.evictImagePools();
      const configured = this.options.stemCells[runtime.name] ?? 1;
      // The default (sandboxed, no egress, default memory) gets the configured pool; other combinations
      // keep one spare.
      const target =
        isolation.name === 'sandbox' &&
        network === 'none' &&
        (runtime.heapFromMemory !== true || memoryBytes === DEFAULT_MEMORY_BYTES)
          ? configured
          : Math.min(configured, 1);
      pool = new StemCellPool(
        runtime,
        isolation,
        network,
        this.options.slots,
        target,
        (message) => this.options.onWarning(message),
        runtime.heapFromMemory === true ? memoryBytes : undefined,
        {
          ...DEFAULT_STEM_CELL_BURST,
          limit: this.options.stemCellBurstLimit ?? DEFAULT_STEM_CELL_BURST.limit,
        },
        image,
      );
      this.stemPools.set(key, pool);
    }
    return pool;
  }
}

/**
 * Container functions' stem cells are pooled per image (their container is made ahead from it); the pools
 * of at most this many images are kept, the one unused longest closed first. Each holds a supervisor and a
 * prepared container (tens of MiB), so the bound is small.
 */
const MAX_IMAGE_STEM_POOLS = 4;

/** The stem-cell pool an instance of `version` takes its runtime from (the key `stemPool` files it under). */
export function stemPoolKey(version: DeployedVersion, allowNetwork?: AllowNetwork): string {
  return poolKey(
    version.spec.runtime,
    version.spec.isolation,
    networkModeOf(version.spec.egress, allowNetwork),
    // The runtimes whose `heapFromMemory` is set (the sizer has no runtime objects at hand).
    version.spec.runtime === 'node20',
    version.spec.limits.memoryBytes,
    version.image === undefined ? undefined : imageKey(version.image),
  );
}

/** What tells images apart: the manifest digest, or for a `dir:` image (no manifest) its folder. */
function imageKey(image: ResolvedImage): string {
  return image.manifestDigest === '' ? image.rootfs : image.manifestDigest;
}

/** `runtime/isolation/network`, and the memory size for a runtime whose heap is sized from it. */
function poolKey(
  runtime: string,
  isolation: string,
  network: NetworkMode,
  heapFromMemory: boolean,
  memoryBytes: number,
  image?: string,
): string {
  const base = `${runtime}/${isolation}/${network}`;
  if (image !== undefined) return `${base}/${image}`;
  return heapFromMemory ? `${base}/${Math.round(memoryBytes / 1024 ** 2)}Mi` : base;
}

/**
 * Egress `none` is an empty network namespace, `allow` one of its own that reaches out (or the host's, where
 * the operator chose so), an allow-list a filtered one of its own.
 */
function networkModeOf(
  egress: DeployedVersion['spec']['egress'],
  allowNetwork: AllowNetwork = 'outbound',
): NetworkMode {
  return egress === 'none' ? 'none' : egress === 'allow' ? allowNetwork : 'filtered';
}

/** What Lambda's runtimes set for a function (the Node guest sets the same for its own handlers). */
function lambdaEnv(
  version: DeployedVersion,
  env: Readonly<Record<string, string>>,
): Readonly<Record<string, string>> {
  const { namespace, name } = version.ref;
  return {
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_LAMBDA_FUNCTION_NAME: name,
    AWS_LAMBDA_FUNCTION_VERSION: String(version.version),
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(Math.round(version.spec.limits.memoryBytes / 1024 ** 2)),
    AWS_LAMBDA_LOG_GROUP_NAME: `/hearth/${namespace}/${name}`,
    AWS_LAMBDA_LOG_STREAM_NAME: version.ref.name,
    HEARTH_FUNCTION: name,
    HEARTH_NAMESPACE: namespace,
    HEARTH_VERSION: String(version.version),
    // The platform's own entries (an SM4 key, secret files) are for the Node guest, never the container.
    ...Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('HEARTH_'))),
  };
}

/** One promise and one settling step, not race and finally's three: the bind's answer waits on it. */
function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new HearthError('HEARTH_E_HANDLER_INVALID', message)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
