/**
 * @module The wasm host kind's platform side on real files: a member's module is hashed and its bytes sent
 * only to a host that has not had them; a symbolic link or a path out of the folder is refused; the Bind is
 * answered locally with the ABI's event format.
 */

import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BindMessage } from '../ipc/protocol.js';
import { wasmHostKind } from './host.js';

let dir: string;
const MODULE = Buffer.from([0, 97, 115, 109, 1, 0, 0, 0]);

function bind(handler: string): BindMessage {
  return {
    namespace: 'default',
    functionName: 'f',
    version: 1,
    handler,
    codeDir: dir,
    env: {},
    memoryMiB: 128,
    timeoutMs: 1000,
  } as BindMessage;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-wasm-host-kind-'));
  await writeFile(join(dir, 'main.wasm'), MODULE);
  await symlink('/etc/hostname', join(dir, 'linked.wasm'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('wasmHostKind', () => {
  it('sends a module to a host once, by its sha-256', () => {
    const kind = wasmHostKind();
    const known = new Set<string>();
    const first = kind.open(bind('main'), known);
    const meta = first.meta as { open: { wasm: { hash: string; file: string } } };
    expect(meta.open.wasm.file).toBe('main.wasm');
    expect(meta.open.wasm.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(first.body).toEqual(MODULE);
    const second = kind.open(bind('main.handle'), known);
    expect(second.meta).toEqual(first.meta);
    expect(second.body).toBeUndefined();
    // Another host has not had it.
    expect(kind.open(bind('main'), new Set()).body).toEqual(MODULE);
  });

  it('refuses a symbolic link and a path out of the folder', () => {
    const kind = wasmHostKind();
    expect(() => kind.open(bind('linked'), new Set())).toThrow(/not a file in the function folder/);
    expect(() => kind.open(bind('../main'), new Set())).toThrow(/outside the function folder/);
  });

  it('answers the Bind with the ABI', () => {
    const kind = wasmHostKind();
    expect(kind.boundLocally?.(bind('main'))).toEqual({ ok: true, eventFormat: 'wasi-command' });
    expect(kind.boundLocally?.(bind('main.handle'))).toEqual({ ok: true, eventFormat: 'wasm-export' });
  });
});
