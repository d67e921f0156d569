/**
 * @module The WebAssembly guest: a generic Node process ("stem cell") that a Bind frame gives one function's
 * `.wasm`, then runs it on V8's WebAssembly and `node:wasi` (WASI preview 1) for each Invoke frame on fd 3.
 *
 * Runs inside the sandbox on every cold start, so it imports only Node built-ins and nothing from the
 * platform; the frame codec mirrors `src/runtime/ipc/protocol.ts`. Two ABIs (README, "WebAssembly functions"):
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
import { WASI } from 'node:wasi';
import { type Answer, cgiEnv, type InvokeWire, importMemory, parseCgi, parseHandler } from './wasm-abi.mjs';

const T_BIND = 1;
const T_INVOKE = 2;
const T_SHUTDOWN = 4;
const T_READY = 16;
const T_BOUND = 17;
const T_RESULT = 18;
const T_ERROR = 19;
const T_LOG = 20;
const HEADER = 13;
const EMPTY = Buffer.alloc(0);
const PAGE = 64 * 1024;
/** What the Node process itself keeps of limits.memory; the rest may be the module's linear memory. */
const RUNTIME_RESERVE_MIB = 40;
/** A memory grown up to this size is zeroed and kept between command requests (see resetMemory). */
const KEEP_GROWN_BYTES = 4 * 1024 * 1024;
/** A log write is clipped to this, as in the Node guest (the log keeps 16 KiB of a record anyway). */
const LOG_MAX = 512 * 1024;
const WASI_MODULE = 'wasi_snapshot_preview1';
/** WASI errno values used here. */
const ESUCCESS = 0;
const EBADF = 8;

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
let outbox: Buffer[] = [];

function flushOutbox(): void {
  if (outbox.length === 0) return;
  const frames = outbox;
  outbox = [];
  channel.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
}

function send(type: number, id: number, meta: unknown, body: Buffer = EMPTY): void {
  const metaText = meta === undefined ? '' : JSON.stringify(meta);
  const metaLength = Buffer.byteLength(metaText);
  const frame = Buffer.allocUnsafe(HEADER + metaLength + body.length);
  frame.writeUInt32BE(9 + metaLength + body.length, 0);
  frame[4] = type;
  frame.writeUInt32BE(id, 5);
  frame.writeUInt32BE(metaLength, 9);
  frame.write(metaText, HEADER, 'utf8');
  if (body.length > 0) body.copy(frame, HEADER + metaLength);
  if (outbox.push(frame) === 1) process.nextTick(flushOutbox);
}

// --- the module -------------------------------------------------------------------------------------------

// --- WASI: what this guest serves itself, the rest from node:wasi -----------------------------------------

/** proc_exit unwinds the module's stack with this; the run catches it. */
class Exit {
  constructor(readonly code: number) {}
}

/** The invocation being run: its stdin, its stdout, its environment. */
interface Run {
  seq: number;
  stdin: Buffer;
  stdinAt: number;
  stdout: Buffer[];
  stdoutBytes: number;
  /** stdout is the response (command ABI); otherwise it is the function's log, like stderr. */
  captureStdout: boolean;
  /** stdout went past limits.maxBody (plus room for the header block): the answer is refused. */
  tooLarge: boolean;
  args: Buffer[];
  env: Buffer[];
  logOut: { pieces: Buffer[]; bytes: number };
  logErr: { pieces: Buffer[]; bytes: number };
}

