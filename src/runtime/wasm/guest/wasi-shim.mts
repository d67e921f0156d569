/**
 * @module The WASI preview 1 calls both wasm guests serve themselves (the per-process guest, bootstrap.mts,
 * and the wasm host's runner, wasm-runner.mts): stdin, stdout, stderr, args and environ from the request
 * being run, proc_exit as an unwinding exception, every other call handed to node:wasi.
 *
 * Why not node:wasi's own functions as imports: instantiating with them costs 300-700 µs here (V8 builds a
 * wrapper per native import per instance), with plain JS functions about 10 µs (bootstrap.mts says more).
 * Each guest keeps its own state (one function, or many); this factory reads it through `WasiState`.
 */

import { WASI } from 'node:wasi';

export type WasiFunction = (...args: number[]) => number;
/** node:wasi's functions, bound to one memory. */
export type WasiFallback = Record<string, WasiFunction | undefined>;

const EMPTY = Buffer.alloc(0);
/** WASI errno values used here. */
const ESUCCESS = 0;
const EBADF = 8;
/** A log write is clipped to this, as in the Node guest (the log keeps 16 KiB of a record anyway). */
export const LOG_MAX = 512 * 1024;
/** The CGI header block may add this much to the body before stdout counts as too large. */
const HEADER_ROOM = 64 * 1024;

/** proc_exit unwinds the module's stack with this; the run catches it. */
export class Exit {
  constructor(readonly code: number) {}
}

/** The invocation being run: its stdin, its stdout, its environment, what it logged. */
export interface WasiRun {
  readonly seq: number;
  readonly stdin: Uint8Array;
  stdinAt: number;
  stdout: Buffer[];
  stdoutBytes: number;
  /** stdout is the response (command ABI); otherwise it is the function's log, like stderr. */
  readonly captureStdout: boolean;
  /** stdout went past limits.maxBody (plus room for the header block): the answer is refused. */
  tooLarge: boolean;
  readonly args: Buffer[];
  readonly env: Buffer[];
  readonly logOut: { pieces: Buffer[]; bytes: number };
  readonly logErr: { pieces: Buffer[]; bytes: number };
}

export function newRun(
  seq: number,
  stdin: Uint8Array,
  captureStdout: boolean,
  args: Buffer[],
  env: Buffer[],
): WasiRun {
  return {
    seq,
    stdin,
    stdinAt: 0,
    stdout: [],
    stdoutBytes: 0,
    captureStdout,
    tooLarge: false,
    args,
    env,
    logOut: { pieces: [], bytes: 0 },
    logErr: { pieces: [], bytes: 0 },
  };
}

/** What a run logged, one record per stream (not one per write). */
export function runLogs(run: WasiRun | undefined): [number, Buffer][] {
  const logs: [number, Buffer][] = [];
  if (run === undefined) return logs;
  if (run.logOut.bytes > 0) logs.push([1, Buffer.concat(run.logOut.pieces)]);
  if (run.logErr.bytes > 0) logs.push([2, Buffer.concat(run.logErr.pieces)]);
  return logs;
}

/** Where the shim finds the state of the function being run. */
export interface WasiState {
  memory(): WebAssembly.Memory;
  /** The request being run, or undefined (a reactor's _initialize, say). */
  run(): WasiRun | undefined;
  fallback(): WasiFallback;
  /** args and environ outside a run. */
  args(): Buffer[];
  env(): Buffer[];
  maxBodyBytes(): number;
  /** A write to stdout or stderr outside any run (dropped when absent). */
  outsideRun?(fd: 1 | 2, text: Buffer): void;
}

/** A new memory capped at `maxPages`, and node:wasi (no preopens: nothing to open) bound to it. */
export function memoryWithWasi(
  minPages: number,
  maxPages: number,
): { memory: WebAssembly.Memory; fallback: WasiFallback } {
  const memory = new WebAssembly.Memory({ initial: minPages, maximum: maxPages });
  const wasi = new WASI({ version: 'preview1', args: [], env: {}, returnOnExit: true });
  // node:wasi reads `memory` from the object it is given.
  wasi.initialize({ exports: { memory } });
  return { memory, fallback: wasi.wasiImport as WasiFallback };
}

