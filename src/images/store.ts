/**
 * @module The node's image store: blobs content-addressed under `images/blobs/sha256/`, shared by every image
 * and function (a blob already here is never fetched again), and one unpacked rootfs per manifest digest
 * under `images/rootfs/`. Everything is written under `images/tmp/` first and renamed into place, so a
 * half-pulled blob or half-unpacked rootfs never has its final name.
 */

import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ERROR_CATALOGUE, type ErrorCode, HearthError } from '../domain/errors.js';
import type { ImageConfig, ResolvedImage } from '../domain/image.js';
import { PACKAGE_ROOT } from '../runtime/paths.js';
import {
  type ArchiveReference,
  formatReference,
  isDigest,
  parseReference,
  type RegistryReference,
} from './reference.js';
import {
  digestMismatch,
  MAX_MANIFEST_BYTES,
  MEDIA,
  RegistryClient,
  type RegistryCredentials,
} from './registry.js';
import { forEachTarEntry } from './tar.js';
import { type LayerToApply, layerCompression, type UnpackStats } from './unpack.js';
import type { UnpackJob, UnpackMessage } from './unpack-worker.js';

export type PullProgress =
  | {
      readonly kind: 'manifest';
      readonly digest: string;
      readonly layers: number;
      readonly sizeBytes: number;
    }
  | {
      readonly kind: 'layer';
      readonly index: number;
      readonly count: number;
      readonly digest: string;
      readonly sizeBytes: number;
      /** `reused`: already on this node; `pulled`: fetched and verified now. */
      readonly status: 'reused' | 'pulled';
    }
  /** A layer still streaming in, at most once a second: bytes so far of its size. */
  | { readonly kind: 'pulling'; readonly digest: string; readonly bytes: number; readonly sizeBytes: number }
  | { readonly kind: 'unpack'; readonly layer: number; readonly count: number }
  | { readonly kind: 'unpacked'; readonly reused: boolean; readonly files: number; readonly bytes: number };

export interface ResolveOptions {
  readonly credentials?: RegistryCredentials | undefined;
  /**
   * Who asks (a namespace): an `oci-archive:` reference resolves only to an archive imported with the same
   * scope, so nobody reaches an image another tenant pulled with its own credentials by naming its digest.
   */
  readonly scope?: string;
  readonly onProgress?: (progress: PullProgress) => void;
  /**
   * Told the image's compressed size once the manifest is read, before any layer is fetched: throw to refuse
   * it (a namespace quota), so an image too large is never downloaded.
   */
  readonly beforePull?: (sizeBytes: number) => void;
  readonly signal?: AbortSignal;
}

export interface ResolveOutcome {
  readonly image: ResolvedImage;
  /** Layer and config bytes fetched from the registry by this resolve. */
  readonly pulledBytes: number;
  /** Layer bytes the image needed that were already on this node. */
  readonly reusedBytes: number;
  readonly pulledLayers: number;
  readonly reusedLayers: number;
}

export interface CollectedImages {
  readonly blobs: number;
  readonly rootfs: number;
  readonly freedBytes: number;
}

export interface ImageStoreOptions {
  readonly dataDir: string;
  /** Bound on one image's unpacked files (bytes). */
  readonly maxUnpackedBytes?: number;
  /** Bound on one uploaded oci-archive. */
  readonly maxArchiveBytes?: number;
  /** Bound on one image's compressed layers, checked from the manifest before anything is fetched. */
  readonly maxImageBytes?: number;
}

interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: { readonly os?: string; readonly architecture?: string; readonly variant?: string };
}

interface ImageManifest {
  readonly mediaType?: string;
  readonly schemaVersion?: number;
  readonly config?: Descriptor;
  readonly layers?: readonly Descriptor[];
  readonly manifests?: readonly Descriptor[];
}

interface ConfigBlob {
  readonly architecture?: string;
  readonly os?: string;
  readonly config?: {
    readonly Entrypoint?: readonly string[] | null;
    readonly Cmd?: readonly string[] | null;
    readonly Env?: readonly string[] | null;
    readonly WorkingDir?: string;
    readonly User?: string;
    readonly ExposedPorts?: Readonly<Record<string, unknown>> | null;
  };
  readonly rootfs?: { readonly diff_ids?: readonly string[] };
}

