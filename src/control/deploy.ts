/**
 * @module Deploying a function version: unpack → store the code (content-addressed) → build or reuse the
 * dependency layer → prove the handler loads in a real instance → record and activate atomically.
 * Any failure leaves the previous version serving and nothing half-applied.
 */

import { randomUUID } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { DeployedVersion } from '../domain/deployment.js';
import { errorBody, HearthError, isHearthError } from '../domain/errors.js';
import {
  type FunctionManifest,
  type FunctionRef,
  functionKey,
  type IsolationName,
  parseFunctionManifest,
  type RuntimeName,
  resolveSpec,
} from '../domain/function.js';
import type { ResolvedImage } from '../domain/image.js';
import { LOCAL_IMAGE_PREFIX, resolveLocalImage } from '../runtime/container/local-image.js';
import { ISOLATE_MAX_BODY_BYTES, type Isolation, type Runtime } from '../runtime/index.js';
import type { Instance, Scheduler } from '../scheduler/index.js';
import type { DeployCandidate } from '../security/index.js';
import type { DeployEvent, DeploymentSummary, DeployPhase } from './api/types.js';
import { formatBytes, type LayerStore } from './build/index.js';
import { checkEgressTenancy, type EgressTenancy } from './egress-check.js';
import { type CodeStore, receiveArchive, runArchiveJob, type UnpackLimits } from './packages/index.js';
import type { Store, StoredDeployment, StoredFunction, StoredVersion } from './store/index.js';

export const MANIFEST_FILE = 'hearth.yaml';
const CODE_EXCLUDES: ReadonlySet<string> = new Set([MANIFEST_FILE]);
/** Real manifests are a few KiB; YAML parsing grows faster than its input (see yaml-file.ts). */
export const MAX_MANIFEST_BYTES = 64 * 1024;

export interface DeployerOptions {
  readonly store: Store;
  readonly code: CodeStore;
  readonly layers: LayerStore;
  readonly scheduler: Scheduler;
  readonly runtimes: ReadonlyMap<RuntimeName, Runtime>;
  readonly isolations: ReadonlyMap<IsolationName, Isolation>;
  readonly limits: UnpackLimits;
  readonly tmpDir: string;
  /** Namespace quotas and auth policy (src/security): throws to refuse versions about to be released. */
  readonly admit?: (candidates: readonly DeployCandidate[]) => void;
  /** What an egress allow-list may not name (the platform's ports, other tenants' functions). */
  readonly egressTenancy?: EgressTenancy;
  /**
   * Checks an unpacked package before anything is built from it (signed packages, issue 13): resolves
   * with the signer's key id, undefined when no signature is required, or throws the refusal.
   */
  readonly checkPackage?: (ref: FunctionRef, dir: string) => Promise<string | undefined>;
  /**
   * Pulls or finds a `runtime: image` function's image (issue 17; src/images with the namespace's registry
   * credentials): verified, unpacked, its manifest digest what the version pins.
   */
  readonly images?: DeployImages;
  /**
   * Whether `spec.image: dir:/PATH` (a rootfs folder on this node) is taken: off by default, since it runs a
   * host directory chosen by the deployer; on for development and tests (`images.localDirs`).
   */
  readonly localImageDirs?: boolean;
}

/** The deployer's view of the image store: what `spec.image` resolves to, with progress. */
export interface DeployImages {
  /** `beforePull` is told the image's size before any layer is fetched, and throws to refuse it. */
  resolve(
    namespace: string,
    reference: string,
    onProgress: (message: string) => void,
    beforePull: (sizeBytes: number) => void,
  ): Promise<ResolvedImage>;
}

export type DeployListener = (event: DeployEvent) => void;

export interface DeployOutcome {
  readonly version: StoredVersion;
  readonly deployment: DeploymentSummary;
  /** True when code and spec matched the active version, so nothing changed. */
  readonly unchanged: boolean;
}

/** A version ready to release: validated, its code stored and its dependency layer built. */
export interface PreparedVersion {
  readonly ref: FunctionRef;
  readonly manifest: FunctionManifest;
  readonly code: DeployedVersion['code'];
  readonly deps: DeployedVersion['deps'];
  /** The pulled image of a `runtime: image` function. */
  readonly image?: ResolvedImage | undefined;
}

/** A package uploaded for a later `POST /api/v1/apply`, which releases it together with the rest. */
export interface StagedPackage {
  readonly id: string;
  readonly prepared: PreparedVersion;
  readonly expiresAt: string;
}

/** Long enough for the CLI to upload every folder of a file, then apply them together. */
const STAGED_TTL_MS = 15 * 60_000;

/** Functions of one apply whose handlers are verified at once (each a cold start). */
const VERIFY_AT_ONCE = Math.max(2, availableParallelism());
/** Verified instances of one apply kept to serve as the functions' first warm instances; the rest stop. */
const KEEP_VERIFIED = 32;

