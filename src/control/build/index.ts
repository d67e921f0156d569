/**
 * @module Dependency layers: `npm ci` / `pip install --target` output, keyed by the namespace, the
 * runtime's ABI, whether install scripts run, and the dependency manifest's content; built once inside
 * the function's isolation (a network of its own that reaches only the package registries), then shared
 * read-only by every version and function of the namespace with the same manifest. A code-only redeploy
 * finds its layer already built and installs nothing.
 *
 * Tenants share nothing writable here: a build can write into its package manager's cache (and with
 * install scripts, run code that does), so each namespace has a cache of its own, and a layer, which one
 * namespace's build produced, is never handed to another namespace. What a cache gives back is checked by
 * the package manager against the lockfile's hashes where there are some (`npm ci` with
 * package-lock.json integrity, pip's hash-checking mode with `--hash`).
 */

import { createHash, randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { HearthError } from '../../domain/errors.js';
import { formatBytes as formatUnits } from '../../domain/units.js';
import { BUILD_TMP, type DependencyManifest, type Isolation, type Runtime } from '../../runtime/index.js';

export interface LayerBuildRequest {
  readonly runtime: Runtime;
  readonly isolation: Isolation;
  /** The function's unpacked folder, holding the manifest files. */
  readonly sourceDir: string;
  readonly manifest: DependencyManifest;
  /** The function's namespace: the tenant whose cache the build uses and who alone gets the layer. */
  readonly namespace: string;
  /** Whether packages' install scripts run (spec.build.scripts). */
  readonly scripts: boolean;
  readonly onOutput: (line: string) => void;
  /** Each measurement of the build's scratch disk use while it runs, bytes. */
  readonly onDisk?: (bytes: number) => void;
}

export interface LayerResult {
  readonly key: string;
  readonly cached: boolean;
  /** Not built here: fetched from the cluster's shared store (another node built it). */
  readonly fetched?: boolean;
  readonly ms: number;
  /** Built now: the layer's size on disk, bytes. */
  readonly layerBytes?: number;
  /** Built now: the most disk its scratch dir (downloads, unpacked wheels, TMPDIR, the layer) took, bytes. */
  readonly peakDiskBytes?: number;
}

export interface LayerLimits {
  readonly timeoutMs: number;
  /** The most disk one build's scratch dir may take (`build.maxDisk`): past it the build is stopped. */
  readonly maxDiskBytes: number;
  /** How often the scratch dir is measured. */
  readonly diskCheckMs?: number;
  /** One build's memory cap (`build.memory`, hard, no swap) and CPU cap (`build.cpu`, cores). */
  readonly memoryBytes?: number;
  readonly cpu?: number;
}

/** A layer directory's name: `<runtime>-<32 hex>` (see `keyOf`). */
const LAYER_KEY = /^[a-z0-9]+-[0-9a-f]{32}$/;

/**
 * Where the nodes of a cluster keep built layers for each other (cluster mode, src/cluster `PgLayers`): the
 * node that builds a layer stores it here under its key, the others fetch it instead of building it again.
 * Absent in the embedded mode.
 */
export interface SharedLayers {
  /**
   * Unpacks the stored layer into `dir` (created; the caller renames it into place) when the cluster has it;
   * undefined when it has not. Throws when the stored copy does not match its checksum.
   */
  fetch(key: string, dir: string): Promise<{ readonly archiveBytes: number } | undefined>;
  /**
   * Stores the built layer in `dir` under `key`, streamed; undefined when another node stored it first
   * (kept as it is).
   */
  publish(
    key: string,
    namespace: string,
    dir: string,
  ): Promise<{ readonly archiveBytes: number } | undefined>;
  /**
   * Runs `work` holding the cluster-wide lock on `key`, so two nodes do not build one layer at once. Past
   * `waitMs` of waiting (a builder that hangs) it runs `work` without it.
   */
  exclusive<T>(key: string, waitMs: number, work: () => Promise<T>): Promise<T>;
  /** Marks the stored copy used now (the collector's grace period runs from here); false when there is none. */
  touch(key: string): Promise<boolean>;
  /** Every stored layer, when last stored or used, and its stored size. */
  list(): Promise<{ key: string; usedAt: number; archiveBytes: number }[]>;
  /**
   * Deletes the stored copy unless a retained version references it or it was used after `unusedSince`;
   * the bytes freed, or undefined when it was kept.
   */
  remove(key: string, unusedSince: number): Promise<number | undefined>;
}

/** How a node came by a layer it did not have, for logs and tests. */
export interface LayerObtained {
  readonly key: string;
  readonly how: 'built' | 'fetched' | 'published';
  readonly ms: number;
  /** For `fetched` and `published`: the stored (compressed) size, bytes. */
  readonly archiveBytes?: number;
}

/** How much longer than a build's own timeout a node waits for another node building the same layer. */
const LOCK_MARGIN_MS = 60_000;

export interface LayerStoreOptions {
  /** Cluster mode: the store shared by every node. */
  readonly shared?: SharedLayers;
  /** Told each time a layer is built, fetched from, or published to the shared store. */
  readonly onObtained?: (event: LayerObtained) => void;
}

export class LayerStore {
  private readonly building = new Map<string, Promise<LayerResult>>();
  /** Layers bound to instances now, by key: never collected while held. */
  private readonly pins = new Map<string, number>();
  private readonly layersDir: string;
  private readonly workDir: string;
  private readonly cacheDir: string;
  /** Caches every namespace's builds once wrote into (before issue 21): whatever is in them is suspect. */
  private readonly sharedCaches: readonly string[];

  constructor(
    dataDir: string,
    private readonly limits: LayerLimits,
    private readonly options: LayerStoreOptions = {},
  ) {
    this.layersDir = join(dataDir, 'layers');
    this.workDir = join(dataDir, 'tmp');
    this.cacheDir = join(dataDir, 'cache', 'build');
    this.sharedCaches = ['node20', 'python3'].map((runtime) => join(dataDir, 'cache', runtime));
  }

  get maxDiskBytes(): number {
    return this.limits.maxDiskBytes;
  }

  async init(): Promise<void> {
    await mkdir(this.layersDir, { recursive: true, mode: 0o755 });
    for (const dir of this.sharedCaches) await rm(dir, { recursive: true, force: true });
    await mkdir(this.workDir, { recursive: true, mode: 0o700 });
    // Half-built layers of a crashed run are never renamed into place; their work dirs can go.
    for (const entry of await readdir(this.workDir)) {
      if (entry.startsWith('build-')) await rm(join(this.workDir, entry), { recursive: true, force: true });
    }
  }

  async keyOf(
    runtime: Runtime,
    sourceDir: string,
    manifest: DependencyManifest,
    build: { readonly namespace: string; readonly scripts: boolean },
  ): Promise<string> {
    const hash = createHash('sha256').update(
      `${runtime.name}\0${runtime.abi}\0${build.namespace}\0scripts=${build.scripts}\0`,
    );
    for (const file of manifest.files)
      hash
        .update(`${file}\0`)
        .update(await readFile(join(sourceDir, file)))
        .update('\0');
    return `${runtime.name}-${hash.digest('hex').slice(0, 32)}`;
  }

  /** The layer's directory if it has been built. */
  dir(key: string): string {
    return join(this.layersDir, key);
  }

  /** The layer's directory, held against collection until `release` (an instance bound to it). */
  checkout(key: string): { readonly dir: string; release(): void } {
    this.pins.set(key, (this.pins.get(key) ?? 0) + 1);
    let released = false;
    return {
      dir: this.dir(key),
      release: () => {
        if (released) return;
        released = true;
        const count = (this.pins.get(key) ?? 1) - 1;
        if (count > 0) this.pins.set(key, count);
        else this.pins.delete(key);
      },
    };
  }

  /** Every built layer and when it was last built or reused. */
  async list(): Promise<{ key: string; usedAt: number }[]> {
    const layers: { key: string; usedAt: number }[] = [];
    for (const name of await readdir(this.layersDir)) {
      if (!LAYER_KEY.test(name)) continue;
      const stats = await lstat(join(this.layersDir, name)).catch(() => undefined);
      if (stats?.isDirectory() === true) layers.push({ key: name, usedAt: stats.mtimeMs });
    }
    return layers;
  }

  /**
   * Deletes a layer nothing holds or builds and nobody used after `unusedSince`; returns the bytes freed, or
   * undefined when it was kept. Renamed
   * aside first, so a crash mid-delete leaves no half layer under its key (init clears `tmp/`).
   */
  async remove(key: string, unusedSince: number): Promise<number | undefined> {
    if (!LAYER_KEY.test(key) || this.pins.has(key) || this.building.has(key)) return undefined;
    // Reused since the collector looked (a deploy's `ensure` touches it): kept.
    const stats = await lstat(this.dir(key)).catch(() => undefined);
    if (stats === undefined || stats.mtimeMs > unusedSince) return undefined;
    const bytes = await diskUse(this.dir(key));
    const doomed = join(this.workDir, `build-gc-${randomBytes(6).toString('hex')}`);
    try {
      await rename(this.dir(key), doomed);
    } catch {
      return undefined;
    }
    await rm(doomed, { recursive: true, force: true });
    return bytes;
  }

  async has(key: string): Promise<boolean> {
    return (await stat(this.dir(key)).catch(() => undefined))?.isDirectory() === true;
  }

  /**
   * Builds the layer unless it exists; concurrent requests for one key share one build. In a cluster, a
   * layer another node built is fetched from the shared store instead, and one built here is stored there.
   */
  async ensure(request: LayerBuildRequest): Promise<LayerResult> {
    const key = await this.keyOf(request.runtime, request.sourceDir, request.manifest, request);
    const shared = this.options.shared;
    if (await this.has(key)) {
      // Used again: the garbage collector's grace period runs from now (see CodeStore.put).
      const now = new Date();
      await utimes(this.dir(key), now, now).catch(() => undefined);
      // The shared copy's grace period too; one missing (a layer built before the cluster shared layers,
      // or collected while no version referenced it) is stored now, so the other nodes can take this version.
      if (shared !== undefined && !(await shared.touch(key)))
        await this.once(key, async () => {
          await this.publish(key, request.namespace, shared);
          return { key, cached: true, ms: 0 };
        });
      return { key, cached: true, ms: 0 };
    }
    return this.once(key, () =>
      shared === undefined ? this.build(key, request) : this.obtain(key, request, shared),
    );
  }

  /**
   * Cluster mode: makes sure this node holds a layer a version it is to serve names, fetching it from the
   * shared store (another node built it). Throws when the cluster does not have it.
   */
  async fetchShared(key: string): Promise<void> {
    if (!LAYER_KEY.test(key)) throw new Error(`"${key}" is not a dependency layer key`);
    if (await this.has(key)) return;
    const shared = this.options.shared;
    if (shared === undefined) throw new Error(`dependency layer ${key} is not on this node`);
    await this.once(key, async () => {
      const fetched = await this.fetchInto(key, shared);
      if (fetched === undefined) throw new Error(`dependency layer ${key} is not in the cluster's store`);
      return fetched;
    });
  }

  /**
   * Cluster mode: stores those of `layers` this node holds and the cluster lacks (built before the nodes
   * shared layers), so the other nodes can take the versions that name them. Returns how many it stored.
   */
  async shareHeld(layers: readonly { readonly key: string; readonly namespace: string }[]): Promise<number> {
    const shared = this.options.shared;
    if (shared === undefined || layers.length === 0) return 0;
    const stored = new Set((await shared.list()).map((layer) => layer.key));
    let count = 0;
    for (const { key, namespace } of layers) {
      if (stored.has(key) || !LAYER_KEY.test(key) || !(await this.has(key))) continue;
      stored.add(key);
      await this.once(key, async () => {
        await this.publish(key, namespace, shared);
        return { key, cached: true, ms: 0 };
      });
      count += 1;
    }
    return count;
  }

  /** One job per key at a time: a second request for it waits for the first's outcome. */
  private once(key: string, job: () => Promise<LayerResult>): Promise<LayerResult> {
    const running = this.building.get(key);
    if (running !== undefined) return running;
    const started = job().finally(() => this.building.delete(key));
    this.building.set(key, started);
    return started;
  }

  /**
   * Fetches the layer when the cluster has it; else builds it holding the cluster-wide lock on its key (a
   * node deploying the same dependencies meanwhile waits, then fetches what this one stored) and stores it.
   */
  private async obtain(key: string, request: LayerBuildRequest, shared: SharedLayers): Promise<LayerResult> {
    const fetched = await this.fetchInto(key, shared);
    if (fetched !== undefined) return fetched;
    // A build that hangs holds the lock no longer than its own timeout; a waiter then builds too.
    return shared.exclusive(key, this.limits.timeoutMs + LOCK_MARGIN_MS, async () => {
      const meanwhile = await this.fetchInto(key, shared);
      if (meanwhile !== undefined) return meanwhile;
      const built = await this.build(key, request);
      await this.publish(key, request.namespace, shared);
      return built;
    });
  }

  /** Unpacks the shared copy into a scratch dir, then renames it into place: never a half layer under its key. */
  private async fetchInto(key: string, shared: SharedLayers): Promise<LayerResult | undefined> {
    const began = performance.now();
    const scratch = join(this.workDir, `build-fetch-${randomBytes(6).toString('hex')}`);
    try {
      const got = await shared.fetch(key, scratch);
      if (got === undefined) return undefined;
      // Read by sandboxed guests under another uid, as a layer built here is (see makeReadable).
      await chmod(scratch, 0o755);
      const now = new Date();
      await utimes(scratch, now, now);
      await rename(scratch, this.dir(key)).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      });
      const ms = performance.now() - began;
      this.options.onObtained?.({ key, how: 'fetched', ms, archiveBytes: got.archiveBytes });
      return { key, cached: false, fetched: true, ms };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  private async publish(key: string, namespace: string, shared: SharedLayers): Promise<void> {
    const began = performance.now();
    const stored = await shared.publish(key, namespace, this.dir(key));
    if (stored !== undefined)
      this.options.onObtained?.({
        key,
        how: 'published',
        ms: performance.now() - began,
        archiveBytes: stored.archiveBytes,
      });
  }

  private async build(key: string, request: LayerBuildRequest): Promise<LayerResult> {
    const began = performance.now();
    const work = join(this.workDir, `build-${randomBytes(6).toString('hex')}`);
    const cache = join(this.cacheDir, request.namespace, request.runtime.name);
    await mkdir(join(work, BUILD_TMP), { recursive: true, mode: 0o755 });
    await mkdir(cache, { recursive: true, mode: 0o755 });
    const from = request.manifest.files.join(' + ');
    const watch = new DiskWatch(work, this.limits, request.onDisk);
    try {
      for (const file of request.manifest.files)
        await copyFile(join(request.sourceDir, file), join(work, file));
      const step = request.runtime.buildCommand(work, cache, request.manifest, { scripts: request.scripts });
      const outcome = await request.isolation.run({
        ...step,
        workDir: work,
        cacheDir: cache,
        timeoutMs: this.limits.timeoutMs,
        onOutput: request.onOutput,
        signal: watch.start(),
        ...(this.limits.memoryBytes === undefined || this.limits.cpu === undefined
          ? {}
          : { limits: { memoryBytes: this.limits.memoryBytes, cpu: this.limits.cpu } }),
      });
      await watch.stop();
      // A build that finished between two measurements may still have gone over: its layer is refused too.
      if (!outcome.ok || watch.over !== undefined) {
        const lines = outcome.tail.split('\n').filter((line) => line.trim() !== '');
        throw new HearthError(
          'HEARTH_E_BUILD_FAILED',
          watch.over !== undefined
            ? `installing dependencies from ${from} stopped${atStep(lines)}: ${watch.over}`
            : outcome.outOfMemory === true
              ? `installing dependencies from ${from} ran out of memory: the build's cap is ${capOf(this.limits.memoryBytes ?? 0)} (build.memory)`
              : `installing dependencies from ${from} failed (${exitOf(outcome.exitCode)})${atStep(lines)}: ${reasonOf(lines)}`,
          {
            details: { output: outcome.tail, diskBytes: watch.peak, maxDiskBytes: this.limits.maxDiskBytes },
          },
        );
      }
      const output = join(work, request.runtime.layerOutput);
      await mkdir(output, { recursive: true });
      await makeReadable(output);
      const layerBytes = await diskUse(output);
      await rename(output, this.dir(key)).catch(async (error: NodeJS.ErrnoException) => {
        // Another build of the same key won the race: its layer is as good as ours.
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      });
      const ms = performance.now() - began;
      this.options.onObtained?.({ key, how: 'built', ms });
      return { key, cached: false, ms, layerBytes, peakDiskBytes: watch.peak };
    } finally {
      await watch.stop();
      await rm(work, { recursive: true, force: true });
    }
  }
}

/**
 * Measures a build's scratch dir while it runs and stops the build once it is over the cap. A tmpfs of
 * the cap's size would hold GiBs in memory; a loop-mounted image or a project quota would bound the
 * writes in the kernel but need a filesystem set up for it on every node. Measuring the tree on disk
 * works anywhere, at the price of an overshoot of what the build writes between two measurements.
 */
class DiskWatch {
  peak = 0;
  /** Why the build was stopped, once it went over the cap. */
  over: string | undefined;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private measuring: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly dir: string,
    private readonly limits: LayerLimits,
    private readonly onDisk: ((bytes: number) => void) | undefined,
  ) {}

  start(): AbortSignal {
    this.schedule();
    return this.abort.signal;
  }

  /** Takes a last measurement (what the build left is part of its peak) and stops measuring. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    await this.measuring;
    await this.measure();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.measuring = this.measure().then(() => {
        if (!this.stopped && this.over === undefined) this.schedule();
      });
    }, this.limits.diskCheckMs ?? 500);
  }

  private async measure(): Promise<void> {
    const bytes = await diskUse(this.dir).catch(() => 0);
    this.peak = Math.max(this.peak, bytes);
    this.onDisk?.(bytes);
    if (bytes > this.limits.maxDiskBytes && this.over === undefined) {
      this.over = `the build used ${formatBytes(bytes)} of disk, over its cap of ${formatBytes(this.limits.maxDiskBytes)} (build.maxDisk)`;
      if (!this.stopped) this.abort.abort(this.over);
    }
  }
}

/** The last line naming what the package manager was doing (the package and the step), quoted. */
function atStep(lines: readonly string[]): string {
  const step = lines.findLast((line) => STEP_LINE.test(line));
  return step === undefined ? '' : ` at "${step.trim().slice(0, 200)}"`;
}

/** pip's and npm's lines that say which package they are on. */
const STEP_LINE =
  /^\s*(Collecting |Downloading |Installing collected packages|Building wheel for |Running setup\.py|Preparing metadata|npm (error|ERR!) (path|command) )/;

/**
 * The one output line that best says why a build failed: a resource it ran out of, else the package
 * manager's own last error, else a missing file or command, else its last line that is not boilerplate.
 */
function reasonOf(lines: readonly string[]): string {
  const useful = lines.filter((line) => !NOISE.test(line));
  for (const pattern of REASONS) {
    const found = useful.findLast((line) => pattern.test(line));
    if (found !== undefined) return found.trim();
  }
  return useful.at(-1)?.trim() ?? lines.at(-1)?.trim() ?? 'no output';
}

const REASONS = [
  /No space left on device|ENOSPC|Cannot allocate memory|MemoryError|ENOMEM|\bKilled\b/,
  /^\s*ERROR: |^\s*npm (error|ERR!) (404 +The requested resource|notarget No matching version|ERESOLVE)/,
  /No such file or directory|command not found|: not found/,
];

/** npm's and node-gyp's lines that are the same for every failure. */
const NOISE =
  /A complete log of this run|^\s*npm (error|ERR!) gyp ERR! (stack|System|command|cwd|node -v|node-gyp -v|\$npm_|not ok)|^\s*npm (error|ERR!) (path|command|code)\b|make: (Entering|Leaving) directory/;

function exitOf(code: number | null): string {
  if (code === null) return 'killed';
  // bubblewrap answers 128 + the signal that ended the command: 137 is a SIGKILL, the OOM killer's.
  if (code === 137) return 'exit 137: killed by SIGKILL, out of memory?';
  return `exit ${code}`;
}

/** Space a tree takes on disk (allocated blocks, so sparse files count what they use). */
export async function diskUse(dir: string): Promise<number> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  const sizes = await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      const own = ((await lstat(path).catch(() => undefined))?.blocks ?? 0) * 512;
      return entry.isDirectory() ? own + (await diskUse(path)) : own;
    }),
  );
  return sizes.reduce((sum, size) => sum + size, 0);
}

/** A memory cap as it is written in the config (`2Gi`), for the error that names it. */
function capOf(bytes: number): string {
  return formatUnits(bytes);
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

/** Layers are read by sandboxed guests under another uid: directories 0755, files at least 0644. */
async function makeReadable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await makeReadable(path);
    else if (entry.isFile()) {
      const { mode } = await stat(path);
      await chmod(path, (mode & 0o111) !== 0 ? 0o755 : 0o644);
    }
  }
}