const DEFAULT_MAX_UNPACKED = 8 * 1024 ** 3;
const DEFAULT_MAX_ARCHIVE = 4 * 1024 ** 3;
const DEFAULT_MAX_IMAGE = 4 * 1024 ** 3;
const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
/** How often a layer still streaming in is reported. */
const PROGRESS_EVERY_MS = 1000;

export class ImageStore {
  readonly root: string;
  private readonly blobDir: string;
  private readonly rootfsDir: string;
  private readonly tmpDir: string;
  /** One fetch per blob and one unpack per manifest at a time, however many deploys ask (singleflight). */
  private readonly fetching = new Map<string, Promise<boolean>>();
  private readonly unpacking = new Map<string, Promise<boolean>>();
  private readonly maxUnpackedBytes: number;
  private readonly maxArchiveBytes: number;
  private readonly maxImageBytes: number;

  constructor(options: ImageStoreOptions) {
    this.root = join(options.dataDir, 'images');
    this.blobDir = join(this.root, 'blobs', 'sha256');
    this.rootfsDir = join(this.root, 'rootfs');
    this.tmpDir = join(this.root, 'tmp');
    this.maxUnpackedBytes = options.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED;
    this.maxArchiveBytes = options.maxArchiveBytes ?? DEFAULT_MAX_ARCHIVE;
    this.maxImageBytes = options.maxImageBytes ?? DEFAULT_MAX_IMAGE;
  }

  /** Creates the directories and clears what a killed run left half-written. */
  async open(): Promise<void> {
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.blobDir, { recursive: true });
    await mkdir(this.rootfsDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  /**
   * Pulls (or finds) the image `reference` names, verifies every digest, unpacks its linux/amd64 rootfs once
   * per manifest digest, and answers what a version pins.
   */
  async resolve(reference: string, options: ResolveOptions = {}): Promise<ResolveOutcome> {
    const ref = parseReference(reference);
    const progress = options.onProgress ?? (() => {});
    if (ref.kind === 'archive') {
      const marker = this.importMarker(options.scope ?? '', ref.digest);
      if ((await stat(marker).catch(() => undefined)) === undefined)
        throw new HearthError(
          'HEARTH_E_IMAGE_NOT_FOUND',
          `image ${reference} was not uploaded to this namespace; upload it with hearth deploy --image oci-archive:FILE`,
          { details: { image: reference } },
        );
      return this.resolveLocal(ref, reference, progress);
    }
    const client = new RegistryClient(ref, options.credentials, options.signal);
    const tagOrDigest = ref.digest ?? ref.tag ?? 'latest';
    let fetched = await client.manifest(tagOrDigest, ref.digest);
    await this.keepBlob(fetched.digest, fetched.bytes);
    let manifest = parseManifest(fetched.bytes, fetched.mediaType, fetched.digest);
    if (manifest.manifests !== undefined) {
      const entry = pickPlatform(manifest.manifests, formatReference(ref));
      fetched = await client.manifest(entry.digest, entry.digest);
      await this.keepBlob(fetched.digest, fetched.bytes);
      manifest = parseManifest(fetched.bytes, fetched.mediaType, fetched.digest);
      if (manifest.manifests !== undefined)
        throw imageInvalid(`${fetched.digest}: an index inside an index is not supported`);
    }
    const { config: configDescriptor, layers } = checkImageManifest(manifest, fetched.digest);
    const sizeBytes = layers.reduce((sum, layer) => sum + layer.size, 0);
    progress({ kind: 'manifest', digest: fetched.digest, layers: layers.length, sizeBytes });
    if (sizeBytes > this.maxImageBytes)
      throw imageInvalid(
        `${reference}: ${formatSize(sizeBytes)} of layers, more than this node takes (${formatSize(this.maxImageBytes)})`,
      );
    options.beforePull?.(sizeBytes);
    let pulledBytes = 0;
    let reusedBytes = 0;
    let pulledLayers = 0;
    let reusedLayers = 0;
    const pulledConfig = await this.ensureBlob(configDescriptor, client, MAX_CONFIG_BYTES, () => {});
    if (pulledConfig) pulledBytes += configDescriptor.size;
    const config = await this.readConfig(configDescriptor.digest);
    for (const [index, layer] of layers.entries()) {
      const pulled = await this.ensureBlob(layer, client, Number.POSITIVE_INFINITY, (bytes) =>
        progress({ kind: 'pulling', digest: layer.digest, bytes, sizeBytes: layer.size }),
      );
      if (pulled) {
        pulledBytes += layer.size;
        pulledLayers += 1;
      } else {
        reusedBytes += layer.size;
        reusedLayers += 1;
      }
      progress({
        kind: 'layer',
        index,
        count: layers.length,
        digest: layer.digest,
        sizeBytes: layer.size,
        status: pulled ? 'pulled' : 'reused',
      });
    }
    const image = await this.finish(reference, fetched.digest, config, layers, sizeBytes, progress);
    return { image, pulledBytes, reusedBytes, pulledLayers, reusedLayers };
  }

  /**
   * Imports an OCI image layout tarball (`buildah push IMG oci-archive:FILE`, `skopeo copy … oci-archive:`,
   * Docker's `save` since 25): every blob verified and stored, the linux/amd64 manifest picked. The answer's
   * `image.reference` (`oci-archive:NAME@sha256:…`) is what a Function's `spec.image` then names.
   */
  async importArchive(
    archive: Readable,
    name: string,
    scope = '',
    onProgress: (progress: PullProgress) => void = () => {},
  ): Promise<ResolveOutcome> {
    const safeName = name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100) || 'image';
    const { index, stored } = await this.readLayout(archive);
    const manifests = index.manifests ?? [];
    let entry = manifests.length === 1 ? manifests[0] : pickPlatform(manifests, `oci-archive:${safeName}`);
    if (entry === undefined) throw imageInvalid(`oci-archive ${safeName}: index.json lists no manifest`);
    const first = await this.localManifest(entry.digest);
    if (first.manifests !== undefined) entry = pickPlatform(first.manifests, `oci-archive:${safeName}`);
    const reference = `oci-archive:${safeName}@${entry.digest}`;
    const outcome = await this.resolveLocal(
      { kind: 'archive', name: safeName, digest: entry.digest },
      reference,
      onProgress,
    );
    const marker = this.importMarker(scope, entry.digest);
    await mkdir(join(marker, '..'), { recursive: true });
    await writeFile(marker, '');
    return { ...outcome, pulledBytes: stored.bytes, pulledLayers: stored.blobs };
  }