/** How a batch release reports which of its items failed. */
export type ItemError = (index: number, error: unknown) => Error;

export interface DeployOptions {
  /** Start one instance to prove the handler loads before switching traffic (default true). */
  readonly verify?: boolean;
  /** Rewrites the manifest before validation (used to downgrade bundled examples' isolation). */
  readonly adjust?: (manifest: FunctionManifest) => FunctionManifest;
  /** Told the key id that signed the package, when signatures are required (for the audit log). */
  readonly onSigner?: (keyId: string) => void;
}

export class Deployer {
  /** One deploy per function at a time; later ones wait their turn, so the last one wins. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly staged = new Map<string, StagedPackage>();

  constructor(private readonly options: DeployerOptions) {}

  /** Deploys an uploaded tar.gz whose root holds hearth.yaml and the code. */
  deployArchive(
    ref: FunctionRef,
    archive: Readable,
    emit: DeployListener,
    options: DeployOptions = {},
  ): Promise<DeployOutcome> {
    return this.serialised(ref, async () => {
      const clock = new PhaseClock(emit);
      const deploymentId = this.options.store.startDeployment(ref);
      let tree: { dir: string; cleanup(): Promise<void> } | undefined;
      try {
        clock.begin('upload', 'receiving archive');
        tree = await receiveArchive(archive, this.options.tmpDir, this.options.limits);
        clock.end('unpack', 'archive unpacked');
        return await this.deployTree(ref, tree.dir, clock, deploymentId, options);
      } catch (error) {
        this.fail(deploymentId, clock, error);
        throw error;
      } finally {
        await tree?.cleanup();
      }
    });
  }

  /**
   * Receives, validates and stores an uploaded package, and builds its dependency layer, without releasing
   * it: `POST /api/v1/apply` releases it by id, together with the other documents of the file.
   */
  async stageArchive(ref: FunctionRef, archive: Readable, emit: DeployListener): Promise<StagedPackage> {
    const clock = new PhaseClock(emit);
    let tree: { dir: string; cleanup(): Promise<void> } | undefined;
    try {
      clock.begin('upload', 'receiving archive');
      tree = await receiveArchive(archive, this.options.tmpDir, this.options.limits);
      clock.end('unpack', 'archive unpacked');
      const prepared = await this.buildTree(ref, tree.dir, clock, {});
      const id = randomUUID();
      const staged = { id, prepared, expiresAt: new Date(Date.now() + STAGED_TTL_MS).toISOString() };
      this.staged.set(id, staged);
      setTimeout(() => this.staged.delete(id), STAGED_TTL_MS).unref();
      clock.note('activate', `staged as ${id}; apply releases it`);
      return staged;
    } finally {
      await tree?.cleanup();
    }
  }

  /** A staged package by id, or undefined when unknown or expired. Taking it happens at release. */
  stagedPackage(id: string): StagedPackage | undefined {
    return this.staged.get(id);
  }

  /** Forgets a staged package once released (its code stays in the code store, referenced by the version). */
  dropStaged(id: string): void {
    this.staged.delete(id);
  }

