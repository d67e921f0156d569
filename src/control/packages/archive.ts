/** @module Safe intake of uploaded .tar.gz archives: bounded upload, a listing pass that refuses anything unsafe, bounded extraction. */

import { createReadStream, createWriteStream, type Stats } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { finished, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { HearthError } from '../../domain/errors.js';
import { listTree, normaliseEntryMode, normaliseModes } from './tree-hash.js';

export interface UnpackLimits {
  readonly maxArchiveBytes: number;
  readonly maxUnpackedBytes: number;
  /** Archive entries: files, directories and symbolic links together (empty directories cost inodes too). */
  readonly maxFiles: number;
}

export interface ReceivedTree {
  readonly dir: string;
  cleanup(): Promise<void>;
}

const FILE_TYPES: ReadonlySet<string> = new Set(['File', 'OldFile', 'ContiguousFile']);

/**
 * Saves `body` under `workDir`, vets every entry, then unpacks it into a fresh directory with normalised
 * permissions. Refuses (never silently skips) unsafe entries; on any failure nothing is left in `workDir`.
 * The body is paused, not destroyed, when it is too large, so an HTTP caller can still answer.
 */
export async function receiveArchive(
  body: NodeJS.ReadableStream | Readable,
  workDir: string,
  limits: UnpackLimits,
): Promise<ReceivedTree> {
  await mkdir(workDir, { recursive: true, mode: 0o700 });
  const scratch = await mkdtemp(join(workDir, 'upload-'));
  // Retries cover a failed extraction whose last file writes are still landing while we delete.
  const cleanup = () => rm(scratch, { recursive: true, force: true, maxRetries: 3 });
  try {
    const archive = join(scratch, 'archive.tar.gz');
    await saveUpload(body, archive, limits.maxArchiveBytes);
    await requireGzip(archive);
    await inspect(archive, limits);
    const dir = join(scratch, 'tree');
    await mkdir(dir);
    await extract(archive, dir, limits);
    await rm(archive);
    return { dir, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function saveUpload(
  body: NodeJS.ReadableStream | Readable,
  file: string,
  maxBytes: number,
): Promise<void> {
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received <= maxBytes) return callback(null, chunk);
      callback(
        new HearthError('HEARTH_E_ARCHIVE_TOO_LARGE', `upload exceeds ${maxBytes} bytes`, {
          details: { limit: maxBytes },
        }),
      );
    },
  });
  // Stays attached: a body that fails after we stop reading must not become an uncaught exception.
  finished(body, (error) => {
    if (error) meter.destroy(new HearthError('HEARTH_E_BAD_REQUEST', `upload interrupted: ${error.message}`));
  });
  body.pipe(meter);
  try {
    await pipeline(meter, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  } finally {
    body.unpipe(meter);
  }
}

async function requireGzip(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    const { bytesRead, buffer } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    if (bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) return;
  } finally {
    await handle.close();
  }
  throw new HearthError('HEARTH_E_ARCHIVE_INVALID', 'expected a gzip-compressed tar archive (.tar.gz)');
}

/** First pass: reads every header without writing anything. */
async function inspect(archive: string, limits: UnpackLimits): Promise<void> {
  const inventory = new Inventory(limits);
  await runPass(archive, inventory, (filter) => tar.t({ strict: true, filter }));
  const problem = inventory.throughLink();
  if (problem !== undefined) throw problem;
}

/** Second pass: the same vetting again (it costs little), then a measurement of what actually landed. */
async function extract(archive: string, dir: string, limits: UnpackLimits): Promise<void> {
  await runPass(archive, new Inventory(limits), (filter) =>
    tar.x({
      cwd: dir,
      strict: true,
      preserveOwner: false,
      noMtime: true,
      filter,
      onReadEntry: normaliseEntryMode,
    }),
  );
  // tar writes no more bytes than a header declares and the headers were summed as they came, so this
  // cannot fire unless tar itself misbehaves; it is the check on what is really on disk.
  const entries = await listTree(dir);
  const bytes = entries.reduce((sum, entry) => sum + entry.size, 0);
  if (bytes > limits.maxUnpackedBytes) throw unpackedTooLarge(limits.maxUnpackedBytes);
  await normaliseModes(dir, entries);
}

type EntryFilter = (path: string, entry: Stats | tar.ReadEntry) => boolean;

/** Streams the archive through a tar parser that vets each entry before tar acts on it; the first refusal aborts. */
async function runPass(
  archive: string,
  inventory: Inventory,
  createParser: (filter: EntryFilter) => tar.Parser,
): Promise<void> {
  let refusal: HearthError | undefined;
  const refuse = (error: HearthError): void => {
    refusal ??= error;
    parser.abort(new Error(error.message));
  };
  const parser = createParser((_path, entry) => {
    if (refusal !== undefined || !(entry instanceof tar.ReadEntry)) return false;
    const problem = inventory.admit(entry);
    if (problem !== undefined) refuse(problem);
    return problem === undefined;
  });
  // Unknown entry types and oversized metadata bypass the filter; tar would skip them without a word.
  parser.on('ignoredEntry', (entry: tar.ReadEntry) => {
    if (refusal === undefined) refuse(entryError(entry.path, refusedType(entry.type)));
  });
  try {
    await feed(archive, parser);
  } catch (error) {
    throw (
      refusal ??
      new HearthError('HEARTH_E_ARCHIVE_INVALID', `archive is corrupt: ${(error as Error).message}`, {
        cause: error,
      })
    );
  }
  if (refusal !== undefined) throw refusal;
}

