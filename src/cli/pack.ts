/** @module Packing a function folder into the deploy API's gzip tar: ignore rules, no escaping links, a size cap. */

import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { Header, Pack, ReadEntry } from 'tar';
import { CliError } from './errors.js';
import { createIgnoreMatcher, type IgnoreMatcher, parseIgnoreRules } from './ignore.js';
import { formatBytes } from './output.js';

export const MANIFEST_FILE = 'hearth.yaml';
export const IGNORE_FILE = '.hearthignore';
export const MAX_FOLDER_BYTES = 64 * 1024 ** 2;

/** Never code: VCS data, local platform state, caches and virtualenvs, OS litter. */
export const DEFAULT_EXCLUDES: readonly string[] = [
  '.git/',
  '.hearth/',
  '__pycache__/',
  '.venv/',
  'venv/',
  '*.pyc',
  '.DS_Store',
];
/** Excluded only beside a package.json: the server installs dependencies itself, for its own platform. */
const NODE_MODULES = 'node_modules/';

export interface PackOptions {
  /** Content for `hearth.yaml` in the archive instead of the folder's own (which may be absent). */
  readonly replaceManifest?: string;
  readonly maxBytes?: number;
}

export interface PackedFolder {
  /** The .tar.gz, produced as it is read. */
  readonly stream: Readable;
  /** Regular files and links in the archive (folders not counted). */
  readonly files: number;
  /** Uncompressed size of those files. */
  readonly bytes: number;
  /** Archive paths in order, folders ending in `/`. */
  readonly entries: readonly string[];
}

export async function packDirectory(dir: string, options: PackOptions = {}): Promise<PackedFolder> {
  const root = resolve(dir);
  const replacement =
    options.replaceManifest === undefined ? undefined : Buffer.from(options.replaceManifest);
  const listing = await scan(root, dir, replacement, options.maxBytes);

  const pack = new Pack({ gzip: true, cwd: root, portable: true, noDirRecurse: true });
  const stream = new PassThrough();
  // Pack is a minipass stream; an unhandled 'error' there would throw, so route it into the output.
  pack.on('error', (error: unknown) =>
    stream.destroy(error instanceof Error ? error : new Error(String(error))),
  );
  if (replacement !== undefined) pack.add(virtualFile(MANIFEST_FILE, replacement));
  for (const entry of listing.entries) pack.add(entry);
  pack.end();
  pack.pipe(stream);

  const entries = replacement === undefined ? listing.entries : [MANIFEST_FILE, ...listing.entries];
  return {
    stream,
    files: listing.files + (replacement === undefined ? 0 : 1),
    bytes: listing.bytes,
    entries: entries.map((entry) => (listing.folders.has(entry) ? `${entry}/` : entry)),
  };
}

/**
 * Everything `packDirectory` would refuse (missing folder, escaping links, too large), checked without
 * reading file contents, so `apply` can vet every source folder before deploying any.
 */
export async function checkFolder(
  dir: string,
  options: PackOptions = {},
): Promise<{ files: number; bytes: number }> {
  const replacement =
    options.replaceManifest === undefined ? undefined : Buffer.from(options.replaceManifest);
  const listing = await scan(resolve(dir), dir, replacement, options.maxBytes);
  return { files: listing.files, bytes: listing.bytes };
}

async function scan(
  root: string,
  shown: string,
  replacement: Buffer | undefined,
  maxBytes?: number,
): Promise<Listing> {
  await assertFolder(root, shown);
  return listFolder(root, shown, {
    maxBytes: maxBytes ?? MAX_FOLDER_BYTES,
    initialBytes: replacement?.length ?? 0,
    skipManifest: replacement !== undefined,
  });
}

interface Listing {
  readonly entries: string[];
  readonly folders: Set<string>;
  files: number;
  bytes: number;
}

interface ListOptions {
  readonly maxBytes: number;
  readonly initialBytes: number;
  readonly skipManifest: boolean;
}

/** Walks the folder in a stable order, pruning ignored folders rather than filtering their contents. */
async function listFolder(root: string, shown: string, options: ListOptions): Promise<Listing> {
  const matcher = await loadIgnoreMatcher(root);
  const listing: Listing = { entries: [], folders: new Set(), files: 0, bytes: options.initialBytes };
  const visit = async (relativeDir: string): Promise<void> => {
    const children = await readdir(relativeDir === '' ? root : join(root, relativeDir), {
      withFileTypes: true,
    });
    children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const child of children) {
      const path = relativeDir === '' ? child.name : `${relativeDir}/${child.name}`;
      if (path === MANIFEST_FILE && options.skipManifest) continue;
      // The manifest always travels with the code, whatever the ignore file says.
      if (path !== MANIFEST_FILE && matcher.ignores(path, child.isDirectory())) continue;
      if (child.isDirectory()) {
        listing.entries.push(path);
        listing.folders.add(path);
        await visit(path);
      } else if (child.isSymbolicLink()) {
        await assertLinkInside(root, path, shown);
        listing.entries.push(path);
        listing.files += 1;
      } else if (child.isFile()) {
        listing.bytes += (await lstat(join(root, path))).size;
        if (listing.bytes > options.maxBytes) throw tooLarge(shown, options.maxBytes);
        listing.entries.push(path);
        listing.files += 1;
      }
      // Sockets, FIFOs and devices are never code, and the server refuses special files anyway.
    }
  };
  await visit('');
  return listing;
}

async function loadIgnoreMatcher(root: string): Promise<IgnoreMatcher> {
  const defaults = [...DEFAULT_EXCLUDES];
  if (await exists(join(root, 'package.json'))) defaults.push(NODE_MODULES);
  const own = await readFile(join(root, IGNORE_FILE), 'utf8').catch(() => '');
  // User rules come last so that `!node_modules/` can bring a default exclude back.
  return createIgnoreMatcher(parseIgnoreRules(`${defaults.join('\n')}\n${own}`));
}

async function assertLinkInside(root: string, path: string, shown: string): Promise<void> {
  const absolute = join(root, path);
  const target = await readlink(absolute);
  const display = join(shown, path);
  if (isAbsolute(target)) {
    throw new CliError(
      `${display} is a symbolic link to the absolute path ${target}, which will not exist on the server; use a relative link or copy the file in`,
    );
  }
  const within = relative(root, resolve(dirname(absolute), target));
  if (within === '..' || within.startsWith(`..${sep}`) || isAbsolute(within)) {
    throw new CliError(
      `${display} is a symbolic link to ${target}, outside the function folder; copy the file into the folder instead`,
    );
  }
}

async function assertFolder(root: string, shown: string): Promise<void> {
  const info = await stat(root).catch(() => undefined);
  if (info === undefined) throw new CliError(`${shown}: no such folder`);
  if (!info.isDirectory()) throw new CliError(`${shown} is not a folder`);
}

function tooLarge(shown: string, maxBytes: number): CliError {
  return new CliError(
    `${shown} holds more than ${formatBytes(maxBytes)} of files; Hearth accepts at most ${formatBytes(maxBytes)} per function (list large or generated files in ${join(shown, IGNORE_FILE)})`,
    { code: 'HEARTH_E_ARCHIVE_TOO_LARGE' },
  );
}

/** A file that exists only in the archive, written through tar's own entry type. */
function virtualFile(path: string, content: Buffer): ReadEntry {
  const header = new Header({ path, mode: 0o644, size: content.length, mtime: new Date(), type: 'File' });
  const entry = new ReadEntry(header);
  entry.end(content);
  return entry;
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}
