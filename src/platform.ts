/**
 * @module The composition root: builds every part from the config, wires them through their interfaces,
 * restores deployed functions, serves HTTP, and tears it all down in order.
 */

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleepFor } from 'node:timers/promises';
import {
  AuditLog,
  assertCryptoSupport,
  auditInvocations,
  createSink,
  Keyring,
  recordRefusedLogin,
  recordRequest,
  SecretStore,
  SinkRunner,
  setKeyIdentity,
  verifyPackage,
} from './compliance/index.js';
import type { PlatformConfig } from './config.js';
import type { HealthResponse, ReadinessResponse } from './control/api/types.js';
import {
  CodeStore,
  createControlApi,
  Deployer,
  GarbageCollector,
  LayerStore,
  MANIFEST_FILE,
  SqliteStore,
} from './control/index.js';
import type { Store, StoredVersion } from './control/store/index.js';
import type { DeployedVersion } from './domain/deployment.js';
import { HearthError } from './domain/errors.js';
import type { InstanceEvent, ScalingEvent } from './domain/events.js';
import { type IsolationName, type RuntimeName, resolveSpec } from './domain/function.js';
import { formatBytes } from './domain/units.js';
import { createEventGateway } from './event-gateway.js';
import {
  createFunctionCalls,
  createGatewayHandler,
  createGatewayServer,
  createLambdaApi,
  TlsReloader,
} from './gateway/index.js';
import {
  describeProgress,
  formatSize,
  ImageStore,
  parseReference,
  RegistryCredentialStore,
} from './images/index.js';
import { createLogger, LogStore, type Observability, startObservability } from './observe/index.js';
import { ContainerIsolation, createImageRuntime, createProvidedRuntime } from './runtime/container/index.js';
import type { AllowNetwork, Isolation, Runtime } from './runtime/index.js';
import { createSlotManager } from './runtime/index.js';
import { IsolateIsolation } from './runtime/isolate/index.js';
import { MicroVmIsolation } from './runtime/microvm/index.js';
import { NodeRuntime } from './runtime/node/index.js';
import { guestDir, PACKAGE_ROOT } from './runtime/paths.js';
import { ProcessIsolation } from './runtime/process/index.js';
import { PythonRuntime } from './runtime/python/index.js';
import { SandboxIsolation } from './runtime/sandbox/index.js';
import { WasmRuntime, wasmHostKind } from './runtime/wasm/index.js';
import { createScalingPolicy, createScheduler, type HostCallHandler } from './scheduler/index.js';
import { dashboardAccess, guardAsync, guardEvents, guardLambda, guardMount } from './security/http.js';
import { isLoopbackHost, Security, type SecurityStore } from './security/index.js';
import { createStateCalls, createStateStore, redisUrlFor } from './state/index.js';
import { createUiHandler } from './ui/index.js';

export interface RunningPlatform {
  readonly url: string;
  readonly port: number;
  readonly config: PlatformConfig;
  /** One-line notices for the person who started the platform (missing sandbox, runtimes). */
  readonly notices: readonly string[];
  /** The first admin key, made because auth is on and no key existed: shown once, stored hashed. */
  readonly firstKey?: string;
  /** Stops cleanly: drains (requests, triggers, brokers, the cluster), then tears down (guests, mounts, cgroups, stores). */
  close(): Promise<void>;
  /**
   * Stops at once, for a stop that took too long: gives up on draining and does only the tear-down (ends
   * the guests, unmounts, removes the cgroups, closes the stores). Resolves with what draining was waiting
   * for, or undefined when the tear-down had already begun. The process should exit after it: what was
   * given up on may still hold sockets and timers.
   */
  forceClose(): Promise<string | undefined>;
}