  private importMarker(scope: string, digest: string): string {
    return join(
      this.root,
      'imports',
      scope.replace(/[^a-z0-9-]/g, '_') || '_',
      digest.replace(/^sha256:/, ''),
    );
  }

  /** Checks a login against the registry's API root; throws HEARTH_E_REGISTRY_AUTH when it is refused. */
  async checkLogin(registry: string, credentials: RegistryCredentials, signal?: AbortSignal): Promise<void> {
    const ref: RegistryReference = {
      kind: 'registry',
      registry,
      repository: '',
      tag: undefined,
      digest: undefined,
    };
    await new RegistryClient(ref, credentials, signal).ping();
  }

  /** The manifest digests whose rootfs is on disk. */
  async listRootfs(): Promise<string[]> {
    const names = await readdir(this.rootfsDir).catch(() => [] as string[]);
    return names.filter((name) => /^[a-f0-9]{64}$/.test(name)).map((hex) => `sha256:${hex}`);
  }

  /**
   * Deletes every blob and rootfs that no manifest in `keep` needs and nobody stored or reused within the
   * grace period (an import waiting for its deploy, a pull under way).
   */
  async collect(keep: ReadonlySet<string>, cutoff: number): Promise<CollectedImages> {
    const needed = new Set<string>();
    for (const digest of keep) {
      needed.add(digest);
      const manifest = await this.localManifest(digest).catch(() => undefined);
      if (manifest?.config !== undefined) needed.add(manifest.config.digest);
      for (const layer of manifest?.layers ?? []) needed.add(layer.digest);
    }
    let blobs = 0;
    let rootfs = 0;
    let freedBytes = 0;
    for (const hex of await readdir(this.blobDir).catch(() => [] as string[])) {
      const file = join(this.blobDir, hex);
      if (needed.has(`sha256:${hex}`)) continue;
      const info = await stat(file).catch(() => undefined);
      if (info === undefined || info.mtimeMs > cutoff) continue;
      await rm(file, { force: true });
      blobs += 1;
      freedBytes += info.size;
    }
    for (const digest of await this.listRootfs()) {
      if (needed.has(digest)) continue;
      const dir = this.rootfsOf(digest);
      const info = await stat(dir).catch(() => undefined);
      if (info === undefined || info.mtimeMs > cutoff) continue;
      // Renamed away first, so a half-deleted tree never sits under a digest's name.
      const doomed = join(this.tmpDir, `gc-${randomUUID()}`);
      await rename(dir, doomed);
      freedBytes += await treeBytes(doomed);
      await rm(doomed, { recursive: true, force: true });
      rootfs += 1;
    }
    return { blobs, rootfs, freedBytes };
  }

