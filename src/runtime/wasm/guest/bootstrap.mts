/**
 * @module The WebAssembly guest: a generic Node process ("stem cell") that a Bind frame gives one function's
 * `.wasm`, then runs it on V8's WebAssembly and `node:wasi` (WASI preview 1) for each Invoke frame on fd 3.
 *
 * Runs inside the sandbox on every cold start, so it imports only Node built-ins and nothing from the
 * platform (frames.mjs, wasm-abi.mjs and wasi-shim.mjs beside it are guest files too). Two ABIs (README,
 * "WebAssembly functions"):
 *
 * - command (`handler: main`, export `_start`): a fresh instance per request, the body on stdin, CGI variables
 *   in the environment, a CGI header block and the body on stdout;
 * - exported function (`handler: main.handle`): one instance kept across requests, `alloc(len) -> ptr`, then
 *   `handle(ptr, len) -> i64` whose high 32 bits are the answer's pointer and low 32 bits its length.
 *
 * Instantiating with node:wasi's own functions as imports costs 300-700 µs here (V8 builds a wrapper per
 * native import per instance), with plain JS functions about 10 µs; a module's own memory adds an 8 GiB
 * reservation per instance (~70 µs). So the module is rewritten at bind to import its memory, one
 * `WebAssembly.Memory` (capped by limits.memory) is reused and zeroed between requests, the imports are JS
 * trampolines, and stdin, stdout, stderr, args and environ are served here; every other WASI call goes to
 * node:wasi. Measured in docs/architecture.md ("WebAssembly runtime").
 */

import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import {
  encodeFrame,
  frameOutbox,
  frameReader,
  T_BIND,
  T_BOUND,
  T_ERROR,
  T_INVOKE,
  T_LOG,
  T_READY,
  T_RESULT,
  T_SHUTDOWN,
} from './frames.mjs';
import {
  Exit,
  memoryWithWasi,
  newRun,
  runLogs,
  type WasiFallback,
  type WasiRun,
  wasiShim,
} from './wasi-shim.mjs';
import {
  type Answer,
  cgiEnv,
  cString,
  type InvokeWire,
  importMemory,
  parseCgi,
  parseHandler,
  warmModule,
} from './wasm-abi.mjs';

const EMPTY = Buffer.alloc(0);
const PAGE = 64 * 1024;
/** What the Node process itself keeps of limits.memory; the rest may be the module's linear memory. */
const RUNTIME_RESERVE_MIB = 40;
/** A memory grown up to this size is zeroed and kept between command requests (see resetMemory). */
const KEEP_GROWN_BYTES = 4 * 1024 * 1024;
const WASI_MODULE = 'wasi_snapshot_preview1';

interface Bind {
  namespace: string;
  functionName: string;
  version: number;
  handler: string;
  codeDir: string;
  env: Record<string, string>;
  memoryMiB: number;
  timeoutMs: number;
  maxBodyBytes?: number;
}

/** Invoke frames carry their meta positionally (see InvokeWire in src/runtime/ipc/protocol.ts). */

const channel = new Socket({ fd: 3, readable: true, writable: true });
const outbox = frameOutbox(channel);

function send(type: number, id: number, meta: unknown, body: Buffer = EMPTY): void {
  outbox.send(encodeFrame(type, id, meta, body));
}

// --- WASI: what this guest serves itself (wasi-shim.mts), the rest from node:wasi ---------------------------

let run: WasiRun | undefined;
let memory: WebAssembly.Memory | undefined;
let maxBodyBytes = Number.POSITIVE_INFINITY;
let boundArgs: Buffer[] = [];
let boundEnv: Buffer[] = [];
/** node:wasi's functions, for everything the shim does not serve; made for each memory (it binds to one). */
let fallback: WasiFallback = {};

const shim = wasiShim({
  memory: () => memory as WebAssembly.Memory,
  run: () => run,
  fallback: () => fallback,
  args: () => boundArgs,
  env: () => boundEnv,
  maxBodyBytes: () => maxBodyBytes,
  // Outside a request (a reactor's _initialize) output is the function's log at once.
  outsideRun: (fd, text) => send(T_LOG, 0, fd, text),
});

/** Sends what a run wrote to its logs. */
function flushLogs(current: WasiRun): void {
  for (const [stream, text] of runLogs(current)) send(T_LOG, current.seq, stream, text);
}

