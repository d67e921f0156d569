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
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HearthError } from '../../domain/errors.js';
import type { DependencyManifest, Isolation, Runtime } from '../../runtime/index.js';

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
}

export interface LayerResult {
  readonly key: string;
  readonly cached: boolean;
  readonly ms: number;
}

export class LayerStore {
  private readonly building = new Map<string, Promise<LayerResult>>();
  private readonly layersDir: string;
  private readonly workDir: string;
  private readonly cacheDir: string;
  /** Caches every namespace's builds once wrote into (before issue 21): whatever is in them is suspect. */
  private readonly sharedCaches: readonly string[];

  constructor(
    dataDir: string,
    private readonly timeoutMs: number,
  ) {
    this.layersDir = join(dataDir, 'layers');
    this.workDir = join(dataDir, 'tmp');
    this.cacheDir = join(dataDir, 'cache', 'build');
    this.sharedCaches = ['node20', 'python3'].map((runtime) => join(dataDir, 'cache', runtime));
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

  async has(key: string): Promise<boolean> {
    return (await stat(this.dir(key)).catch(() => undefined))?.isDirectory() === true;
  }

  /** Builds the layer unless it exists; concurrent requests for one key share one build. */
  async ensure(request: LayerBuildRequest): Promise<LayerResult> {
    const key = await this.keyOf(request.runtime, request.sourceDir, request.manifest, request);
    if (await this.has(key)) return { key, cached: true, ms: 0 };
    const running = this.building.get(key);
    if (running !== undefined) return running;
    const build = this.build(key, request).finally(() => this.building.delete(key));
    this.building.set(key, build);
    return build;
  }

  private async build(key: string, request: LayerBuildRequest): Promise<LayerResult> {
    const began = performance.now();
    const work = join(this.workDir, `build-${randomBytes(6).toString('hex')}`);
    const cache = join(this.cacheDir, request.namespace, request.runtime.name);
    await mkdir(work, { recursive: true, mode: 0o755 });
    await mkdir(cache, { recursive: true, mode: 0o755 });
    try {
      for (const file of request.manifest.files)
        await copyFile(join(request.sourceDir, file), join(work, file));
      const step = request.runtime.buildCommand(work, cache, request.manifest, { scripts: request.scripts });
      const outcome = await request.isolation.run({
        ...step,
        workDir: work,
        cacheDir: cache,
        timeoutMs: this.timeoutMs,
        onOutput: request.onOutput,
      });
      if (!outcome.ok) {
        const last =
          outcome.tail
            .split('\n')
            .filter((line) => line.trim() !== '')
            .slice(-1)[0] ?? 'no output';
        throw new HearthError(
          'HEARTH_E_BUILD_FAILED',
          `installing dependencies from ${request.manifest.files.join(' + ')} failed (exit ${outcome.exitCode ?? 'none'}): ${last}`,
          {
            details: { output: outcome.tail },
          },
        );
      }
      const output = join(work, request.runtime.layerOutput);
      await mkdir(output, { recursive: true });
      await makeReadable(output);
      await rename(output, this.dir(key)).catch(async (error: NodeJS.ErrnoException) => {
        // Another build of the same key won the race: its layer is as good as ours.
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      });
      return { key, cached: false, ms: performance.now() - began };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
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
