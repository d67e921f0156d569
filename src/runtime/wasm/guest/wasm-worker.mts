/**
 * @module A worker thread of the wasm host (`runtime: wasm` with `isolation: isolate`, guest/wasm-host.mts):
 * runs one request at a time, for any function of the host's namespace, on the compiled modules the host
 * thread posts it (shared code: a `WebAssembly.Module` posted to a worker is not compiled again).
 *
 * Why a thread and not the host's own: V8 cannot stop wasm code running on the thread that must stop it. A
 * run past its deadline is ended by the host with `worker.terminate()`, which interrupts wasm loops, and the
 * host's other workers keep serving meanwhile.
 *
 * Per function this thread keeps a context: a `WebAssembly.Memory` capped at the function's pages (its
 * limits.memory), node:wasi bound to it with no preopens, the function's env and args, and for the
 * exported-function ABI the instance kept between requests. The WASI calls a function's stdio, args and
 * environ use are served here; the rest go to node:wasi (no preopened directory: nothing to open).
 * The request and response shapes are the per-process guest's (bootstrap.mts), whose module comment says
 * why memory is imported and reused: this file follows it on purpose, as a second guest of the same ABIs.
 */

import { WASI } from 'node:wasi';
import { parentPort } from 'node:worker_threads';
import { type Answer, cgiEnv, type InvokeWire, parseCgi } from './wasm-abi.mjs';

const EMPTY = Buffer.alloc(0);
const PAGE = 64 * 1024;
/** A memory grown up to this size is zeroed and kept between command requests. */
const KEEP_GROWN_BYTES = 4 * 1024 * 1024;
const LOG_MAX = 512 * 1024;
const HEADER_ROOM = 64 * 1024;
const ESUCCESS = 0;
const EBADF = 8;
/** Function contexts kept per worker; the least recently used goes beyond this (its memory with it). */
const MAX_CONTEXTS = 64;

/** What the host thread tells a worker about a function, once per worker. */
export interface FunctionInfo {
  readonly id: number;
  readonly hash: string;
  readonly file: string;
  readonly entry: string;
  readonly command: boolean;
  readonly minPages: number;
  readonly maxPages: number;
  readonly env: string[];
  readonly maxBodyBytes: number;
  readonly wasiNames: string[];
}

/** InvokeWire of src/runtime/ipc/protocol.ts. */

export interface Job {
  readonly member: number;
  readonly seq: number;
  readonly wire: InvokeWire;
  readonly body: Uint8Array;
  /** Present when this worker has not seen the function (or its module) yet. */
  readonly info?: FunctionInfo;
  readonly module?: WebAssembly.Module;
}

export type JobOutcome =
  | { member: number; seq: number; logs: [number, Uint8Array][]; result: [number, string[], Uint8Array] }
  | {
      member: number;
      seq: number;
      logs: [number, Uint8Array][];
      error: { type: string; message: string; stack?: string };
    };

type WasiFunction = (...args: number[]) => number;

interface Context {
  readonly info: FunctionInfo;
  readonly module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  fallback: Record<string, WasiFunction | undefined>;
  readonly imports: WebAssembly.Imports;
  readonly env: Buffer[];
  readonly args: Buffer[];
  /** The exported-function ABI's instance, kept between requests. */
  instance: WebAssembly.Instance | undefined;
  dirty: boolean;
}

interface Run {
  stdin: Uint8Array;
  stdinAt: number;
  stdout: Buffer[];
  stdoutBytes: number;
  captureStdout: boolean;
  tooLarge: boolean;
  args: Buffer[];
  env: Buffer[];
  logOut: { pieces: Buffer[]; bytes: number };
  logErr: { pieces: Buffer[]; bytes: number };
}

class Exit {
  constructor(readonly code: number) {}
}

const modules = new Map<string, WebAssembly.Module>();
const contexts = new Map<number, Context>();
let active: Context | undefined;
let run: Run | undefined;

const cString = (text: string): Buffer => Buffer.from(`${text}\0`);

function memoryOf(): WebAssembly.Memory {
  return (active as Context).memory;
}

function iovecs(iovs: number, count: number): [DataView, number[]] {
  const view = new DataView(memoryOf().buffer);
  const spans: number[] = [];
  for (let i = 0; i < count; i++)
    spans.push(view.getUint32(iovs + i * 8, true), view.getUint32(iovs + i * 8 + 4, true));
  return [view, spans];
}

