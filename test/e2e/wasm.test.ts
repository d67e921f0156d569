/**
 * @module `runtime: wasm` through the real platform: Rust and Go modules built from source here, both ABIs
 * (WASI command with CGI-style output; exported function), in sandboxed instances, their deadline and memory
 * walls, and modules refused at deploy with the field named.
 */

import { execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployFolder,
  eventually,
  functionLogs,
  type Hearth,
  invoke,
  runCli,
  startHearth,
} from '../support/hearth.js';
import { buildWasmModules, type WasmModuleName } from '../support/wasm/build.mjs';

let hearth: Hearth;
let modules: Record<WasmModuleName, string>;
const folders: string[] = [];

interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** A function folder holding `module` as main.wasm and a hearth.yaml with `spec` (YAML flow mapping body). */
async function wasmFolder(name: string, module: string | Buffer, spec: string): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), `hearth-wasm-${name}-`));
  folders.push(folder);
  if (typeof module === 'string') await copyFile(module, join(folder, 'main.wasm'));
  else await writeFile(join(folder, 'main.wasm'), module);
  await writeFile(
    join(folder, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: { runtime: wasm, ${spec} }\n`,
  );
  return folder;
}

async function deployWasm(name: string, module: string | Buffer, spec = 'handler: main'): Promise<void> {
  const { status, body } = await deployFolder(hearth.url, await wasmFolder(name, module, spec), { name });
  expect(status, JSON.stringify(body)).toBe(200);
}

async function refusedDeploy(name: string, module: string | Buffer, spec: string): Promise<ErrorBody> {
  const { status, body } = await deployFolder(hearth.url, await wasmFolder(name, module, spec), { name });
  expect(status, JSON.stringify(body)).toBe(400);
  return body as unknown as ErrorBody;
}

beforeAll(async () => {
  modules = buildWasmModules();
  hearth = await startHearth();
  await deployWasm('probe', modules.probe, 'handler: main, env: { GREETING: hi }');
  await deployWasm('exports', modules.probeExports, 'handler: main.handle');
  await deployWasm('hello-go', modules.helloGo, 'handler: main');
  await deployWasm('hello-rust', modules.helloRust, 'handler: main, env: { GREETING: hello }');
  await deployWasm('compute-rust', modules.computeRust, 'handler: main.handle');
}, 120_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

describe('the WASI command ABI (a Rust module)', () => {
  it('gets the request body on stdin and answers with its CGI headers and stdout', async () => {
    const response = await invoke(hearth.url, 'probe', {
      path: '/echo',
      body: '{"x":1}',
      headers: { 'content-type': 'application/json' },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.headers.get('x-method')).toBe('POST');
    expect(response.json()).toEqual({ x: 1 });
  });

  it('sees the spec env, the CGI variables and WAGI-style args, in a fresh instance per request', async () => {
    for (let i = 0; i < 3; i++) {
      const response = await invoke(hearth.url, 'probe', {
        path: '/env?name=Ada&lang=wasm',
        headers: { 'x-probe': 'yes' },
      });
      expect(response.status).toBe(200);
      expect(response.json()).toEqual({
        args: ['main.wasm', 'name=Ada', 'lang=wasm'],
        greeting: 'hi',
        method: 'GET',
        path: '/env',
        query: 'name=Ada&lang=wasm',
        probe: 'yes',
        function: 'probe',
        contentLength: '',
        // Module state never outlives a request.
        runs: 1,
      });
    }
  });

  it('sets the status from a Status header, redirects on Location, and treats headerless output as text', async () => {
    const teapot = await invoke(hearth.url, 'probe', { path: '/status' });
    expect(teapot.status).toBe(418);
    expect(teapot.headers.get('x-probe')).toBe('yes');
    expect(teapot.text).toBe('short and stout');
    const redirect = await fetch(`${hearth.url}/function/probe/redirect`, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe('/function/elsewhere');
    const plain = await invoke(hearth.url, 'probe', { path: '/plain' });
    expect(plain.status).toBe(200);
    expect(plain.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(plain.text).toBe('just text\n');
  });

  it('answers 500 when the module exits non-zero, with its stderr in the function logs', async () => {
    const response = await invoke(hearth.url, 'probe', { path: '/exit' });
    expect(response.status).toBe(500);
    const body = response.json() as ErrorBody;
    expect(body.error.code).toBe('HEARTH_E_FN_ERROR');
    expect(body.error.message).toContain('exited with status 3');
    await eventually('the module stderr in the function logs', async () => {
      const logs = await functionLogs(hearth.url, 'probe');
      return logs.some((log) => log.stream === 'stderr' && log.message.includes('failing on purpose'))
        ? true
        : undefined;
    });
  });
});

describe('isolation', () => {
  it('runs the same module with isolation: process by changing that one field', async () => {
    await deployWasm('probe-process', modules.probe, 'handler: main, isolation: process');
    const response = await invoke(hearth.url, 'probe-process', { path: '/env' });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({ function: 'probe-process', runs: 1 });
  });
});

describe('the exported-function ABI', () => {
  it('passes the body through alloc/handle and keeps the instance between requests', async () => {
    const first = await invoke(hearth.url, 'exports', { body: 'abc' });
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('application/octet-stream');
    const second = await invoke(hearth.url, 'exports', { body: 'hello' });
    const [firstText, firstCall] = first.text.split(' #');
    const [secondText, secondCall] = second.text.split(' #');
    expect(firstText).toBe('cba');
    expect(secondText).toBe('olleh');
    expect(Number(secondCall)).toBe(Number(firstCall) + 1);
    await eventually('the module stderr in the function logs', async () => {
      const logs = await functionLogs(hearth.url, 'exports');
      return logs.some((log) => log.message.includes('handled 5 bytes')) ? true : undefined;
    });
  });

  it('runs the compute example', async () => {
    const response = await invoke(hearth.url, 'compute-rust', { body: 'one two\nthree' });
    expect(response.status).toBe(200);
    expect(JSON.parse(response.text)).toEqual({ bytes: 13, lines: 2, words: 3 });
  });
});

describe('the examples', () => {
  it('runs the Go WASI command', async () => {
    const response = await invoke(hearth.url, 'hello-go', { path: '?name=gopher', body: 'abcd' });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ hello: 'gopher', language: 'go', method: 'POST', bytes: 4 });
  });

  it('runs the Rust WASI command', async () => {
    const response = await invoke(hearth.url, 'hello-rust', { path: '?name=ferris' });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ hello: 'ferris', method: 'GET', bytes: 0 });
  });
});

describe('deadlines and memory', () => {
  it('answers 504 for an infinite loop and serves the next request from a fresh instance', async () => {
    await deployWasm('looper', modules.probe, 'handler: main, limits: { timeout: 1s }');
    const looped = await invoke(hearth.url, 'looper', { path: '/loop' });
    expect(looped.status).toBe(504);
    expect((looped.json() as ErrorBody).error.code).toBe('HEARTH_E_TIMEOUT');
    const next = await invoke(hearth.url, 'looper', { path: '/env' });
    expect(next.status).toBe(200);
  });

  it('answers 504 for an exported function that never returns', async () => {
    await deployWasm('spinner', modules.probeExports, 'handler: main.spin, limits: { timeout: 1s }');
    const spun = await invoke(hearth.url, 'spinner', { body: 'x' });
    expect(spun.status).toBe(504);
  });

  it('caps linear memory by limits.memory: a larger allocation fails the request, not the instance', async () => {
    // 64Mi leaves the module 24 MiB of linear memory (the runtime keeps 40).
    await deployWasm('allocator', modules.probe, 'handler: main, limits: { memory: 64Mi }');
    const small = await invoke(hearth.url, 'allocator', { path: '/alloc?mib=8' });
    expect(small.status).toBe(200);
    expect(small.text).toBe('allocated 8 MiB (2048 pages)');
    const large = await invoke(hearth.url, 'allocator', { path: '/alloc?mib=100' });
    expect(large.status).toBe(500);
    const body = large.json() as ErrorBody;
    expect(body.error.code).toBe('HEARTH_E_FN_ERROR');
    expect(body.error.message).toMatch(/WasmTrap: .*of at most 24 MiB from limits\.memory/);
    const after = await invoke(hearth.url, 'allocator', { path: '/alloc?mib=8' });
    expect(after.status).toBe(200);
  });

  it('caps an exported-function instance too, and replaces it after the failure', async () => {
    await deployWasm('hog', modules.probeExports, 'handler: main.hog, limits: { memory: 64Mi }');
    expect((await invoke(hearth.url, 'hog', { body: '4' })).text).toBe('kept 4 MiB (1024 pages)');
    const breach = await invoke(hearth.url, 'hog', { body: '64' });
    expect(breach.status).toBe(500);
    expect((breach.json() as ErrorBody).error.message).toMatch(/of at most 24 MiB from limits\.memory/);
    expect((await invoke(hearth.url, 'hog', { body: '4' })).status).toBe(200);
  });
});

describe('modules refused at deploy', () => {
  it('refuses bytes that are not WebAssembly, naming spec.handler', async () => {
    const body = await refusedDeploy('not-wasm', Buffer.from('#!/bin/sh\necho hi\n'), 'handler: main');
    expect(body.error.code).toBe('HEARTH_E_VALIDATION');
    expect(body.error.message).toMatch(/^spec\.handler: main\.wasm is not a valid WebAssembly module/);
    expect(body.error.details).toMatchObject({ field: 'spec.handler', value: 'main.wasm' });
  });

  it('refuses a module importing anything but WASI preview 1, naming the import', async () => {
    // (module (import "env" "host_log" (func)) (memory 1) (func (export "_start")))
    const module = Buffer.from([
      0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 2, 16, 1, 3, 101, 110, 118, 8, 104, 111, 115, 116, 95,
      108, 111, 103, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 10, 1, 6, 95, 115, 116, 97, 114, 116, 0, 1, 10, 4, 1,
      2, 0, 11,
    ]);
    const body = await refusedDeploy('host-import', module, 'handler: main');
    expect(body.error.message).toContain('imports function "env.host_log"');
    expect(body.error.details).toMatchObject({ field: 'spec.handler', value: 'env.host_log' });
  });

  it('refuses a handler naming a missing file or export', async () => {
    const missing = await refusedDeploy('no-file', modules.probe, 'handler: other');
    expect(missing.error.message).toContain('expected a WebAssembly module other.wasm');
    const noExport = await refusedDeploy('no-export', modules.probeExports, 'handler: main.nothing');
    expect(noExport.error.message).toContain('exports no function "nothing"');
    expect(noExport.error.message).toContain('handle');
    const notCommand = await refusedDeploy('not-command', modules.probeExports, 'handler: main');
    expect(notCommand.error.message).toContain('exports no _start');
  });

  it('refuses a module whose initial memory does not fit limits.memory, naming spec.limits.memory', async () => {
    // (module (memory 1000) (func (export "_start"))): 62.5 MiB at start
    const module = Buffer.from([
      0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 4, 1, 0, 232, 7, 7, 10, 1, 6, 95, 115,
      116, 97, 114, 116, 0, 0, 10, 4, 1, 2, 0, 11,
    ]);
    const body = await refusedDeploy('too-big', module, 'handler: main, limits: { memory: 64Mi }');
    expect(body.error.details).toMatchObject({ field: 'spec.limits.memory', value: '64Mi' });
  });
});

describe('hearth new --runtime wasm', () => {
  it('scaffolds a Rust function that builds for wasm32-wasip1 and deploys', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'hearth-wasm-new-'));
    folders.push(folder);
    const target = join(folder, 'scaffolded');
    const created = await runCli(['new', 'scaffolded', '--runtime', 'wasm', '--dir', target]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain('cargo build --release --target wasm32-wasip1');
    execFileSync('cargo', ['build', '--quiet', '--release', '--target', 'wasm32-wasip1'], {
      cwd: target,
      env: { ...process.env, CARGO_TARGET_DIR: join(folder, 'target') },
    });
    await copyFile(
      join(folder, 'target', 'wasm32-wasip1', 'release', 'main.wasm'),
      join(target, 'main.wasm'),
    );
    const deployed = await runCli(['deploy', target], { url: hearth.url });
    expect(deployed.code, deployed.stderr).toBe(0);
    const response = await invoke(hearth.url, 'scaffolded', { path: '?name=Hearth' });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ hello: 'Hearth' });
    expect(await readFile(join(target, 'hearth.yaml'), 'utf8')).toContain('runtime: wasm');
  }, 120_000);
});
