/**
 * @module The cluster's shared dependency layers against a real PostgreSQL: a layer stored by one node is
 * fetched whole by another (files, modes, links, several chunks), a copy that does not match its checksum
 * is refused, the collector deletes only unreferenced layers past their grace period, and two nodes
 * deploying the same dependencies at once build them once (the other fetches).
 */

import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningPostgres, startPostgres } from '../../test/support/postgres.js';
import { type LayerObtained, LayerStore } from '../control/build/index.js';
import { collectGarbage } from '../control/gc.js';
import { CodeStore } from '../control/packages/index.js';
import type { BuildStep, Runtime } from '../runtime/index.js';
import { ProcessIsolation } from '../runtime/process/index.js';
import { LOCK_CLASS, PgLayers } from './pg-layers.js';
import { MIGRATIONS } from './pg-store.js';

const HOUR = 3_600_000;
let postgres: RunningPostgres;
let base: string;
let admin: pg.Client;
const shared: PgLayers[] = [];

function layersFor(nodeId: string): PgLayers {
  const layers = new PgLayers({ url: postgres.url, nodeId, warn: () => {} });
  shared.push(layers);
  return layers;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A fresh layer key (the shape LayerStore.keyOf gives). */
function freshKey(): string {
  return `python3-${randomBytes(16).toString('hex')}`;
}

/** A layer as a build leaves it: a package dir, an executable, a symlink, and `bigBytes` of incompressible data. */
async function builtLayer(bigBytes: number): Promise<string> {
  const dir = await mkdtemp(join(base, 'built-'));
  await mkdir(join(dir, 'six', 'sub'), { recursive: true });
  await writeFile(join(dir, 'six', '__init__.py'), '__version__ = "1.16.0"\n');
  await writeFile(join(dir, 'six', 'sub', 'tool'), '#!/bin/sh\necho hi\n');
  await chmod(join(dir, 'six', 'sub', 'tool'), 0o755);
  await symlink('six/__init__.py', join(dir, 'link.py'));
  await writeFile(join(dir, 'blob.bin'), randomBytes(bigBytes));
  return dir;
}

beforeAll(async () => {
  postgres = await startPostgres();
  base = await mkdtemp(join(tmpdir(), 'hearth-pg-layers-'));
  admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  // The cluster store's schema, as its migrations make it (the store itself runs its worker from dist/).
  for (const migration of MIGRATIONS) await admin.query(migration.sql);
}, 60_000);

afterAll(async () => {
  await Promise.all(shared.map((layers) => layers.close()));
  await admin?.end();
  await postgres?.stop();
  await rm(base, { recursive: true, force: true });
});

describe('PgLayers: put and get', () => {
  it('a layer stored by one node is fetched whole by another, over several chunks', async () => {
    const key = freshKey();
    const source = await builtLayer(3 * 1024 * 1024);
    const stored = await layersFor('a').publish(key, 'default', source);
    expect(stored?.archiveBytes).toBeGreaterThan(3 * 1024 * 1024);
    const { rows } = await admin.query('SELECT chunks, node, namespace FROM layers WHERE key = $1', [key]);
    expect(rows[0]).toMatchObject({ node: 'a', namespace: 'default' });
    expect(rows[0].chunks).toBeGreaterThanOrEqual(3);

    const target = join(base, `fetched-${key}`);
    const fetched = await layersFor('b').fetch(key, target);
    expect(fetched).toEqual({ archiveBytes: stored?.archiveBytes });
    // Compared by digest: a deep equality of two 3 MiB buffers takes vitest seconds.
    expect(sha256(await readFile(join(target, 'blob.bin')))).toBe(
      sha256(await readFile(join(source, 'blob.bin'))),
    );
    expect(await readFile(join(target, 'six', '__init__.py'), 'utf8')).toBe('__version__ = "1.16.0"\n');
    expect((await stat(join(target, 'six', 'sub', 'tool'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(target, 'six', '__init__.py'))).mode & 0o777).toBe(0o644);
    expect(await readlink(join(target, 'link.py'))).toBe('six/__init__.py');
  });

  it('a key stored already is kept as it is; a key never stored fetches nothing', async () => {
    const key = freshKey();
    const layers = layersFor('a');
    expect(await layers.publish(key, 'default', await builtLayer(1000))).toBeDefined();
    expect(await layers.publish(key, 'default', await builtLayer(2000))).toBeUndefined();
    expect(await layers.fetch(freshKey(), join(base, 'never'))).toBeUndefined();
    expect(await layers.touch(freshKey())).toBe(false);
    expect(await layers.touch(key)).toBe(true);
  });

  it('a stored copy that no longer matches its checksum is refused', async () => {
    const key = freshKey();
    const layers = layersFor('a');
    await layers.publish(key, 'default', await builtLayer(2 * 1024 * 1024));
    // One byte of the second chunk changed: still a valid gzip stream up to there, but not the layer stored.
    await admin.query(
      `UPDATE layer_chunks SET data = set_byte(data, 100, (get_byte(data, 100) + 1) % 256) WHERE key = $1 AND seq = 1`,
      [key],
    );
    await expect(layers.fetch(key, join(base, `corrupt-${key}`))).rejects.toThrow(
      /does not match its checksum|unpacking failed/,
    );
  });
});

describe('PgLayers: one builder per key', () => {
  /** The sessions holding the advisory lock on a layer key now. */
  async function holders(): Promise<number[]> {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1`,
      [LOCK_CLASS],
    );
    return rows.map((row) => row.pid);
  }

  async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
    for (let i = 0; i < 200; i += 1) {
      if (await probe()) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  it('a second node waits for the first; a holder whose connection dies (a killed node) lets it in', async () => {
    const key = freshKey();
    const order: string[] = [];
    let finish: () => void = () => {};
    const first = layersFor('a').exclusive(key, 60_000, async () => {
      order.push('a builds');
      await new Promise<void>((resolve) => {
        finish = resolve;
      });
    });
    await until('a to hold the lock', async () => (await holders()).length === 1);
    const second = layersFor('b').exclusive(key, 60_000, async () => {
      order.push('b builds');
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(order).toEqual(['a builds']);
    // PostgreSQL ends a's session, as it does when a SIGKILLed node's socket closes: its lock goes with it.
    await admin.query(
      'SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = $1 AND granted AND classid = $2',
      ['advisory', LOCK_CLASS],
    );
    await second;
    expect(order).toEqual(['a builds', 'b builds']);
    finish();
    await first;
    expect(await holders()).toEqual([]);
  });

  it('a waiter gives up on a builder that holds the key past the wait, and builds too', async () => {
    const key = freshKey();
    let finish: () => void = () => {};
    const first = layersFor('a').exclusive(
      key,
      60_000,
      () =>
        new Promise<void>((resolve) => {
          finish = resolve;
        }),
    );
    await until('a to hold the lock', async () => (await holders()).length === 1);
    const warnings: string[] = [];
    const impatient = new PgLayers({
      url: postgres.url,
      nodeId: 'c',
      warn: (message) => warnings.push(message),
    });
    shared.push(impatient);
    expect(await impatient.exclusive(key, 300, async () => 'built anyway')).toBe('built anyway');
    expect(warnings).toEqual([`layers: waited 0.3 s for another node building ${key}; building it here too`]);
    finish();
    await first;
  });
});

describe('PgLayers: garbage collection', () => {
  it('deletes only unreferenced layers unused within the grace period, with their chunks', async () => {
    const layers = layersFor('a');
    const [unused, referenced, fresh] = [freshKey(), freshKey(), freshKey()];
    for (const key of [unused, referenced, fresh])
      await layers.publish(key, 'default', await builtLayer(1000));
    await admin.query(`UPDATE layers SET used_at = now() - interval '2 hours' WHERE key = ANY($1)`, [
      [unused, referenced],
    ]);
    await admin.query(
      `INSERT INTO versions (namespace, name, version, manifest, code_hash, code_files, code_bytes, deps_key, deps_mount, created_at)
       VALUES ('default', 'uses-layer', 1, '{}', 'none', 0, 0, $1, 'python', now()::text)`,
      [referenced],
    );
    // A data dir of its own, so the local stores have nothing to collect.
    const dataDir = await mkdtemp(join(base, 'node-'));
    const code = new CodeStore({ dataDir, cacheBytes: 1024 ** 3 });
    await code.init();
    const local = new LayerStore(dataDir, { timeoutMs: 60_000, maxDiskBytes: 1024 ** 3 });
    await local.init();
    const collected = await collectGarbage({
      // What PostgresStore.depsKeysInUse reads from the versions table.
      store: { codeHashesInUse: () => new Set(), depsKeysInUse: () => new Set([referenced]) },
      code,
      layers: local,
      sharedLayers: layers,
      graceMs: HOUR,
    });
    expect(collected.sharedLayers).toBe(1);
    expect(collected.freedBytes).toBeGreaterThan(0);
    const left = (await layers.list()).map((layer) => layer.key);
    expect(left).not.toContain(unused);
    expect(left).toEqual(expect.arrayContaining([referenced, fresh]));
    const chunks = await admin.query('SELECT count(*)::int AS n FROM layer_chunks WHERE key = $1', [unused]);
    expect(chunks.rows[0].n).toBe(0);
    // Referenced by a retained version: kept even when asked directly, past its grace period.
    expect(await layers.remove(referenced, Date.now())).toBeUndefined();
    await admin.query(`DELETE FROM versions WHERE name = 'uses-layer'`);
    expect(await layers.remove(referenced, Date.now())).toBeGreaterThan(0);
  });
});

/** A runtime whose "install" writes a marker naming the node that built it, after `ms`. */
function slowInstall(ms: number): Runtime {
  return {
    name: 'python3',
    unavailable: undefined,
    abi: 'test',
    layerOutput: 'out',
    launchSpec: () => {
      throw new Error('not started in this test');
    },
    dependencyManifest: () => ({ files: ['requirements.txt'], mountName: 'out' }),
    buildCommand: (workDir: string): BuildStep => ({
      command: process.execPath,
      args: [
        '-e',
        `setTimeout(() => { const fs = require('node:fs'); fs.mkdirSync(${JSON.stringify(join(workDir, 'out'))});
         fs.writeFileSync(${JSON.stringify(join(workDir, 'out', 'dep.py'))}, 'built = True\\n'); }, ${ms});`,
      ],
      env: {},
      readOnlyPaths: [],
    }),
  };
}

describe('LayerStore on two nodes sharing PgLayers', () => {
  it('two nodes deploying the same dependencies at once build them once; the other fetches', async () => {
    const source = await mkdtemp(join(base, 'source-'));
    await writeFile(join(source, 'requirements.txt'), `six==1.16.0 # ${randomBytes(8).toString('hex')}\n`);
    const events: (LayerObtained & { node: string })[] = [];
    const nodes = await Promise.all(
      ['a', 'b'].map(async (node) => {
        const dataDir = await mkdtemp(join(base, `node-${node}-`));
        const layers = new LayerStore(
          dataDir,
          { timeoutMs: 60_000, maxDiskBytes: 1024 ** 3 },
          { shared: layersFor(node), onObtained: (event) => events.push({ ...event, node }) },
        );
        await layers.init();
        return layers;
      }),
    );
    const request = {
      runtime: slowInstall(1500),
      isolation: new ProcessIsolation(),
      sourceDir: source,
      manifest: { files: ['requirements.txt'], mountName: 'out' },
      namespace: 'default',
      scripts: false,
      onOutput: () => {},
    };
    const results = await Promise.all(nodes.map((layers) => layers.ensure(request)));
    expect(results[0]?.key).toBe(results[1]?.key);
    expect(results.filter((result) => result.fetched === true)).toHaveLength(1);
    expect(events.filter((event) => event.how === 'built')).toHaveLength(1);
    expect(events.filter((event) => event.how === 'published')).toHaveLength(1);
    const fetchedBy = events.find((event) => event.how === 'fetched')?.node;
    const builtBy = events.find((event) => event.how === 'built')?.node;
    expect(fetchedBy).toBeDefined();
    expect(fetchedBy).not.toBe(builtBy);
    for (const layers of nodes) {
      const key = results[0]?.key as string;
      expect(await readFile(join(layers.dir(key), 'dep.py'), 'utf8')).toBe('built = True\n');
      // Again on either node: reused, nothing built or fetched.
      expect((await layers.ensure(request)).cached).toBe(true);
    }
    expect(events).toHaveLength(3);
  }, 60_000);

  it('a layer a node holds and the cluster lacks is stored at its start, or when a deploy reuses it', async () => {
    const source = await mkdtemp(join(base, 'source-'));
    await writeFile(join(source, 'requirements.txt'), `redis # ${randomBytes(8).toString('hex')}\n`);
    const dataDir = await mkdtemp(join(base, 'node-c-'));
    const request = {
      runtime: slowInstall(0),
      isolation: new ProcessIsolation(),
      sourceDir: source,
      manifest: { files: ['requirements.txt'], mountName: 'out' },
      namespace: 'default',
      scripts: false,
      onOutput: () => {},
    };
    // Built alone (the embedded mode, or before the cluster shared layers)...
    const alone = new LayerStore(dataDir, { timeoutMs: 60_000, maxDiskBytes: 1024 ** 3 });
    await alone.init();
    const { key } = await alone.ensure(request);
    const sharedLayers = layersFor('c');
    expect(await sharedLayers.touch(key)).toBe(false);
    // ...then held by a node that joins the cluster: stored for the other nodes at its start...
    const joining = new LayerStore(
      dataDir,
      { timeoutMs: 60_000, maxDiskBytes: 1024 ** 3 },
      { shared: sharedLayers },
    );
    expect(
      await joining.shareHeld([
        { key, namespace: 'default' },
        { key: freshKey(), namespace: 'default' },
      ]),
    ).toBe(1);
    expect(await sharedLayers.touch(key)).toBe(true);
    expect(await joining.shareHeld([{ key, namespace: 'default' }])).toBe(0);
    await sharedLayers.remove(key, Date.now() + HOUR);
    expect(await sharedLayers.touch(key)).toBe(false);
    // ...or when a deploy reuses it.
    const clustered = new LayerStore(
      dataDir,
      { timeoutMs: 60_000, maxDiskBytes: 1024 ** 3 },
      { shared: sharedLayers },
    );
    await clustered.init();
    expect((await clustered.ensure(request)).cached).toBe(true);
    expect(await sharedLayers.touch(key)).toBe(true);
    // And another node with none of it fetches it by key, as the reconciler does.
    const other = new LayerStore(
      await mkdtemp(join(base, 'node-d-')),
      { timeoutMs: 60_000, maxDiskBytes: 1024 ** 3 },
      { shared: layersFor('d') },
    );
    await other.init();
    await other.fetchShared(key);
    expect(await readFile(join(other.dir(key), 'dep.py'), 'utf8')).toBe('built = True\n');
    await expect(other.fetchShared(freshKey())).rejects.toThrow(/not in the cluster's store/);
  }, 60_000);
});