function fdRead(fd: number, iovs: number, count: number, readPtr: number): number {
  if (fd !== 0) return active?.fallback.fd_read?.(fd, iovs, count, readPtr) ?? EBADF;
  const current = run ?? { stdin: EMPTY, stdinAt: 0 };
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
  if (fd !== 1 && fd !== 2) return active?.fallback.fd_write?.(fd, iovs, count, writtenPtr) ?? EBADF;
  const [view, spans] = iovecs(iovs, count);
  const current = run;
  let total = 0;
  const pieces: Buffer[] = [];
  for (let i = 0; i < spans.length; i += 2) {
    const length = spans[i + 1] as number;
    if (length > 0) pieces.push(Buffer.from(view.buffer, spans[i] as number, length));
    total += length;
  }
  view.setUint32(writtenPtr, total, true);
  if (current === undefined) return ESUCCESS;
  if (fd === 1 && current.captureStdout) {
    if (current.tooLarge) return ESUCCESS;
    current.stdoutBytes += total;
    if (current.stdoutBytes > (active as Context).info.maxBodyBytes + HEADER_ROOM) {
      current.tooLarge = true;
      current.stdout = [];
      return ESUCCESS;
    }
    for (const piece of pieces) current.stdout.push(Buffer.from(piece));
    return ESUCCESS;
  }
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
    const view = new DataView(memoryOf().buffer);
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
    const view = new DataView(memoryOf().buffer);
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

const argsOf = (): Buffer[] => run?.args ?? active?.args ?? [];
const envOf = (): Buffer[] => run?.env ?? active?.env ?? [];

const OWN: Record<string, WasiFunction> = {
  fd_read: fdRead,
  fd_write: fdWrite,
  args_sizes_get: sizesGet(argsOf),
  args_get: listGet(argsOf),
  environ_sizes_get: sizesGet(envOf),
  environ_get: listGet(envOf),
  proc_exit: (code: number) => {
    throw new Exit(code);
  },
  fd_fdstat_set_flags: (fd: number, flags: number) =>
    fd <= 2 ? ESUCCESS : (active?.fallback.fd_fdstat_set_flags?.(fd, flags) ?? EBADF),
};

function wasiImports(names: readonly string[]): Record<string, WasiFunction> {
  const imports: Record<string, WasiFunction> = {};
  for (const name of names)
    imports[name] =
      OWN[name] ??
      ((...args: number[]): number => {
        const target = active?.fallback[name];
        return target === undefined ? EBADF : target(...args);
      });
  return imports;
}

/** A new memory capped at the function's pages, and node:wasi (no preopens) bound to it. */
function freshMemory(context: Pick<Context, 'info'>): {
  memory: WebAssembly.Memory;
  fallback: Record<string, WasiFunction | undefined>;
} {
  const memory = new WebAssembly.Memory({ initial: context.info.minPages, maximum: context.info.maxPages });
  const wasi = new WASI({ version: 'preview1', args: [], env: {}, returnOnExit: true });
  wasi.initialize({ exports: { memory } });
  return { memory, fallback: wasi.wasiImport as Record<string, WasiFunction | undefined> };
}

/**
 * Memories (with node:wasi bound to each) made ahead by maximum pages, in this thread's idle time: making
 * them costs 0.2-0.5 ms (a memory reserves its address space; node:wasi sets itself up), which a cold start
 * would otherwise pay. A spare starts empty and grows to the module's initial pages when taken.
 */
const SPARES_PER_SIZE = 2;
const spareMemories = new Map<number, { memory: WebAssembly.Memory; fallback: Context['fallback'] }[]>();
let refillScheduled = false;

function prepare(maxPages: number): void {
  if (!spareMemories.has(maxPages)) spareMemories.set(maxPages, []);
  scheduleRefill();
}

function scheduleRefill(): void {
  if (refillScheduled) return;
  refillScheduled = true;
  // A little later than the next turn: a request right behind the one that took a spare goes first.
  setTimeout(refill, 2);
}

/** One spare at a time, so a request that arrives meanwhile waits for one memory at most. */
function refill(): void {
  refillScheduled = false;
  for (const [maxPages, list] of spareMemories) {
    if (list.length >= SPARES_PER_SIZE) continue;
    const memory = new WebAssembly.Memory({ initial: 0, maximum: maxPages });
    const wasi = new WASI({ version: 'preview1', args: [], env: {}, returnOnExit: true });
    wasi.initialize({ exports: { memory } });
    list.push({ memory, fallback: wasi.wasiImport as Context['fallback'] });
    scheduleRefill();
    return;
  }
}

function takeMemory(info: FunctionInfo): { memory: WebAssembly.Memory; fallback: Context['fallback'] } {
  const spare = spareMemories.get(info.maxPages)?.pop();
  prepare(info.maxPages);
  if (spare === undefined) return freshMemory({ info });
  if (info.minPages > 0) spare.memory.grow(info.minPages);
  return spare;
}

function contextFor(job: Job): Context {
  const known = contexts.get(job.member);
  if (known !== undefined) {
    // Most recently used last: Map keeps insertion order.
    contexts.delete(job.member);
    contexts.set(job.member, known);
    return known;
  }
  const info = job.info;
  if (info === undefined) throw new Error('the host sent a request for a function this worker does not know');
  if (job.module !== undefined) modules.set(info.hash, job.module);
  const module = modules.get(info.hash);
  if (module === undefined) throw new Error('the host sent a request for a module this worker does not have');
  const { memory, fallback } = takeMemory(info);
  const context: Context = {
    info,
    module,
    memory,
    fallback,
    imports: {},
    env: info.env.map(cString),
    args: [cString(info.file)],
    instance: undefined,
    dirty: false,
  };
  (context.imports as Record<string, unknown>).wasi_snapshot_preview1 = wasiImports(info.wasiNames);
  (context.imports as Record<string, unknown>).hearth = { memory };
  contexts.set(job.member, context);
  if (contexts.size > MAX_CONTEXTS) {
    const oldest = contexts.keys().next().value as number;
    contexts.delete(oldest);
  }
  return context;
}

function forget(member: number): void {
  contexts.delete(member);
}

/** Zeroes a used memory (or replaces one that grew past KEEP_GROWN_BYTES): a fresh instance finds it so. */
function resetMemory(context: Context): void {
  context.dirty = false;
  if (context.memory.buffer.byteLength > Math.max(context.info.minPages * PAGE, KEEP_GROWN_BYTES)) {
    const next = freshMemory(context);
    context.memory = next.memory;
    context.fallback = next.fallback;
    (context.imports.hearth as Record<string, unknown>).memory = next.memory;
  } else new Uint8Array(context.memory.buffer).fill(0);
}

function instantiate(context: Context): WebAssembly.Instance {
  const instance = new WebAssembly.Instance(context.module, context.imports);
  if (!context.info.command) {
    const initialize = instance.exports._initialize;
    if (typeof initialize === 'function') (initialize as () => void)();
  }
  return instance;
}

function newRun(stdin: Uint8Array, captureStdout: boolean, args: Buffer[], env: Buffer[]): Run {
  return {
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

function runCommand(context: Context, wire: InvokeWire, body: Uint8Array): Answer {
  if (context.dirty) resetMemory(context);
  const instance = instantiate(context);
  context.dirty = true;
  run = newRun(body, true, argsFor(context, wire), [...context.env, ...cgiEnv(wire, body.length)]);
  const current = run;
  let code = 0;
  try {
    (instance.exports._start as () => void)();
  } catch (error) {
    if (!(error instanceof Exit)) throw error;
    code = error.code;
  }
  if (code !== 0)
    throw Object.assign(
      new Error(`${context.info.file} exited with status ${code} (its stderr is in the logs)`),
      {
        name: 'WasmExit',
      },
    );
  if (current.tooLarge) throw responseTooLarge(current.stdoutBytes, context);
  const answer = parseCgi(Buffer.concat(current.stdout, current.stdoutBytes));
  if (answer[2].length > context.info.maxBodyBytes) throw responseTooLarge(answer[2].length, context);
  return answer;
}

function runExport(context: Context, body: Uint8Array): Answer {
  if (context.instance === undefined && context.dirty) resetMemory(context);
  context.instance ??= instantiate(context);
  const instance = context.instance;
  run = newRun(EMPTY, false, context.args, context.env);
  const exports = instance.exports as Record<string, (...args: number[]) => number | bigint>;
  const ptr = Number(exports.alloc?.(body.length)) >>> 0;
  new Uint8Array(context.memory.buffer).set(body, ptr);
  const packed = exports[context.info.entry]?.(ptr, body.length);
  if (typeof packed !== 'bigint')
    throw Object.assign(new Error(`${context.info.entry} must return an i64 (pointer << 32 | length)`), {
      name: 'WasmAbiError',
    });
  const outPtr = Number((packed >> 32n) & 0xffffffffn);
  const outLength = Number(packed & 0xffffffffn);
  if (outLength > context.info.maxBodyBytes) throw responseTooLarge(outLength, context);
  const view = context.memory.buffer;
  if (outPtr + outLength > view.byteLength)
    throw Object.assign(
      new Error(
        `${context.info.entry} returned bytes ${outPtr}..${outPtr + outLength}, past the end of memory`,
      ),
      { name: 'WasmAbiError' },
    );
  const answer = Buffer.from(new Uint8Array(view, outPtr, outLength));
  exports.dealloc?.(outPtr, outLength);
  return [200, ['content-type', 'application/octet-stream'], answer];
}

function responseTooLarge(bytes: number, context: Context): Error {
  return Object.assign(
    new Error(
      `the response body is ${bytes} bytes; limits.maxBody allows at most ${context.info.maxBodyBytes}`,
    ),
    { name: 'ResponseTooLarge' },
  );
}

function argsFor(context: Context, wire: InvokeWire): Buffer[] {
  const query = wire[3];
  if (query === '') return context.args;
  return [cString(context.info.file), ...query.split('&').map((pair) => cString(pair))];
}

function describe(
  error: unknown,
  context: Context | undefined,
): { type: string; message: string; stack?: string } {
  const clip = (text: string): string => (text.length > 64 * 1024 ? `${text.slice(0, 64 * 1024)}…` : text);
  const trap = error instanceof WebAssembly.RuntimeError;
  if ((trap || (error instanceof Error && error.name === 'WasmExit')) && context !== undefined) {
    const used = (context.memory.buffer.byteLength / 1024 ** 2).toFixed(1);
    const cap = ((context.info.maxPages * PAGE) / 1024 ** 2).toFixed(0);
    return {
      type: trap ? 'WasmTrap' : 'WasmExit',
      message: clip(`${error.message} (linear memory ${used} MiB of at most ${cap} MiB from limits.memory)`),
      ...(trap && error.stack !== undefined ? { stack: clip(error.stack) } : {}),
    };
  }
  if (error instanceof RangeError && /Memory|memory/.test(error.message) && context !== undefined)
    return {
      type: 'WasmMemoryLimit',
      message: clip(
        `${error.message}: the module's memory (${context.info.minPages} pages) could not be made within limits.memory`,
      ),
    };
  if (error instanceof Error) return { type: error.name, message: clip(error.message) };
  return { type: typeof error, message: clip(String(error)) };
}

function logsOf(current: Run | undefined): [number, Uint8Array][] {
  const logs: [number, Uint8Array][] = [];
  if (current === undefined) return logs;
  if (current.logOut.bytes > 0) logs.push([1, Buffer.concat(current.logOut.pieces)]);
  if (current.logErr.bytes > 0) logs.push([2, Buffer.concat(current.logErr.pieces)]);
  return logs;
}

function onJob(job: Job): JobOutcome {
  let context: Context | undefined;
  try {
    context = contextFor(job);
    active = context;
    const answer = context.info.command
      ? runCommand(context, job.wire, job.body)
      : runExport(context, job.body);
    return { member: job.member, seq: job.seq, logs: logsOf(run), result: answer };
  } catch (error) {
    const outcome = { member: job.member, seq: job.seq, logs: logsOf(run), error: describe(error, context) };
    // An exported-function instance that failed may be in any state: the next request gets a fresh one.
    if (context !== undefined && !context.info.command) {
      context.instance = undefined;
      context.dirty = true;
    }
    return outcome;
  } finally {
    run = undefined;
  }
}

/** Zeroes the memory of the function just run, after its answer left (off the request's path). */
function tidy(member: number): void {
  const context = contexts.get(member);
  if (context?.dirty === true && (context.info.command || context.instance === undefined))
    resetMemory(context);
}

const port = parentPort;
if (port === null) throw new Error('wasm-worker.mjs runs as a worker thread of the wasm host');
port.on('message', (message: { job?: Job; forget?: number; prepare?: number }) => {
  if (message.prepare !== undefined) {
    prepare(message.prepare);
    return;
  }
  if (message.forget !== undefined) {
    forget(message.forget);
    return;
  }
  const job = message.job;
  if (job === undefined) return;
  const outcome = onJob(job);
  // The body in a buffer of its own, moved: a small Buffer is a view into Node's 8 KiB pool, which posting
  // would copy whole.
  const transfer: ArrayBuffer[] = [];
  if ('result' in outcome) {
    const body = new Uint8Array(outcome.result[2]);
    outcome.result[2] = body;
    transfer.push(body.buffer);
  }
  port.postMessage(outcome, transfer);
  setImmediate(tidy, job.member);
});
