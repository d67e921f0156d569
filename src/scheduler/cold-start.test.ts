/**
 * @module The cold-start path on real runtime processes (process isolation, code copied into the slot): an
 * instance made from a stem cell binds the handler and answers; a handler that does not load is refused with
 * its stack in the function's logs, and gives back the code it checked out.
 */

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeployedVersion } from '../domain/deployment.js';
import {
  type IsolationName,
  parseFunctionManifest,
  type RuntimeName,
  resolveSpec,
} from '../domain/function.js';
import { createSlotManager, type Isolation, type Runtime, type SlotManager } from '../runtime/index.js';
import { NodeRuntime } from '../runtime/node/index.js';
import { ProcessIsolation } from '../runtime/process/index.js';
import { ColdStarter } from './cold-start.js';
import type { FunctionLogRecord } from './index.js';
import type { Instance } from './instance.js';

let dir: string | undefined;
let slots: SlotManager | undefined;
let starter: ColdStarter | undefined;
const instances: Instance[] = [];

afterEach(async () => {
  for (const instance of instances.splice(0)) await instance.stop(100);
  await starter?.close();
  await slots?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** A starter over one code tree (`handler.mjs` with `source`), counting checkouts still held. */
async function starterFor(source: string): Promise<{
  starter: ColdStarter;
  version: DeployedVersion;
  logs: FunctionLogRecord[];
  held: () => number;
}> {
  dir = await mkdtemp(join(tmpdir(), 'hearth-cold-'));
  const codeDir = join(dir, 'code');
  await mkdir(codeDir);
  await writeFile(join(codeDir, 'handler.mjs'), source);
  slots = await createSlotManager(join(dir, 'slots'), { allowMount: false });
  let held = 0;
  const logs: FunctionLogRecord[] = [];
  starter = new ColdStarter({
    runtimes: new Map<RuntimeName, Runtime>([['node20', new NodeRuntime()]]),
    isolations: new Map<IsolationName, Isolation>([['process', new ProcessIsolation()]]),
    slots,
    code: {
      checkoutCode: async () => {
        held += 1;
        return { dir: codeDir, release: () => (held -= 1) };
      },
      layerDir: () => undefined,
    },
    logs: { write: (record) => logs.push(record) },
    stemCells: { node20: 1 },
    onWarning: () => {},
  });
  const manifest = parseFunctionManifest({
    apiVersion: 'hearth.dev/v1',
    kind: 'Function',
    metadata: { name: 'cold' },
    spec: {
      runtime: 'node20',
      handler: 'handler.handler',
      isolation: 'process',
      scaling: { targetConcurrency: 4 },
    },
  });
  const version: DeployedVersion = {
    ref: { namespace: 'default', name: 'cold' },
    version: 1,
    spec: resolveSpec(manifest.spec),
    manifest,
    code: { hash: 'test', files: 1, bytes: source.length },
    deps: undefined,
    createdAt: new Date().toISOString(),
  };
  return { starter, version, logs, held: () => held };
}

describe('cold start', () => {
  it('binds a stem cell to the function and answers, saying where the time went', async () => {
    const { starter, version, held } = await starterFor(
      'export const handler = (event) => ({ statusCode: 201, body: "hi " + event.query.who });',
    );
    const instance = await starter.start(version);
    instances.push(instance);
    expect(instance.state).toBe('ready');
    expect(instance.capacity).toBe(4);
    expect(Object.keys(instance.coldStartPhases ?? {})).toEqual(['code', 'stemCell', 'attach', 'load']);
    expect(held()).toBe(1);
    // The first take of a pool nobody warmed had to start its process: a miss, counted.
    expect(starter.stats()).toMatchObject([{ runtime: 'node20', isolation: 'process', taken: 1, misses: 1 }]);

    instance.inFlight += 1;
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) =>
      instance.run(
        {
          invocationId: 'inv-1',
          method: 'GET',
          path: '/',
          rawQuery: 'who=cold',
          rawHeaders: [],
          body: Buffer.alloc(0),
          sourceIp: '127.0.0.1',
          deadline: Date.now() + 5_000,
          timeoutMs: 5_000,
          timeoutSource: 'limits.timeout',
        },
        (error, result) => {
          if (error !== undefined || result === undefined || !result.ok)
            reject(error ?? new Error('no result'));
          else resolve({ status: result.status, body: Buffer.from(result.body).toString() });
        },
        () => {},
      ),
    );
    expect(answer).toEqual({ status: 201, body: 'hi cold' });
  });

  it('refuses a handler that does not load, logs its stack, and gives back the code and the cell', async () => {
    const { starter, version, logs, held } = await starterFor('throw new Error("broken at import");');
    await expect(starter.start(version)).rejects.toMatchObject({
      code: 'HEARTH_E_HANDLER_INVALID',
      message: expect.stringContaining('broken at import'),
    });
    expect(held()).toBe(0);
    expect(
      logs.some((record) => record.stream === 'stderr' && record.text.includes('broken at import')),
    ).toBe(true);
  });
});