  rootfsOf(manifestDigest: string): string {
    return join(this.rootfsDir, manifestDigest.replace(/^sha256:/, ''));
  }

  blobPath(digest: string): string {
    return join(this.blobDir, digest.replace(/^sha256:/, ''));
  }

  private async resolveLocal(
    ref: ArchiveReference,
    reference: string,
    progress: (progress: PullProgress) => void,
  ): Promise<ResolveOutcome> {
    const manifest = await this.localManifest(ref.digest).catch(() => {
      throw new HearthError(
        'HEARTH_E_IMAGE_NOT_FOUND',
        `image ${reference} is not on this node; upload it with hearth deploy --image oci-archive:FILE`,
        { details: { image: reference } },
      );
    });
    const { config: configDescriptor, layers } = checkImageManifest(manifest, ref.digest);
    for (const descriptor of [configDescriptor, ...layers]) {
      if (!(await this.touch(descriptor.digest)))
        throw imageInvalid(`${reference}: blob ${descriptor.digest} is missing from the archive`);
    }
    const sizeBytes = layers.reduce((sum, layer) => sum + layer.size, 0);
    progress({ kind: 'manifest', digest: ref.digest, layers: layers.length, sizeBytes });
    for (const [index, layer] of layers.entries())
      progress({
        kind: 'layer',
        index,
        count: layers.length,
        digest: layer.digest,
        sizeBytes: layer.size,
        status: 'reused',
      });
    const config = await this.readConfig(configDescriptor.digest);
    const image = await this.finish(reference, ref.digest, config, layers, sizeBytes, progress);
    return { image, pulledBytes: 0, reusedBytes: sizeBytes, pulledLayers: 0, reusedLayers: layers.length };
  }