/** The WASI import object maker of one guest: `imports(names)` gives JS trampolines for those names. */
export function wasiShim(state: WasiState): {
  imports(names: readonly string[]): Record<string, WasiFunction>;
} {
  function iovecs(iovs: number, count: number): [DataView, number[]] {
    const view = new DataView(state.memory().buffer);
    const spans: number[] = [];
    for (let i = 0; i < count; i++)
      spans.push(view.getUint32(iovs + i * 8, true), view.getUint32(iovs + i * 8 + 4, true));
    return [view, spans];
  }

  function fdRead(fd: number, iovs: number, count: number, readPtr: number): number {
    if (fd !== 0) return state.fallback().fd_read?.(fd, iovs, count, readPtr) ?? EBADF;
    // Outside a request stdin is empty, never the guest process's own.
    const current = state.run() ?? { stdin: EMPTY, stdinAt: 0 };
    const [view, spans] = iovecs(iovs, count);
    const bytes = new Uint8Array(view.buffer);
    let total = 0;
    for (let i = 0; i < spans.length; i += 2) {
      const ptr = spans[i] as number;
      const length = spans[i + 1] as number;
      const take = Math.min(length, current.stdin.length - current.stdinAt);
      bytes.set(current.stdin.subarray(current.stdinAt, current.stdinAt + take), ptr);
      current.stdinAt += take;
      total += take;
      if (take < length) break;
    }
    view.setUint32(readPtr, total, true);
    return ESUCCESS;
  }

  function fdWrite(fd: number, iovs: number, count: number, writtenPtr: number): number {
    if (fd !== 1 && fd !== 2) return state.fallback().fd_write?.(fd, iovs, count, writtenPtr) ?? EBADF;
    const [view, spans] = iovecs(iovs, count);
    const current = state.run();
    let total = 0;
    const pieces: Buffer[] = [];
    for (let i = 0; i < spans.length; i += 2) {
      const length = spans[i + 1] as number;
      if (length > 0) pieces.push(Buffer.from(view.buffer, spans[i] as number, length));
      total += length;
    }
    view.setUint32(writtenPtr, total, true);
    if (current === undefined) {
      const text = Buffer.concat(pieces);
      if (text.length > 0) state.outsideRun?.(fd, text.subarray(0, LOG_MAX));
      return ESUCCESS;
    }
    if (fd === 1 && current.captureStdout) {
      if (current.tooLarge) return ESUCCESS;
      current.stdoutBytes += total;
      if (current.stdoutBytes > state.maxBodyBytes() + HEADER_ROOM) {
        current.tooLarge = true;
        current.stdout = [];
        return ESUCCESS;
      }
      // Copied: the views above are into linear memory, which the next request reuses.
      for (const piece of pieces) current.stdout.push(Buffer.from(piece));
      return ESUCCESS;
    }
    // stderr, and stdout of the exported-function ABI, are the function's log: kept until the run ends (it
    // is synchronous, so nothing could be sent sooner), then one record per stream.
    const log = fd === 1 ? current.logOut : current.logErr;
    for (const piece of pieces) {
      if (log.bytes >= LOG_MAX) break;
      const kept = piece.subarray(0, LOG_MAX - log.bytes);
      log.pieces.push(Buffer.from(kept));
      log.bytes += kept.length;
    }
    return ESUCCESS;
  }

  function sizesGet(list: () => Buffer[]): WasiFunction {
    return (countPtr, sizePtr) => {
      const items = list();
      const view = new DataView(state.memory().buffer);
      view.setUint32(countPtr, items.length, true);
      view.setUint32(
        sizePtr,
        items.reduce((sum, item) => sum + item.length, 0),
        true,
      );
      return ESUCCESS;
    };
  }

  function listGet(list: () => Buffer[]): WasiFunction {
    return (pointers, buffer) => {
      const view = new DataView(state.memory().buffer);
      const bytes = new Uint8Array(view.buffer);
      let at = buffer;
      for (const [index, item] of list().entries()) {
        view.setUint32(pointers + index * 4, at, true);
        bytes.set(item, at);
        at += item.length;
      }
      return ESUCCESS;
    };
  }

  const argsOf = (): Buffer[] => state.run()?.args ?? state.args();
  const envOf = (): Buffer[] => state.run()?.env ?? state.env();
  const own: Record<string, WasiFunction> = {
    fd_read: fdRead,
    fd_write: fdWrite,
    args_sizes_get: sizesGet(argsOf),
    args_get: listGet(argsOf),
    environ_sizes_get: sizesGet(envOf),
    environ_get: listGet(envOf),
    proc_exit: (code: number) => {
      throw new Exit(code);
    },
    // Go sets its stdio non-blocking; they are not real descriptors here, so that is a no-op.
    fd_fdstat_set_flags: (fd: number, flags: number) =>
      fd <= 2 ? ESUCCESS : (state.fallback().fd_fdstat_set_flags?.(fd, flags) ?? EBADF),
  };

  return {
    imports(names) {
      const imports: Record<string, WasiFunction> = {};
      for (const name of names)
        imports[name] =
          own[name] ??
          ((...args: number[]): number => {
            const target = state.fallback()[name];
            return target === undefined ? EBADF : target(...args);
          });
      return imports;
    },
  };
}
