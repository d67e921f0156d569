/**
 * @module The wasm host kind of `isolation: isolate` (runtime/isolate): `runtime: wasm` functions of one
 * namespace run in one sandboxed host process (guest/wasm-host.mts) that keeps compiled modules by content
 * hash, so a cold start is an instantiation there, not a process of its own that compiles the module.
 *
 * The platform reads the member's module (the host does not see the function's slot), hashes it (sha-256,
 * remembered by file identity so a second cold start of the same code does not read it again) and sends
 * the bytes only to a host that has not had that hash.
 */

import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { LaunchSpec } from '../index.js';
import { GUEST_TOKEN } from '../index.js';
import type { BindMessage } from '../ipc/protocol.js';
import type { HostKind } from '../isolate/index.js';
import { guestDir, SANDBOX_PATH } from '../paths.js';
import { parseWasmHandler } from './module.js';

/** Files hashed, by device, inode, size and modification time: a code checkout is immutable. */
const MAX_REMEMBERED = 4096;

export function wasmHostKind(options: { workers?: number } = {}): HostKind {
  const hashes = new Map<string, string>();
  const node = realpathSync(process.execPath);
  return {
    name: 'wasm',
    unavailable:
      typeof WebAssembly === 'object' ? undefined : 'wasm functions need a Node.js built with WebAssembly',
    launch(): LaunchSpec {
      return {
        command: node,
        // Lazy compilation: a module is decoded at its first member, each function body compiled on its first
        // call, once for every instance after it; the platform validated the whole module at deploy.
        args: [
          '--no-warnings',
          '--wasm-lazy-compilation',
          '--wasm-lazy-validation',
          `${GUEST_TOKEN}/wasm-host.mjs`,
        ],
        env: {
          PATH: SANDBOX_PATH,
          HOME: '/tmp',
          LANG: 'C.UTF-8',
          TMPDIR: '/tmp',
          ...(options.workers === undefined ? {} : { HEARTH_WASM_WORKERS: String(options.workers) }),
        },
        guestDir: guestDir('wasm'),
        readOnlyPaths: node.startsWith('/usr/') ? [] : [dirname(dirname(node))],
      };
    },
    // The host's bind only files what deploy checked (checkWasmModule): answered here, a round trip saved.
    boundLocally: (bind) => ({
      ok: true,
      eventFormat: parseWasmHandler(bind.handler).entry === '_start' ? 'wasi-command' : 'wasm-export',
    }),
    open(bind: BindMessage, known: Set<string>): { meta: unknown; body?: Buffer } {
      const { file } = parseWasmHandler(bind.handler);
      if (file.split('/').includes('..'))
        throw new Error(`handler ${bind.handler} names a file outside the function folder`);
      const path = join(bind.codeDir, file);
      // A regular file only: a symbolic link is never followed out of the function's folder.
      const info = lstatSync(path, { throwIfNoEntry: false });
      if (info === undefined || !info.isFile())
        throw new Error(`${file} is not a file in the function folder`);
      // Nor a linked folder on the way to it (lstat checks only the last name).
      if (!realpathSync(path).startsWith(`${realpathSync(bind.codeDir)}/`))
        throw new Error(`${file} is not a file in the function folder`);
      const identity = `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}`;
      let bytes: Buffer | undefined;
      let hash = hashes.get(identity);
      if (hash === undefined) {
        bytes = readFileSync(path);
        hash = createHash('sha256').update(bytes).digest('hex');
        if (hashes.size >= MAX_REMEMBERED) hashes.clear();
        hashes.set(identity, hash);
      }
      const meta = { open: { wasm: { hash, file } } };
      if (known.has(hash)) return { meta };
      known.add(hash);
      return { meta, body: bytes ?? readFileSync(path) };
    },
  };
}
