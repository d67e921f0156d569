/**
 * @module The microVM's boot image, built from this host's own files and cached by content hash: the
 * guest kernel (Debian's cloud kernel, unpacked to the ELF `vmlinux` QEMU boots straight into 64-bit mode
 * through its PVH entry), a small initramfs (busybox, the virtio modules the kernel builds as modules,
 * and `init`), and a read-only ext4 root holding the runtimes' interpreters with their shared libraries
 * and Hearth's guest bootstraps, at the paths their launch specs name.
 */

import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { LaunchSpec } from '../index.js';

const run = promisify(execFile);

/** Bumped whenever the image's layout or init changes, so a cached image of an older layout is not used. */
const LAYOUT = 4;

/** Modules the cloud kernel does not build in, loaded by init in this order (dependencies first). */
const MODULES = [
  'drivers/virtio/virtio_ring',
  'drivers/virtio/virtio',
  'drivers/virtio/virtio_mmio',
  'drivers/char/virtio_console',
  'drivers/block/virtio_blk',
  'fs/fuse/fuse',
  'fs/fuse/virtiofs',
  'drivers/virtio/virtio_balloon',
] as const;

/** Parts of a Python prefix a guest never imports: left out of the root, which every microVM reads. */
const PYTHON_SKIP = new Set([
  'site-packages',
  'test',
  'idlelib',
  'tkinter',
  'turtledemo',
  'ensurepip',
  'lib2to3',
]);

/** Where boot images are cached by default: per machine user, shared by every platform and data dir. */
export const DEFAULT_IMAGE_CACHE = join(homedir(), '.cache', 'hearth', 'microvm');

/** The unprivileged uid the function runs as inside the VM (no root even in its own kernel). */
export const GUEST_UID = 65534;

/**
 * PID 1 of every microVM. It mounts the root (virtio-blk, read-only) and the slot (virtiofs tag `slot`,
 * read-only) at /code, finds the named virtio-serial ports, runs the runtime's guest unprivileged with the
 * IPC port as fd 3 and its stdout and stderr on ports of their own, then reports how it ended (exit code
 * and the kernel's OOM kill count) on the status port and powers the VM off.
 */
const INIT = `#!/bin/busybox sh
B=/bin/busybox
$B mount -t devtmpfs dev /dev
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
for m in ${MODULES.map((path) => basename(path)).join(' ')}; do $B insmod /modules/$m.ko || echo "init: insmod $m failed" >/dev/hvc0; done
$B mkdir -p /root
$B mount -t ext4 -o ro,noatime /dev/vda /root || echo "init: no root" >/dev/hvc0
$B mount -t virtiofs -o ro,nosuid,nodev slot /root/code || echo "init: no slot" >/dev/hvc0
$B mount -t proc -o nosuid,nodev,noexec proc /root/proc
$B mount -t devtmpfs -o nosuid,noexec dev /root/dev
$B mount -t tmpfs -o mode=1777,nosuid,nodev,size=\${hearth_tmp:-64m} tmp /root/tmp
for p in /sys/class/virtio-ports/*; do
  [ -f $p/name ] || continue
  case "$($B cat $p/name)" in
    hearth.ipc) ipc=/dev/\${p##*/} ;;
    hearth.stderr) err=/dev/\${p##*/} ;;
    hearth.status) st=/dev/\${p##*/} ;;
  esac
done
$B hostname hearth
$B chroot /root /bin/setpriv --reuid=${GUEST_UID} --regid=${GUEST_UID} --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all /bin/busybox env -i "$@" 3<>/root$ipc >/dev/hvc0 2>/root$err
code=$?
echo "exit=$code $($B grep oom_kill /proc/vmstat)" >$st
$B poweroff -f
`;

export interface BootImage {
  /** The directory holding `vmlinux`, `initramfs.gz` and `root.ext4`. */
  readonly dir: string;
  readonly kernel: string;
  readonly initramfs: string;
  readonly root: string;
  /** The in-image directory of each runtime's guest bootstrap, by its host `guestDir`. */
  readonly guestDirs: ReadonlyMap<string, string>;
}

/** Debian's cloud kernel installed on this host (`linux-image-cloud-amd64`), newest first. */
export function findCloudKernel(): { image: string; modules: string } | undefined {
  const names = existsSync('/boot') ? readdirSync('/boot') : [];
  const releases = names
    .filter((name) => /^vmlinuz-.*-cloud-amd64$/.test(name))
    .map((name) => name.slice('vmlinuz-'.length))
    .sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  for (const release of releases) {
    const modules = join('/lib/modules', release);
    if (existsSync(modules)) return { image: join('/boot', `vmlinuz-${release}`), modules };
  }
  return undefined;
}

