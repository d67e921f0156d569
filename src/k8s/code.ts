/**
 * @module A Function CR's code (`spec.code`: inline files, a ConfigMap, or the URL of a .tar.gz) packed as
 * the tar.gz that Hearth's deploy API takes, with the CR's spec as its hearth.yaml. A ConfigMap holds either
 * one file per key (`a__b.js` for `a/b.js`: keys cannot hold '/') or the packed folder under `function.tar.gz`.
 */

import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar';
import { stringify } from 'yaml';
import { receiveArchive, type UnpackLimits } from '../control/packages/index.js';
import { HearthError } from '../domain/errors.js';

export interface CodeReference {
  readonly inline?: Readonly<Record<string, string>>;
  readonly configMap?: { readonly name: string };
  readonly url?: string;
}

/** A ConfigMap's files: text under `data`, base64 under `binaryData` (ConfigMap keys cannot hold '/'). */
export interface ConfigMapFiles {
  readonly data?: Readonly<Record<string, string>>;
  readonly binaryData?: Readonly<Record<string, string>>;
}

/** `hearth deploy --target k8s` names nested paths in ConfigMap keys this way ('/' is not allowed there). */
export const PATH_SEPARATOR_IN_KEY = '__';
/** A ConfigMap binaryData key holding the whole folder as a .tar.gz (what `hearth deploy --target k8s` writes). */
export const ARCHIVE_KEY = 'function.tar.gz';

export class CodeError extends Error {
  constructor(
    readonly reason: 'CodeNotFound' | 'InvalidCode' | 'CodeTooLarge',
    message: string,
  ) {
    super(message);
  }
}

function safePath(name: string): string {
  const path = normalize(name.split(PATH_SEPARATOR_IN_KEY).join('/'));
  if (path.startsWith('..') || path.startsWith('/') || path === '.')
    throw new CodeError('InvalidCode', `code file "${name}": a path inside the function folder`);
  return path;
}

export interface PackedCode {
  readonly archive: Buffer;
  /** sha256 of the files and the spec: the same digest means Hearth already has it. */
  readonly digest: string;
}

/**
 * Packs `files` and the manifest into a tar.gz. `readConfigMap` answers undefined for a missing one.
 */
export async function packCode(
  manifest: Record<string, unknown>,
  code: CodeReference,
  readConfigMap: (name: string) => Promise<ConfigMapFiles | undefined>,
): Promise<PackedCode> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-k8s-code-'));
  try {
    const files = new Map<string, Buffer>();
    if (code.inline !== undefined)
      for (const [name, text] of Object.entries(code.inline)) files.set(safePath(name), Buffer.from(text));
    else if (code.configMap !== undefined) {
      const found = await readConfigMap(code.configMap.name);
      if (found === undefined)
        throw new CodeError(
          'CodeNotFound',
          `ConfigMap ${code.configMap.name} not found in the Function's namespace`,
        );
      const packedFolder = found.binaryData?.[ARCHIVE_KEY];
      if (packedFolder !== undefined)
        await unpackInto(
          files,
          join(dir, 'unpacked'),
          Readable.from(Buffer.from(packedFolder, 'base64')),
          `ConfigMap ${code.configMap.name}`,
        );
      else {
        for (const [name, text] of Object.entries(found.data ?? {}))
          files.set(safePath(name), Buffer.from(text));
        for (const [name, base64] of Object.entries(found.binaryData ?? {}))
          files.set(safePath(name), Buffer.from(base64, 'base64'));
      }
    } else if (code.url !== undefined) {
      // Ended once the code is unpacked (or refused): a body past the cap is not read to its end.
      const done = new AbortController();
      const signal = AbortSignal.any([AbortSignal.timeout(URL_TIMEOUT_MS), done.signal]);
      try {
        const response = await fetch(code.url, { signal }).catch((error: unknown) => {
          throw new CodeError('CodeNotFound', `code url ${code.url}: ${(error as Error).message}`);
        });
        if (!response.ok || response.body === null)
          throw new CodeError('CodeNotFound', `code url ${code.url}: HTTP ${response.status}`);
        await unpackInto(
          files,
          join(dir, 'unpacked'),
          Readable.fromWeb(response.body as never),
          `code url ${code.url}`,
        );
      } finally {
        done.abort();
      }
    } else {
      throw new CodeError('InvalidCode', 'spec.code: one of inline, configMap or url');
    }
    // The CR is the manifest: a hearth.yaml among the files is replaced by it.
    files.set('hearth.yaml', Buffer.from(stringify(manifest)));
    const hash = createHash('sha256');
    const root = join(dir, 'root');
    for (const [path, content] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
      hash.update(path).update('\0').update(content).update('\0');
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), content);
    }
    const chunks: Buffer[] = [];
    for await (const chunk of tar.c({ gzip: true, cwd: root, portable: true }, ['.']))
      chunks.push(chunk as Buffer);
    return { archive: Buffer.concat(chunks), digest: hash.digest('hex') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A code URL the operator downloads: at most this long (the download and the unpacking). */
const URL_TIMEOUT_MS = 60_000;

/**
 * What the operator unpacks of one Function's code (a URL's .tar.gz, a ConfigMap's `function.tar.gz`): a
 * Hearth node's default `upload` limits, which the deploy it then makes is held to as well. The unpacked
 * size and the entry count are capped as the archive is read, so a gzip bomb stops at the cap rather than
 * filling the operator's disk (and memory: the files are read in to be packed again).
 */
export const CODE_LIMITS: UnpackLimits = Object.freeze({
  maxArchiveBytes: 64 * 1024 ** 2,
  maxUnpackedBytes: 256 * 1024 ** 2,
  maxFiles: 20_000,
  unpackTimeoutMs: 30_000,
});

const CAPS = `the operator's caps: ${CODE_LIMITS.maxArchiveBytes / 1024 ** 2} MiB compressed, ${CODE_LIMITS.maxUnpackedBytes / 1024 ** 2} MiB unpacked, ${CODE_LIMITS.maxFiles} entries`;

/** Unpacks `archive` with the platform's vetted, bounded intake (control/packages) and reads its files in. */
async function unpackInto(
  files: Map<string, Buffer>,
  dir: string,
  archive: Readable,
  origin: string,
): Promise<void> {
  let tree: Awaited<ReturnType<typeof receiveArchive>>;
  try {
    tree = await receiveArchive(archive, dir, CODE_LIMITS);
  } catch (error) {
    if (!(error instanceof HearthError)) throw error;
    if (error.code === 'HEARTH_E_ARCHIVE_TOO_LARGE')
      throw new CodeError('CodeTooLarge', `${origin}: ${error.message} (${CAPS})`);
    throw new CodeError('InvalidCode', `${origin}: not a usable .tar.gz (${error.message})`);
  }
  try {
    for await (const path of walk(tree.dir, '')) files.set(path, await readFile(join(tree.dir, path)));
  } finally {
    await tree.cleanup();
  }
}

async function* walk(root: string, prefix: string): AsyncGenerator<string> {
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) yield* walk(root, path);
    else if (entry.isFile()) yield path;
  }
}
