/**
 * @module A WebAssembly function's module checked at deploy, on the host: the handler names a file and an
 * export that exist, the module is valid, imports nothing but WASI preview 1, and its memory fits
 * limits.memory. Every refusal is a 400 naming the field, the value and what was expected.
 */

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { HearthError } from '../../domain/errors.js';
import type { FunctionSpec } from '../../domain/function.js';

export const WASI_MODULE = 'wasi_snapshot_preview1';

/** What the Node process of a wasm instance keeps of limits.memory; the rest may be linear memory. */
export const RUNTIME_RESERVE_MIB = 40;

const PAGE = 64 * 1024;

/** WASI preview 1's functions (witx `wasi_snapshot_preview1`), all of which node:wasi provides. */
export const WASI_FUNCTIONS: ReadonlySet<string> = new Set([
  'args_get',
  'args_sizes_get',
  'environ_get',
  'environ_sizes_get',
  'clock_res_get',
  'clock_time_get',
  'fd_advise',
  'fd_allocate',
  'fd_close',
  'fd_datasync',
  'fd_fdstat_get',
  'fd_fdstat_set_flags',
  'fd_fdstat_set_rights',
  'fd_filestat_get',
  'fd_filestat_set_size',
  'fd_filestat_set_times',
  'fd_pread',
  'fd_prestat_get',
  'fd_prestat_dir_name',
  'fd_pwrite',
  'fd_read',
  'fd_readdir',
  'fd_renumber',
  'fd_seek',
  'fd_sync',
  'fd_tell',
  'fd_write',
  'path_create_directory',
  'path_filestat_get',
  'path_filestat_set_times',
  'path_link',
  'path_open',
  'path_readlink',
  'path_remove_directory',
  'path_rename',
  'path_symlink',
  'path_unlink_file',
  'poll_oneoff',
  'proc_exit',
  'proc_raise',
  'sched_yield',
  'random_get',
  'sock_accept',
  'sock_recv',
  'sock_send',
  'sock_shutdown',
]);

/** The handler's file and export: `main` → main.wasm `_start`; `main.handle` → main.wasm `handle`. */
export function parseWasmHandler(handler: string): { file: string; entry: string } {
  if (handler.endsWith('.wasm')) return { file: handler, entry: '_start' };
  const dot = handler.lastIndexOf('.');
  if (dot <= handler.lastIndexOf('/')) return { file: `${handler}.wasm`, entry: '_start' };
  return { file: `${handler.slice(0, dot)}.wasm`, entry: handler.slice(dot + 1) };
}

export interface ModuleSummary {
  readonly file: string;
  readonly entry: string;
  readonly abi: 'command' | 'export';
  readonly bytes: number;
  readonly minMemoryBytes: number;
}

function refuse(field: string, value: unknown, expected: string, message: string): HearthError {
  return new HearthError('HEARTH_E_VALIDATION', `${field}: ${message}`, {
    details: { field, value, expected },
  });
}