/** A new memory, and node:wasi bound to it. */
function freshMemory(minPages: number, maxPages: number): WebAssembly.Memory {
  const next = memoryWithWasi(minPages, maxPages);
  fallback = next.fallback;
  return next.memory;
}

// --- binding and running ------------------------------------------------------------------------------------

interface Loaded {
  readonly module: WebAssembly.Module;
  readonly entry: string;
  readonly command: boolean;
  readonly minPages: number;
  readonly maxPages: number;
  readonly imports: WebAssembly.Imports;
  readonly file: string;
}

let loaded: Loaded | undefined;
/** The instance the next request runs on: instantiated ahead, on zeroed memory. */
let ready: WebAssembly.Instance | undefined;
/** Set after a run: memory must be zeroed (or replaced, when it grew) before the next instance. */
let dirty = false;
let prepareScheduled = false;

function onBind(bind: Bind): void {
  try {
    const { file, entry } = parseHandler(bind.handler);
    const target = load(readFileSync(join(bind.codeDir, file)), file, entry, bind.memoryMiB, bind.handler);
    maxBodyBytes = bind.maxBodyBytes ?? Number.POSITIVE_INFINITY;
    boundEnv = Object.entries(baseEnv(bind)).map(([key, value]) => cString(`${key}=${value}`));
    boundArgs = [cString(file)];
    loaded = target;
    ready = instantiate(target);
    send(T_BOUND, 0, { ok: true, eventFormat: target.command ? 'wasi-command' : 'wasm-export' });
  } catch (error) {
    send(T_BOUND, 0, { ok: false, error: describe(error) });
  }
}

/** Compiles the module (its memory made an import) and gives it a memory capped by limits.memory. */
function load(original: Uint8Array, file: string, entry: string, memoryMiB: number, handler: string): Loaded {
  const { bytes, minPages } = importMemory(original);
  if (minPages < 0) throw new Error(`${file} defines no memory`);
  const maxPages = Math.floor(((memoryMiB - RUNTIME_RESERVE_MIB) * 1024 * 1024) / PAGE);
  if (minPages > maxPages)
    throw Object.assign(
      new Error(
        `${file} starts with ${((minPages * PAGE) / 1024 ** 2).toFixed(1)} MiB of linear memory; limits.memory ${memoryMiB}Mi leaves it ${Math.max(0, memoryMiB - RUNTIME_RESERVE_MIB)} MiB (the runtime keeps ${RUNTIME_RESERVE_MIB} MiB): raise limits.memory`,
      ),
      { name: 'WasmMemoryLimit' },
    );
  // Compiled lazily (the stem cell starts with --wasm-lazy-compilation and the host validated the module at
  // deploy): a function is compiled when first called, so bind costs a decode, not a compile.
  const module = new WebAssembly.Module(bytes);
  const exported = WebAssembly.Module.exports(module);
  const has = (name: string): boolean =>
    exported.some((item) => item.name === name && item.kind === 'function');
  if (!has(entry))
    throw Object.assign(new Error(`${file} exports no function "${entry}" (handler ${handler})`), {
      name: 'HandlerNotFound',
    });
  const command = entry === '_start';
  if (!command && !has('alloc'))
    throw Object.assign(
      new Error(`${file} exports no function "alloc": the exported-function ABI needs alloc(len) -> ptr`),
      { name: 'HandlerNotFound' },
    );
  const names = WebAssembly.Module.imports(module)
    .filter((item) => item.module === WASI_MODULE)
    .map((item) => item.name);
  memory = freshMemory(minPages, maxPages);
  const imports: WebAssembly.Imports = { [WASI_MODULE]: shim.imports(names), hearth: { memory } };
  return { module, entry, command, minPages, maxPages, imports, file };
}

/** The function's env and the platform's names for it; a request adds the CGI variables. */
function baseEnv(bind: Bind): Record<string, string> {
  return {
    ...bind.env,
    HEARTH_FUNCTION: bind.functionName,
    HEARTH_NAMESPACE: bind.namespace,
    HEARTH_VERSION: String(bind.version),
  };
}

/** A new instance on the current memory; a reactor (exported-function ABI) runs its _initialize once. */
function instantiate(target: Loaded): WebAssembly.Instance {
  const instance = new WebAssembly.Instance(target.module, target.imports);
  if (!target.command) {
    const initialize = instance.exports._initialize;
    if (typeof initialize === 'function') (initialize as () => void)();
  }
  return instance;
}

