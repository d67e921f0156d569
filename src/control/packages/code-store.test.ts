import { existsSync } from 'node:fs';
import {
  chmod,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HearthError } from '../../domain/errors.js';
import { CodeStore, hashTree } from './index.js';

const EXCLUDE: ReadonlySet<string> = new Set(['hearth.yaml']);
const NONE: ReadonlySet<string> = new Set();
/** Every test tree below holds exactly this many bytes of code. */
const TREE_BYTES = 1000;

let base: string;
let dataDir: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-code-'));
  dataDir = join(base, 'data');
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

async function openStore(cacheBytes: number): Promise<CodeStore> {
  const store = new CodeStore({ dataDir, cacheBytes });
  await store.init();
  return store;
}

/** A function folder of TREE_BYTES bytes whose content depends on `seed`. */
async function makeTree(name: string, seed: string): Promise<string> {
  const dir = join(base, name);
  await mkdir(join(dir, 'src'), { recursive: true });
  await writeFile(join(dir, 'hearth.yaml'), `name: ${name}\n`);
  const header = `// ${seed}\n`;
  await writeFile(join(dir, 'src', 'index.js'), header.padEnd(TREE_BYTES - 100, '.'), { mode: 0o600 });
  await writeFile(join(dir, 'run.sh'), '#'.repeat(100), { mode: 0o700 });
  await symlink('src/index.js', join(dir, 'main.js'));
  return dir;
}

const cacheDir = () => join(dataDir, 'cache', 'code');
const packages = async () => (await readdir(join(dataDir, 'packages'))).sort();
const modeOf = async (path: string) => (await lstat(path)).mode & 0o7777;

