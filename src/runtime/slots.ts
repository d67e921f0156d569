/**
 * @module Slots: the one directory a guest sees its function through. A stem cell starts with an empty
 * slot; binding it to a function makes the code appear at `<slot>/app` and the dependency layer at
 * `<slot>/<node_modules|deps>`.
 *
 * Two strategies, chosen once per node:
 * - `mount` (root on Linux): the slots directory is a shared tmpfs mount, and bubblewrap's mounts are
 *   slaves of the host's, so a host-side read-only mount into a slot appears inside the running
 *   sandbox: O(1) whatever the layer's size.
 *
 * What a guest sees of these mounts in /proc/self/mountinfo says nothing of the host's paths: a slot is
 * listed by its path in the slots tmpfs (`/<id>`), and a layer or a large code tree is mounted as a
 * read-only overlay whose only lower directories are given as `/proc/self/fd/N` of the `mount` process
 * (a bind mount would be listed by its full path in the data dir's filesystem, wherever it is bound).
 * - `link`: hard links (copies across filesystems) of every file, O(files); used where mounting is not
 *   allowed, and for small code trees even under `mount` (as copies there, the slots being a tmpfs)
 *   because copying a few files beats spawning `mount(8)` (measured in bench/RESULTS.md).
 */

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, linkSync, mkdirSync, readdirSync, readlinkSync, symlinkSync } from 'node:fs';
import {
  copyFile,
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readlink,
  rm,
  symlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Slot {
  readonly id: string;
  readonly hostDir: string;
}

export interface AttachRequest {
  readonly codeDir: string;
  readonly codeFiles: number;
  readonly deps: { readonly dir: string; readonly name: string } | undefined;
}

export interface SlotManager {
  readonly strategy: 'mount' | 'link';
  create(): Promise<Slot>;
  attach(slot: Slot, request: AttachRequest): Promise<void>;
  release(slot: Slot): Promise<void>;
  close(): Promise<void>;
}

/** Code trees up to this many files are linked rather than mounted (see module comment). */
const LINK_CODE_UP_TO_FILES = 64;

export async function createSlotManager(
  slotsDir: string,
  options: { allowMount: boolean },
): Promise<SlotManager> {
  await mkdir(slotsDir, { recursive: true, mode: 0o755 });
  const mountable =
    options.allowMount &&
    process.platform === 'linux' &&
    process.getuid?.() === 0 &&
    (await makeSharedMount(slotsDir));
  if (!mountable) await clearDir(slotsDir);
  return new Slots(slotsDir, mountable ? 'mount' : 'link');
}

class Slots implements SlotManager {
  private readonly mounted = new Map<string, string[]>();

  constructor(
    private readonly slotsDir: string,
    readonly strategy: 'mount' | 'link',
  ) {}

  async create(): Promise<Slot> {
    const id = randomBytes(6).toString('hex');
    const hostDir = join(this.slotsDir, id);
    await mkdir(hostDir, { mode: 0o755 });
    return { id, hostDir };
  }

  async attach(slot: Slot, request: AttachRequest): Promise<void> {
    const work: Promise<void>[] = [];
    const appDir = join(slot.hostDir, 'app');
    // The slots tmpfs cannot hold hard links to the code cache: a few small files are copied instead.
    if (request.codeFiles <= LINK_CODE_UP_TO_FILES)
      linkTreeSync(request.codeDir, appDir, this.strategy === 'mount');
    else if (this.strategy === 'mount') work.push(this.mountInto(slot, request.codeDir, appDir));
    else work.push(linkTree(request.codeDir, appDir));
    if (request.deps !== undefined) {
      const target = join(slot.hostDir, request.deps.name);
      work.push(
        this.strategy === 'mount'
          ? this.mountInto(slot, request.deps.dir, target)
          : linkTree(request.deps.dir, target),
      );
    }
    await Promise.all(work);
  }

  async release(slot: Slot): Promise<void> {
    const mounts = this.mounted.get(slot.id) ?? [];
    this.mounted.delete(slot.id);
    await Promise.all(mounts.map((target) => run('umount', ['-l', target]).catch(() => undefined)));
    await rm(slot.hostDir, { recursive: true, force: true }).catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.strategy === 'mount') {
      await run('umount', ['-R', '-l', this.slotsDir]).catch(() => undefined);
    }
    await clearDir(this.slotsDir);
  }

  private async mountInto(slot: Slot, source: string, target: string): Promise<void> {
    await mkdir(target, { mode: 0o755 });
    await mountOverlay(target, { lower: [source, join(this.slotsDir, EMPTY_DIR)] });
    const list = this.mounted.get(slot.id) ?? [];
    list.push(target);
    this.mounted.set(slot.id, list);
  }
}

