/**
 * @module Hand-made images pushed straight through the distribution API, for the bad-input tests: layers with
 * `..` entries, device files or links to climb through, configs for another architecture, odd media types.
 * Tools like buildah refuse to make these, so the tar headers and manifests are written here.
 */

import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

export interface CraftedEntry {
  readonly name: string;
  /** `0` file (default), `1` hard link, `2` symbolic link, `3` character device, `5` directory. */
  readonly type?: '0' | '1' | '2' | '3' | '5';
  readonly content?: string;
  readonly linkname?: string;
  readonly mode?: number;
}

/** An uncompressed tar of `entries`, ustar headers built byte by byte. */
export function craftTar(entries: readonly CraftedEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const content = Buffer.from(entry.content ?? '');
    const type = entry.type ?? '0';
    const size = type === '0' ? content.length : 0;
    const header = Buffer.alloc(512);
    const field = (offset: number, length: number, value: string): void => {
      header.write(value.slice(0, length), offset, length, 'utf8');
    };
    const octal = (offset: number, length: number, value: number): void => {
      field(offset, length, `${value.toString(8).padStart(length - 1, '0')}\0`);
    };
    field(0, 100, entry.name);
    octal(100, 8, entry.mode ?? (type === '5' ? 0o755 : 0o644));
    octal(108, 8, 0);
    octal(116, 8, 0);
    octal(124, 12, size);
    octal(136, 12, 1_700_000_000);
    field(148, 8, '        ');
    field(156, 1, type);
    field(157, 100, entry.linkname ?? '');
    field(257, 6, 'ustar\0');
    field(263, 2, '00');
    if (type === '3') {
      octal(329, 8, 1);
      octal(337, 8, 3);
    }
    let sum = 0;
    for (const byte of header) sum += byte;
    field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    blocks.push(header);
    if (size > 0) {
      blocks.push(content);
      blocks.push(Buffer.alloc((512 - (size % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export interface CraftedImage {
  readonly layers: readonly (readonly CraftedEntry[])[];
  readonly layerMediaType?: string;
  readonly architecture?: string;
  /** Push an index whose only entry is this image, with this platform architecture. */
  readonly indexArchitecture?: string;
}

export interface PushedImage {
  readonly manifestDigest: string;
  readonly layerDigests: readonly string[];
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Pushes `image` as `host/repository:tag` (plain HTTP, optional basic auth); answers its digests. */
export async function pushCrafted(
  host: string,
  repository: string,
  tag: string,
  image: CraftedImage,
  credentials?: { username: string; password: string },
): Promise<PushedImage> {
  const auth: Record<string, string> =
    credentials === undefined
      ? {}
      : {
          authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`,
        };
  const base = `http://${host}/v2/${repository}`;
  const upload = async (bytes: Buffer): Promise<string> => {
    const digest = sha256(bytes);
    const started = await fetch(`${base}/blobs/uploads/`, { method: 'POST', headers: auth });
    if (started.status !== 202) throw new Error(`upload start: ${started.status} ${await started.text()}`);
    const location = new URL(started.headers.get('location') ?? '', `http://${host}`);
    location.searchParams.set('digest', digest);
    const done = await fetch(location, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    if (done.status !== 201) throw new Error(`upload: ${done.status} ${await done.text()}`);
    return digest;
  };
  const tars = image.layers.map((entries) => craftTar(entries));
  const blobs = tars.map((tar) => gzipSync(tar));
  const layerDigests: string[] = [];
  for (const blob of blobs) layerDigests.push(await upload(blob));
  const config = Buffer.from(
    JSON.stringify({
      architecture: image.architecture ?? 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/true'] },
      rootfs: { type: 'layers', diff_ids: tars.map((tar) => sha256(tar)) },
    }),
  );
  const configDigest = await upload(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: blobs.map((blob, index) => ({
        mediaType: image.layerMediaType ?? 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: layerDigests[index],
        size: blob.length,
      })),
    }),
  );
  const manifestDigest = sha256(manifest);
  const put = async (reference: string, body: Buffer, mediaType: string): Promise<void> => {
    const response = await fetch(`${base}/manifests/${reference}`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': mediaType },
      body,
    });
    if (response.status !== 201) throw new Error(`manifest: ${response.status} ${await response.text()}`);
  };
  if (image.indexArchitecture === undefined) {
    await put(tag, manifest, 'application/vnd.oci.image.manifest.v1+json');
    return { manifestDigest, layerDigests };
  }
  await put(manifestDigest, manifest, 'application/vnd.oci.image.manifest.v1+json');
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: manifestDigest,
          size: manifest.length,
          platform: { os: 'linux', architecture: image.indexArchitecture },
        },
      ],
    }),
  );
  await put(tag, index, 'application/vnd.oci.image.index.v1+json');
  return { manifestDigest: sha256(index), layerDigests };
}

/** The file holding a blob in the registry's filesystem storage (to tamper with it). */
export function registryBlobFile(storage: string, digest: string): string {
  const hex = digest.replace(/^sha256:/, '');
  return `${storage}/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}
