/**
 * @module Applying an image's layers, in order, to an empty directory: the rootfs a container mounts
 * read-only. The entry handling is written here rather than left to tar's extractor because each rule is a
 * wall: no entry lands outside the root (`..` refused, absolute paths made relative, nothing written through
 * a symbolic link), device nodes outside `/dev` refused and those in it dropped, set-uid/set-gid bits dropped,
 * OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) applied. node-tar only parses.
 */

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, lstat, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { ReadEntry } from 'tar';
import { HearthError } from '../domain/errors.js';
import { forEachTarEntry } from './tar.js';

export interface LayerToApply {
  readonly file: string;
  readonly digest: string;
  readonly mediaType: string;
  /** The config's `rootfs.diff_ids` entry: the digest of the uncompressed tar, checked as it is read. */
  readonly diffId: string | undefined;
}

export interface UnpackStats {
  readonly files: number;
  readonly bytes: number;
  /** Device nodes under /dev and FIFOs left out (the runtime provides /dev). */
  readonly dropped: number;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

export function layerCompression(mediaType: string): 'gzip' | 'zstd' | 'none' | undefined {
  if (/\.tar\+gzip$|\.tar\.gzip$|rootfs\.diff\.tar\.gzip$/.test(mediaType)) return 'gzip';
  if (/\.tar\+zstd$/.test(mediaType)) return 'zstd';
  if (/layer\.v1\.tar$|rootfs\.diff\.tar$/.test(mediaType)) return 'none';
  return undefined;
}

/** Applies `layers` to `root` (an empty directory the caller made and renames into place afterwards). */
export async function applyLayers(
  root: string,
  layers: readonly LayerToApply[],
  maxBytes: number,
  onLayer: (index: number) => void = () => {},
): Promise<UnpackStats> {
  const totals = { files: 0, bytes: 0, dropped: 0 };
  for (const [index, layer] of layers.entries()) {
    onLayer(index);
    await applyLayer(root, layer, totals, maxBytes);
  }
  await makeMountPoints(root);
  return totals;
}

/**
 * `/proc`, `/dev`, `/sys` and `/tmp` (and files for the runtime to bind `/etc/hosts` and
 * `/etc/resolv.conf` on): under a user namespace the runtime cannot create them in a read-only rootfs owned
 * by the host's root, so an image `FROM scratch` would not start (docs/architecture.md, "Container images").
 */
async function makeMountPoints(root: string): Promise<void> {
  for (const dir of ['proc', 'dev', 'sys', 'tmp', 'etc']) {
    const stat = await lstat(join(root, dir)).catch(() => undefined);
    if (stat === undefined) await mkdir(join(root, dir), { mode: dir === 'tmp' ? 0o777 : 0o755 });
  }
  if (!(await lstat(join(root, 'etc'))).isDirectory()) return;
  for (const file of ['hosts', 'resolv.conf']) {
    const stat = await lstat(join(root, 'etc', file)).catch(() => undefined);
    if (stat === undefined) await writeFile(join(root, 'etc', file), '', { mode: 0o644 });
  }
}

async function applyLayer(
  root: string,
  layer: LayerToApply,
  totals: { files: number; bytes: number; dropped: number },
  maxBytes: number,
): Promise<void> {
  const compression = layerCompression(layer.mediaType);
  if (compression === undefined) throw invalid(layer, `unsupported layer media type ${layer.mediaType}`);
  const writer = new LayerWriter(root, layer, totals, maxBytes);
  const diffHash = createHash('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      diffHash.update(chunk);
      callback(null, chunk);
    },
  });
  await forEachTarEntry(
    [decompressed(layer.file, compression), hashing],
    (entry) => writer.write(entry),
    (error) =>
      invalid(
        layer,
        `not a readable ${compression === 'none' ? 'tar' : `${compression} tar`} (${error.message})`,
      ),
  );
  const diffId = `sha256:${diffHash.digest('hex')}`;
  if (layer.diffId !== undefined && layer.diffId !== diffId)
    throw invalid(
      layer,
      `uncompressed digest mismatch: the config says ${layer.diffId}, the layer is ${diffId}`,
    );
}

