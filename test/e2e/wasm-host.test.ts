/**
 * @module `runtime: wasm` with `isolation: isolate` on the real platform: the wasm functions of one namespace
 * run in one sandboxed wasm host that keeps compiled modules and instantiates per request. A cold start works
 * (both ABIs, and a command's instance made at bind), an infinite loop is a 504 and the next request is
 * served, a memory-hungry module fails with a clear error while its neighbours keep answering from the same
 * host, two namespaces never share a host, and describe says what is shared.
 */

import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import { deployFolder, getFunction, type Hearth, invoke, startHearth } from '../support/hearth.js';
import { buildWasmModules, type WasmModuleName } from '../support/wasm/build.mjs';

let hearth: Hearth;
let modules: Record<WasmModuleName, string>;
const folders: string[] = [];

interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

async function deployHosted(
  name: string,
  module: WasmModuleName,
  spec: string,
  namespace?: string,
): Promise<void> {
  const folder = await mkdtemp(join(tmpdir(), `hearth-wasm-host-${name}-`));
  folders.push(folder);
  await copyFile(modules[module], join(folder, 'main.wasm'));
  await writeFile(
    join(folder, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name}${namespace === undefined ? '' : `, namespace: ${namespace}`} }\nspec: { runtime: wasm, isolation: isolate, scaling: { idleTimeout: 5m }, ${spec} }\n`,
  );
  const { status, body } = await deployFolder(hearth.url, folder, {
    name,
    ...(namespace === undefined ? {} : { namespace }),
  });
  expect(status, JSON.stringify(body)).toBe(200);
}

/**
 * The probe module with a custom section naming `tag` appended: the same code, bytes (a content hash) of
 * its own, so the host judges it afresh.
 */
async function deployDistinctProbe(name: string, tag: string, spec: string): Promise<void> {
  const folder = await mkdtemp(join(tmpdir(), `hearth-wasm-host-${name}-`));
  folders.push(folder);
  const label = Buffer.from(tag);
  const custom = Buffer.concat([Buffer.from([0, label.length + 1, label.length]), label]);
  await writeFile(join(folder, 'main.wasm'), Buffer.concat([await readFile(modules.probe), custom]));
  await writeFile(
    join(folder, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: { runtime: wasm, isolation: isolate, scaling: { idleTimeout: 5m }, ${spec} }\n`,
  );
  const { status, body } = await deployFolder(hearth.url, folder, { name });
  expect(status, JSON.stringify(body)).toBe(200);
}

async function pidOf(name: string, namespace = 'default'): Promise<number | undefined> {
  const detail: FunctionDetail | undefined = await getFunction(hearth.url, name, namespace);
  return detail?.activeInstances.find((instance) => instance.state === 'ready')?.pid;
}