describe('CodeStore.put', () => {
  it('gives one hash and one package for the same tree, whatever its mtimes or creation order', async () => {
    const store = await openStore(10 * TREE_BYTES);
    const first = await store.put(await makeTree('a', 'same'), EXCLUDE);
    const again = await store.put(join(base, 'a'), EXCLUDE);

    const copy = join(base, 'copy');
    await mkdir(copy);
    await symlink('src/index.js', join(copy, 'main.js'));
    await cp(join(base, 'a', 'run.sh'), join(copy, 'run.sh'));
    await cp(join(base, 'a', 'src'), join(copy, 'src'), { recursive: true });
    await writeFile(join(copy, 'hearth.yaml'), 'a different manifest\n');
    await utimes(join(copy, 'run.sh'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    const copied = await store.put(copy, EXCLUDE);

    expect(again).toEqual(first);
    expect(copied).toEqual(first);
    expect(first).toEqual({ hash: expect.stringMatching(/^[0-9a-f]{64}$/), files: 3, bytes: TREE_BYTES });
    expect(await packages()).toEqual([`${first.hash}.tar.gz`]);
    expect(store.stats()).toMatchObject({ entries: 1, bytes: TREE_BYTES });
  });

  it('changes the hash with content, the exec bit or a link target', async () => {
    const dir = await makeTree('a', 'one');
    const original = await hashTree(dir, EXCLUDE);
    await chmod(join(dir, 'run.sh'), 0o644);
    const notExecutable = await hashTree(dir, EXCLUDE);
    await rm(join(dir, 'main.js'));
    await symlink('run.sh', join(dir, 'main.js'));
    const relinked = await hashTree(dir, EXCLUDE);
    expect(new Set([original.hash, notExecutable.hash, relinked.hash]).size).toBe(3);
    expect((await hashTree(await makeTree('b', 'two'), EXCLUDE)).hash).not.toBe(original.hash);
  });

  it('writes the same package bytes on two nodes', async () => {
    const dir = await makeTree('a', 'det');
    const { hash } = await (await openStore(10 * TREE_BYTES)).put(dir, EXCLUDE);
    const first = await readFile(join(dataDir, 'packages', `${hash}.tar.gz`));
    dataDir = join(base, 'other-node');
    await utimes(join(dir, 'run.sh'), new Date(2010, 1, 1), new Date(2010, 1, 1));
    await (await openStore(10 * TREE_BYTES)).put(dir, EXCLUDE);
    expect(await readFile(join(dataDir, 'packages', `${hash}.tar.gz`))).toEqual(first);
  });

  it('caches the tree without excluded names, readable by other users and without setuid bits', async () => {
    const store = await openStore(10 * TREE_BYTES);
    const { hash } = await store.put(await makeTree('a', 'modes'), EXCLUDE);
    const { dir, release } = await store.checkoutCode(hash);
    expect(dir).toBe(join(cacheDir(), hash));
    expect((await readdir(dir)).sort()).toEqual(['main.js', 'run.sh', 'src']);
    expect(await readlink(join(dir, 'main.js'))).toBe('src/index.js');
    expect(await modeOf(join(dir, 'src', 'index.js'))).toBe(0o644);
    expect(await modeOf(join(dir, 'run.sh'))).toBe(0o755);
    expect(await modeOf(join(dir, 'src'))).toBe(0o755);
    expect(await modeOf(dir)).toBe(0o755);
    expect(await modeOf(cacheDir())).toBe(0o755);
    release();
  });
});

describe('CodeStore cache', () => {
  it('evicts the least recently used entries down to the byte budget, keeping packages', async () => {
    const store = await openStore(2.5 * TREE_BYTES);
    const a = await store.put(await makeTree('a', 'a'), EXCLUDE);
    const b = await store.put(await makeTree('b', 'b'), EXCLUDE);
    (await store.checkoutCode(a.hash)).release(); // a is now more recent than b
    const c = await store.put(await makeTree('c', 'c'), EXCLUDE);

    expect(existsSync(join(cacheDir(), a.hash))).toBe(true);
    expect(existsSync(join(cacheDir(), b.hash))).toBe(false);
    expect(existsSync(join(cacheDir(), c.hash))).toBe(true);
    expect(store.stats()).toEqual({
      entries: 2,
      bytes: 2 * TREE_BYTES,
      limitBytes: 2.5 * TREE_BYTES,
      pinned: 0,
    });
    expect(store.has(b.hash)).toBe(true);

    // Re-extracting b pushes out the now least recent a.
    (await store.checkoutCode(b.hash)).release();
    expect(existsSync(join(cacheDir(), a.hash))).toBe(false);
    expect(store.stats().bytes).toBeLessThanOrEqual(2.5 * TREE_BYTES);
  });

  it('never evicts a pinned entry, even over budget', async () => {
    const store = await openStore(TREE_BYTES / 2);
    const a = await store.put(await makeTree('a', 'a'), EXCLUDE);
    const pinned = await store.checkoutCode(a.hash);
    const b = await store.put(await makeTree('b', 'b'), EXCLUDE);

    expect(existsSync(join(pinned.dir, 'src', 'index.js'))).toBe(true);
    expect(existsSync(join(cacheDir(), b.hash))).toBe(false);
    expect(store.stats()).toEqual({ entries: 1, bytes: TREE_BYTES, limitBytes: TREE_BYTES / 2, pinned: 1 });

    pinned.release();
    await store.put(await makeTree('c', 'c'), EXCLUDE);
    expect(existsSync(pinned.dir)).toBe(false);
  });

  it('re-extracts an evicted entry on checkout with identical content', async () => {
    const store = await openStore(0);
    const source = await makeTree('a', 'again');
    const put = await store.put(source, EXCLUDE);
    expect(store.stats().entries).toBe(0);

    const checkout = await store.checkoutCode(put.hash);
    expect(await hashTree(checkout.dir, NONE)).toEqual(put);
    expect(await readFile(join(checkout.dir, 'src', 'index.js'))).toEqual(
      await readFile(join(source, 'src', 'index.js')),
    );
    expect(await modeOf(join(checkout.dir, 'run.sh'))).toBe(0o755);
    checkout.release();
  });

  it('extracts once for concurrent checkouts of a missing entry and pins each', async () => {
    const store = await openStore(0);
    const { hash } = await store.put(await makeTree('a', 'flight'), EXCLUDE);
    const checkouts = await Promise.all(Array.from({ length: 6 }, () => store.checkoutCode(hash)));

    expect(new Set(checkouts.map((checkout) => checkout.dir))).toEqual(new Set([join(cacheDir(), hash)]));
    expect((await readdir(cacheDir())).filter((name) => name.startsWith('.tmp-'))).toEqual([]);
    expect(store.stats()).toMatchObject({ entries: 1, pinned: 1 });
    for (const checkout of checkouts.slice(1)) checkout.release();
    expect(store.stats().pinned).toBe(1);
    checkouts[0]?.release();
    expect(store.stats().pinned).toBe(0);
  });

  it('treats a second release of one checkout as a no-op', async () => {
    const store = await openStore(0);
    const { hash } = await store.put(await makeTree('a', 'twice'), EXCLUDE);
    const first = await store.checkoutCode(hash);
    const second = await store.checkoutCode(hash);
    first.release();
    first.release();
    expect(store.stats().pinned).toBe(1);
    await store.put(await makeTree('b', 'other'), EXCLUDE);
    expect(existsSync(second.dir)).toBe(true);
    second.release();
  });

  it('answers HEARTH_E_RESOURCE_NOT_FOUND for an unknown or malformed hash, leaving nothing pinned', async () => {
    const store = await openStore(TREE_BYTES);
    for (const hash of ['0'.repeat(64), '../../etc', '']) {
      const error = await store.checkoutCode(hash).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error).toBeInstanceOf(HearthError);
      expect(error).toMatchObject({ code: 'HEARTH_E_RESOURCE_NOT_FOUND' });
    }
    expect(store.stats().pinned).toBe(0);
    expect(store.has('0'.repeat(64))).toBe(false);
  });
});

describe('CodeStore.remove', () => {
  it('deletes package and cache entry unless checked out', async () => {
    const store = await openStore(10 * TREE_BYTES);
    const { hash } = await store.put(await makeTree('a', 'gone'), EXCLUDE);
    const checkout = await store.checkoutCode(hash);

    expect(await store.remove(hash)).toBe(false);
    expect(store.has(hash)).toBe(true);
    expect(existsSync(checkout.dir)).toBe(true);

    checkout.release();
    expect(await store.remove(hash)).toBe(true);
    expect(store.has(hash)).toBe(false);
    expect(existsSync(checkout.dir)).toBe(false);
    expect(await packages()).toEqual([]);
    expect(store.stats()).toMatchObject({ entries: 0, bytes: 0 });
    expect(await store.remove(hash)).toBe(false);
    await expect(store.checkoutCode(hash)).rejects.toMatchObject({ code: 'HEARTH_E_RESOURCE_NOT_FOUND' });
  });
});

describe('CodeStore.init after a restart', () => {
  it('restores the index with recency from mtimes and removes half-written entries', async () => {
    const before = await openStore(10 * TREE_BYTES);
    const a = await before.put(await makeTree('a', 'a'), EXCLUDE);
    const b = await before.put(await makeTree('b', 'b'), EXCLUDE);
    // b was used long ago, a recently: the reverse of the order they were stored in.
    await utimes(join(cacheDir(), b.hash), new Date(2020, 1, 1), new Date(2020, 1, 1));
    await utimes(join(cacheDir(), a.hash), new Date(2030, 1, 1), new Date(2030, 1, 1));
    // A crash mid-install, mid-package-write, and after an entry's sidecar was lost.
    await mkdir(join(cacheDir(), '.tmp-crashed', 'src'), { recursive: true });
    await writeFile(join(cacheDir(), '.tmp-crashed', 'src', 'index.js'), 'half');
    await writeFile(join(dataDir, 'packages', '.tmp-crashed'), 'half');
    await rm(join(cacheDir(), `${a.hash}.meta.json`));
    await writeFile(join(cacheDir(), `${'f'.repeat(64)}.meta.json`), '{"bytes":5}');

    const after = await openStore(2.5 * TREE_BYTES);
    expect(after.stats()).toEqual({
      entries: 2,
      bytes: 2 * TREE_BYTES,
      limitBytes: 2.5 * TREE_BYTES,
      pinned: 0,
    });
    expect((await readdir(cacheDir())).sort()).toEqual(
      [a.hash, `${a.hash}.meta.json`, b.hash, `${b.hash}.meta.json`].sort(),
    );
    expect(await packages()).toEqual([`${a.hash}.tar.gz`, `${b.hash}.tar.gz`].sort());

    await after.put(await makeTree('c', 'c'), EXCLUDE);
    expect(existsSync(join(cacheDir(), a.hash))).toBe(true);
    expect(existsSync(join(cacheDir(), b.hash))).toBe(false);
  });
});