export async function startPlatform(
  config: PlatformConfig,
  output?: NodeJS.WritableStream,
): Promise<RunningPlatform> {
  // Secrets, the audit chain and SM4 invocations rest on SM4 and SM3: refuse to start without them (issue 13).
  assertCryptoSupport();
  const version = await packageVersion();
  const logger = createLogger(config.logLevel, output);
  const notices: string[] = [];
  // Read first: a missing or bad certificate stops the start with one line, before anything is started.
  const tls =
    config.tls === undefined
      ? undefined
      : new TlsReloader(config.tls, {
          reloaded: (message) => logger.info(message),
          failed: (message) => logger.warn(message),
        });
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const runDir = join(config.dataDir, 'run');
  // Uploads and builds interrupted by a crash left their scratch dirs here; nothing in it outlives a run.
  await rm(join(config.dataDir, 'tmp'), { recursive: true, force: true });

  // Cluster mode (issue 12) keeps functions, versions, code and keys in PostgreSQL, shared by every node;
  // the module is only loaded when asked for, so the embedded mode's start is unchanged.
  const cluster =
    config.cluster === undefined
      ? undefined
      : await (await import('./cluster/index.js')).Cluster.open(
          config.cluster,
          config.dataDir,
          config.events.breaker,
          (message) => logger.warn(message),
          config.events.async.concurrency,
        );
  const store: Store & SecurityStore = cluster?.store ?? new SqliteStore(join(config.dataDir, 'hearth.db'));
  // Secrets (issue 13): sealed in hearth.db under the master key; a rotation a crash interrupted is finished here.
  const keyring = new Keyring({
    keyFile: config.compliance.secrets.keyFile,
    envKey: process.env.HEARTH_MASTER_KEY,
  });
  // In cluster mode they rest in PostgreSQL, sealed under the master key every node must share: a key
  // this node made in its own data directory is refused for sealing (the others could not open it).
  const ownKey =
    keyring.source !== '$HEARTH_MASTER_KEY' &&
    config.compliance.secrets.keyFile === resolve(join(config.dataDir, 'master.key'));
  const secrets = new SecretStore({
    ...(cluster === undefined
      ? { file: join(config.dataDir, 'hearth.db') }
      : {
          table: cluster.secretTable(),
          shared: {
            refusal: ownKey
              ? `cluster mode: this node's master key is its own (${keyring.source}), so the other nodes could not open what it seals`
              : undefined,
          },
        }),
    keyring,
    algorithm: config.compliance.secrets.algorithm,
  });
  if (keyring.created) logger.info(`created the master key file ${keyring.source} (0600)`);
  if (keyring.rotationPending) {
    const { resealed, keyId } = secrets.rotateKey();
    logger.info(
      `finished an interrupted master key rotation: ${resealed} secret(s) re-sealed under key ${keyId}`,
    );
  }
  // The audit log (issue 13): its own file, SM3-chained, with Ed25519 checkpoints and real-time sinks.
  const audit = new AuditLog({
    file: join(config.dataDir, 'audit.db'),
    signingKeyFile: config.compliance.audit.signingKeyFile,
    checkpointEvery: config.compliance.audit.checkpointEvery,
  });
  const auditSinks = config.compliance.audit.sinks.map(
    (sink) => new SinkRunner(audit, createSink(sink), (message) => logger.warn(message)),
  );
  for (const runner of auditSinks) runner.start();
  const stopAuditingInvocations = config.compliance.audit.invocations ? auditInvocations(audit) : undefined;
  for (const name of secrets.unreadable())
    notices.push(
      `secret ${name} is sealed under a master key that is not loaded; functions using it will not start`,
    );
  const logs = new LogStore({ file: join(config.dataDir, 'logs.db'), maxRecords: config.logRecords });
  const code = new CodeStore({ dataDir: config.dataDir, cacheBytes: config.codeCacheBytes });
  await code.init();
  // Container images (issue 17): blobs and rootfs dirs under images/, registry logins sealed with the secrets.
  const images = new ImageStore({ dataDir: config.dataDir });
  await images.open();
  const registryLogins = new RegistryCredentialStore(secrets);
  const layers = new LayerStore(
    config.dataDir,
    {
      timeoutMs: config.buildTimeoutMs,
      maxDiskBytes: config.buildMaxDiskBytes,
      memoryBytes: config.buildMemoryBytes,
      cpu: config.buildCpu,
    },
    // In a cluster a layer is built once: the node that builds it stores it in PostgreSQL, the others fetch it.
    cluster === undefined
      ? {}
      : {
          shared: cluster.layers,
          onObtained: ({ key, how, ms, archiveBytes }) =>
            logger.info(
              {
                layer: key,
                how,
                ms: Math.round(ms),
                ...(archiveBytes === undefined ? {} : { archiveBytes }),
              },
              how === 'built'
                ? `dependency layer ${key} built in ${(ms / 1000).toFixed(1)} s`
                : how === 'fetched'
                  ? `cluster: dependency layer ${key} fetched from the cluster store in ${(ms / 1000).toFixed(2)} s (${formatSize(archiveBytes ?? 0)})`
                  : `cluster: dependency layer ${key} stored for the other nodes in ${(ms / 1000).toFixed(2)} s (${formatSize(archiveBytes ?? 0)})`,
            ),
        },
  );
  await layers.init();
  // ctx.state: the embedded store, or Redis when state.redis.url is set (issue 5); an unreachable Redis
  // stops `hearth up` here, before anything is mounted or started.
  const state = await createStateStore({ dataDir: config.dataDir, redisUrl: config.observe.redisUrl }).catch(
    (error: unknown) => {
      logs.close();
      store.close();
      throw error;
    },
  );
  const stateCalls = createStateCalls(state);
  // Keys, roles, namespaces and quotas (issue 10). Late-bound to the scheduler, which it reads for quotas.
  let schedulerForQuotas: ReturnType<typeof createScheduler> | undefined;
  const security = new Security({
    store,
    exposed: !isLoopbackHost(config.host),
    usage: {
      functions: (namespace) => {
        const functions = store.listFunctions(namespace);
        return {
          names: new Set(functions.map((fn) => fn.name)),
          // Every retained version's code and image (by its compressed layers, issue 17) is kept, and can
          // be rolled back to: all of it counts.
          codeBytes: store.retainedCodeBytes(namespace),
        };
      },
      instances: (namespace) => {
        let instances = 0;
        let memoryBytes = 0;
        for (const fn of store.listFunctions(namespace)) {
          const ref = { namespace, name: fn.name };
          const status = schedulerForQuotas?.status(ref);
          if (status === undefined) continue;
          const count = status.starting + status.instances.filter((i) => i.state !== 'stopped').length;
          instances += count;
          memoryBytes += count * (schedulerForQuotas?.lookup(ref)?.spec.limits.memoryBytes ?? 0);
        }
        // A deploy's verify instance counts too, before a pool takes it.
        const preparing = schedulerForQuotas?.preparing(namespace);
        return {
          instances: instances + (preparing?.instances ?? 0),
          memoryBytes: memoryBytes + (preparing?.memoryBytes ?? 0),
        };
      },
    },
    audit: (fields, message) => logger.info({ audit: 'security', ...fields }, message),
  });
  security.releasedBytes = (ref) => store.codeBytesReleasedByNext(ref);
  // The audit log's "who" (issue 13's seam): the id of the key or token's key, never the credential.
  setKeyIdentity((request) => {
    try {
      return security.authenticate(request.headers.authorization)?.keyId;
    } catch {
      return undefined;
    }
  });

  const runtimes = new Map<RuntimeName, Runtime>([
    ['node20', new NodeRuntime()],
    ['python3', new PythonRuntime(config.python)],
    ['wasm', new WasmRuntime()],
    ['provided', createProvidedRuntime()],
    ['image', createImageRuntime()],
  ]);
  const sandbox = new SandboxIsolation({
    stateDir: join(runDir, 'sandbox'),
    forkServers: config.forkServer,
    ...(config.platformCpuCgroup === undefined ? {} : { platformCpuCgroup: config.platformCpuCgroup }),
  });
  // Its boot image holds the Node and Python interpreters and guests (built once per content hash, the same
  // list scripts/microvm-image.mjs builds ahead for the tests).
  const microvm = new MicroVmIsolation({
    stateDir: join(runDir, 'microvm'),
    launches: [...runtimes.values()]
      .filter(
        (runtime) =>
          runtime.unavailable === undefined && (runtime.name === 'node20' || runtime.name === 'python3'),
      )
      .map((runtime) => runtime.launchSpec()),
  });
  const containers = new ContainerIsolation({
    stateDir: join(runDir, 'containers'),
    ...(config.containerRuntime === undefined ? {} : { ociRuntime: config.containerRuntime }),
  });
  // `egress: allow` in a namespace of its own needs what an allow-list needs (root, slirp4netns); without
  // it, the host's network, and `hearth up` says so.
  const allowNetwork: AllowNetwork =
    config.egressAllow === 'outbound' && sandbox.filteredUnavailable === undefined ? 'outbound' : 'host';
  const isolations = new Map<IsolationName, Isolation>([
    ['sandbox', sandbox],
    ['process', new ProcessIsolation()],
    ['microvm', microvm],
    ['container', containers],
  ]);
  // Sandboxes of a run that was killed (SIGKILL) outlive it in their cgroups: end them before starting any.
  const leftovers = await sandbox.init();
  if (leftovers > 0) logger.info(`removed ${leftovers} sandbox cgroup(s) left by a previous run`);
  if (sandbox.cpuSharing !== undefined) logger.info(`sharing the CPU: ${sandbox.cpuSharing}`);
  const vmLeftovers = await microvm.init();
  if (vmLeftovers > 0) logger.info(`removed ${vmLeftovers} microVM cgroup(s) left by a previous run`);
  if (microvm.unavailable !== undefined) notices.push(`microvm unavailable: ${microvm.unavailable}`);
  else logger.info(`microVMs: ${microvm.walls.map((wall) => `${wall.wall} (${wall.detail})`).join(', ')}`);
  if (containers.unavailable !== undefined)
    notices.push(`container functions unavailable: ${containers.unavailable}`);
  const containerLeftovers = await containers.init();
  if (containerLeftovers > 0)
    logger.info(`removed ${containerLeftovers} container cgroup(s) left by a previous run`);
  if (sandbox.unavailable !== undefined)
    notices.push(`sandbox unavailable: ${sandbox.unavailable}; sandboxed functions are refused`);
  else {
    const walls = sandbox.walls;
    const held = walls.filter((wall) => wall.inForce);
    logger.info(
      `sandbox walls in force: ${held.length === 0 ? 'none' : held.map((wall) => `${wall.wall} (${wall.detail})`).join(', ')}`,
    );
    for (const wall of walls)
      if (!wall.inForce) notices.push(`sandbox wall not in force: ${wall.wall}: ${wall.detail}`);
    if (sandbox.filteredUnavailable !== undefined) {
      notices.push(
        `dependency builds share the host's network, as their confinement to the package registries works like an egress allow-list: ${sandbox.filteredUnavailable}`,
      );
      if (config.egressAllow === 'outbound')
        notices.push(
          `egress: allow shares the host's network, loopback included, as its own namespace works like an egress allow-list: ${sandbox.filteredUnavailable}`,
        );
    }
  }
  for (const runtime of runtimes.values())
    if (runtime.unavailable !== undefined)
      notices.push(`${runtime.name} unavailable: ${runtime.unavailable}`);
  const slots = await createSlotManager(join(runDir, 'slots'), { allowMount: true });
  // Many functions of one namespace per sandboxed process, one V8 isolate each (issue 11, density).
  const isolates = new IsolateIsolation({
    confine: sandbox,
    slots,
    hostMemoryBytes: config.isolateHostMemoryBytes,
    onWarning: (message) => logger.warn(message),
    // runtime: wasm with isolation: isolate: one wasm host per namespace, modules compiled once by hash.
    kinds: new Map([[guestDir('wasm'), wasmHostKind()]]),
  });
  isolations.set('isolate', isolates);
  if (isolates.unavailable !== undefined)
    logger.info(`isolation isolate unavailable: ${isolates.unavailable}`);
  // Metrics, traces, alerts and Loki; built once the scheduler exists (they read its status).
  let observability: Observability | undefined;

  // Calls from inside functions: ctx.invoke goes back through the scheduler (late-bound: it needs it).
  let functionCalls: ReturnType<typeof createFunctionCalls> | undefined;
  // ctx.events and ctx.emit (issue 20) are answered by the event gateway, built later.
  let eventCalls: HostCallHandler | undefined;
  const hostCalls: HostCallHandler = (context, method, args) => {
    if (method === 'invoke' && functionCalls !== undefined) return functionCalls(context, args);
    if ((method === 'emit' || method.startsWith('events.')) && eventCalls !== undefined)
      return eventCalls(context, method, args);
    if (method.startsWith('state.')) return stateCalls(context.ref, method, args);
    return Promise.reject(
      new HearthError('HEARTH_E_UNSUPPORTED', `${method} is not available in this Hearth version`),
    );
  };
  const scheduler = createScheduler({
    hostCalls,
    runtimes,
    isolations,
    slots,
    code: {
      checkoutCode: (hash) => code.checkoutCode(hash),
      layerDir: (key) => layers.dir(key),
      checkoutLayer: (key) => layers.checkout(key),
    },
    logs: {
      write: (record) => {
        logs.write(record);
        observability?.shipLog?.(record);
      },
    },
    bindEnv: (deployed) => ({
      ...platformEnv(deployed, config.observe.redisUrl, allowNetwork),
      ...secrets.bindEnv(deployed.ref.namespace, deployed.manifest.spec.secrets),
      ...secrets.encryptionEnv(deployed.ref.namespace, deployed.manifest.spec.encryption),
    }),
    policy: createScalingPolicy(config.autoscaler.policy, config.autoscaler),
    autoscaler: config.autoscaler,
    maxMemoryBytes: config.maxMemoryBytes,
    memoryOvercommit: config.memoryOvercommit,
    stemCells: config.stemCells,
    stemCellFloor: config.stemCellFloor,
    allowNetwork,
    maxInstances: config.maxInstances,
    queueLimit: config.queueLimit,
    queueTimeoutMs: config.events.queueMaxWaitMs,
    breaker: config.events.breaker,
    admit: (version) => security.admitInstance(version),
    onWarning: (message) => logger.warn(message),
  });
  schedulerForQuotas = scheduler;
  const onInstance = (message: unknown): void => {
    const event = message as InstanceEvent;
    const phases =
      event.phases === undefined
        ? ''
        : ` (${Object.entries(event.phases)
            .map(([name, ms]) => `${name} ${ms.toFixed(1)}ms`)
            .join(', ')})`;
    const detail =
      event.startMs === undefined
        ? event.reason
        : `${event.reason}, ready in ${event.startMs.toFixed(1)}ms${phases}`;
    logs.write({
      ref: event.ref,
      version: event.version,
      instanceId: event.instanceId || '-',
      invocationId: undefined,
      stream: 'system',
      text: `instance ${event.phase}: ${detail}\n`,
    });
    logger.info(
      {
        function: `${event.ref.namespace}/${event.ref.name}`,
        version: event.version,
        instance: event.instanceId,
        phase: event.phase,
        reason: event.reason,
        startMs: event.startMs,
        phases: event.phases,
      },
      `instance ${event.phase}`,
    );
  };
  subscribe('hearth:instance', onInstance);
  // Every scaling decision the scheduler acts on: the platform log, and the function's own log stream.
  const onScaling = (message: unknown): void => {
    const event = message as ScalingEvent;
    if (event.kind === 'stem-cells') {
      const { kind: _, ...fields } = event;
      logger.info(
        fields,
        `stem cells ${event.runtime}/${event.isolation}/${event.network}: ${event.from} → ${event.to}`,
      );
      return;
    }
    logs.write({
      ref: event.ref,
      version: event.version,
      instanceId: '-',
      invocationId: undefined,
      stream: 'system',
      text: `scaling ${event.action}: ${event.from} → ${event.to} instances (desired ${event.desired}, ${event.mode}): ${event.reason}\n`,
    });
    const { kind: _, ref, ...fields } = event;
    logger.info({ function: `${ref.namespace}/${ref.name}`, ...fields }, `scaling ${event.action}`);
  };
  subscribe('hearth:scaling', onScaling);
  functionCalls = createFunctionCalls(scheduler, (caller, target) => security.checkCall(caller, target));
  observability = startObservability({
    ...config.observe,
    version,
    scheduler,
    onWarning: (message) => logger.warn(message),
    logger,
  });
  const ui = createUiHandler({
    version,
    functions: () => store.listFunctions().map((fn) => ({ namespace: fn.namespace, name: fn.name })),
    lookup: (ref) => scheduler.lookup(ref),
    stemCells: () => scheduler.stemCellStats(),
    logs,
    telemetry: observability.telemetry,
    metrics: observability.metrics,
    alerts: observability.alerts,
    auditSinks: () =>
      auditSinks.map((runner) => ({
        name: runner.sink.name,
        lag: runner.lag,
        lastError: runner.lastError ?? null,
      })),
  });
  const metricsRoute = observability.metrics?.handler;
  observability.metrics?.addGauge(
    'hearth_audit_sink_lag',
    'Audit records appended but not yet delivered to the sink',
    ['sink'],
    (set) => {
      for (const runner of auditSinks) set({ sink: runner.sink.name }, runner.lag);
    },
  );

  for (const fn of store.listFunctions()) scheduler.activate(toDeployed(fn.active));

  // The port once listening (config.port may be 0): an egress allow-list may not name it.
  let listeningPort = config.port;
  // Traffic control, the durable queue, async invocations, triggers and EventGateways (issue 3).
  const events = createEventGateway({
    config: config.events,
    dataDir: config.dataDir,
    host: config.host,
    store,
    scheduler,
    logger,
    onInternal: (error) => logger.error({ err: error }, 'internal error'),
    tls,
    claims:
      cluster === undefined
        ? undefined
        : {
            claim: (key) => cluster.store.claimLease(key, cluster.nodeId),
            renew: (key) => cluster.store.renewLease(key, cluster.nodeId),
            renewEveryMs: cluster.store.renewEveryMs,
            done: (key) => cluster.store.claimDone(key),
          },
    sharedQueue: cluster?.queue,
    nodeId: cluster?.nodeId,
    lostNodes: cluster?.lostNodes,
  });
  eventCalls = events.hostCalls;
  const deployer = new Deployer({
    store,
    code,
    layers,
    scheduler: events.observedScheduler,
    runtimes,
    isolations,
    limits: config.upload,
    tmpDir: join(config.dataDir, 'tmp'),
    localImageDirs: config.localImageDirs,
    admit: (candidates) => security.admitDeploy(candidates),
    egressTenancy: {
      platformPorts: () => [listeningPort, ...events.listenerPorts()],
      functions: () => store.listFunctions().map((fn) => ({ namespace: fn.namespace, name: fn.name })),
    },
    checkPackage: async (ref, dir) => {
      const trusted = config.compliance.signing.trustedKeys(ref.namespace);
      return trusted.length === 0 ? undefined : verifyPackage(dir, trusted);
    },
    images: {
      resolve: async (namespace, reference, onProgress, beforePull) => {
        const parsed = parseReference(reference);
        const outcome = await images.resolve(reference, {
          scope: namespace,
          beforePull,
          credentials:
            parsed.kind === 'registry' ? registryLogins.get(namespace, parsed.registry) : undefined,
          onProgress: (progress) => onProgress(describeProgress(progress)),
        });
        const { image, pulledBytes, reusedBytes, pulledLayers, reusedLayers } = outcome;
        logger.info(
          {
            image: reference,
            manifestDigest: image.manifestDigest,
            pulledBytes,
            reusedBytes,
            pulledLayers,
            reusedLayers,
          },
          'image resolved',
        );
        onProgress(
          `pulled ${formatSize(pulledBytes)} (${pulledLayers} layer(s)), reused ${formatSize(reusedBytes)} (${reusedLayers} layer(s)) already on this node`,
        );
        return image;
      },
    },
  });
  const onInternal = (error: unknown): void => logger.error({ err: error }, 'internal error');
  const api = createControlApi(
    {
      store,
      // In a cluster, a deploy answers once every live node serves the new version.
      deployer:
        cluster === undefined ? deployer : cluster.followDeploys(deployer, (message) => logger.warn(message)),
      scheduler,
      logs,
      onInternal,
      events: events.api,
      walls: sandbox.walls,
      microvmWalls: microvm.walls,
      security,
      images: {
        importArchive: async (namespace, archive, name) => {
          const outcome = await images.importArchive(archive, name, namespace);
          logger.info(
            { image: outcome.image.reference, storedBytes: outcome.pulledBytes, namespace },
            'image archive imported',
          );
          return {
            reference: outcome.image.reference,
            manifestDigest: outcome.image.manifestDigest,
            sizeBytes: outcome.image.sizeBytes,
            storedBytes: outcome.pulledBytes,
          };
        },
        checkLogin: (registry, credentials) => images.checkLogin(registry, credentials),
        logins: registryLogins,
      },
      compliance: {
        secrets,
        audit,
        sinks: auditSinks,
        recordRequest: (request, response, action) => recordRequest(audit, request, response, action),
        recordRefused: (request, status, reason) => recordRefusedLogin(audit, request, status, reason),
      },
      ...(cluster === undefined
        ? {}
        : {
            clusterLogs: {
              nodeId: cluster.nodeId,
              fetchPeers: (pathAndQuery, authorization) => cluster.fetchPeerLogs(pathAndQuery, authorization),
              followPeers: (pathAndQuery, authorization, onRecord, onLost) =>
                cluster.followPeerLogs(pathAndQuery, authorization, onRecord, onLost),
            },
          }),
    },
    version,
  );
  const health = (): HealthResponse => ({
    status: 'ok',
    version,
    sandbox: {
      available: sandbox.unavailable === undefined,
      reason: sandbox.unavailable ?? null,
      codeBinding: slots.strategy,
    },
    runtimes: Object.fromEntries(
      [...runtimes.values()].map((r) => [
        r.name,
        { available: r.unavailable === undefined, reason: r.unavailable ?? null },
      ]),
    ),
    functions: store.listFunctions().length,
    instances: scheduler.instanceCount(),
    stemCells: scheduler.stemCellStats(),
  });
  // Readiness (issue 11): the store is open by now; the stem-cell pools and the examples come after listen.
  const readiness = { store: true, stemCells: false, examples: !config.examples };
  const ready = (): { ready: boolean; body: ReadinessResponse } => {
    const waitingFor = (['store', 'stemCells', 'examples'] as const).filter((check) => !readiness[check]);
    return {
      ready: waitingFor.length === 0,
      body: { status: waitingFor.length === 0 ? 'ready' : 'starting', checks: { ...readiness }, waitingFor },
    };
  };
  const gateway = createGatewayHandler({
    scheduler,
    api,
    health,
    readiness: ready,
    onInternal,
    traffic: events.traffic,
    asyncRoute: guardAsync(security, events.asyncRoute, {
      lookup: (ref) => scheduler.lookup(ref),
      functionsOf: (namespace) => store.listFunctions(namespace),
      queued: async (ref, limit) => (await events.queue.list({ state: 'queued', ref, limit })).length,
    }),
    eventsRoute: guardEvents(security, events.eventsRoute, someProtected(store, security)),
    lambdaRoute: guardLambda(
      security,
      (ref) => scheduler.lookup(ref),
      createLambdaApi({
        scheduler,
        queue: events.queue,
        retry: config.events.async.retry,
        onAccepted: () => events.api.notifyQueue(),
        // An invocation writes few lines; 200 is far past the 4 KB that `X-Amz-Log-Result` keeps.
        invocationLogs: (ref, invocationId) =>
          logs
            .query({ namespace: ref.namespace, function: ref.name, invocationId, limit: 200 })
            .map((record) => record.message),
        traffic: events.traffic,
        onInternal,
      }),
      onInternal,
    ),
    serverTiming: config.observe.serverTiming,
    guard: security,
    ...(cluster === undefined ? {} : { forwarder: cluster.forwarder }),
    mounts: [
      // /metrics stays open on loopback (a local Prometheus); beyond it, it needs `read` on every namespace.
      ...(metricsRoute === undefined
        ? []
        : [
            {
              prefix: '/metrics',
              handler: isLoopbackHost(config.host)
                ? metricsRoute
                : guardMount(security, metricsRoute, () => ['read', undefined]),
            },
          ]),
      { prefix: '/ui', handler: guardMount(security, ui, dashboardAccess) },
      ...(cluster === undefined
        ? []
        : [
            { prefix: '/cluster', handler: guardMount(security, cluster.handler, () => ['read', undefined]) },
          ]),
    ],
  });
  // What a stop never skips, and what a start that cannot listen undoes (see `close` and `forceClose`).
  const tearDown = async (): Promise<void> => {
    unsubscribe('hearth:instance', onInstance);
    unsubscribe('hearth:scaling', onScaling);
    // Ends every guest still running (closeWalls kills what is left in the cgroups) before unmounting.
    await slots.close();
    await sandbox.closeWalls();
    await microvm.closeWalls();
    await containers.closeWalls();
    sandbox.close();
    logs.close();
    secrets.close();
    stopAuditingInvocations?.();
    audit.close();
    store.close();
    tls?.close();
    logger.flush();
  };
  const server = createGatewayServer(gateway.handle, gateway.invoke, tls);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (error) {
    await cluster?.leave();
    await events.close();
    await scheduler.close();
    await isolates.close();
    await observability.close();
    await state.close();
    await tearDown();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `port ${config.port} on ${config.host} is already in use (is another hearth up running? choose one with --port)`,
      );
    }
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
      throw new HearthError('HEARTH_E_VALIDATION', `--host ${config.host} is not an address of this machine`);
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  listeningPort = port;
  await events.start(port);
  const url = `${tls === undefined ? 'http' : 'https'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  await cluster?.join({
    scheduler: events.observedScheduler,
    code,
    hasLayer: (key) => layers.has(key),
    fetchLayer: (key) => layers.fetchShared(key),
    shareLayers: (held) => layers.shareHeld(held),
    toDeployed,
    url,
    restored: store.listFunctions().map((fn) => ({ namespace: fn.namespace, name: fn.name })),
    info: (message) => logger.info(message),
    warn: (message) => logger.warn(message),
    reloadSecurity: () => security.reload(),
    followGateways: () => events.api.gateways.follow(),
  });
  logger.info(
    { url, dataDir: config.dataDir, sandbox: sandbox.unavailable === undefined, codeBinding: slots.strategy },
    'hearth listening',
  );
  const floor = config.stemCellFloor;
  const floorMemory =
    floor.memoryBytes >= 1024 ** 3
      ? `${(floor.memoryBytes / 1024 ** 3).toFixed(1)} GiB`
      : `${Math.round(floor.memoryBytes / 1024 ** 2)} MiB`;
  logger.info(
    { stemCells: config.stemCells, stemCellFloor: { ...floor, memory: floorMemory } },
    floor.perIdleFunction > 0
      ? `stem cells: ${floor.perIdleFunction} kept ready per deployed function without an instance, up to ${floorMemory} for all pools (stemCellFloor), booted at the least CPU weight`
      : 'stem cells: no floor from deployed functions (stemCellFloor.perIdleFunction 0)',
  );

  const warming = scheduler
    .warm()
    .catch((error: unknown) => logger.warn({ err: error }, 'stem cells failed to warm'))
    .finally(() => {
      // Started, even if a start failed: the pools refill in the background and a take falls back to a spawn.
      readiness.stemCells = true;
    });
  if (config.examples)
    await deployExamples(deployer, sandbox.unavailable !== undefined, notices, (message) =>
      logger.warn(message),
    );
  readiness.examples = true;
  // `hearth ready` (and `hearth up`'s "listening" line, printed when this returns) only once /readyz says so.
  await warming;
  for (const notice of notices) logger.warn(notice);
  const firstKey = security.ensureFirstKey();
  logger.info(
    { url, auth: security.enabled ? 'on' : 'off (loopback, no API key yet)' },
    security.enabled ? 'API auth on' : 'API auth off',
  );
  const gc = new GarbageCollector({
    store,
    code,
    layers,
    ...(cluster === undefined ? {} : { sharedLayers: cluster.layers }),
    images,
    graceMs: config.gc.graceMs,
    intervalMs: config.gc.intervalMs,
    onCollected: (collected) =>
      logger.info({ ...collected, freed: formatBytes(collected.freedBytes) }, 'garbage collected'),
    onError: (error) => logger.warn({ err: error }, 'garbage collection failed'),
  });
  gc.start();
  logger.info({ url, functions: store.listFunctions().length }, 'hearth ready');

  // Stopping comes in two parts. Draining waits on others (requests in flight, brokers, the cluster) and may
  // be given up on (`forceClose`: the stop deadline, a second Ctrl-C); tearing down ends the guests,
  // unmounts, removes the cgroups and closes the stores, and is never skipped.
  let draining: Promise<void> | undefined;
  let tearingDown: Promise<void> | undefined;
  /** What draining waits for now, for the line saying what a forced stop gave up on. */
  let waitingFor: string | undefined;
  let forced = false;
  const drain = async (): Promise<void> => {
    const step = async (what: string, work: () => Promise<unknown> | unknown): Promise<void> => {
      if (forced) return;
      waitingFor = what;
      await work();
    };
    server.close();
    server.closeAllConnections();
    // Out of the cluster first: its peers stop counting on this node; the store closes last, as ever.
    await step('the cluster to let this node go', () => cluster?.leave());
    await step('the garbage collector', () => gc.stop());
    await step('the stem cells still starting', () => warming);
    await step('the triggers and event sources to stop (brokers, deliveries in flight)', () =>
      events.close(),
    );
    await step('the instances to finish their requests', () => scheduler.close());
    await step('the isolates to finish', () => isolates.close());
    await step('the telemetry exporters', () => observability?.close());
    await step('the state store', () => state.close());
    await step('the audit sinks', () => Promise.all(auditSinks.map((runner) => runner.stop())));
    await step('the cluster layer store', () => cluster?.layers.close());
    waitingFor = undefined;
  };
  return {
    url,
    port,
    config,
    notices,
    ...(firstKey === undefined ? {} : { firstKey }),
    close: () => {
      draining ??= drain();
      return draining.then(() => {
        tearingDown ??= tearDown();
        return tearingDown;
      });
    },
    forceClose: async () => {
      const gaveUpOn = tearingDown === undefined ? (waitingFor ?? 'the stop to begin') : undefined;
      forced = true;
      server.close();
      server.closeAllConnections();
      if (tearingDown === undefined) {
        // No new instances or stem cells from here (a killed one is replaced otherwise, in a cgroup made
        // after closeWalls looked); its instances get their usual second to end, and are killed after.
        const bound = new AbortController();
        // Aborted once the race is over, so that no timer outlives a forced stop.
        await Promise.race([
          scheduler.close(),
          sleepFor(SCHEDULER_STOP_MS, undefined, { signal: bound.signal }).catch(() => undefined),
        ]);
        bound.abort();
      }
      tearingDown ??= tearDown();
      await tearingDown;
      return gaveUpOn;
    },
  };
}

/** How long a forced stop lets the scheduler end its instances before the walls' removal kills them. */
const SCHEDULER_STOP_MS = 2000;

/**
 * Whether some function may need a key or JWT, for /events: one restored at start, one released since
 * (noted before it goes live, and kept until a restart), or a namespace requiring keys.
 */
function someProtected(store: Store, security: Security): () => boolean {
  const atStart = store.listFunctions().some((fn) => (fn.active.manifest.spec.auth ?? 'public') !== 'public');
  return () => atStart || security.protectedReleased || security.keysRequiredSomewhere;
}

/** What the platform adds to every function's environment (the function's own env wins). */
function platformEnv(
  deployed: DeployedVersion,
  redisUrl: string | undefined,
  allowNetwork: AllowNetwork,
): Readonly<Record<string, string>> {
  const url =
    redisUrl === undefined
      ? undefined
      : redisUrlFor(
          redisUrl,
          deployed.spec.egress,
          deployed.spec.isolation === 'sandbox' ? allowNetwork : 'host',
        );
  return url === undefined ? {} : { REDIS_URL: url };
}

export function toDeployed(stored: StoredVersion): DeployedVersion {
  return {
    ref: { namespace: stored.namespace, name: stored.name },
    version: stored.version,
    spec: resolveSpec(stored.manifest.spec),
    manifest: stored.manifest,
    code: { hash: stored.codeHash, files: stored.codeFiles, bytes: stored.codeBytes },
    deps:
      stored.depsKey === null || stored.depsMount === null
        ? undefined
        : { key: stored.depsKey, mountName: stored.depsMount },
    ...(stored.image === null ? {} : { image: stored.image }),
    createdAt: stored.createdAt,
  };
}

/** Deploys `examples/*` (unchanged ones are no-ops). Without a sandbox they run as `process`, said aloud. */
async function deployExamples(
  deployer: Deployer,
  noSandbox: boolean,
  notices: string[],
  warn: (message: string) => void,
): Promise<void> {
  const examplesDir = join(PACKAGE_ROOT, 'examples');
  const folders = await readdir(examplesDir, { withFileTypes: true }).catch(() => []);
  for (const folder of folders) {
    // A folder without a manifest is not a function (examples/wasm holds sources to build first).
    if (!folder.isDirectory() || !existsSync(join(examplesDir, folder.name, MANIFEST_FILE))) continue;
    try {
      await deployer.deployFolder(
        { namespace: 'default', name: folder.name },
        join(examplesDir, folder.name),
        () => {},
        {
          adjust: (manifest) =>
            noSandbox ? { ...manifest, spec: { ...manifest.spec, isolation: 'process' } } : manifest,
        },
      );
    } catch (error) {
      warn(`example ${folder.name} was not deployed: ${(error as Error).message}`);
    }
  }
  if (noSandbox && folders.length > 0)
    notices.push(
      'bundled examples run with isolation: process (not sandboxed) until bubblewrap is installed',
    );
}

async function packageVersion(): Promise<string> {
  const manifest = JSON.parse(await readFile(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}