/** Where a runtime's guest bootstrap lives inside the image: `/hearth/<runtime>`. */
export function guestPathFor(guestDir: string): string {
  return `/hearth/${basename(dirname(guestDir))}`;
}

/**
 * The boot image for these launch specs, built under `cacheDir/<hash>` unless an image of the same
 * inputs is there already. The hash covers the kernel, each interpreter (path, size, mtime), the guest
 * bootstraps' contents and the init script, so a new node or a rebuilt guest makes a new image.
 */
export async function ensureBootImage(cacheDir: string, launches: readonly LaunchSpec[]): Promise<BootImage> {
  const kernel = findCloudKernel();
  if (kernel === undefined)
    throw new Error(
      'no Debian cloud kernel in /boot: install it with `apt-get install linux-image-cloud-amd64`',
    );
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((path) => existsSync(path));
  if (busybox === undefined) throw new Error('busybox is not installed: `apt-get install busybox-static`');
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => existsSync(path));
  if (setpriv === undefined) throw new Error('setpriv (util-linux) is not installed');
  const hash = createHash('sha256');
  hash.update(`layout ${LAYOUT}\n${INIT}\n`);
  for (const file of [kernel.image, busybox, setpriv, ...launches.map((launch) => launch.command)])
    hash.update(fingerprint(file));
  for (const launch of launches) hashTree(hash, launch.guestDir);
  const key = hash.digest('hex').slice(0, 16);
  const dir = join(cacheDir, key);
  const guestDirs = new Map(launches.map((launch) => [launch.guestDir, guestPathFor(launch.guestDir)]));
  const image: BootImage = {
    dir,
    kernel: join(dir, 'vmlinux'),
    initramfs: join(dir, 'initramfs.gz'),
    root: join(dir, 'root.ext4'),
    guestDirs,
  };
  if (existsSync(join(dir, 'done'))) return image;
  const work = `${dir}.${process.pid}.tmp`;
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    await extractKernel(kernel.image, join(work, 'vmlinux'));
    await writeFile(join(work, 'initramfs.gz'), await initramfs(busybox, kernel.modules));
    const staging = join(work, 'root');
    stageRoot(staging, busybox, setpriv, launches);
    await run('mke2fs', [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-O',
      '^has_journal',
      '-L',
      'hearth',
      '-d',
      staging,
      join(work, 'root.ext4'),
      `${rootSizeMiB(staging)}M`,
    ]);
    rmSync(staging, { recursive: true, force: true });
    await writeFile(join(work, 'done'), `${new Date().toISOString()}\n`);
    mkdirSync(dirname(dir), { recursive: true });
    // Another platform on this machine may have built the same image meanwhile: either copy is good.
    if (!existsSync(join(dir, 'done'))) {
      rmSync(dir, { recursive: true, force: true });
      renameSync(work, dir);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return image;
}

function fingerprint(file: string): string {
  const stat = statSync(file);
  return `${file} ${stat.size} ${stat.mtimeMs}\n`;
}

function hashTree(hash: ReturnType<typeof createHash>, dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    const path = join(dir, entry.name);
    if (entry.name === '__pycache__') continue;
    if (entry.isDirectory()) hashTree(hash, path);
    else if (entry.isFile()) hash.update(`${path}\n`).update(readFileSync(path));
  }
}

/**
 * Unpacks the kernel from Debian's bzImage: its payload is LZ4 (legacy frame), found by its magic. QEMU
 * boots the ELF through its PVH note, skipping the real-mode setup and the decompressor.
 */
async function extractKernel(bzImage: string, target: string): Promise<void> {
  const data = await readFile(bzImage);
  const offset = data.indexOf(Buffer.from([0x02, 0x21, 0x4c, 0x18]));
  if (offset < 0) throw new Error(`${bzImage} has no LZ4 payload (this kernel is compressed otherwise)`);
  const payload = `${target}.lz4`;
  await writeFile(payload, data.subarray(offset));
  // lz4 stops at the end of its frame and warns about the bzImage's trailing bytes: that is expected.
  await run('/bin/sh', ['-c', 'lz4 -dc "$1" > "$2" 2>/dev/null; test -s "$2"', 'unlz4', payload, target]);
  await rm(payload);
}