/** Checks the function's module in `codeDir` against its spec; throws a HearthError (400) naming the field. */
export async function checkWasmModule(codeDir: string, spec: FunctionSpec): Promise<ModuleSummary> {
  const { file, entry } = parseWasmHandler(spec.handler);
  const path = join(codeDir, file);
  const info = await stat(path).catch(() => undefined);
  if (info === undefined || !info.isFile())
    throw refuse(
      'spec.handler',
      spec.handler,
      `a WebAssembly module ${file} in the function folder`,
      `got "${spec.handler}", expected a WebAssembly module ${file} in the function folder (build it first, e.g. cargo build --release --target wasm32-wasip1, and copy the .wasm there)`,
    );
  const bytes = await readFile(path);
  let module: WebAssembly.Module;
  try {
    // Asynchronous: V8 compiles on its background threads, not on the platform's event loop.
    module = await WebAssembly.compile(bytes);
  } catch (error) {
    throw refuse(
      'spec.handler',
      file,
      'a valid WebAssembly module',
      `${file} is not a valid WebAssembly module (${(error as Error).message})`,
    );
  }
  for (const item of WebAssembly.Module.imports(module)) {
    if (item.module !== WASI_MODULE || item.kind !== 'function' || !WASI_FUNCTIONS.has(item.name))
      throw refuse(
        'spec.handler',
        `${item.module}.${item.name}`,
        `imports from ${WASI_MODULE} (WASI preview 1) only`,
        `${file} imports ${item.kind} "${item.module}.${item.name}"; a Hearth wasm function may import only WASI preview 1 functions (${WASI_MODULE}): build for wasm32-wasip1 (Rust) or GOOS=wasip1 GOARCH=wasm (Go)`,
      );
  }
  const exports = WebAssembly.Module.exports(module);
  const exportsFunction = (name: string): boolean =>
    exports.some((item) => item.name === name && item.kind === 'function');
  const abi = entry === '_start' ? 'command' : 'export';
  if (!exportsFunction(entry))
    throw refuse(
      'spec.handler',
      spec.handler,
      abi === 'command' ? `${file} exporting _start (a WASI command)` : `${file} exporting ${entry}`,
      abi === 'command'
        ? `${file} exports no _start: it is not a WASI command; build a binary (cargo build --bin) or name an exported function as handler: ${file.replace(/\.wasm$/, '')}.<export>`
        : `${file} exports no function "${entry}"; its functions are: ${exports
            .filter((item) => item.kind === 'function')
            .map((item) => item.name)
            .join(', ')}`,
    );
  if (abi === 'export' && !exportsFunction('alloc'))
    throw refuse(
      'spec.handler',
      spec.handler,
      `${file} exporting alloc(len) -> ptr`,
      `${file} exports no function "alloc": the exported-function ABI needs alloc(len) -> ptr beside ${entry}(ptr, len) -> i64`,
    );
  const memory = memoryOf(bytes);
  if (memory === undefined || memory.count !== 1 || memory.flags > 1)
    throw refuse(
      'spec.handler',
      file,
      'one 32-bit, unshared linear memory defined by the module',
      `${file} must define exactly one 32-bit, unshared memory (it defines ${memory?.count ?? 0}${memory !== undefined && memory.flags > 1 ? ', shared or 64-bit' : ''})`,
    );
  const memoryMiB = spec.limits.memoryBytes / 1024 ** 2;
  const minMemoryBytes = memory.minPages * PAGE;
  if (minMemoryBytes > (memoryMiB - RUNTIME_RESERVE_MIB) * 1024 ** 2)
    throw refuse(
      'spec.limits.memory',
      `${memoryMiB}Mi`,
      `at least ${Math.ceil(minMemoryBytes / 1024 ** 2) + RUNTIME_RESERVE_MIB}Mi`,
      `${file} starts with ${(minMemoryBytes / 1024 ** 2).toFixed(1)} MiB of linear memory and the runtime keeps ${RUNTIME_RESERVE_MIB} MiB: limits.memory ${memoryMiB}Mi is too small`,
    );
  return { file, entry, abi, bytes: bytes.length, minMemoryBytes };
}

/** The memory section's entry count, first entry's flags and initial pages; undefined when there is none. */
function memoryOf(bytes: Uint8Array): { count: number; flags: number; minPages: number } | undefined {
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at];
    const [size, start] = readLeb(bytes, at + 1);
    if (id === 5) {
      const [count, next] = readLeb(bytes, start);
      if (count === 0) return { count, flags: 0, minPages: 0 };
      const flags = bytes[next] ?? 0;
      const [minPages] = readLeb(bytes, next + 1);
      return { count, flags, minPages };
    }
    at = start + size;
  }
  return undefined;
}

function readLeb(bytes: Uint8Array, start: number): [number, number] {
  let value = 0;
  let shift = 0;
  let at = start;
  for (;;) {
    const byte = bytes[at++];
    if (byte === undefined || shift > 28) return [value >>> 0, bytes.length];
    value |= (byte & 0x7f) << shift;
    shift += 7;
    if ((byte & 0x80) === 0) return [value >>> 0, at];
  }
}