/**
 * Makes the memory as a fresh instantiation would find it: zeroed (the instantiation writes the data segments).
 * A memory that grew a little is kept at its size, zeroed: the next instance starts with more pages than the
 * module declares, which allocators handle (they take new pages from memory.grow's answer), and a module
 * with a small stack whose heap grows once per request does not pay a new memory and a new node:wasi each
 * time. One that grew past KEEP_GROWN_BYTES is replaced, so a rare large request does not cost every later
 * one a large fill (a memory cannot shrink).
 */
function resetMemory(target: Loaded): void {
  const current = memory as WebAssembly.Memory;
  if (current.buffer.byteLength > Math.max(target.minPages * PAGE, KEEP_GROWN_BYTES)) {
    memory = freshMemory(target.minPages, target.maxPages);
    (target.imports.hearth as Record<string, unknown>).memory = memory;
  } else new Uint8Array(current.buffer).fill(0);
}

/** Readies the next command instance off the request's path (after its answer is queued). */
function prepareNext(): void {
  prepareScheduled = false;
  const target = loaded;
  if (target === undefined || !dirty) return;
  resetMemory(target);
  dirty = false;
  ready = instantiate(target);
}

function takeInstance(target: Loaded): WebAssembly.Instance {
  if (dirty) prepareNext();
  const instance = ready ?? instantiate(target);
  ready = undefined;
  return instance;
}

function onInvoke(id: number, wire: InvokeWire, body: Buffer): void {
  const target = loaded;
  if (target === undefined) {
    send(T_ERROR, id, { type: 'NotBound', message: 'instance received an invocation before it was bound' });
    return;
  }
  try {
    const [status, headers, answer] = target.command
      ? runCommand(target, id, wire, body)
      : runExport(target, id, body);
    // Logs first: the host tags them with the invocation only while it is in flight.
    if (run !== undefined) flushLogs(run);
    send(T_RESULT, id, [status, headers], answer);
  } catch (error) {
    if (run !== undefined) flushLogs(run);
    send(T_ERROR, id, describe(error, target));
    // An exported-function instance that failed may have its stack and heap in any state: the next request
    // gets a fresh one (after describe, which reports the memory the failed one had).
    if (!target.command) {
      ready = undefined;
      resetMemory(target);
    }
  } finally {
    run = undefined;
  }
}

function runCommand(target: Loaded, id: number, wire: InvokeWire, body: Buffer): Answer {
  const instance = takeInstance(target);
  const current = newRun(id, body, true, argsFor(target, wire), [...boundEnv, ...cgiEnv(wire, body.length)]);
  run = current;
  let code = 0;
  dirty = true;
  if (!prepareScheduled) {
    prepareScheduled = true;
    setImmediate(prepareNext);
  }
  try {
    (instance.exports._start as () => void)();
  } catch (error) {
    if (!(error instanceof Exit)) throw error;
    code = error.code;
  }
  if (code !== 0)
    throw Object.assign(new Error(`${target.file} exited with status ${code} (its stderr is in the logs)`), {
      name: 'WasmExit',
    });
  if (current.tooLarge) throw responseTooLarge(current.stdoutBytes);
  const answer = parseCgi(Buffer.concat(current.stdout, current.stdoutBytes));
  if (answer[2].length > maxBodyBytes) throw responseTooLarge(answer[2].length);
  return answer;
}

/** The exported-function ABI: the instance lives across requests; a trap replaces it. */
function runExport(target: Loaded, id: number, body: Buffer): Answer {
  const instance = ready ?? instantiate(target);
  ready = instance;
  run = newRun(id, EMPTY, false, boundArgs, boundEnv);
  const exports = instance.exports as Record<string, (...args: number[]) => number | bigint>;
  const ptr = Number(exports.alloc?.(body.length)) >>> 0;
  new Uint8Array((memory as WebAssembly.Memory).buffer).set(body, ptr);
  const packed = exports[target.entry]?.(ptr, body.length);
  if (typeof packed !== 'bigint')
    throw Object.assign(new Error(`${target.entry} must return an i64 (pointer << 32 | length)`), {
      name: 'WasmAbiError',
    });
  const outPtr = Number((packed >> 32n) & 0xffffffffn);
  const outLength = Number(packed & 0xffffffffn);
  if (outLength > maxBodyBytes) throw responseTooLarge(outLength);
  const view = (memory as WebAssembly.Memory).buffer;
  if (outPtr + outLength > view.byteLength)
    throw Object.assign(
      new Error(`${target.entry} returned bytes ${outPtr}..${outPtr + outLength}, past the end of memory`),
      { name: 'WasmAbiError' },
    );
  const answer = Buffer.from(new Uint8Array(view, outPtr, outLength));
  exports.dealloc?.(outPtr, outLength);
  return [200, ['content-type', 'application/octet-stream'], answer];
}

