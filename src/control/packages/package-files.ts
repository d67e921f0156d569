/** @module Writing and reading the code store's own packages: run in the archive worker, off the event loop. */

import { open } from 'node:fs/promises';
import * as tar from 'tar';
import { hashEntries, listTree, normaliseEntryMode, normaliseModes, type TreeDigest } from './tree-hash.js';

/** The content hash of `dir` (minus top-level `exclude` names) and the members a package of it holds. */
export async function hashForPackage(
  dir: string,
  exclude: readonly string[],
): Promise<{ digest: TreeDigest; members: string[] }> {
  const entries = await listTree(dir, new Set(exclude));
  const digest = await hashEntries(dir, entries);
  // "./" stops tar from reading a top-level name that starts with "@" as an archive to splice in.
  const members = entries.filter((entry) => entry.kind !== 'dir').map((entry) => `./${entry.path}`);
  return { digest, members };
}

/** Writes `members` of `dir` as a .tar.gz at `file`, durable on disk before this resolves. */
export async function packTree(dir: string, members: readonly string[], file: string): Promise<void> {
  await tar.c(
    {
      file,
      cwd: dir,
      gzip: true,
      portable: true,
      noMtime: true,
      noDirRecurse: true,
      strict: true,
    },
    members.length > 0 ? [...members] : ['.'],
  );
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Extracts one of our own packages into the empty directory `dir`, normalising modes; returns its bytes. */
export async function extractPackage(file: string, dir: string): Promise<number> {
  await tar.x({
    file,
    cwd: dir,
    strict: true,
    preserveOwner: false,
    noMtime: true,
    onReadEntry: normaliseEntryMode,
  });
  const entries = await listTree(dir);
  await normaliseModes(dir, entries);
  return entries.reduce((sum, entry) => sum + entry.size, 0);
}