  private async finish(
    reference: string,
    manifestDigest: string,
    config: ConfigBlob,
    layers: readonly Descriptor[],
    sizeBytes: number,
    progress: (progress: PullProgress) => void,
  ): Promise<ResolvedImage> {
    if ((config.os ?? 'linux') !== 'linux' || (config.architecture ?? 'amd64') !== 'amd64')
      throw imageInvalid(
        `${reference}: the image is for ${config.os ?? '?'}/${config.architecture ?? '?'}; this node runs linux/amd64`,
      );
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== layers.length)
      throw imageInvalid(
        `${reference}: the config lists ${diffIds.length} layers, the manifest ${layers.length}`,
      );
    await this.ensureRootfs(manifestDigest, layers, diffIds, progress);
    return {
      reference,
      manifestDigest,
      rootfs: this.rootfsOf(manifestDigest),
      config: imageConfigOf(config),
      sizeBytes,
    };
  }

  private async ensureRootfs(
    manifestDigest: string,
    layers: readonly Descriptor[],
    diffIds: readonly string[],
    progress: (progress: PullProgress) => void,
  ): Promise<void> {
    const target = this.rootfsOf(manifestDigest);
    let running = this.unpacking.get(manifestDigest);
    if (running === undefined) {
      running = (async () => {
        const existing = await stat(target).catch(() => undefined);
        if (existing !== undefined) {
          const now = new Date();
          await utimes(target, now, now);
          return false;
        }
        const scratch = join(this.tmpDir, `rootfs-${randomUUID()}`);
        await mkdir(scratch, { mode: 0o755 });
        try {
          const stats = await unpackInWorker(
            scratch,
            layers.map((layer, index) => ({
              file: this.blobPath(layer.digest),
              digest: layer.digest,
              mediaType: layer.mediaType,
              diffId: diffIds[index],
            })),
            this.maxUnpackedBytes,
            (layer) => progress({ kind: 'unpack', layer, count: layers.length }),
          );
          await rename(scratch, target);
          progress({ kind: 'unpacked', reused: false, files: stats.files, bytes: stats.bytes });
          return true;
        } catch (error) {
          await rm(scratch, { recursive: true, force: true });
          throw error;
        }
      })().finally(() => this.unpacking.delete(manifestDigest));
      this.unpacking.set(manifestDigest, running);
    }
    const unpacked = await running;
    if (!unpacked) progress({ kind: 'unpacked', reused: true, files: 0, bytes: 0 });
  }

  /** True when it fetched the blob; false when it was already here (its grace period restarts). */
  private ensureBlob(
    descriptor: Descriptor,
    client: RegistryClient,
    max: number,
    onBytes: (bytes: number) => void,
  ): Promise<boolean> {
    if (!isDigest(descriptor.digest))
      throw imageInvalid(`unsupported digest ${descriptor.digest} (sha256 only)`);
    if (descriptor.size > max) throw imageInvalid(`blob ${descriptor.digest} is larger than ${max} bytes`);
    let running = this.fetching.get(descriptor.digest);
    if (running === undefined) {
      running = (async () => {
        if (await this.touch(descriptor.digest)) return false;
        const response = await client.blob(descriptor.digest);
        if (response.body === null) throw imageInvalid(`blob ${descriptor.digest}: empty answer`);
        await this.storeVerified(
          Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>),
          descriptor.digest,
          descriptor.size,
          onBytes,
        );
        return true;
      })().finally(() => this.fetching.delete(descriptor.digest));
      this.fetching.set(descriptor.digest, running);
    }
    return running;
  }

  /** Streams `source` to a scratch file, hashing and counting; renames it into place only when it matches. */
  private async storeVerified(
    source: Readable,
    digest: string,
    size: number | undefined,
    onBytes: (bytes: number) => void = () => {},
  ): Promise<number> {
    const scratch = join(this.tmpDir, `blob-${randomUUID()}`);
    const hash = createHash('sha256');
    let bytes = 0;
    let reported = performance.now();
    const counting = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        if (size !== undefined && bytes > size) {
          callback(digestMismatch(`blob ${digest}`, `${digest} (${size} bytes)`, `more than ${size} bytes`));
          return;
        }
        hash.update(chunk);
        if (performance.now() - reported >= PROGRESS_EVERY_MS) {
          reported = performance.now();
          onBytes(bytes);
        }
        callback(null, chunk);
      },
    });
    try {
      await pipeline(source, counting, createWriteStream(scratch, { mode: 0o644 }));
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) throw digestMismatch(`blob ${digest}`, digest, actual);
      if (size !== undefined && bytes !== size)
        throw digestMismatch(`blob ${digest}`, `${size} bytes`, `${bytes} bytes`);
      await rename(scratch, this.blobPath(digest));
      return bytes;
    } catch (error) {
      await rm(scratch, { force: true });
      throw error;
    }
  }

  /** Keeps a manifest's bytes as a blob (already verified by the caller), for GC and `oci-archive:` lookups. */
  private async keepBlob(digest: string, bytes: Buffer): Promise<void> {
    if (await this.touch(digest)) return;
    await this.storeVerified(Readable.from([bytes]), digest, bytes.length);
  }

  /** True when the blob is here; its mtime is refreshed, restarting its grace period against GC. */
  private async touch(digest: string): Promise<boolean> {
    const now = new Date();
    try {
      await utimes(this.blobPath(digest), now, now);
      return true;
    } catch {
      return false;
    }
  }

  private async localManifest(digest: string): Promise<ImageManifest> {
    const bytes = await readFile(this.blobPath(digest));
    if (bytes.length > MAX_MANIFEST_BYTES) throw imageInvalid(`manifest ${digest} is too large`);
    return parseManifest(bytes, undefined, digest);
  }

  private async readConfig(digest: string): Promise<ConfigBlob> {
    const bytes = await readFile(this.blobPath(digest));
    try {
      return JSON.parse(bytes.toString('utf8')) as ConfigBlob;
    } catch {
      throw imageInvalid(`config ${digest} is not JSON`);
    }
  }

  /** Reads an OCI layout tarball: blobs verified into the store as they stream by, index.json kept. */
  private async readLayout(
    archive: Readable,
  ): Promise<{ index: ImageManifest; stored: { blobs: number; bytes: number } }> {
    let indexBytes: Buffer | undefined;
    let sawLayout = false;
    let total = 0;
    const stored = { blobs: 0, bytes: 0 };
    await forEachTarEntry(
      [archive],
      async (entry) => {
        const path = entry.path.replace(/^\.\//, '');
        total += entry.size;
        if (total > this.maxArchiveBytes)
          throw imageInvalid(`the archive holds more than ${this.maxArchiveBytes} bytes`);
        const blob = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(path);
        if (path === 'oci-layout') sawLayout = true;
        if (path === 'index.json') {
          if (entry.size > MAX_MANIFEST_BYTES) throw imageInvalid('index.json is too large');
          const chunks: Buffer[] = [];
          for await (const chunk of entry) chunks.push(chunk as Buffer);
          indexBytes = Buffer.concat(chunks);
        } else if (blob !== null && entry.type === 'File') {
          const digest = `sha256:${blob[1]}`;
          if (await this.touch(digest)) entry.resume();
          else {
            await this.storeVerified(Readable.from(entry), digest, entry.size);
            stored.blobs += 1;
            stored.bytes += entry.size;
          }
        } else entry.resume();
      },
      (error) => imageInvalid(`not a readable oci-archive (${error.message})`),
    );
    if (!sawLayout || indexBytes === undefined)
      throw imageInvalid(
        'not an OCI image layout (no oci-layout and index.json at its root): make it with buildah push IMAGE oci-archive:FILE or skopeo copy',
      );
    if (indexBytes.length > MAX_MANIFEST_BYTES) throw imageInvalid('index.json is too large');
    return { index: parseManifest(indexBytes, MEDIA.ociIndex, 'index.json'), stored };
  }
}

