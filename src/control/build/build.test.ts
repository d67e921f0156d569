/** @module The dependency build's disk cap, with real commands writing real files (process isolation). */

import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isHearthError } from '../../domain/errors.js';
import type { BuildStep, Runtime } from '../../runtime/index.js';
import { ProcessIsolation } from '../../runtime/process/index.js';
import { LayerStore } from './index.js';

const MiB = 1024 ** 2;
const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A runtime whose "install" is a node script writing `bytes` into the layer, then sleeping `ms`. */
function writer(bytes: number, ms = 0): Runtime {
  return {
    name: 'node20',
    unavailable: undefined,
    abi: 'test',
    layerOutput: 'out',
    launchSpec: () => {
      throw new Error('not started in this test');
    },
    dependencyManifest: () => ({ files: ['deps.txt'], mountName: 'out' }),
    buildCommand: (workDir: string): BuildStep => ({
      command: process.execPath,
      args: [
        '-e',
        `const fs = require('node:fs'); fs.mkdirSync(${JSON.stringify(join(workDir, 'out'))});
         fs.writeFileSync(${JSON.stringify(join(workDir, 'out', 'blob'))}, Buffer.alloc(${bytes}, 1));
         console.log('Collecting blob'); setTimeout(() => {}, ${ms});`,
      ],
      env: {},
      readOnlyPaths: [],
    }),
  };
}

async function layers(limits: { maxDiskBytes: number; diskCheckMs: number }) {
  const dataDir = await mkdtemp(join(tmpdir(), 'hearth-build-test-'));
  dirs.push(dataDir);
  const source = join(dataDir, 'src');
  await mkdir(source);
  await writeFile(join(source, 'deps.txt'), `${Math.random()}\n`);
  const store = new LayerStore(dataDir, { timeoutMs: 30_000, ...limits });
  await store.init();
  return { store, source, dataDir };
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the build to fail');
}

describe('build.maxDisk', () => {
  it('stops a build that goes past the cap while it runs, naming the step and the cap', async () => {
    const { store, source, dataDir } = await layers({ maxDiskBytes: MiB, diskCheckMs: 50 });
    const request = {
      runtime: writer(3 * MiB, 20_000),
      isolation: new ProcessIsolation(),
      sourceDir: source,
      manifest: { files: ['deps.txt'], mountName: 'out' },
      namespace: 'default',
      scripts: false,
      onOutput: () => {},
    };
    const began = performance.now();
    const error = await failure(store.ensure(request));
    // Stopped at the first measurement past the cap, not at the command's end 20 s later.
    expect(performance.now() - began).toBeLessThan(10_000);
    expect(isHearthError(error) && error.code).toBe('HEARTH_E_BUILD_FAILED');
    expect(error.message).toBe(
      'installing dependencies from deps.txt stopped at "Collecting blob": the build used 3.0 MiB of disk, over its cap of 1.0 MiB (build.maxDisk)',
    );
    expect(await readdir(join(dataDir, 'layers'))).toEqual([]);
  });

  it('refuses a layer that went past the cap between two measurements', async () => {
    const { store, source, dataDir } = await layers({ maxDiskBytes: MiB, diskCheckMs: 60_000 });
    const error = await failure(
      store.ensure({
        runtime: writer(2 * MiB),
        isolation: new ProcessIsolation(),
        sourceDir: source,
        manifest: { files: ['deps.txt'], mountName: 'out' },
        namespace: 'default',
        scripts: false,
        onOutput: () => {},
      }),
    );
    expect(error.message).toMatch(/over its cap of 1\.0 MiB \(build\.maxDisk\)$/);
    expect(await readdir(join(dataDir, 'layers'))).toEqual([]);
  });

  it('reports the layer size and the peak disk of a build within the cap', async () => {
    const { store, source } = await layers({ maxDiskBytes: 64 * MiB, diskCheckMs: 50 });
    const seen: number[] = [];
    const result = await store.ensure({
      runtime: writer(2 * MiB, 300),
      isolation: new ProcessIsolation(),
      sourceDir: source,
      manifest: { files: ['deps.txt'], mountName: 'out' },
      namespace: 'default',
      scripts: false,
      onOutput: () => {},
      onDisk: (bytes) => seen.push(bytes),
    });
    expect(result.cached).toBe(false);
    expect(result.layerBytes).toBeGreaterThanOrEqual(2 * MiB);
    expect(result.peakDiskBytes).toBeGreaterThanOrEqual(2 * MiB);
    expect(Math.max(...seen)).toBeGreaterThanOrEqual(2 * MiB);
  });
});
