/**
 * @module Runs requests of the wasm host's functions in a worker thread (wasm-worker.mts is its message
 * loop): the contexts, the runs of both ABIs, their outcomes.
 *
 * Per function a thread keeps a context: a `WebAssembly.Memory` capped at the function's pages (its
 * limits.memory), node:wasi bound to it with no preopens, the function's env and args, and for the
 * exported-function ABI the instance kept between requests; for a WASI command, its first request's
 * instance when the host had it made at bind. The request and response shapes are the per-process guest's (bootstrap.mts), whose module
 * comment says why memory is imported and reused.
 */

import {
  Exit,
  memoryWithWasi,
  newRun,
  runLogs,
  type WasiFallback,
  type WasiRun,
  wasiShim,
} from './wasi-shim.mjs';
import { type Answer, cgiEnv, cString, type InvokeWire, parseCgi } from './wasm-abi.mjs';

const EMPTY = Buffer.alloc(0);
const PAGE = 64 * 1024;
/** A memory grown up to this size is zeroed and kept between command requests. */
const KEEP_GROWN_BYTES = 4 * 1024 * 1024;
/** Function contexts kept per thread; the least recently used goes beyond this (its memory with it). */
const MAX_CONTEXTS = 64;

/** What the host thread tells a runner about a function, once per thread. */
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

export interface Job {
  readonly member: number;
  readonly seq: number;
  readonly wire: InvokeWire;
  readonly body: Uint8Array;
  /** Present when this thread has not seen the function (or its module) yet. */
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

interface Context {
  readonly info: FunctionInfo;
  readonly module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  fallback: WasiFallback;
  readonly imports: WebAssembly.Imports;
  readonly env: Buffer[];
  readonly args: Buffer[];
  /** The exported-function ABI's instance, kept between requests; a command's first one, made at bind. */
  instance: WebAssembly.Instance | undefined;
  /** Memory was used since it was last zeroed. */
  dirty: boolean;
}

const modules = new Map<string, WebAssembly.Module>();
const contexts = new Map<number, Context>();
let active: Context | undefined;
let run: WasiRun | undefined;

const shim = wasiShim({
  memory: () => (active as Context).memory,
  run: () => run,
  fallback: () => active?.fallback ?? {},
  args: () => active?.args ?? [],
  env: () => active?.env ?? [],
  maxBodyBytes: () => active?.info.maxBodyBytes ?? 0,
});

/**
 * Memories (with node:wasi bound to each) made ahead by maximum pages, in this thread's idle time: making
 * them costs 0.2-0.5 ms (a memory reserves its address space; node:wasi sets itself up), which a cold start
 * would otherwise pay. A spare starts empty and grows to the module's initial pages when taken.
 */
const SPARES_PER_SIZE = 2;
const spareMemories = new Map<number, { memory: WebAssembly.Memory; fallback: WasiFallback }[]>();
let refillScheduled = false;

/** Keeps memories of `maxPages` ready (a function with that limits.memory runs here). */
export function prepare(maxPages: number): void {
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
    list.push(memoryWithWasi(0, maxPages));
    scheduleRefill();
    return;
  }
}

function takeMemory(info: FunctionInfo): { memory: WebAssembly.Memory; fallback: WasiFallback } {
  const spare = spareMemories.get(info.maxPages)?.pop();
  prepare(info.maxPages);
  if (spare === undefined) return memoryWithWasi(info.minPages, info.maxPages);
  if (info.minPages > 0) spare.memory.grow(info.minPages);
  return spare;
}

function contextFor(member: number, info: FunctionInfo | undefined, given?: WebAssembly.Module): Context {
  const known = contexts.get(member);
  if (known !== undefined) {
    // Most recently used last: Map keeps insertion order.
    contexts.delete(member);
    contexts.set(member, known);
    return known;
  }
  if (info === undefined) throw new Error('the host sent a request for a function this thread does not know');
  if (given !== undefined) modules.set(info.hash, given);
  const module = modules.get(info.hash);
  if (module === undefined) throw new Error('the host sent a request for a module this thread does not have');
  const { memory, fallback } = takeMemory(info);
  const context: Context = {
    info,
    module,
    memory,
    fallback,
    imports: { wasi_snapshot_preview1: shim.imports(info.wasiNames), hearth: { memory } },
    env: info.env.map(cString),
    args: [cString(info.file)],
    instance: undefined,
    dirty: false,
  };
  contexts.set(member, context);
  if (contexts.size > MAX_CONTEXTS) {
    const oldest = contexts.keys().next().value as number;
    contexts.delete(oldest);
  }
  return context;
}

