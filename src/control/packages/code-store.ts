/** @module Content-addressed code: durable .tar.gz packages plus a node-local, byte-bounded LRU cache of unpacked trees. */

import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { HearthError } from '../../domain/errors.js';
import type { CodeProvider } from '../../scheduler/index.js';
import { listTree, type TreeDigest } from './tree-hash.js';
import { runArchiveJob } from './workers.js';

export interface CodeStoreOptions {
  readonly dataDir: string;
  /** Budget for unpacked trees; pinned entries may push the cache past it until they are released. */
  readonly cacheBytes: number;
}

export interface CodeCheckout {
  readonly dir: string;
  /** Unpins the tree; calling it again does nothing. */
  release(): void;
}

export interface CodeStoreStats {
  readonly entries: number;
  readonly bytes: number;
  readonly limitBytes: number;
  readonly pinned: number;
}

const HASH = /^[0-9a-f]{64}$/;
/** Anything being written or deleted lives under this prefix first, so a crash never leaves a partial entry. */
const STAGING = '.tmp-';
const META = '.meta.json';

export class CodeStore implements Pick<CodeProvider, 'checkoutCode'> {
  private readonly packagesDir: string;
  private readonly cacheDir: string;
  private readonly limitBytes: number;
  /** Cached hash → bytes, least recently used first (a Map iterates in insertion order). */
  private readonly cached = new Map<string, number>();
  private cachedBytes = 0;
  private readonly pins = new Map<string, number>();
  /** The one install or removal in flight per hash: a cache directory never has two writers. */
  private readonly work = new Map<string, Promise<void>>();

  constructor(options: CodeStoreOptions) {
    this.packagesDir = join(options.dataDir, 'packages');
    this.cacheDir = join(options.dataDir, 'cache', 'code');
    this.limitBytes = options.cacheBytes;
  }

  /** Creates the layout, drops what a crash left half-written and rebuilds the LRU index from disk. */
  async init(): Promise<void> {
    await mkdir(this.packagesDir, { recursive: true, mode: 0o700 });
    await mkdir(this.cacheDir, { recursive: true });
    // Sandboxed functions run as another user and reach cached code through bind mounts or hard links.
    await chmod(dirname(this.cacheDir), 0o755);
    await chmod(this.cacheDir, 0o755);
    for (const name of await readdir(this.packagesDir)) {
      if (name.startsWith(STAGING)) await rm(join(this.packagesDir, name), { force: true });
    }
    const names = new Set(await readdir(this.cacheDir));
    const found: { hash: string; bytes: number; usedAt: number }[] = [];
    for (const name of names) {
      const path = join(this.cacheDir, name);
      if (name.startsWith(STAGING) || (name.endsWith(META) && !names.has(name.slice(0, -META.length)))) {
        await rm(path, { recursive: true, force: true });
      } else if (HASH.test(name)) {
        const stats = await lstat(path);
        if (stats.isDirectory())
          found.push({ hash: name, bytes: await this.sizeOf(name), usedAt: stats.mtimeMs });
      }
    }
    this.cached.clear();
    this.cachedBytes = 0;
    for (const entry of found.sort((a, b) => a.usedAt - b.usedAt)) this.remember(entry.hash, entry.bytes);
    await this.evict();
  }

  /**
   * Stores the tree at `dir` (minus top-level `exclude` names) under its content hash and caches it
   * unpacked. `dir` is left untouched. Storing a tree already present only re-hashes it. Hashing,
   * compressing and extracting run in a worker thread: on the event loop, compressing one large file
   * held it for over a second.
   */
  async put(dir: string, exclude: ReadonlySet<string>): Promise<TreeDigest> {
    const { digest, members } = await runArchiveJob({ kind: 'hash', dir, exclude: [...exclude] });
    if (!this.has(digest.hash)) await this.writePackage(dir, members, digest.hash);
    else {
      // Stored again: the garbage collector's grace period runs from now, so a deploy that reuses a package
      // nothing referenced any more never loses it between this put and its version's commit.
      const now = new Date();
      await utimes(this.packagePath(digest.hash), now, now).catch(() => undefined);
    }
    await this.ensureCached(digest.hash);
    await this.touch(digest.hash);
    await this.evict();
    return digest;
  }