  /** Deploys a folder on this machine (the bundled examples). */
  deployFolder(
    ref: FunctionRef,
    folder: string,
    emit: DeployListener,
    options: DeployOptions = {},
  ): Promise<DeployOutcome> {
    return this.serialised(ref, async () => {
      const clock = new PhaseClock(emit);
      const deploymentId = this.options.store.startDeployment(ref);
      await mkdir(this.options.tmpDir, { recursive: true });
      const staging = await mkdtemp(join(this.options.tmpDir, 'folder-'));
      try {
        clock.begin('unpack', 'copying folder');
        await cp(folder, staging, { recursive: true });
        clock.end('unpack', 'folder copied');
        return await this.deployTree(ref, staging, clock, deploymentId, options);
      } catch (error) {
        this.fail(deploymentId, clock, error);
        throw error;
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    });
  }

  /** A config-only change (`apply` without source): a new version with the active version's code. */
  configure(ref: FunctionRef, input: unknown, emit: DeployListener = () => {}): Promise<DeployOutcome> {
    return this.serialised(ref, async () => {
      const current = this.existingFunction(ref);
      const clock = new PhaseClock(emit);
      const deploymentId = this.options.store.startDeployment(ref);
      try {
        const prepared = this.prepareConfigure(ref, input, current);
        return await this.release(prepared, clock, deploymentId, {});
      } catch (error) {
        this.fail(deploymentId, clock, error);
        throw error;
      }
    });
  }

  /**
   * Validates a config-only change against the function as it is, changing nothing. Call it inside
   * `exclusive` when the result is to be released.
   */
  prepareConfigure(
    ref: FunctionRef,
    input: unknown,
    current: StoredFunction = this.existingFunction(ref),
  ): PreparedVersion {
    const manifest = this.validate(ref, input, 'resource');
    const spec = resolveSpec(manifest.spec);
    const activeRuntime = resolveSpec(current.active.manifest.spec).runtime;
    if (spec.runtime !== activeRuntime) {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `spec.runtime: got "${spec.runtime}", expected "${activeRuntime}" (changing the runtime needs new code: deploy the folder)`,
        {
          details: {
            field: 'spec.runtime',
            value: spec.runtime,
            expected: activeRuntime,
          },
        },
      );
    }
    if (spec.image !== current.active.manifest.spec.image) {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `spec.image: got "${spec.image}", expected "${current.active.manifest.spec.image}" (a new image is pulled by a deploy: hearth deploy --image, or hearth apply, which uploads it)`,
        {
          details: { field: 'spec.image', value: spec.image, expected: current.active.manifest.spec.image },
        },
      );
    }
    return {
      ref,
      manifest,
      code: {
        hash: current.active.codeHash,
        files: current.active.codeFiles,
        bytes: current.active.codeBytes,
      },
      deps:
        current.active.depsKey === null || current.active.depsMount === null
          ? undefined
          : { key: current.active.depsKey, mountName: current.active.depsMount },
      image: current.active.image ?? undefined,
    };
  }

  /**
   * A Function document that takes its code (and dependency layer) from a package staged for another
   * document of the same apply: a file of many functions built from one folder uploads it once (issue 11:
   * a 1,000-document apply staged 1,000 identical packages, one request each).
   */
  prepareWithCode(ref: FunctionRef, input: unknown, code: PreparedVersion): PreparedVersion {
    const manifest = this.validate(ref, input, 'resource');
    const spec = resolveSpec(manifest.spec);
    const refuse = (field: string, value: string, expected: string, why: string): never => {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `${field}: got "${value}", expected "${expected}" (${why})`,
        {
          details: { field, value, expected },
        },
      );
    };
    const runtime = spec.runtime;
    const builtFor = code.manifest.spec.runtime ?? 'image';
    if (runtime !== builtFor) refuse('spec.runtime', runtime, builtFor, 'the staged code was built for it');
    // A dependency layer is built in, and for, one namespace: it is never handed to another.
    if (code.deps !== undefined && ref.namespace !== code.ref.namespace)
      refuse(
        'metadata.namespace',
        ref.namespace,
        code.ref.namespace,
        'the staged dependency layer belongs to it',
      );
    if (code.deps !== undefined && spec.isolation === 'isolate')
      refuse('spec.isolation', 'isolate', 'sandbox', 'isolate functions take no dependencies');
    return { ref, manifest, code: code.code, deps: code.deps };
  }

  /** True when releasing `prepared` would change nothing: the active version has this code and spec. */
  isUnchanged(prepared: PreparedVersion): boolean {
    const current = this.options.store.getFunction(prepared.ref);
    return (
      current !== undefined &&
      current.active.codeHash === prepared.code.hash &&
      (current.active.depsKey ?? undefined) === prepared.deps?.key &&
      current.active.image?.manifestDigest === prepared.image?.manifestDigest &&
      JSON.stringify(current.active.manifest) === JSON.stringify(prepared.manifest) &&
      this.options.scheduler.lookup(prepared.ref) !== undefined
    );
  }

  /**
   * Releases several versions as one change: each verified in a real instance, then every version (and the
   * caller's own writes, `alsoStore`) recorded in one store transaction, and only then activated. Any
   * failure stops the verified instances and records nothing but the failed deployments. Call it inside
   * `exclusive` for the same functions; unchanged items are left alone.
   */
  async releaseAll(
    items: readonly PreparedVersion[],
    alsoStore: () => void,
    itemError: ItemError,
  ): Promise<(DeployOutcome | undefined)[]> {
    const { store, scheduler } = this.options;
    const pending: {
      index: number;
      version: DeployedVersion;
      clock: PhaseClock;
      deploymentId: string;
      instance?: Instance;
    }[] = [];
    for (const [index, prepared] of items.entries()) {
      if (this.isUnchanged(prepared)) continue;
      pending.push({
        index,
        version: {
          ref: prepared.ref,
          version: store.nextVersion(prepared.ref),
          spec: resolveSpec(prepared.manifest.spec),
          manifest: prepared.manifest,
          code: prepared.code,
          deps: prepared.deps,
          ...(prepared.image === undefined ? {} : { image: prepared.image }),
          createdAt: new Date().toISOString(),
        },
        clock: new PhaseClock(() => {}),
        deploymentId: store.startDeployment(prepared.ref),
      });
    }
    const abandon = async (failedIndex: number, error: unknown): Promise<never> => {
      await Promise.all(pending.map((item) => item.instance?.stop()));
      for (const item of pending) this.fail(item.deploymentId, item.clock, error);
      throw itemError(failedIndex, error);
    };
    try {
      this.options.admit?.(
        pending.map((item) => ({
          ref: item.version.ref,
          codeBytes: item.version.code.bytes + (item.version.image?.sizeBytes ?? 0),
          spec: item.version.spec,
        })),
      );
    } catch (error) {
      await abandon(pending[0]?.index ?? 0, error);
    }
    // Verified a few at a time (a file of 1,000 functions was 1,000 cold starts in a row), and only the
    // first few verified instances are kept to become warm ones: a verified instance is not budgeted until
    // its version is activated, after the whole file, so holding every one would start 1,000 processes.
    let failure: { index: number; error: unknown } | undefined;
    let next = 0;
    let kept = 0;
    const verifyNext = async (): Promise<void> => {
      while (failure === undefined && next < pending.length) {
        const item = pending[next++] as (typeof pending)[number];
        try {
          if (!this.canVerify(item.version)) continue;
          item.clock.begin('verify', 'starting an instance to load the handler');
          const instance = await scheduler.prepare(item.version);
          item.clock.end('verify', `handler ${item.version.spec.handler} loaded`);
          if (kept < KEEP_VERIFIED) {
            kept += 1;
            item.instance = instance;
          } else await instance.stop();
        } catch (error) {
          failure ??= { index: item.index, error };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(VERIFY_AT_ONCE, pending.length) }, verifyNext));
    if (failure !== undefined) await abandon(failure.index, failure.error);
    let current = -1;
    try {
      store.transaction(() => {
        for (const item of pending) {
          current = item.index;
          const { manifest, code, deps, ref, version, image } = item.version;
          store.commitVersion(ref, version, {
            manifest,
            codeHash: code.hash,
            codeFiles: code.files,
            codeBytes: code.bytes,
            depsKey: deps?.key ?? null,
            depsMount: deps?.mountName ?? null,
            image: image ?? null,
          });
        }
        current = -1;
        alsoStore();
      });
    } catch (error) {
      await abandon(current, error);
    }
    const outcomes: (DeployOutcome | undefined)[] = items.map(() => undefined);
    for (const item of pending) {
      item.clock.begin('activate', 'switching traffic');
      scheduler.activate(item.version, item.instance);
      item.clock.end('activate', `version ${item.version.version} is serving`);
      const stored = store.getFunction(item.version.ref)?.active;
      if (stored === undefined) continue;
      outcomes[item.index] = {
        version: stored,
        deployment: this.finish(item.version.ref, item.deploymentId, item.clock, item.version.version),
        unchanged: false,
      };
    }
    return outcomes;
  }

  /** Runs `work` while no deploy of any of these functions can start (taken in one order: no deadlock). */
  exclusive<T>(refs: readonly FunctionRef[], work: () => Promise<T>): Promise<T> {
    const keys = [...new Set(refs.map(functionKey))].sort();
    const nest = (at: number): Promise<T> => {
      const key = keys[at];
      if (key === undefined) return work();
      const [namespace = '', name = ''] = key.split('/');
      return this.serialised({ namespace, name }, () => nest(at + 1));
    };
    return nest(0);
  }

  private existingFunction(ref: FunctionRef): StoredFunction {
    const current = this.options.store.getFunction(ref);
    if (current === undefined) {
      throw new HearthError(
        'HEARTH_E_FN_NOT_FOUND',
        `function ${ref.name} does not exist in namespace ${ref.namespace}; deploy its code first (give spec.source)`,
      );
    }
    return current;
  }

  async remove(ref: FunctionRef): Promise<boolean> {
    return this.serialised(ref, async () => {
      const existed = this.options.store.deleteFunction(ref);
      await this.options.scheduler.deactivate(ref);
      return existed;
    });
  }

  private async deployTree(
    ref: FunctionRef,
    dir: string,
    clock: PhaseClock,
    deploymentId: string,
    options: DeployOptions,
  ): Promise<DeployOutcome> {
    const prepared = await this.buildTree(ref, dir, clock, options);
    return this.release(prepared, clock, deploymentId, options);
  }

  /** Reads and validates the folder's manifest, stores its code and builds (or reuses) its layer. */
  private async buildTree(
    ref: FunctionRef,
    dir: string,
    clock: PhaseClock,
    options: DeployOptions,
  ): Promise<PreparedVersion> {
    const signer = await this.options.checkPackage?.(ref, dir);
    if (signer !== undefined) options.onSigner?.(signer);
    const parsed = await this.readManifest(dir);
    const manifest = this.validate(ref, parsed, MANIFEST_FILE, options.adjust);
    const spec = resolveSpec(manifest.spec);
    if (spec.image !== undefined) return this.prepareImage(ref, dir, manifest, spec.image, clock);
    const runtime = this.runtimeFor(spec.runtime);
    const isolation = this.isolationFor(spec.isolation);

    await runtime.checkCode?.(dir, spec);
    clock.begin('store', 'storing code');
    if (runtime.precompileCommand !== undefined) {
      const step = runtime.precompileCommand(dir);
      // Bytecode compiled now means no compile on each cold start (the guest's code dir is read-only).
      if (step !== undefined)
        await this.options.isolations
          .get('process')
          ?.run({ ...step, workDir: dir, cacheDir: dir, timeoutMs: 60_000, onOutput: () => {} });
    }

    const code = await this.options.code.put(dir, CODE_EXCLUDES);
    clock.end('store', `code ${code.hash.slice(0, 12)} (${code.files} files, ${formatSize(code.bytes)})`);

    let deps: DeployedVersion['deps'];
    const dependencyManifest = runtime.dependencyManifest(dir);
    if (dependencyManifest !== undefined && spec.isolation === 'isolate')
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `${MANIFEST_FILE}: spec.isolation: isolate runs the function's own files only; it cannot load npm dependencies (${dependencyManifest.files.join(', ')}): bundle them into the code, or use isolation: sandbox`,
        {
          details: { field: 'spec.isolation', value: 'isolate', expected: 'a function without dependencies' },
        },
      );
    if (dependencyManifest !== undefined) {
      clock.begin('dependencies', `installing dependencies from ${dependencyManifest.files.join(' + ')}`);
      const maxDisk = this.options.layers.maxDiskBytes;
      let reported = Number.NEGATIVE_INFINITY;
      const layer = await this.options.layers.ensure({
        runtime,
        isolation,
        sourceDir: dir,
        manifest: dependencyManifest,
        namespace: ref.namespace,
        scripts: spec.build.scripts,
        onOutput: (line) => clock.output('dependencies', line),
        // A long build says how far it is on disk now and then, so a cap it nears is no surprise.
        onDisk: (bytes) => {
          if (performance.now() - reported < DISK_REPORT_MS) return;
          reported = performance.now();
          clock.disk('dependencies', bytes, maxDisk);
        },
      });
      clock.end(
        'dependencies',
        layer.cached
          ? `dependency layer ${layer.key} reused (nothing installed)`
          : layer.fetched === true
            ? `dependency layer ${layer.key} fetched from the cluster in ${(layer.ms / 1000).toFixed(1)} s (another node built it; nothing installed)`
            : `dependency layer ${layer.key} built in ${(layer.ms / 1000).toFixed(1)} s (layer ${formatBytes(layer.layerBytes ?? 0)}, build disk ${formatBytes(layer.peakDiskBytes ?? 0)} of ${formatBytes(maxDisk)})`,
      );
      deps = { key: layer.key, mountName: dependencyManifest.mountName };
    }
    return { ref, manifest, code, deps };
  }

  /**
   * A `runtime: image` function: its folder holds only hearth.yaml (stored as an empty code tree, so versions
   * look alike to the rest of the platform); the image is pulled, verified and unpacked here, before anything
   * is released, so a failed pull leaves the previous version serving.
   */
  private async prepareImage(
    ref: FunctionRef,
    dir: string,
    manifest: FunctionManifest,
    reference: string,
    clock: PhaseClock,
  ): Promise<PreparedVersion> {
    const images = this.options.images;
    if (images === undefined)
      throw new HearthError('HEARTH_E_UNSUPPORTED', 'spec.image: this node has no image store', {
        details: { field: 'spec.image', value: reference, expected: 'a node with an image store' },
      });
    const code = await this.options.code.put(dir, CODE_EXCLUDES);
    clock.begin('image', `resolving image ${reference}`);
    if (reference.startsWith(LOCAL_IMAGE_PREFIX)) {
      const local = resolveLocalImage(reference);
      clock.end('image', `rootfs ${local.rootfs} on this node`);
      return { ref, manifest, code, deps: undefined, image: local };
    }
    const spec = resolveSpec(manifest.spec);
    // The namespace's quota is asked before any layer is fetched, and again (with the exact figure) at release.
    const image = await images.resolve(
      ref.namespace,
      reference,
      (message) => clock.output('image', message),
      (sizeBytes) => this.options.admit?.([{ ref, codeBytes: code.bytes + sizeBytes, spec }]),
    );
    clock.end(
      'image',
      `image ${image.manifestDigest.slice(0, 19)} ready (${formatSize(image.sizeBytes)} in layers, rootfs unpacked)`,
    );
    return { ref, manifest, code, deps: undefined, image };
  }

  /**
   * Whether a version can be proved in a real instance: an image function only once this node runs images
   * (a runtime named `image` is registered); until then it is released unverified, as `verify=false` does.
   */
  private canVerify(version: DeployedVersion): boolean {
    return version.spec.runtime !== 'image' || this.options.runtimes.has('image');
  }

  /** hearth.yaml, parsed in the archive worker within MAX_MANIFEST_BYTES and the unpack time bound. */
  private async readManifest(dir: string): Promise<unknown> {
    const timeoutMs = this.options.limits.unpackTimeoutMs;
    const file = await runArchiveJob(
      { kind: 'yaml', file: join(dir, MANIFEST_FILE), maxBytes: MAX_MANIFEST_BYTES },
      {
        ms: timeoutMs,
        error: () =>
          new HearthError(
            'HEARTH_E_VALIDATION',
            `${MANIFEST_FILE}: took longer than ${timeoutMs / 1000}s to parse (upload.unpackTimeout)`,
            { details: { field: MANIFEST_FILE, value: null, expected: 'a Function resource' } },
          ),
      },
    );
    switch (file.kind) {
      case 'parsed':
        return file.value;
      case 'missing':
        throw new HearthError(
          'HEARTH_E_VALIDATION',
          `${MANIFEST_FILE}: got nothing, expected a ${MANIFEST_FILE} at the root of the function folder`,
          { details: { field: MANIFEST_FILE, value: null, expected: 'a Function resource' } },
        );
      case 'tooLarge':
        throw new HearthError(
          'HEARTH_E_VALIDATION',
          `${MANIFEST_FILE}: got ${file.bytes} bytes, expected at most ${MAX_MANIFEST_BYTES} (a Function resource)`,
          {
            details: {
              field: MANIFEST_FILE,
              value: file.bytes,
              expected: `at most ${MAX_MANIFEST_BYTES} bytes`,
              limit: MAX_MANIFEST_BYTES,
            },
          },
        );
      case 'invalid':
        // The YAML parser recurses per level of nesting; a hostile manifest runs it out of stack (issue 19).
        throw new HearthError(
          'HEARTH_E_VALIDATION',
          `${MANIFEST_FILE}: not valid YAML (${file.reason.replace(/^Maximum call stack size exceeded/, 'nested too deeply')})`,
          { details: { field: MANIFEST_FILE, value: null, expected: 'valid YAML' } },
        );
    }
  }

  /** Verifies and activates a version whose code and layer are in place. */
  private async release(
    prepared: PreparedVersion,
    clock: PhaseClock,
    deploymentId: string,
    options: DeployOptions,
  ): Promise<DeployOutcome> {
    const { ref, manifest, code, deps, image } = prepared;
    const { store, scheduler } = this.options;
    const current = store.getFunction(ref);
    if (current !== undefined && this.isUnchanged(prepared)) {
      const deployment = this.finish(ref, deploymentId, clock, current.active.version);
      clock.note('activate', `unchanged: version ${current.active.version} already has this code and spec`);
      return { version: current.active, deployment, unchanged: true };
    }
    const number = store.nextVersion(ref);
    const version: DeployedVersion = {
      ref,
      version: number,
      spec: resolveSpec(manifest.spec),
      manifest,
      code,
      deps,
      ...(image === undefined ? {} : { image }),
      createdAt: new Date().toISOString(),
    };
    this.options.admit?.([{ ref, codeBytes: code.bytes + (image?.sizeBytes ?? 0), spec: version.spec }]);
    let instance: Instance | undefined;
    if (options.verify !== false && this.canVerify(version)) {
      clock.begin('verify', 'starting an instance to load the handler');
      instance = await scheduler.prepare(version);
      clock.end('verify', `handler ${version.spec.handler} loaded`);
    }
    clock.begin('activate', 'switching traffic');
    let stored: StoredVersion;
    try {
      stored = store.commitVersion(ref, number, {
        manifest,
        codeHash: code.hash,
        codeFiles: code.files,
        codeBytes: code.bytes,
        depsKey: deps?.key ?? null,
        depsMount: deps?.mountName ?? null,
        image: image ?? null,
      });
    } catch (error) {
      await instance?.stop();
      throw error;
    }
    scheduler.activate(version, instance);
    clock.end('activate', `version ${number} is serving`);
    return { version: stored, deployment: this.finish(ref, deploymentId, clock, number), unchanged: false };
  }

  private validate(
    ref: FunctionRef,
    input: unknown,
    origin: string,
    adjust?: (manifest: FunctionManifest) => FunctionManifest,
  ): FunctionManifest {
    const parsed = parseFunctionManifest(input, origin);
    // Adjusted before the availability checks: the examples' isolation is relaxed precisely because of them.
    const manifest = adjust === undefined ? parsed : adjust(parsed);
    if (manifest.metadata.name !== ref.name) {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `${origin}: metadata.name: got "${manifest.metadata.name}", expected "${ref.name}" (the name in the URL)`,
        {
          details: { field: 'metadata.name', value: manifest.metadata.name, expected: ref.name },
        },
      );
    }
    if (manifest.metadata.namespace !== undefined && manifest.metadata.namespace !== ref.namespace) {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `${origin}: metadata.namespace: got "${manifest.metadata.namespace}", expected "${ref.namespace}" (the namespace in the URL)`,
        {
          details: {
            field: 'metadata.namespace',
            value: manifest.metadata.namespace,
            expected: ref.namespace,
          },
        },
      );
    }
    const spec = manifest.spec;
    checkContainerSpec(origin, spec, this.options.localImageDirs === true);
    this.checkNetwork(origin, spec);
    if (spec.isolation === 'isolate') checkIsolate(origin, spec);
    if (this.options.egressTenancy !== undefined)
      checkEgressTenancy(origin, ref, spec, this.options.egressTenancy);
    if (spec.image === undefined) this.runtimeFor(resolveSpec(spec).runtime);
    this.isolationFor(spec.isolation ?? 'sandbox');
    return { ...manifest, metadata: { ...manifest.metadata, namespace: ref.namespace } };
  }

  /**
   * An egress allow-list and host aliases are enforced by the sandbox's own network namespace: `process`
   * isolation cannot honour them, and a node without the tools says so at deploy, not at the first call.
   */
  private checkNetwork(origin: string, spec: FunctionManifest['spec']): void {
    const isolationName = spec.isolation ?? (spec.image === undefined ? 'sandbox' : 'container');
    // A container shares its supervisor's network namespace, set up as the sandbox's (issue 17).
    const ownNetwork = isolationName === 'sandbox' || isolationName === 'container';
    const aliases = Object.keys(spec.hostAliases ?? {});
    if (Array.isArray(spec.egress)) {
      if (!ownNetwork)
        throw new HearthError(
          'HEARTH_E_VALIDATION',
          `${origin}: spec.egress: an allow-list needs isolation: sandbox or container (isolation: process shares the host's network and cannot enforce it)`,
          {
            details: {
              field: 'spec.egress',
              value: spec.egress,
              expected: 'none or allow with isolation: process',
            },
          },
        );
      const reason = this.options.isolations.get(isolationName)?.filteredUnavailable;
      if (reason !== undefined)
        throw new HearthError(
          'HEARTH_E_UNSUPPORTED',
          `${origin}: spec.egress: ${reason}; or use "none" or "allow"`,
          {
            details: { field: 'spec.egress', value: spec.egress, expected: 'none or allow on this node' },
          },
        );
    }
    if (aliases.length > 0) {
      if (!ownNetwork)
        throw new HearthError(
          'HEARTH_E_VALIDATION',
          `${origin}: spec.hostAliases: needs isolation: sandbox or container (a process instance sees the host's own /etc/hosts)`,
          {
            details: {
              field: 'spec.hostAliases',
              value: spec.hostAliases,
              expected: 'no hostAliases with isolation: process',
            },
          },
        );
      if ((spec.egress ?? 'none') === 'none')
        throw new HearthError(
          'HEARTH_E_VALIDATION',
          `${origin}: spec.hostAliases: ${aliases.join(', ')} cannot be reached with egress: none; set egress to allow or to a list such as ["${aliases[0]}:6379"]`,
          { details: { field: 'spec.egress', value: 'none', expected: 'allow or a host:port list' } },
        );
    }
  }

  private runtimeFor(name: RuntimeName): Runtime {
    const runtime = this.options.runtimes.get(name);
    if (runtime === undefined || runtime.unavailable !== undefined) {
      throw new HearthError(
        'HEARTH_E_UNSUPPORTED',
        `spec.runtime: ${runtime?.unavailable ?? `runtime ${name} is not available on this node`}`,
        {
          details: { field: 'spec.runtime', value: name, expected: 'an available runtime' },
        },
      );
    }
    return runtime;
  }

  private isolationFor(name: IsolationName): Isolation {
    const isolation = this.options.isolations.get(name);
    if (isolation === undefined || isolation.unavailable !== undefined) {
      throw new HearthError(
        'HEARTH_E_SANDBOX_UNAVAILABLE',
        `spec.isolation: ${isolation?.unavailable ?? `${name} is not available`} (or set isolation: process for trusted development code)`,
        { details: { field: 'spec.isolation', value: name, expected: 'an available isolation class' } },
      );
    }
    return isolation;
  }

  private finish(
    ref: FunctionRef,
    deploymentId: string,
    clock: PhaseClock,
    version: number,
  ): DeploymentSummary {
    this.options.store.finishDeployment(deploymentId, {
      status: 'succeeded',
      version,
      error: null,
      phases: clock.phases,
    });
    const stored = this.options.store.lastDeployment(ref);
    if (stored === undefined)
      throw new HearthError('HEARTH_E_INTERNAL', `deployment ${deploymentId} was not recorded`);
    return toDeploymentSummary(stored);
  }

  private fail(deploymentId: string, clock: PhaseClock, error: unknown): void {
    const failure = isHearthError(error)
      ? error
      : new HearthError('HEARTH_E_INTERNAL', (error as Error).message);
    this.options.store.finishDeployment(deploymentId, {
      status: 'failed',
      version: null,
      error: errorBody(failure).error,
      phases: clock.phases,
    });
  }

  private serialised<T>(ref: FunctionRef, work: () => Promise<T>): Promise<T> {
    const key = functionKey(ref);
    const previous = this.locks.get(key) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.locks.set(key, next);
    void next
      .finally(() => {
        if (this.locks.get(key) === next) this.locks.delete(key);
      })
      .catch(() => undefined);
    return next;
  }
}