const LAYER_TYPES_HINT = 'OCI or Docker v2 layers: tar, tar+gzip, tar+zstd';

function parseManifest(bytes: Buffer, mediaType: string | undefined, digest: string): ImageManifest {
  let manifest: ImageManifest;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as ImageManifest;
  } catch {
    throw imageInvalid(`manifest ${digest} is not JSON`);
  }
  const type = manifest.mediaType ?? mediaType ?? '';
  if (
    type.startsWith('application/vnd.docker.distribution.manifest.v1') ||
    (manifest.schemaVersion !== undefined && manifest.schemaVersion !== 2)
  )
    throw imageInvalid(
      `manifest ${digest}: unsupported media type ${type || `schemaVersion ${manifest.schemaVersion}`} (Docker schema 1 is not supported; push the image again with a current tool)`,
    );
  if (
    type !== '' &&
    ![MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].some(
      (known) => known === type,
    )
  )
    throw imageInvalid(`manifest ${digest}: unsupported media type ${type}`);
  return manifest;
}

function checkImageManifest(
  manifest: ImageManifest,
  digest: string,
): { config: Descriptor; layers: readonly Descriptor[] } {
  const config = manifest.config;
  if (config === undefined || manifest.layers === undefined)
    throw imageInvalid(`manifest ${digest} has no config or layers`);
  if (config.mediaType !== MEDIA.ociConfig && config.mediaType !== MEDIA.dockerConfig)
    throw imageInvalid(
      `manifest ${digest}: unsupported config media type ${config.mediaType} (not a container image: an artifact?)`,
    );
  for (const layer of manifest.layers) {
    if (layerCompression(layer.mediaType) === undefined)
      throw imageInvalid(
        `layer ${layer.digest}: unsupported media type ${layer.mediaType} (${LAYER_TYPES_HINT})`,
      );
    if (!isDigest(layer.digest)) throw imageInvalid(`layer ${layer.digest}: sha256 digests only`);
  }
  return { config, layers: manifest.layers };
}