  /** The unpacked tree, pinned against eviction until `release`; re-extracted from its package on a miss. */
  async checkoutCode(hash: string): Promise<CodeCheckout> {
    if (!HASH.test(hash)) throw notFound(hash);
    // Pinned before the first await, so no eviction can slip in between install and use.
    this.pins.set(hash, (this.pins.get(hash) ?? 0) + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      const count = (this.pins.get(hash) ?? 1) - 1;
      if (count > 0) this.pins.set(hash, count);
      else this.pins.delete(hash);
    };
    try {
      const miss = !this.cached.has(hash);
      await this.ensureCached(hash);
      await this.touch(hash);
      if (miss) await this.evict();
    } catch (error) {
      release();
      throw error;
    }
    return { dir: this.entryDir(hash), release };
  }

  /**
   * Stores a package another node made (cluster mode: fetched from PostgreSQL) under its hash, then
   * unpacks it as `checkoutCode` would: a broken archive fails here, before any version refers to it.
   */
  async adopt(hash: string, archive: Uint8Array): Promise<void> {
    if (!HASH.test(hash)) throw notFound(hash);
    if (!this.has(hash)) {
      const staging = join(this.packagesDir, `${STAGING}${randomUUID()}`);
      try {
        await writeFile(staging, archive, { mode: 0o600 });
        await fsync(staging);
        await rename(staging, this.packagePath(hash));
        await fsync(this.packagesDir);
      } catch (error) {
        await rm(staging, { force: true });
        throw error;
      }
    }
    await this.ensureCached(hash);
    await this.touch(hash);
    await this.evict();
  }

  /** Whether the durable package exists. */
  has(hash: string): boolean {
    return HASH.test(hash) && existsSync(this.packagePath(hash));
  }

  /** Deletes the package and its cached tree; refuses (false) while the tree is checked out. */
  async remove(hash: string): Promise<boolean> {
    if (!HASH.test(hash)) return false;
    for (let pending = this.work.get(hash); pending !== undefined; pending = this.work.get(hash)) {
      await pending.catch(() => undefined);
    }
    if (this.pins.has(hash)) return false;
    const existed = this.has(hash) || this.cached.has(hash);
    const cached = this.forget(hash);
    await this.track(hash, async () => {
      if (cached) await this.deleteEntry(hash);
      await rm(this.packagePath(hash), { force: true });
    });
    return existed;
  }

  /** Every durable package: its hash, its size on disk and when it was last stored. */
  async listPackages(): Promise<{ hash: string; bytes: number; storedAt: number }[]> {
    const packages: { hash: string; bytes: number; storedAt: number }[] = [];
    for (const name of await readdir(this.packagesDir)) {
      const hash = name.endsWith('.tar.gz') ? name.slice(0, -'.tar.gz'.length) : '';
      if (!HASH.test(hash)) continue;
      const stats = await lstat(join(this.packagesDir, name)).catch(() => undefined);
      if (stats?.isFile() === true) packages.push({ hash, bytes: stats.size, storedAt: stats.mtimeMs });
    }
    return packages;
  }

  /**
   * Deletes a package (and its cached tree) that nobody has checked out and nobody stored again after
   * `unusedSince`; returns the bytes freed, or undefined when it was kept.
   */
  async collect(hash: string, unusedSince: number): Promise<number | undefined> {
    if (!HASH.test(hash) || this.pins.has(hash)) return undefined;
    const stats = await lstat(this.packagePath(hash)).catch(() => undefined);
    if (stats === undefined || stats.mtimeMs > unusedSince) return undefined;
    const bytes = stats.size + (this.cached.get(hash) ?? 0);
    return (await this.remove(hash)) ? bytes : undefined;
  }

  stats(): CodeStoreStats {
    let pinned = 0;
    for (const hash of this.pins.keys()) if (this.cached.has(hash)) pinned += 1;
    return { entries: this.cached.size, bytes: this.cachedBytes, limitBytes: this.limitBytes, pinned };
  }

  private async writePackage(dir: string, members: readonly string[], hash: string): Promise<void> {
    const staging = join(this.packagesDir, `${STAGING}${randomUUID()}`);
    try {
      // The package is the only durable copy of this code: on disk (the job syncs it) before anything refers to it.
      await runArchiveJob({ kind: 'pack', dir, members, file: staging });
      await rename(staging, this.packagePath(hash));
      await fsync(this.packagesDir);
    } catch (error) {
      await rm(staging, { force: true });
      throw error;
    }
  }