/** How often a running dependency build reports its disk use in the deploy's progress. */
const DISK_REPORT_MS = 5000;

/** Times each phase and reports it to the client as it happens. */
class PhaseClock {
  readonly phases: Record<string, number> = {};
  private readonly began = performance.now();
  private phaseBegan = performance.now();

  constructor(private readonly emit: DeployListener) {}

  begin(phase: DeployPhase, message: string): void {
    this.phaseBegan = performance.now();
    this.emit({ event: 'progress', phase, message, elapsedMs: Math.round(performance.now() - this.began) });
  }

  end(phase: DeployPhase, message: string): void {
    this.phases[phase] = Math.round(performance.now() - this.phaseBegan);
    this.emit({ event: 'progress', phase, message, elapsedMs: Math.round(performance.now() - this.began) });
  }

  note(phase: DeployPhase, message: string): void {
    this.emit({ event: 'progress', phase, message, elapsedMs: Math.round(performance.now() - this.began) });
  }

  output(phase: DeployPhase, line: string): void {
    this.emit({ event: 'output', phase, line });
  }

  disk(phase: DeployPhase, bytes: number, maxBytes: number): void {
    this.emit({
      event: 'disk',
      phase,
      bytes,
      maxBytes,
      elapsedMs: Math.round(performance.now() - this.began),
    });
  }
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

export function toDeploymentSummary(stored: StoredDeployment): DeploymentSummary {
  return {
    id: stored.id,
    version: stored.version,
    status: stored.status,
    error: stored.error,
    startedAt: stored.startedAt,
    finishedAt: stored.finishedAt,
    phases: stored.phases,
  };
}

/**
 * `runtime: image` and the fields only it takes (issue 17): an image, the `container` isolation, a
 * protocol, command and args; a `dir:` image must exist on this node.
 */
function checkContainerSpec(origin: string, spec: FunctionManifest['spec'], localImageDirs: boolean): void {
  const refuse = (field: string, value: unknown, expected: string): never => {
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `${origin}: ${field}: got ${JSON.stringify(value)}, expected ${expected}`,
      { details: { field, value, expected } },
    );
  };
  if (spec.image !== undefined || spec.runtime === 'image') {
    if (spec.image === undefined) refuse('spec.image', undefined, 'an image reference (runtime image)');
    if (spec.isolation !== undefined && spec.isolation !== 'container')
      refuse('spec.isolation', spec.isolation, 'container (or nothing) for runtime image');
    if (spec.eventFormat !== undefined)
      refuse(
        'spec.eventFormat',
        spec.eventFormat,
        'nothing for runtime image (spec.protocol says how it is called)',
      );
    if (spec.image?.startsWith(LOCAL_IMAGE_PREFIX)) {
      // A host directory as a rootfs shows the host's files to the function: only where the operator allows it.
      if (!localImageDirs)
        refuse(
          'spec.image',
          spec.image,
          'a registry reference or oci-archive (dir: images are off: images.localDirs in the config)',
        );
      resolveLocalImage(spec.image);
    }
    return;
  }
  for (const field of ['image', 'protocol', 'command', 'args'] as const)
    if (spec[field] !== undefined) refuse(`spec.${field}`, spec[field], 'nothing unless runtime is image');
  if (spec.isolation === 'container')
    refuse('spec.isolation', 'container', 'sandbox or process (container is for runtime image)');
  if (spec.runtime === 'provided' && spec.eventFormat !== undefined && !spec.eventFormat.startsWith('lambda'))
    refuse('spec.eventFormat', spec.eventFormat, 'one of the lambda formats for runtime provided');
}