/** A newc cpio archive (what the kernel unpacks as initramfs), gzipped. Hand-written: 30 lines, no tool. */
async function initramfs(busybox: string, modules: string): Promise<Buffer> {
  const entries: { name: string; mode: number; data: Buffer }[] = [];
  for (const name of ['bin', 'dev', 'proc', 'sys', 'root', 'modules'])
    entries.push({ name, mode: 0o40755, data: Buffer.alloc(0) });
  entries.push({ name: 'bin/busybox', mode: 0o100755, data: await readFile(busybox) });
  entries.push({ name: 'init', mode: 0o100755, data: Buffer.from(INIT) });
  for (const module of MODULES)
    entries.push({
      name: `modules/${basename(module)}.ko`,
      mode: 0o100644,
      data: await readFile(join(modules, 'kernel', `${module}.ko`)),
    });
  const parts: Buffer[] = [];
  let ino = 1;
  const pad = (length: number): Buffer => Buffer.alloc((4 - (length % 4)) % 4);
  const add = (name: string, mode: number, data: Buffer): void => {
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0];
    const header = `070701${fields.map((field) => field.toString(16).padStart(8, '0')).join('')}`;
    const head = Buffer.from(`${header}${name}\0`);
    parts.push(head, pad(head.length), data, pad(data.length));
  };
  for (const entry of entries) add(entry.name, entry.mode, entry.data);
  add('TRAILER!!!', 0, Buffer.alloc(0));
  return gzipSync(Buffer.concat(parts), { level: 1 });
}

/** The root filesystem's tree: busybox, setpriv, each interpreter with its libraries, the guests. */
function stageRoot(root: string, busybox: string, setpriv: string, launches: readonly LaunchSpec[]): void {
  for (const dir of ['bin', 'code', 'dev', 'proc', 'sys', 'tmp', 'etc', 'hearth'])
    mkdirSync(join(root, dir), { recursive: true, mode: 0o755 });
  copyWithLibraries(root, busybox, '/bin/busybox');
  copyWithLibraries(root, setpriv, '/bin/setpriv');
  for (const tool of ['sh', 'env']) cpSync(busybox, join(root, 'bin', tool));
  for (const launch of launches) {
    for (const extra of launch.readOnlyPaths) {
      copyPrefix(root, extra);
      // Extension modules (Python's lib-dynload) load libraries of their own: libz, libssl, libffi…
      for (const module of sharedObjects(join(root, extra))) copyLibraries(root, module);
    }
    copyWithLibraries(root, launch.command, launch.command);
    cpSync(launch.guestDir, join(root, guestPathFor(launch.guestDir)), {
      recursive: true,
      dereference: true,
    });
  }
  const etc = join(root, 'etc');
  writeFileSync(
    join(etc, 'passwd'),
    `root:x:0:0:root:/root:/bin/false\nsandbox:x:${GUEST_UID}:${GUEST_UID}:sandbox:/tmp:/bin/false\n`,
  );
  writeFileSync(join(etc, 'group'), `root:x:0:\nsandbox:x:${GUEST_UID}:\n`);
  writeFileSync(join(etc, 'hosts'), '127.0.0.1 localhost\n::1 localhost\n');
}

/** An interpreter's install prefix (a pyenv Python, say), without what a guest never loads. */
function copyPrefix(root: string, prefix: string): void {
  cpSync(prefix, join(root, prefix), {
    recursive: true,
    dereference: false,
    filter: (source) => {
      const name = basename(source);
      const inStdlib = /\/lib\/python3\.\d+$/.test(dirname(source));
      if (inStdlib && (PYTHON_SKIP.has(name) || name.startsWith('config-'))) return false;
      return !source.startsWith(join(prefix, 'include')) && !source.startsWith(join(prefix, 'share'));
    },
  });
}

/** Copies an executable to `at` in the root, and every shared library `ldd` says it loads. */
function copyWithLibraries(root: string, source: string, at: string): void {
  mkdirSync(dirname(join(root, at)), { recursive: true });
  // An interpreter inside a prefix copied already (a pyenv Python) is there, maybe as a symbolic link.
  if (!existsSync(join(root, at))) cpSync(source, join(root, at), { dereference: true });
  copyLibraries(root, source);
}

/** The shared objects under a directory (extension modules, the interpreter's own library). */
function sharedObjects(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...sharedObjects(path));
    else if (entry.isFile() && /\.so(\.[\d.]+)?$/.test(entry.name)) found.push(path);
  }
  return found;
}

/** Copies into the root every shared library `ldd` says `binary` loads, at the same path. */
function copyLibraries(root: string, binary: string): void {
  let listing = '';
  try {
    listing = readCommand('ldd', [binary]);
  } catch {
    return; // static: nothing to add
  }
  for (const match of listing.matchAll(/(\/[^\s]+)\s+\(0x/g)) {
    const library = match[1];
    if (library === undefined || existsSync(join(root, library))) continue;
    mkdirSync(dirname(join(root, library)), { recursive: true });
    cpSync(library, join(root, library), { dereference: true });
  }
}

function rootSizeMiB(staging: string): number {
  const bytes = Number(readCommand('du', ['-sb', staging]).split('\t')[0]);
  // ext4's metadata and inode tables, with room to spare: the image is sparse, so unused space costs nothing.
  return Math.ceil((bytes * 1.3) / 1024 ** 2) + 64;
}

function readCommand(command: string, args: readonly string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}