/** Drops a function's context (it ended, or runs elsewhere now). */
export function forget(member: number): void {
  contexts.delete(member);
}

/** Drops what this thread holds of a module (the host's warm-up module, once it has run). */
export function forgetModule(hash: string): void {
  modules.delete(hash);
}

/** Zeroes a used memory (or replaces one that grew past KEEP_GROWN_BYTES): a fresh instance finds it so. */
function resetMemory(context: Context): void {
  context.dirty = false;
  if (context.memory.buffer.byteLength > Math.max(context.info.minPages * PAGE, KEEP_GROWN_BYTES)) {
    const next = memoryWithWasi(context.info.minPages, context.info.maxPages);
    context.memory = next.memory;
    context.fallback = next.fallback;
    (context.imports.hearth as Record<string, unknown>).memory = next.memory;
  } else new Uint8Array(context.memory.buffer).fill(0);
}

function instantiate(context: Context): WebAssembly.Instance {
  const previous = active;
  active = context;
  try {
    const instance = new WebAssembly.Instance(context.module, context.imports);
    if (!context.info.command) {
      const initialize = instance.exports._initialize;
      if (typeof initialize === 'function') (initialize as () => void)();
    }
    return instance;
  } finally {
    active = previous;
  }
}

/**
 * Makes a function's context and its next instance before its first request (a cold start's bind): the
 * request then only runs. Only for modules whose instantiation runs none of their code (the host checks).
 */
export function ready(member: number, info: FunctionInfo, module?: WebAssembly.Module): void {
  const context = contextFor(member, info, module);
  if (context.instance === undefined && !context.dirty) context.instance = instantiate(context);
}

function runCommand(context: Context, seq: number, wire: InvokeWire, body: Uint8Array): Answer {
  if (context.dirty && context.instance === undefined) resetMemory(context);
  const instance = context.instance ?? instantiate(context);
  context.instance = undefined;
  context.dirty = true;
  run = newRun(seq, body, true, argsFor(context, wire), [...context.env, ...cgiEnv(wire, body.length)]);
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

function runExport(context: Context, seq: number, body: Uint8Array): Answer {
  if (context.instance === undefined && context.dirty) resetMemory(context);
  context.instance ??= instantiate(context);
  const instance = context.instance;
  run = newRun(seq, EMPTY, false, context.args, context.env);
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

/** WAGI's arguments: the module name, then the query's `key=value` pairs as they came (percent-encoded). */
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
    // How much linear memory the module had: a failed allocation is a trap (`unreachable`, Rust) or an
    // exit (Go's "out of memory", status 2), and its cause is then plain to see.
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

/** Runs one request to its outcome (a trap or an exit is an error outcome, never a throw). */
export function runJob(job: Job): JobOutcome {
  let context: Context | undefined;
  try {
    context = contextFor(job.member, job.info, job.module);
    active = context;
    const answer = context.info.command
      ? runCommand(context, job.seq, job.wire, job.body)
      : runExport(context, job.seq, job.body);
    return { member: job.member, seq: job.seq, logs: runLogs(run), result: answer };
  } catch (error) {
    const outcome = { member: job.member, seq: job.seq, logs: runLogs(run), error: describe(error, context) };
    // An exported-function instance that failed may be in any state: the next request gets a fresh one.
    if (context !== undefined && !context.info.command) {
      context.instance = undefined;
      context.dirty = true;
    }
    return outcome;
  } finally {
    run = undefined;
    active = undefined;
  }
}

/** Zeroes the memory of the function just run, after its answer left (off the request's path). */
export function tidy(member: number): void {
  const context = contexts.get(member);
  if (context?.dirty === true && context.instance === undefined) resetMemory(context);
}