function responseTooLarge(bytes: number): Error {
  return Object.assign(
    new Error(`the response body is ${bytes} bytes; limits.maxBody allows at most ${maxBodyBytes}`),
    { name: 'ResponseTooLarge' },
  );
}

/** WAGI's arguments: the module name, then the query's `key=value` pairs as they came (percent-encoded). */
function argsFor(target: Loaded, wire: InvokeWire): Buffer[] {
  const query = wire[3];
  if (query === '') return boundArgs;
  return [cString(target.file), ...query.split('&').map((pair) => cString(pair))];
}

function describe(error: unknown, target?: Loaded): { type: string; message: string; stack?: string } {
  const clip = (text: string): string => (text.length > 64 * 1024 ? `${text.slice(0, 64 * 1024)}…` : text);
  const trap = error instanceof WebAssembly.RuntimeError;
  if ((trap || (error instanceof Error && error.name === 'WasmExit')) && target !== undefined) {
    // Say how much linear memory the module had: a failed allocation is a trap (`unreachable`, Rust) or an
    // exit (Go's "out of memory", status 2), and its cause is then plain to see.
    const used = ((memory?.buffer.byteLength ?? 0) / 1024 ** 2).toFixed(1);
    const cap = ((target.maxPages * PAGE) / 1024 ** 2).toFixed(0);
    return {
      type: trap ? 'WasmTrap' : 'WasmExit',
      message: clip(`${error.message} (linear memory ${used} MiB of at most ${cap} MiB from limits.memory)`),
      ...(trap && error.stack !== undefined ? { stack: clip(error.stack) } : {}),
    };
  }
  if (error instanceof Error) return { type: error.name, message: clip(error.message) };
  return { type: typeof error, message: clip(String(error)) };
}

// --- frame loop -----------------------------------------------------------------------------------------------

let shuttingDown = false;
const readFrames = frameReader((type, id, meta, body) => {
  if (type === T_INVOKE && !shuttingDown) onInvoke(id, meta as InvokeWire, body);
  else if (type === T_BIND) onBind(meta as Bind);
  else if (type === T_SHUTDOWN) shuttingDown = true;
});
channel.on('data', (chunk: Buffer) => {
  readFrames(chunk);
  // Runs are synchronous: nothing is in flight once the frames of this chunk are answered.
  if (shuttingDown) {
    outbox.flush();
    channel.end(() => process.exit(0));
  }
});
channel.on('end', () => process.exit(0));
channel.on('error', () => process.exit(1));

/**
 * Pays the one-time costs before the stem cell reports ready, so a cold start does not: WebAssembly's and
 * node:wasi's set-up, and this file's bind and request code run once (warm) on a module of its own.
 */
function warmUp(): void {
  const target = load(warmModule(), 'warm.wasm', '_start', RUNTIME_RESERVE_MIB + 1, 'warm');
  boundEnv = [cString('WARM=1')];
  boundArgs = [cString('warm.wasm')];
  ready = instantiate(target);
  const wire: InvokeWire = ['warm', 'POST', '/', 'a=1', ['Host', 'localhost'], 0, '127.0.0.1'];
  for (let i = 0; i < 3; i++) runCommand(target, 0, wire, Buffer.from('x'));
  prepareNext();
  parseCgi(Buffer.from('Content-Type: text/plain\nStatus: 200\n\nwarm'));
  loaded = undefined;
  ready = undefined;
  run = undefined;
  dirty = false;
  boundEnv = [];
  boundArgs = [];
}

warmUp();
send(T_READY, 0, { runtime: 'wasm', pid: process.pid, node: process.version });
