/**
 * @module Garbage collection on real stores in a temp dir: an unreferenced package and layer go once past the
 * grace period, with the bytes freed; one a retained version references, one checked out by an instance, and
 * one younger than the grace period (or stored again) stay.
 */

import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseFunctionManifest } from '../domain/function.js';
import { LayerStore } from './build/index.js';
import { collectGarbage } from './gc.js';
import { CodeStore } from './packages/index.js';
import { SqliteStore } from './store/index.js';

const HOUR = 3_600_000;
const EXCLUDE: ReadonlySet<string> = new Set();

let base: string;
let dataDir: string;
let store: SqliteStore;
let code: CodeStore;
let layers: LayerStore;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-gc-'));
  dataDir = join(base, 'data');
  await mkdir(dataDir);
  store = new SqliteStore(join(dataDir, 'hearth.db'));
  code = new CodeStore({ dataDir, cacheBytes: 1024 ** 3 });
  await code.init();
  layers = new LayerStore(dataDir, { timeoutMs: 60_000, maxDiskBytes: 1024 ** 3 });
  await layers.init();
});

afterEach(async () => {
  store.close();
  await rm(base, { recursive: true, force: true });
});

/** Stores a code tree whose content is `seed`; returns its hash. */
async function storeCode(seed: string): Promise<string> {
  const dir = join(base, `tree-${seed}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'index.mjs'), `export default () => ${JSON.stringify(seed.repeat(200))};\n`);
  return (await code.put(dir, EXCLUDE)).hash;
}

/** A built layer (as a build leaves it) under `key`. */
async function makeLayer(key: string): Promise<void> {
  await mkdir(join(dataDir, 'layers', key, 'node_modules', 'dep'), { recursive: true });
  await writeFile(join(dataDir, 'layers', key, 'node_modules', 'dep', 'index.js'), 'x'.repeat(20_000));
}

/** Makes a package or layer look last stored `ago` milliseconds before now. */
async function age(path: string, ago: number): Promise<void> {
  const then = new Date(Date.now() - ago);
  await utimes(path, then, then);
}

function deployVersion(name: string, codeHash: string, depsKey: string | null): void {
  const ref = { namespace: 'default', name };
  store.commitVersion(ref, store.nextVersion(ref), {
    manifest: parseFunctionManifest({
      apiVersion: 'hearth.dev/v1',
      kind: 'Function',
      metadata: { name },
      spec: { runtime: 'node20' },
    }),
    codeHash,
    codeFiles: 1,
    codeBytes: 1,
    depsKey,
    depsMount: depsKey === null ? null : 'node_modules',
    image: null,
  });
}

const packagePath = (hash: string) => join(dataDir, 'packages', `${hash}.tar.gz`);
const layerPath = (key: string) => join(dataDir, 'layers', key);
const KEYS = {
  orphan: `node20-${'a'.repeat(32)}`,
  used: `node20-${'b'.repeat(32)}`,
  held: `node20-${'c'.repeat(32)}`,
  young: `node20-${'d'.repeat(32)}`,
};

describe('garbage collection', () => {
  it('deletes what nothing references once past the grace period, and says how many bytes it freed', async () => {
    const orphan = await storeCode('orphan');
    const used = await storeCode('used');
    const held = await storeCode('held');
    const young = await storeCode('young');
    for (const key of Object.values(KEYS)) await makeLayer(key);
    deployVersion('kept', used, KEYS.used);
    for (const hash of [orphan, used, held]) await age(packagePath(hash), 2 * HOUR);
    for (const key of [KEYS.orphan, KEYS.used, KEYS.held]) await age(layerPath(key), 2 * HOUR);
    // An instance has these bound right now.
    const checkout = await code.checkoutCode(held);
    const layer = layers.checkout(KEYS.held);

    const collected = await collectGarbage({ store, code, layers, graceMs: HOUR });

    expect(collected.packages).toBe(1);
    expect(collected.layers).toBe(1);
    // The package, its unpacked tree and the layer's 20 kB file at least.
    expect(collected.freedBytes).toBeGreaterThan(20_000);
    expect(existsSync(packagePath(orphan))).toBe(false);
    expect(existsSync(join(dataDir, 'cache', 'code', orphan))).toBe(false);
    expect(existsSync(layerPath(KEYS.orphan))).toBe(false);
    for (const hash of [used, held, young]) expect(existsSync(packagePath(hash)), hash).toBe(true);
    for (const key of [KEYS.used, KEYS.held, KEYS.young]) expect(existsSync(layerPath(key)), key).toBe(true);

    // Released by the instance, the held ones go on the next run.
    checkout.release();
    layer.release();
    const next = await collectGarbage({ store, code, layers, graceMs: HOUR });
    expect(next).toMatchObject({ packages: 1, layers: 1 });
    expect(existsSync(packagePath(held))).toBe(false);
    expect(existsSync(layerPath(KEYS.held))).toBe(false);
  });

  it('keeps a package stored again within the grace period: a deploy reusing it must not lose it', async () => {
    const hash = await storeCode('again');
    await age(packagePath(hash), 2 * HOUR);
    await storeCode('again');
    const collected = await collectGarbage({ store, code, layers, graceMs: HOUR });
    expect(collected).toEqual({ packages: 0, layers: 0, freedBytes: 0 });
    expect(existsSync(packagePath(hash))).toBe(true);
  });
});