beforeAll(async () => {
  modules = buildWasmModules();
  hearth = await startHearth();
  await deployHosted('probe', 'probe', 'handler: main, env: { GREETING: hi }');
  await deployHosted('compute', 'computeRust', 'handler: main.handle');
  await deployHosted('looper', 'probe', 'handler: main, limits: { timeout: 1s }');
  await deployHosted('allocator', 'probe', 'handler: main, limits: { memory: 64Mi }');
  await deployHosted('probe', 'probe', 'handler: main, env: { GREETING: team-b }', 'team-b');
}, 120_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

describe('wasm functions in a namespace wasm host', () => {
  it('cold-starts a WASI command and an exported function in the host', async () => {
    const probe = await invoke(hearth.url, 'probe', { path: '/env?a=1' });
    expect(probe.status, probe.text).toBe(200);
    expect(probe.json()).toMatchObject({
      args: ['main.wasm', 'a=1'],
      greeting: 'hi',
      function: 'probe',
      runs: 1,
    });
    const compute = await invoke(hearth.url, 'compute', { body: 'hello' });
    expect(compute.status, compute.text).toBe(200);
    // The instance is a member of the host: the same process for both functions.
    const probePid = await pidOf('probe');
    expect(probePid).toBeGreaterThan(0);
    expect(await pidOf('compute')).toBe(probePid);
    // Again: a fresh wasm instance per request (module state never outlives one).
    const again = await invoke(hearth.url, 'probe', { path: '/env' });
    expect(again.status).toBe(200);
    expect(again.json()).toMatchObject({ runs: 1 });
  });

  it('answers 504 for an infinite loop and serves the next request', async () => {
    const looped = await invoke(hearth.url, 'looper', { path: '/loop' });
    expect(looped.status, looped.text).toBe(504);
    expect((looped.json() as ErrorBody).error.code).toBe('HEARTH_E_TIMEOUT');
    const next = await invoke(hearth.url, 'looper', { path: '/env' });
    expect(next.status, next.text).toBe(200);
    // Its neighbours were not held up and the host is the same process.
    const neighbour = await invoke(hearth.url, 'probe', { path: '/env' });
    expect(neighbour.status).toBe(200);
    expect(await pidOf('looper')).toBe(await pidOf('probe'));
  });

  it('keeps serving the namespace while one function loops: the loop holds one worker thread, not the host', async () => {
    const order: string[] = [];
    const looped = invoke(hearth.url, 'looper', { path: '/loop' }).then((answer) => {
      order.push('loop');
      return answer;
    });
    const neighbour = await invoke(hearth.url, 'probe', { path: '/env' });
    order.push('neighbour');
    expect(neighbour.status, neighbour.text).toBe(200);
    expect((await looped).status).toBe(504);
    expect(order).toEqual(['neighbour', 'loop']);
  });

  it('cold-starts functions of one module on instances made at bind: a fresh one each, and a loop in a cold start is a 504 that holds up no neighbour', async () => {
    // Three functions of the same bytes (their own: the module is new to the host).
    for (const name of ['quick-a', 'quick-b', 'quick-c'])
      await deployDistinctProbe(name, 'hearth-test-quick', 'handler: main, limits: { timeout: 1s }');
    // quick-a's first run compiles the module's code; quick-b's cold start finds its instance made at bind.
    for (const name of ['quick-a', 'quick-b']) {
      const answer = await invoke(hearth.url, name, { path: '/env' });
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json()).toMatchObject({ function: name, runs: 1 });
    }
    // quick-c's cold start loops: its worker is ended at the deadline.
    const order: string[] = [];
    const looped = invoke(hearth.url, 'quick-c', { path: '/loop' }).then((answer) => {
      order.push('loop');
      return answer;
    });
    const neighbour = await invoke(hearth.url, 'compute', { body: 'during the loop' });
    order.push('neighbour');
    expect(neighbour.status, neighbour.text).toBe(200);
    const loop = await looped;
    expect(loop.status, loop.text).toBe(504);
    expect((loop.json() as ErrorBody).error.code).toBe('HEARTH_E_TIMEOUT');
    expect(order).toEqual(['neighbour', 'loop']);
    // They keep answering, from the namespace's one host.
    for (const name of ['quick-b', 'quick-c']) {
      const after = await invoke(hearth.url, name, { path: '/env' });
      expect(after.status, after.text).toBe(200);
      expect(after.json()).toMatchObject({ function: name, runs: 1 });
    }
    expect(await pidOf('quick-c')).toBe(await pidOf('probe'));
  });

  it('fails a memory-hungry request with a clear error; the function and its neighbours keep answering', async () => {
    const hostBefore = await pidOf('probe');
    const small = await invoke(hearth.url, 'allocator', { path: '/alloc?mib=8' });
    expect(small.status, small.text).toBe(200);
    expect(small.text).toBe('allocated 8 MiB (2048 pages)');
    const large = await invoke(hearth.url, 'allocator', { path: '/alloc?mib=100' });
    expect(large.status).toBe(500);
    const body = large.json() as ErrorBody;
    expect(body.error.code).toBe('HEARTH_E_FN_ERROR');
    expect(body.error.message).toMatch(/WasmTrap: .*of at most 24 MiB from limits\.memory/);
    expect((await invoke(hearth.url, 'allocator', { path: '/alloc?mib=8' })).status).toBe(200);
    expect((await invoke(hearth.url, 'probe', { path: '/env' })).status).toBe(200);
    expect((await invoke(hearth.url, 'compute', { body: 'x' })).status).toBe(200);
    expect(await pidOf('probe')).toBe(hostBefore);
  });

  it('never shares a host across namespaces', async () => {
    const teamB = await invoke(hearth.url, 'probe.team-b', { path: '/env' });
    expect(teamB.status, teamB.text).toBe(200);
    expect(teamB.json()).toMatchObject({ greeting: 'team-b', function: 'probe' });
    const teamBPid = await pidOf('probe', 'team-b');
    expect(teamBPid).toBeGreaterThan(0);
    expect(teamBPid).not.toBe(await pidOf('probe'));
  });

  it('says in describe what the function shares', async () => {
    const detail = await getFunction(hearth.url, 'probe');
    expect(detail?.spec.isolation).toBe('isolate');
    expect(detail?.isolationNote).toMatch(/wasm host/);
    expect(detail?.isolationNote).toMatch(
      /SHARED with the other wasm isolate functions of namespace default/,
    );
    expect(detail?.isolationNote).toMatch(/never another namespace/);
  });
});
