/** @module The deploy-time check of a wasm function's module and the handler's forms. */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isHearthError } from '../../domain/errors.js';
import { parseFunctionManifest, resolveSpec } from '../../domain/function.js';
import { checkWasmModule, parseWasmHandler } from './module.js';

const text = (value: string): number[] => [value.length, ...Buffer.from(value)];
const section = (id: number, content: number[]): number[] => [id, content.length, ...content];

/** A module with `imports` (module, name) of type () -> (), one memory of `pages`, and exports `_start`, `alloc`. */
function module(imports: [string, string][], pages = 1): Buffer {
  const functions = imports.length;
  return Buffer.from([
    ...[0, 97, 115, 109, 1, 0, 0, 0],
    ...section(1, [1, 0x60, 0, 0]),
    ...section(2, [
      imports.length,
      ...imports.flatMap(([from, name]) => [...text(from), ...text(name), 0, 0]),
    ]),
    ...section(3, [2, 0, 0]),
    ...section(5, [1, 0, ...(pages < 128 ? [pages] : [(pages & 0x7f) | 0x80, pages >> 7])]),
    ...section(7, [2, ...text('_start'), 0, functions, ...text('alloc'), 0, functions + 1]),
    ...section(10, [2, 2, 0, 0x0b, 2, 0, 0x0b]),
  ]);
}

function spec(fields: string) {
  return resolveSpec(
    parseFunctionManifest({
      apiVersion: 'hearth.dev/v1',
      kind: 'Function',
      metadata: { name: 'w' },
      spec: { runtime: 'wasm', ...JSON.parse(fields) },
    }).spec,
  );
}

async function refusal(bytes: Buffer, fields = '{}'): Promise<{ message: string; details: unknown }> {
  await writeFile(join(dir, 'main.wasm'), bytes);
  const error = await checkWasmModule(dir, spec(fields)).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isHearthError(error)) throw new Error(`expected a refusal, got ${String(error)}`);
  expect(error.code).toBe('HEARTH_E_VALIDATION');
  return { message: error.message, details: error.details };
}

let dir = '';
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-wasm-check-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('parseWasmHandler', () => {
  it.each([
    ['main', 'main.wasm', '_start'],
    ['main.wasm', 'main.wasm', '_start'],
    ['main.handle', 'main.wasm', 'handle'],
    ['main._start', 'main.wasm', '_start'],
    ['target/wasm32-wasip1/release/app.handle', 'target/wasm32-wasip1/release/app.wasm', 'handle'],
    ['v1.2/main', 'v1.2/main.wasm', '_start'],
  ])('%s is %s, export %s', (handler, file, entry) => {
    expect(parseWasmHandler(handler)).toEqual({ file, entry });
  });
});

describe('checkWasmModule', () => {
  it('accepts a WASI command and a module of exports', async () => {
    await writeFile(join(dir, 'main.wasm'), module([['wasi_snapshot_preview1', 'proc_exit']]));
    await expect(checkWasmModule(dir, spec('{}'))).resolves.toMatchObject({
      abi: 'command',
      entry: '_start',
    });
    await expect(checkWasmModule(dir, spec('{"handler":"main.alloc"}'))).resolves.toMatchObject({
      abi: 'export',
    });
  });

  it('refuses an import outside WASI preview 1, and an unknown WASI function', async () => {
    const foreign = await refusal(module([['env', 'abort']]));
    expect(foreign.message).toContain('imports function "env.abort"');
    expect(foreign.details).toMatchObject({ field: 'spec.handler', value: 'env.abort' });
    const unknown = await refusal(module([['wasi_snapshot_preview1', 'thread_spawn']]));
    expect(unknown.details).toMatchObject({ value: 'wasi_snapshot_preview1.thread_spawn' });
  });

  it('refuses a missing export, naming the ones there are', async () => {
    const answer = await refusal(module([]), '{"handler":"main.handle"}');
    expect(answer.message).toContain('exports no function "handle"; its functions are: _start, alloc');
  });

  it('refuses an initial memory above limits.memory less the runtime reserve', async () => {
    // 1000 pages = 62.5 MiB; 64Mi leaves 24.
    const answer = await refusal(module([], 1000), '{"limits":{"memory":"64Mi"}}');
    expect(answer.details).toMatchObject({
      field: 'spec.limits.memory',
      value: '64Mi',
      expected: 'at least 103Mi',
    });
    await writeFile(join(dir, 'main.wasm'), module([], 1000));
    await expect(checkWasmModule(dir, spec('{"limits":{"memory":"128Mi"}}'))).resolves.toBeDefined();
  });

  it('refuses bytes that are not WebAssembly and a missing file', async () => {
    expect((await refusal(Buffer.from('not wasm'))).message).toMatch(
      /^spec\.handler: main\.wasm is not a valid/,
    );
    const missing = await checkWasmModule(dir, spec('{"handler":"other"}')).catch((error: unknown) => error);
    expect(isHearthError(missing) && missing.message).toContain('expected a WebAssembly module other.wasm');
  });
});