function pickPlatform(manifests: readonly Descriptor[], reference: string): Descriptor {
  const match = manifests.find(
    (entry) => entry.platform?.os === 'linux' && entry.platform.architecture === 'amd64',
  );
  if (match !== undefined) return match;
  const offered = manifests
    .map((entry) => `${entry.platform?.os ?? '?'}/${entry.platform?.architecture ?? '?'}`)
    .join(', ');
  throw imageInvalid(
    `${reference}: no linux/amd64 image in the index (it has ${offered || 'nothing'}); this node runs linux/amd64`,
  );
}

function imageConfigOf(blob: ConfigBlob): ImageConfig {
  const config = blob.config ?? {};
  return {
    entrypoint: [...(config.Entrypoint ?? [])],
    cmd: [...(config.Cmd ?? [])],
    env: [...(config.Env ?? [])],
    workingDir: config.WorkingDir ?? '',
    user: config.User ?? '',
    exposedPorts: Object.keys(config.ExposedPorts ?? {}),
  };
}

/** The compiled worker, as the archive worker is: under the tests too, the build output is what runs. */
const UNPACK_WORKER = pathToFileURL(`${PACKAGE_ROOT}dist/images/unpack-worker.js`);

/** `applyLayers` in a worker thread of its own (one per unpack: unpacks are rare, a thread starts in ~50 ms). */
function unpackInWorker(
  root: string,
  layers: readonly LayerToApply[],
  maxBytes: number,
  onLayer: (index: number) => void,
): Promise<UnpackStats> {
  const job: UnpackJob = { root, layers, maxBytes };
  const worker = new Worker(UNPACK_WORKER, { workerData: job });
  return new Promise((resolve, reject) => {
    let settled = false;
    worker.on('message', (message: UnpackMessage) => {
      if (message.kind === 'layer') {
        onLayer(message.index);
        return;
      }
      settled = true;
      void worker.terminate();
      if (message.kind === 'done') resolve(message.stats);
      else if (message.code !== undefined && message.code in ERROR_CATALOGUE)
        reject(
          new HearthError(
            message.code as ErrorCode,
            message.message,
            message.details === undefined ? {} : { details: message.details },
          ),
        );
      else reject(new Error(message.message));
    });
    worker.on('error', (error) => {
      if (!settled) reject(error);
      settled = true;
    });
    worker.on('exit', (code) => {
      if (!settled) reject(new Error(`the unpack worker exited with ${code}`));
      settled = true;
    });
  });
}

function imageInvalid(reason: string): HearthError {
  return new HearthError('HEARTH_E_IMAGE_INVALID', reason, { details: { reason } });
}

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const info = await stat(join(entry.parentPath, entry.name)).catch(() => undefined);
    total += info?.size ?? 0;
  }
  return total;
}

export type { RegistryReference };

/** One line of deploy progress for a pull event (what `hearth deploy` prints). */
export function describeProgress(progress: PullProgress): string {
  switch (progress.kind) {
    case 'manifest':
      return `manifest ${progress.digest.slice(0, 19)}: ${progress.layers} layer(s), ${formatSize(progress.sizeBytes)}`;
    case 'layer':
      return `layer ${progress.index + 1}/${progress.count} ${progress.digest.slice(7, 19)} ${formatSize(progress.sizeBytes)} ${progress.status === 'reused' ? 'already on this node' : 'pulled and verified'}`;
    case 'pulling':
      return `layer ${progress.digest.slice(7, 19)}: ${formatSize(progress.bytes)} of ${formatSize(progress.sizeBytes)}`;
    case 'unpack':
      return `unpacking layer ${progress.layer + 1}/${progress.count}`;
    case 'unpacked':
      return progress.reused
        ? 'rootfs already unpacked on this node'
        : `rootfs unpacked: ${progress.files} entries, ${formatSize(progress.bytes)}`;
  }
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}
