/**
 * @module The passes over a saved .tar.gz — a listing that refuses anything unsafe, then a bounded extraction.
 * CPU-heavy (inflating, parsing): run in the archive worker (`archive-worker.ts`), never on the event loop.
 */

import { createReadStream, type Stats } from 'node:fs';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar';
import { HearthError } from '../../domain/errors.js';
import { listTree, normaliseEntryMode, normaliseModes } from './tree-hash.js';

export interface UnpackLimits {
  readonly maxArchiveBytes: number;
  readonly maxUnpackedBytes: number;
  /** Archive entries: files, directories and symbolic links together (empty directories cost inodes too). */
  readonly maxFiles: number;
  /** Wall-clock bound on vetting and extracting one archive; past it the worker is terminated. */
  readonly unpackTimeoutMs: number;
}

/**
 * An entry's path, and a link's target, in UTF-8 bytes. Not Linux's PATH_MAX (4096): that bounds the whole
 * path a system call sees, and the platform puts its own directories in front of every entry.
 */
export const MAX_PATH_BYTES = 1024;
/** One path segment in UTF-8 bytes: NAME_MAX of Linux file systems. */
export const MAX_SEGMENT_BYTES = 255;
/**
 * Tar bytes an entry may take besides its content: its header, padding to a block, and one pax or GNU
 * long-name record for a path and link target within MAX_PATH_BYTES (3 KiB of pax data at most).
 */
export const ENTRY_OVERHEAD_BYTES = 8 * 1024;
/**
 * What may follow the end-of-archive marker: only zeros, as tar writers pad the last record (10 KiB by
 * default, more with a larger blocking factor). Anything else is refused rather than silently dropped.
 */
export const TRAILER_SLACK_BYTES = 1024 * 1024;

/** The most bytes a tar stream within `limits` can inflate to; one past it is refused. */
export function inflatedBound(limits: UnpackLimits): number {
  return limits.maxUnpackedBytes + limits.maxFiles * ENTRY_OVERHEAD_BYTES + TRAILER_SLACK_BYTES;
}

const FILE_TYPES: ReadonlySet<string> = new Set(['File', 'OldFile', 'ContiguousFile']);

/**
 * Vets every entry of `archive` (a gzip file), then extracts it into the empty directory `dir` with
 * normalised permissions. Refuses (never silently skips) unsafe entries; the caller removes `dir` on failure.
 */
export async function unpackArchive(archive: string, dir: string, limits: UnpackLimits): Promise<void> {
  const inventory = new Inventory(limits);
  await runPass(archive, inventory, limits, (filter) => tar.t({ strict: true, filter, ...TAR_ONLY }));
  const problem = inventory.throughLink();
  if (problem !== undefined) throw problem;
  // The same vetting again (it costs little), so what is written is exactly what was listed.
  await runPass(archive, new Inventory(limits), limits, (filter) =>
    tar.x({
      cwd: dir,
      strict: true,
      preserveOwner: false,
      noMtime: true,
      filter,
      onReadEntry: normaliseEntryMode,
      ...TAR_ONLY,
    }),
  );
  // tar writes no more bytes than a header declares and the headers were summed as they came, so this
  // cannot fire unless tar itself misbehaves; it is the check on what is really on disk.
  const entries = await listTree(dir);
  const bytes = entries.reduce((sum, entry) => sum + entry.size, 0);
  if (bytes > limits.maxUnpackedBytes) throw unpackedTooLarge(limits.maxUnpackedBytes);
  await normaliseModes(dir, entries);
}

/** The parser gets the tar stream we inflated and counted: it must not find another compressed layer in it. */
const TAR_ONLY = { brotli: false, zstd: false } as const;

type EntryFilter = (path: string, entry: Stats | tar.ReadEntry) => boolean;

/** Streams the archive through a tar parser that vets each entry before tar acts on it; the first refusal aborts. */
async function runPass(
  archive: string,
  inventory: Inventory,
  limits: UnpackLimits,
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
    await feed(archive, parser, inflatedBound(limits));
  } catch (error) {
    throw refusal ?? asArchiveError(error);
  }
  if (refusal !== undefined) throw refusal;
}

const ZEROS = Buffer.alloc(64 * 1024);

/**
 * Inflates `archive` and hands the parser the tar stream, counting every inflated byte. Stops at the
 * end-of-archive marker: tar's parser would otherwise append each later chunk to one growing buffer,
 * quadratic work on whatever padding an upload carries (issue 19).
 */
function feed(archive: string, parser: tar.Parser, bound: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const source = createReadStream(archive);
    // Small output chunks keep each synchronous step small and the unexamined tail after the marker short.
    const gunzip = createGunzip({ chunkSize: 16 * 1024 });
    let inflated = 0;
    let head = Buffer.alloc(0);
    let atEnd = false;
    let trailer = 0;
    let inflateDone = false;
    let parserDone = false;
    let settled = false;
    const fail = (error: unknown): void => {
      if (settled) return;
      settled = true;
      source.destroy();
      gunzip.destroy();
      // No further entry is written once the pass has failed (a no-op when the parser is the one failing).
      parser.abort(new Error('stopped'));
      reject(error);
    };
    const maybeDone = (): void => {
      if (settled || !inflateDone || !parserDone) return;
      settled = true;
      resolve();
    };
    parser.on('error', fail);
    parser.on('close', () => {
      parserDone = true;
      maybeDone();
    });
    parser.once('eof', () => {
      atEnd = true;
      // Nothing more goes to the parser, so a 'drain' it might never emit must not hold the inflation.
      gunzip.resume();
      // Deferred: 'eof' may be emitted from inside the parser's own write.
      queueMicrotask(() => parser.end());
    });
    source.on('error', fail);
    gunzip.on('error', fail);
    gunzip.on('data', (chunk: Buffer) => {
      if (settled) return;
      inflated += chunk.length;
      if (inflated > bound) return fail(inflatedTooLarge(bound));
      if (atEnd) {
        trailer += chunk.length;
        if (!chunk.equals(ZEROS.subarray(0, chunk.length))) return fail(trailingData());
        if (trailer > TRAILER_SLACK_BYTES) return fail(trailingPadding());
        return;
      }
      if (head.length < 2) {
        head = Buffer.concat([head, chunk.subarray(0, 2 - head.length)]);
        if (head.length === 2 && head[0] === 0x1f && head[1] === 0x8b) return fail(doublyCompressed());
      }
      if (parser.write(chunk)) return;
      gunzip.pause();
      parser.once('drain', () => gunzip.resume());
    });
    gunzip.on('end', () => {
      inflateDone = true;
      if (!atEnd) parser.end();
      maybeDone();
    });
    source.pipe(gunzip);
  });
}