function feed(archive: string, parser: tar.Parser): Promise<void> {
  return new Promise((resolve, reject) => {
    // tar inflates each chunk in one go; small reads keep a compression bomb's burst small (~1000x this).
    const source = createReadStream(archive, { highWaterMark: 16 * 1024 });
    const fail = (error: unknown): void => {
      source.destroy();
      reject(error);
    };
    parser.on('error', fail);
    parser.on('close', () => resolve());
    source.on('error', fail);
    source.on('data', (chunk: string | Buffer) => {
      if (parser.write(chunk)) return;
      source.pause();
      parser.once('drain', () => source.resume());
    });
    source.on('end', () => parser.end());
  });
}

/** What the archive holds so far; finds the first entry that is unsafe or over the limits. */
class Inventory {
  private entries = 0;
  private bytes = 0;
  private readonly paths: string[] = [];
  private readonly links = new Set<string>();

  constructor(private readonly limits: UnpackLimits) {}

  admit(entry: tar.ReadEntry): HearthError | undefined {
    const raw = entry.path;
    if (raw.startsWith('/')) return entryError(raw, 'absolute paths are not allowed');
    const segments = raw.split('/').filter((segment) => segment !== '' && segment !== '.');
    if (segments.includes('..')) return entryError(raw, '".." path segments are not allowed');
    const path = segments.join('/');
    if (path === '') {
      return entry.type === 'Directory'
        ? undefined
        : entryError(raw, 'only a directory may stand for the archive root');
    }
    if (FILE_TYPES.has(entry.type)) {
      this.bytes += entry.size;
    } else if (entry.type === 'SymbolicLink') {
      const problem = linkProblem(path, entry.linkpath ?? '');
      if (problem !== undefined) return entryError(raw, problem);
      this.links.add(path);
    } else if (entry.type !== 'Directory') {
      return entryError(raw, refusedType(entry.type));
    }
    this.entries += 1;
    this.paths.push(path);
    if (this.entries > this.limits.maxFiles) return tooManyEntries(this.limits.maxFiles);
    if (this.bytes > this.limits.maxUnpackedBytes) return unpackedTooLarge(this.limits.maxUnpackedBytes);
    return undefined;
  }

  /** An entry beneath a symbolic link would be written through it; the link may come before or after it. */
  throughLink(): HearthError | undefined {
    for (const path of this.paths) {
      for (let cut = path.indexOf('/'); cut !== -1; cut = path.indexOf('/', cut + 1)) {
        const prefix = path.slice(0, cut);
        if (this.links.has(prefix)) return entryError(path, `lies beneath symbolic link ${quote(prefix)}`);
      }
    }
    return undefined;
  }
}

/**
 * A target must be relative and may climb with ".." only before it descends: after a name, ".." is resolved
 * by the kernel against wherever that name points (maybe another link), which no lexical check can know.
 * Given that, and that no entry lies beneath a link, every link resolves inside the tree.
 */
function linkProblem(path: string, target: string): string | undefined {
  if (target.startsWith('/')) return `symbolic link to an absolute path (${quote(target)}) is not allowed`;
  let depth = path.split('/').length - 1;
  let descended = false;
  for (const segment of target.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment !== '..') {
      descended = true;
    } else if (descended) {
      return `symbolic link target ${quote(target)} may use ".." only at its start`;
    } else {
      depth -= 1;
      if (depth < 0) return `symbolic link target ${quote(target)} points outside the archive`;
    }
  }
  return undefined;
}

const TYPE_NAMES: Readonly<Record<string, string>> = {
  Link: 'hard links',
  CharacterDevice: 'character devices',
  BlockDevice: 'block devices',
  FIFO: 'FIFOs',
};

function refusedType(type: string): string {
  return `${TYPE_NAMES[type] ?? `${type} entries`} are not allowed (only files, directories and symbolic links)`;
}

function entryError(path: string, problem: string): HearthError {
  return new HearthError('HEARTH_E_ARCHIVE_INVALID', `archive entry ${quote(path)}: ${problem}`, {
    details: { entry: path },
  });
}

function tooManyEntries(limit: number): HearthError {
  return new HearthError(
    'HEARTH_E_ARCHIVE_TOO_LARGE',
    `archive holds more than ${limit} entries (files, directories and links)`,
    { details: { limit } },
  );
}

function unpackedTooLarge(limit: number): HearthError {
  return new HearthError('HEARTH_E_ARCHIVE_TOO_LARGE', `archive unpacks to more than ${limit} bytes`, {
    details: { limit },
  });
}

/** Entry names are user input: escaped so control characters cannot forge output, and cut short. */
function quote(text: string): string {
  return JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}...` : text);
}