function newRun(seq: number, stdin: Buffer, captureStdout: boolean, args: Buffer[], env: Buffer[]): Run {
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

let run: Run | undefined;
let memory: WebAssembly.Memory | undefined;
let maxBodyBytes = Number.POSITIVE_INFINITY;
/** The CGI header block may add this much to the body before stdout counts as too large. */
const HEADER_ROOM = 64 * 1024;

function iovecs(iovs: number, count: number): [DataView, number[]] {
  const view = new DataView((memory as WebAssembly.Memory).buffer);
  const spans: number[] = [];
  for (let i = 0; i < count; i++)
    spans.push(view.getUint32(iovs + i * 8, true), view.getUint32(iovs + i * 8 + 4, true));
  return [view, spans];
}

function fdRead(fd: number, iovs: number, count: number, readPtr: number): number {
  if (fd !== 0) return fallback.fd_read?.(fd, iovs, count, readPtr) ?? EBADF;
  // Outside a request (a reactor's _initialize) stdin is empty, never the guest process's own.
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
  if (fd !== 1 && fd !== 2) return fallback.fd_write?.(fd, iovs, count, writtenPtr) ?? EBADF;
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
  if (fd === 1 && current?.captureStdout === true) {
    if (current.tooLarge) return ESUCCESS;
    current.stdoutBytes += total;
    if (current.stdoutBytes > maxBodyBytes + HEADER_ROOM) {
      current.tooLarge = true;
      current.stdout = [];
      return ESUCCESS;
    }
    // Copied: the views above are into linear memory, which the next request reuses.
    for (const piece of pieces) current.stdout.push(Buffer.from(piece));
    return ESUCCESS;
  }
  // stderr, and stdout of the exported-function ABI, are the function's log: kept until the run ends (it is
  // synchronous, so nothing could be sent sooner), then one record per stream, not one per write.
  if (current === undefined) {
    const text = Buffer.concat(pieces);
    if (text.length > 0) send(T_LOG, 0, fd === 1 ? 1 : 2, text.subarray(0, LOG_MAX));
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

/** Sends what a run wrote to its logs. */
function flushLogs(current: Run): void {
  if (current.logOut.bytes > 0) send(T_LOG, current.seq, 1, Buffer.concat(current.logOut.pieces));
  if (current.logErr.bytes > 0) send(T_LOG, current.seq, 2, Buffer.concat(current.logErr.pieces));
}

function sizesGet(list: () => Buffer[]): (countPtr: number, sizePtr: number) => number {
  return (countPtr, sizePtr) => {
    const items = list();
    const view = new DataView((memory as WebAssembly.Memory).buffer);
    view.setUint32(countPtr, items.length, true);
    view.setUint32(
      sizePtr,
      items.reduce((sum, item) => sum + item.length, 0),
      true,
    );
    return ESUCCESS;
  };
}

function listGet(list: () => Buffer[]): (pointers: number, buffer: number) => number {
  return (pointers, buffer) => {
    const view = new DataView((memory as WebAssembly.Memory).buffer);
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

/** NUL-terminated, as WASI hands strings over. */
const cString = (text: string): Buffer => Buffer.from(`${text}\0`);

let boundArgs: Buffer[] = [];
let boundEnv: Buffer[] = [];
const argsOf = (): Buffer[] => run?.args ?? boundArgs;
const envOf = (): Buffer[] => run?.env ?? boundEnv;

type WasiFunction = (...args: number[]) => number;
/** node:wasi's functions, for everything not served above; made for each memory (it binds to one). */
let fallback: Record<string, WasiFunction | undefined> = {};

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
  // Go sets its stdio non-blocking; they are not real descriptors here, so that is a no-op.
  fd_fdstat_set_flags: (fd: number, flags: number) =>
    fd <= 2 ? ESUCCESS : (fallback.fd_fdstat_set_flags?.(fd, flags) ?? EBADF),
};

/** JS trampolines for every WASI function the module imports (see the module comment for why). */
function wasiImports(names: readonly string[]): Record<string, WasiFunction> {
  const imports: Record<string, WasiFunction> = {};
  for (const name of names) {
    const own = OWN[name];
    imports[name] =
      own ??
      ((...args: number[]): number => {
        const target = fallback[name];
        return target === undefined ? EBADF : target(...args);
      });
  }
  return imports;
}

/** A new memory, and node:wasi bound to it (node:wasi reads `memory` from the object it is given). */
function freshMemory(minPages: number, maxPages: number): WebAssembly.Memory {
  const next = new WebAssembly.Memory({ initial: minPages, maximum: maxPages });
  const wasi = new WASI({ version: 'preview1', args: [], env: {}, returnOnExit: true });
  wasi.initialize({ exports: { memory: next } });
  fallback = wasi.wasiImport as Record<string, WasiFunction>;
  return next;
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
  const imports: WebAssembly.Imports = { [WASI_MODULE]: wasiImports(names), hearth: { memory } };
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

let pending: Buffer = EMPTY;
let shuttingDown = false;
channel.on('data', (chunk: Buffer) => {
  const buffer = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
  let offset = 0;
  while (buffer.length - offset >= 4) {
    const length = buffer.readUInt32BE(offset);
    const end = offset + 4 + length;
    if (end > buffer.length) break;
    const type = buffer[offset + 4];
    const id = buffer.readUInt32BE(offset + 5);
    const metaLength = buffer.readUInt32BE(offset + 9);
    const metaStart = offset + HEADER;
    const meta: unknown =
      metaLength === 0 ? undefined : JSON.parse(buffer.toString('utf8', metaStart, metaStart + metaLength));
    const body = buffer.subarray(metaStart + metaLength, end);
    offset = end;
    if (type === T_INVOKE && !shuttingDown) onInvoke(id, meta as InvokeWire, body);
    else if (type === T_BIND) onBind(meta as Bind);
    else if (type === T_SHUTDOWN) shuttingDown = true;
  }
  pending = offset < buffer.length ? Buffer.from(buffer.subarray(offset)) : EMPTY;
  // Runs are synchronous: nothing is in flight once the frames of this chunk are answered.
  if (shuttingDown) {
    flushOutbox();
    channel.end(() => process.exit(0));
  }
});
channel.on('end', () => process.exit(0));
channel.on('error', () => process.exit(1));

const text = (value: string): number[] => [value.length, ...Buffer.from(value)];
const section = (id: number, content: number[]): number[] => [id, content.length, ...content];

/** A WASI command that writes "ok" to stdout: `(import "wasi_snapshot_preview1" "fd_write")`, one memory. */
function warmModule(): Uint8Array {
  return Uint8Array.from([
    ...[0, 97, 115, 109, 1, 0, 0, 0],
    // types: (i32 i32 i32 i32) -> i32, and () -> ()
    ...section(1, [2, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0]),
    ...section(2, [1, ...text(WASI_MODULE), ...text('fd_write'), 0, 0]),
    ...section(3, [1, 1]),
    ...section(5, [1, 0, 1]),
    ...section(7, [2, ...text('memory'), 2, 0, ...text('_start'), 0, 1]),
    // _start: fd_write(1, iovs = 0, 1, nwritten = 8)
    ...section(10, [1, 13, 0, 0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, 0x0b]),
    // the iovec {16, 2} at 0, "ok" at 16
    ...section(11, [2, 0, 0x41, 0, 0x0b, 8, 16, 0, 0, 0, 2, 0, 0, 0, 0, 0x41, 16, 0x0b, 2, 111, 107]),
  ]);
}

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
