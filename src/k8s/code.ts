/**
 * @module A Function CR's code (`spec.code`: inline files, a ConfigMap, or the URL of a .tar.gz) packed as
 * the tar.gz that Hearth's deploy API takes, with the CR's spec as its hearth.yaml. A ConfigMap holds either
 * one file per key (`a__b.js` for `a/b.js`: keys cannot hold '/') or the packed folder under `function.tar.gz`.
 */

import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { stringify } from 'yaml';

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
    readonly reason: 'CodeNotFound' | 'InvalidCode',
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
      const response = await fetch(code.url, { signal: AbortSignal.timeout(URL_TIMEOUT_MS) }).catch(
        (error: unknown) => {
          throw new CodeError('CodeNotFound', `code url ${code.url}: ${(error as Error).message}`);
        },
      );
      if (!response.ok || response.body === null)
        throw new CodeError('CodeNotFound', `code url ${code.url}: HTTP ${response.status}`);
      await unpackInto(
        files,
        join(dir, 'unpacked'),
        Readable.fromWeb(response.body as never).compose(capped(MAX_URL_BYTES, `code url ${code.url}`)),
        `code url ${code.url}`,
      );
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

/** A code URL the operator downloads: at most this long and this large (it unpacks as the operator). */
const URL_TIMEOUT_MS = 60_000;
const MAX_URL_BYTES = 64 * 1024 * 1024;

/** Passes bytes through until `max` of them, then fails the stream naming the limit. */
function capped(max: number, origin: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > max) callback(new CodeError('InvalidCode', `${origin}: larger than ${max / 1024 ** 2} MiB`));
      else callback(null, chunk);
    },
  });
}

async function unpackInto(
  files: Map<string, Buffer>,
  dir: string,
  archive: Readable,
  origin: string,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await pipeline(archive, tar.x({ cwd: dir, strict: true })).catch((error: unknown) => {
    throw new CodeError('InvalidCode', `${origin}: not a .tar.gz (${(error as Error).message})`);
  });
  for await (const path of walk(dir, '')) files.set(path, await readFile(join(dir, path)));
}

async function* walk(root: string, prefix: string): AsyncGenerator<string> {
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) yield* walk(root, path);
    else if (entry.isFile()) yield path;
  }
}