/** Errors from tar, zlib or the file system, in words that name the entry but never a path on this server. */
function asArchiveError(error: unknown): HearthError {
  if (error instanceof HearthError) return error;
  const failure = error as Partial<NodeJS.ErrnoException> & { entry?: { path?: unknown }; tarCode?: string };
  const entry = typeof failure.entry?.path === 'string' ? failure.entry.path : undefined;
  const code = typeof failure.code === 'string' ? failure.code : undefined;
  // zlib's errors carry an errno too, but their messages are safe and say what is wrong with the data.
  if (typeof failure.syscall === 'string' || (code !== undefined && /^E[A-Z]+$/.test(code))) {
    // The file system's own messages carry the absolute path of the scratch directory.
    if (code !== undefined && NODE_FAULTS.has(code)) {
      return new HearthError(
        'HEARTH_E_INTERNAL',
        `could not unpack the archive on this node (${code}); try again later`,
        { cause: error },
      );
    }
    const what = code ?? 'file system error';
    return entry === undefined
      ? new HearthError('HEARTH_E_ARCHIVE_INVALID', `archive could not be unpacked (${what})`, {
          cause: error,
        })
      : entryError(entry, `could not be unpacked (${what})`);
  }
  const message = error instanceof Error ? error.message : String(error);
  return new HearthError('HEARTH_E_ARCHIVE_INVALID', `archive is corrupt: ${message}`, {
    cause: error,
    ...(entry === undefined ? {} : { details: { entry } }),
  });
}

/** File-system failures that are this node's trouble, not the archive's. */
const NODE_FAULTS: ReadonlySet<string> = new Set([
  'ENOSPC',
  'EDQUOT',
  'EIO',
  'EMFILE',
  'ENFILE',
  'ENOMEM',
  'EROFS',
]);

/** What the archive holds so far; finds the first entry that is unsafe or over the limits. */
class Inventory {
  private entries = 0;
  private bytes = 0;
  private readonly paths: string[] = [];
  private readonly links = new Set<string>();

  constructor(private readonly limits: UnpackLimits) {}

  admit(entry: tar.ReadEntry): HearthError | undefined {
    const raw = entry.path;
    const tooLong = lengthProblem(raw, 'path');
    if (tooLong !== undefined) return entryError(raw, tooLong);
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

/** Checked before anything touches the file system, whose own refusal would name the server's directories. */
function lengthProblem(path: string, what: 'path' | 'symbolic link target'): string | undefined {
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_PATH_BYTES) {
    return `${what} is ${bytes} bytes long; the limit is ${MAX_PATH_BYTES} bytes`;
  }
  for (const segment of path.split('/')) {
    const length = Buffer.byteLength(segment);
    if (length > MAX_SEGMENT_BYTES) {
      return `${what} segment ${quote(segment)} is ${length} bytes long; the limit is ${MAX_SEGMENT_BYTES} bytes per segment`;
    }
  }
  return undefined;
}

/**
 * A target must be relative and may climb with ".." only before it descends: after a name, ".." is resolved
 * by the kernel against wherever that name points (maybe another link), which no lexical check can know.
 * Given that, and that no entry lies beneath a link, every link resolves inside the tree.
 */
function linkProblem(path: string, target: string): string | undefined {
  const tooLong = lengthProblem(target, 'symbolic link target');
  if (tooLong !== undefined) return tooLong;
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
    details: { entry: cut(path) },
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

function inflatedTooLarge(limit: number): HearthError {
  return new HearthError(
    'HEARTH_E_ARCHIVE_TOO_LARGE',
    `archive inflates to more than ${limit} bytes of tar stream (upload.maxUnpacked plus ${ENTRY_OVERHEAD_BYTES} bytes of headers per entry allowed by upload.maxFiles)`,
    { details: { limit } },
  );
}

function trailingData(): HearthError {
  return new HearthError(
    'HEARTH_E_ARCHIVE_INVALID',
    'archive has data after its end-of-archive marker (two archives joined together?); tar would ignore it, so it is refused',
  );
}

function trailingPadding(): HearthError {
  return new HearthError(
    'HEARTH_E_ARCHIVE_INVALID',
    `archive continues for more than ${TRAILER_SLACK_BYTES} bytes after its end-of-archive marker`,
    { details: { limit: TRAILER_SLACK_BYTES } },
  );
}

function doublyCompressed(): HearthError {
  return new HearthError(
    'HEARTH_E_ARCHIVE_INVALID',
    'archive is compressed twice (a gzip stream inside the gzip stream); expected one gzip layer around a tar archive',
  );
}

/** Entry names are user input: cut short so a refusal stays readable. */
function cut(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

/** Escaped so control characters cannot forge output, and cut short. */
function quote(text: string): string {
  return JSON.stringify(cut(text));
}
