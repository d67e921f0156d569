/** @module Walking, hashing and permission-normalising unpacked code trees: the content address of a package. */

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ReadEntry } from 'tar';
import { HearthError } from '../../domain/errors.js';

export interface TreeEntry {
  /** Relative POSIX path. */
  readonly path: string;
  readonly kind: 'file' | 'dir' | 'link';
  /** File size in bytes; 0 for directories and links. */
  readonly size: number;
  /** Any execute bit set (files only). */
  readonly executable: boolean;
}

export interface TreeDigest {
  readonly hash: string;
  /** Files and symbolic links (directories count only through their contents). */
  readonly files: number;
  readonly bytes: number;
}

/**
 * Every entry under `root` sorted by path, skipping top-level names in `exclude`. Plain code-unit order,
 * not locale order, so the listing (and the hash built on it) is the same on every machine.
 */
export async function listTree(root: string, exclude: ReadonlySet<string> = new Set()): Promise<TreeEntry[]> {
  const entries: TreeEntry[] = [];
  const visit = async (relativeDir: string): Promise<void> => {
    for (const dirent of await readdir(join(root, relativeDir), { withFileTypes: true })) {
      if (relativeDir === '' && exclude.has(dirent.name)) continue;
      const path = relativeDir === '' ? dirent.name : `${relativeDir}/${dirent.name}`;
      if (dirent.isDirectory()) {
        entries.push({ path, kind: 'dir', size: 0, executable: false });
        await visit(path);
      } else if (dirent.isSymbolicLink()) {
        entries.push({ path, kind: 'link', size: 0, executable: false });
      } else if (dirent.isFile()) {
        const stats = await lstat(join(root, path));
        entries.push({ path, kind: 'file', size: stats.size, executable: (stats.mode & 0o111) !== 0 });
      } else {
        throw new HearthError(
          'HEARTH_E_ARCHIVE_INVALID',
          `${JSON.stringify(path)}: only files, directories and symbolic links can be deployed`,
          { details: { entry: path } },
        );
      }
    }
  };
  await visit('');
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * sha256 over `F <path> <x|-> <sha256>` and `L <path> <target>` lines. Paths and targets are JSON-quoted so
 * a name holding a space or newline cannot make two different trees encode alike.
 */
export async function hashTree(dir: string, exclude: ReadonlySet<string>): Promise<TreeDigest> {
  return hashEntries(dir, await listTree(dir, exclude));
}

export async function hashEntries(root: string, entries: readonly TreeEntry[]): Promise<TreeDigest> {
  const tree = createHash('sha256');
  let files = 0;
  let bytes = 0;
  for (const entry of entries) {
    const path = JSON.stringify(entry.path);
    if (entry.kind === 'file') {
      tree.update(`F ${path} ${entry.executable ? 'x' : '-'} ${await hashFile(join(root, entry.path))}\n`);
      bytes += entry.size;
      files += 1;
    } else if (entry.kind === 'link') {
      tree.update(`L ${path} ${JSON.stringify(await readlink(join(root, entry.path)))}\n`);
      files += 1;
    }
  }
  return { hash: tree.digest('hex'), files, bytes };
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

/** Code is read by sandboxed functions running as another user: world-readable, never setuid or setgid. */
export function normalMode(kind: 'file' | 'dir', executable: boolean): number {
  return kind === 'dir' || executable ? 0o755 : 0o644;
}

/** Applies `normalMode` to the root and every entry, whatever the archive or the process umask said. */
export async function normaliseModes(root: string, entries: readonly TreeEntry[]): Promise<void> {
  await chmod(root, 0o755);
  for (const entry of entries) {
    if (entry.kind !== 'link') await chmod(join(root, entry.path), normalMode(entry.kind, entry.executable));
  }
}

/** Makes tar create an entry with its final mode, so a setuid bit never exists even for a moment. */
export function normaliseEntryMode(entry: ReadEntry): void {
  if (entry.type === 'SymbolicLink') return;
  entry.mode = normalMode(entry.type === 'Directory' ? 'dir' : 'file', ((entry.mode ?? 0) & 0o111) !== 0);
}