/** An empty directory in the slots tmpfs: a read-only overlay needs two lower directories. */
const EMPTY_DIR = '.empty';

async function makeSharedMount(dir: string): Promise<boolean> {
  try {
    // A previous run killed with -9 leaves its mounts behind; start from a clean tree.
    await run('umount', ['-R', '-l', dir]).catch(() => undefined);
    await clearDir(dir);
    await run('mount', ['-t', 'tmpfs', '-o', 'mode=0755,nosuid,nodev', 'tmpfs', dir]);
    await run('mount', ['--make-shared', dir]);
    await mkdir(join(dir, EMPTY_DIR), { mode: 0o755 });
    return true;
  } catch {
    await run('umount', ['-l', dir]).catch(() => undefined);
    return false;
  }
}

/**
 * An overlay at `target` whose options name descriptors (`/proc/self/fd/N` of the `mount` process), not
 * host paths: read-only over `lower` (at least two directories), or writable into `upper` (with `work`
 * on the same filesystem, and an empty `lower`), which then sees every write as a bind mount would.
 */
export async function mountOverlay(
  target: string,
  dirs: { readonly lower: readonly string[]; readonly upper?: string; readonly work?: string },
): Promise<void> {
  const paths = [...dirs.lower, ...(dirs.upper === undefined ? [] : [dirs.upper, dirs.work ?? ''])];
  const handles: FileHandle[] = [];
  try {
    for (const path of paths) handles.push(await open(path, 'r'));
    const fd = (index: number): string => `/proc/self/fd/${3 + index}`;
    const lower = dirs.lower.map((_, index) => fd(index)).join(':');
    const options =
      dirs.upper === undefined
        ? `ro,nosuid,nodev,lowerdir=${lower}`
        : `nosuid,nodev,lowerdir=${lower},upperdir=${fd(dirs.lower.length)},workdir=${fd(dirs.lower.length + 1)}`;
    await new Promise<void>((resolve, reject) => {
      const child = spawn('mount', ['-t', 'overlay', '-o', options, 'none', target], {
        stdio: ['ignore', 'ignore', 'pipe', ...handles.map((handle) => handle.fd)],
      });
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.once('error', reject);
      child.once('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`mount ${target} failed (${code}): ${stderr.trim()}`)),
      );
    });
  } finally {
    for (const handle of handles) await handle.close();
  }
}

async function clearDir(dir: string): Promise<void> {
  const entries = await readdir(dir).catch(() => []);
  await Promise.all(
    entries.map((entry) => rm(join(dir, entry), { recursive: true, force: true }).catch(() => undefined)),
  );
}

/**
 * `linkTree` for small trees, synchronously: a handful of link(2) calls take microseconds, while each
 * trip through the libuv thread pool costs more than that on the cold-start path.
 */
function linkTreeSync(source: string, target: string, copy: boolean): void {
  mkdirSync(target, { recursive: true, mode: 0o755 });
  for (const entry of readdirSync(source, { withFileTypes: true })) {
    const from = join(source, entry.name);
    const to = join(target, entry.name);
    if (entry.isDirectory()) linkTreeSync(from, to, copy);
    else if (entry.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
    else if (entry.isFile()) {
      if (copy) {
        copyFileSync(from, to);
        continue;
      }
      try {
        linkSync(from, to);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
        copyFileSync(from, to);
      }
    }
  }
}

/** Recreates `source` at `target` with hard links, falling back to copies across filesystems. */
export async function linkTree(source: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true, mode: 0o755 });
  const entries = await readdir(source, { withFileTypes: true });
  await Promise.all(
    entries.map(async (entry) => {
      const from = join(source, entry.name);
      const to = join(target, entry.name);
      if (entry.isDirectory()) return linkTree(from, to);
      if (entry.isSymbolicLink()) return symlink(await readlink(from), to);
      if (!entry.isFile()) return undefined;
      try {
        await link(from, to);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
        await copyFile(from, to);
      }
      return undefined;
    }),
  );
}