/** The layer's tar stream: gunzip in-process; zstd through the `zstd` tool (Node 20's zlib has none). */
function decompressed(file: string, compression: 'gzip' | 'zstd' | 'none'): Readable {
  if (compression === 'none') return createReadStream(file);
  if (compression === 'gzip') return createReadStream(file).pipe(createGunzip());
  const out = new PassThrough();
  const child = spawn('zstd', ['-dc', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.on('error', (error) =>
    out.destroy(new Error(`zstd layers need the zstd tool (apt-get install zstd): ${error.message}`)),
  );
  child.stdout.pipe(out, { end: false });
  child.on('close', (code) => {
    if (code === 0) out.end();
    else out.destroy(new Error(`zstd exited with ${code}: ${stderr.trim()}`));
  });
  return out;
}

class LayerWriter {
  /** Paths this layer wrote: an opaque whiteout hides only what lower layers put in its directory. */
  private readonly written = new Set<string>();
  /** Directories known to be real directories (not links) while this layer is applied. */
  private readonly directories = new Set<string>(['']);

  constructor(
    private readonly root: string,
    private readonly layer: LayerToApply,
    private readonly totals: { files: number; bytes: number; dropped: number },
    private readonly maxBytes: number,
  ) {}

  async write(entry: ReadEntry): Promise<void> {
    const segments = this.segmentsOf(entry.path, 'entry');
    if (segments.length === 0) {
      entry.resume();
      return;
    }
    const name = segments.at(-1) ?? '';
    const parent = segments.slice(0, -1);
    await this.ensureParents(parent, entry.path);
    const relative = segments.join('/');
    const target = join(this.root, relative);
    if (name === OPAQUE) {
      entry.resume();
      await this.opaque(parent);
      return;
    }
    if (name.startsWith(WHITEOUT)) {
      entry.resume();
      await this.remove(join(this.root, ...parent, name.slice(WHITEOUT.length)));
      return;
    }
    this.written.add(relative);
    switch (entry.type) {
      case 'Directory': {
        entry.resume();
        const existing = await lstat(target).catch(() => undefined);
        if (existing?.isDirectory() !== true) {
          if (existing !== undefined) await this.remove(target);
          await mkdir(target, { mode: 0o755 });
        }
        this.directories.add(relative);
        this.totals.files += 1;
        return;
      }
      case 'File':
      case 'OldFile':
      case 'ContiguousFile': {
        this.totals.bytes += entry.size;
        this.totals.files += 1;
        if (this.totals.bytes > this.maxBytes)
          throw new HearthError(
            'HEARTH_E_IMAGE_INVALID',
            `image unpacks to more than ${this.maxBytes} bytes (images.maxUnpackedBytes)`,
            { details: { limit: this.maxBytes, layer: this.layer.digest } },
          );
        await this.remove(target);
        // 'wx' is O_CREAT|O_EXCL: it never follows a link planted at the target.
        const mode = ((entry.mode ?? 0o644) & 0o111) !== 0 ? 0o755 : 0o644;
        await new Promise<void>((resolve, reject) => {
          const out = createWriteStream(target, { flags: 'wx', mode });
          out.on('close', resolve);
          out.on('error', reject);
          entry.pipe(out);
        });
        return;
      }
      case 'SymbolicLink': {
        entry.resume();
        await this.remove(target);
        // The target is only ever resolved by the container, inside its own root; Hearth never follows it.
        await symlink(entry.linkpath ?? '', target);
        this.totals.files += 1;
        return;
      }
      case 'Link': {
        entry.resume();
        const linked = this.segmentsOf(entry.linkpath ?? '', 'hard link target');
        await this.checkExistingParents(linked.slice(0, -1), entry.path);
        const source = join(this.root, ...linked);
        const stat = await lstat(source).catch(() => undefined);
        if (stat === undefined || stat.isDirectory())
          throw invalid(
            this.layer,
            `hard link ${entry.path} points at ${entry.linkpath ?? ''}, which is not a file in the image`,
          );
        await this.remove(target);
        await link(source, target);
        this.totals.files += 1;
        return;
      }
      case 'CharacterDevice':
      case 'BlockDevice':
      case 'FIFO': {
        entry.resume();
        this.written.delete(relative);
        if (entry.type === 'FIFO' || segments[0] === 'dev') {
          this.totals.dropped += 1;
          return;
        }
        throw invalid(this.layer, `device file ${entry.path} (device nodes are refused outside /dev)`);
      }
      default:
        // GNU dump dirs, sparse-file oddities and the like carry nothing a function needs.
        entry.resume();
        this.written.delete(relative);
        this.totals.dropped += 1;
    }
  }

  /** Path segments relative to the root: `./` and a leading `/` dropped; `..` refused. */
  private segmentsOf(path: string, what: string): string[] {
    const segments = path.split('/').filter((segment) => segment !== '' && segment !== '.');
    if (segments.includes('..'))
      throw invalid(this.layer, `${what} ${JSON.stringify(path)} climbs out of the root with ".."`);
    return segments;
  }

  /** Every parent must be a real directory: writing through a link could land anywhere on the host. */
  private async ensureParents(parent: readonly string[], path: string): Promise<void> {
    for (let depth = 1; depth <= parent.length; depth += 1) {
      const relative = parent.slice(0, depth).join('/');
      if (this.directories.has(relative)) continue;
      const stat = await lstat(join(this.root, relative)).catch(() => undefined);
      if (stat === undefined) await mkdir(join(this.root, relative), { mode: 0o755 });
      else if (!stat.isDirectory())
        throw invalid(
          this.layer,
          `entry ${JSON.stringify(path)} goes through ${relative}, which is ${stat.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}`,
        );
      this.directories.add(relative);
    }
  }

  private async checkExistingParents(parent: readonly string[], path: string): Promise<void> {
    for (let depth = 1; depth <= parent.length; depth += 1) {
      const relative = parent.slice(0, depth).join('/');
      const stat = await lstat(join(this.root, relative)).catch(() => undefined);
      if (stat?.isDirectory() !== true)
        throw invalid(
          this.layer,
          `hard link ${JSON.stringify(path)} points through ${relative}, which is not a directory`,
        );
    }
  }

  private async opaque(parent: readonly string[]): Promise<void> {
    const dir = join(this.root, ...parent);
    const prefix = parent.length === 0 ? '' : `${parent.join('/')}/`;
    for (const child of await readdir(dir)) {
      if (!this.written.has(`${prefix}${child}`)) await this.remove(join(dir, child));
    }
  }

  private async remove(target: string): Promise<void> {
    const stat = await lstat(target).catch(() => undefined);
    if (stat === undefined) return;
    // rm never follows a link it removes; a removed directory may have been one we vouched for.
    await rm(target, { recursive: true, force: true });
    if (stat.isDirectory()) {
      this.directories.clear();
      this.directories.add('');
    }
  }
}

function invalid(layer: LayerToApply, reason: string): HearthError {
  return new HearthError('HEARTH_E_IMAGE_INVALID', `layer ${layer.digest}: ${reason}`, {
    details: { layer: layer.digest, reason },
  });
}