  /** Installs `hash` unless cached; concurrent callers share one extraction. */
  private async ensureCached(hash: string): Promise<void> {
    for (;;) {
      if (this.cached.has(hash)) return;
      const pending = this.work.get(hash);
      if (pending === undefined) break;
      // A failed install is retried by each waiter, which then sees the failure itself.
      await pending.catch(() => undefined);
    }
    await this.track(hash, () => this.install(hash));
  }

  private async install(hash: string): Promise<void> {
    const source = this.packagePath(hash);
    if (!existsSync(source)) throw notFound(hash);
    const staging = join(this.cacheDir, `${STAGING}${randomUUID()}`);
    const meta = this.metaPath(hash);
    try {
      await mkdir(staging);
      const { bytes } = await runArchiveJob({ kind: 'extract', file: source, dir: staging });
      // Sidecar first: a crash before the rename leaves an orphan sidecar, which init deletes.
      await writeFile(meta, JSON.stringify({ bytes }));
      await rename(staging, this.entryDir(hash));
      this.remember(hash, bytes);
    } catch (error) {
      await Promise.all([rm(staging, { recursive: true, force: true }), rm(meta, { force: true })]);
      throw error;
    }
  }

  /** Drops least recently used unpinned trees until the cache fits its budget. */
  private async evict(): Promise<void> {
    const removals: Promise<void>[] = [];
    for (const hash of this.cached.keys()) {
      if (this.cachedBytes <= this.limitBytes) break;
      if (this.pins.has(hash) || this.work.has(hash)) continue;
      this.forget(hash);
      removals.push(this.track(hash, () => this.deleteEntry(hash)));
    }
    await Promise.all(removals);
  }

  /** Renamed aside first, so a crash mid-delete leaves a staging directory rather than a partial tree. */
  private async deleteEntry(hash: string): Promise<void> {
    const doomed = join(this.cacheDir, `${STAGING}${randomUUID()}`);
    await rename(this.entryDir(hash), doomed);
    await rm(this.metaPath(hash), { force: true });
    await rm(doomed, { recursive: true, force: true });
  }

  /** Marks `hash` most recently used, here and in the directory mtime that init reads after a restart. */
  private async touch(hash: string): Promise<void> {
    const bytes = this.cached.get(hash);
    if (bytes === undefined) return;
    this.cached.delete(hash);
    this.cached.set(hash, bytes);
    const now = new Date();
    // Not awaited: a cold start's checkout need not wait for it, and with a hundred at once the threadpool's
    // queue made the `cold-code` phase 20-170 ms (issue 11). The in-memory order above is the LRU that counts.
    void utimes(this.entryDir(hash), now, now).catch(() => undefined);
  }

  private remember(hash: string, bytes: number): void {
    this.cached.set(hash, bytes);
    this.cachedBytes += bytes;
  }

  /** Removes `hash` from the index; returns whether it was there. */
  private forget(hash: string): boolean {
    const bytes = this.cached.get(hash);
    if (bytes === undefined) return false;
    this.cached.delete(hash);
    this.cachedBytes -= bytes;
    return true;
  }

  private track(hash: string, task: () => Promise<void>): Promise<void> {
    const running: Promise<void> = task().finally(() => {
      if (this.work.get(hash) === running) this.work.delete(hash);
    });
    this.work.set(hash, running);
    return running;
  }

  /** The sidecar's size if it is readable, else a walk of the tree (and a fresh sidecar). */
  private async sizeOf(hash: string): Promise<number> {
    try {
      const { bytes } = JSON.parse(await readFile(this.metaPath(hash), 'utf8')) as { bytes?: unknown };
      if (typeof bytes === 'number' && Number.isSafeInteger(bytes) && bytes >= 0) return bytes;
    } catch {
      // Missing or torn by a crash: measured below instead.
    }
    const bytes = (await listTree(this.entryDir(hash))).reduce((sum, entry) => sum + entry.size, 0);
    await writeFile(this.metaPath(hash), JSON.stringify({ bytes }));
    return bytes;
  }

  private packagePath(hash: string): string {
    return join(this.packagesDir, `${hash}.tar.gz`);
  }

  private entryDir(hash: string): string {
    return join(this.cacheDir, hash);
  }

  private metaPath(hash: string): string {
    return join(this.cacheDir, `${hash}${META}`);
  }
}

function notFound(hash: string): HearthError {
  return new HearthError(
    'HEARTH_E_RESOURCE_NOT_FOUND',
    `code package ${JSON.stringify(hash)} does not exist`,
    {
      details: { hash },
    },
  );
}

async function fsync(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