/**
 * `isolation: isolate` takes Node functions that need nothing a V8 isolate lacks, and wasm functions (a wasm
 * host per namespace, runtime/wasm/host.ts): no network, no host aliases, and responses that fit one Relay
 * frame (runtime/isolate).
 */
function checkIsolate(origin: string, spec: FunctionManifest['spec']): void {
  const refuse = (field: string, value: unknown, expected: string, why: string): never => {
    throw new HearthError('HEARTH_E_VALIDATION', `${origin}: ${field}: ${why} with isolation: isolate`, {
      details: { field, value, expected },
    });
  };
  const runtime = spec.runtime ?? 'image';
  if (runtime !== 'node20' && runtime !== 'wasm')
    refuse('spec.runtime', runtime, 'node20 or wasm', `"${runtime}" cannot run`);
  if ((spec.egress ?? 'none') !== 'none')
    refuse('spec.egress', spec.egress, 'none', 'an isolate has no network, so egress must be none');
  if (Object.keys(spec.hostAliases ?? {}).length > 0)
    refuse('spec.hostAliases', spec.hostAliases, 'none', 'an isolate has no network, so no host aliases');
  const maxBody = resolveSpec(spec).limits.maxBodyBytes;
  if (maxBody > ISOLATE_MAX_BODY_BYTES)
    refuse('spec.limits.maxBody', maxBody, `at most ${ISOLATE_MAX_BODY_BYTES} bytes`, 'too large');
}
