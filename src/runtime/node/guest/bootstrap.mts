/**
 * @module The Node.js guest: a generic runtime ("stem cell") that starts before it knows its function,
 * is bound to one function's code by a Bind frame, then serves invocations over fd 3.
 *
 * Runs inside the sandbox on every cold start, so it imports only Node built-ins and nothing from the
 * platform; the frame codec (frames.mjs, copied beside each guest at build) mirrors
 * `src/runtime/ipc/protocol.ts`.
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import * as Module from 'node:module';
import { createRequire, register } from 'node:module';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { Duplex } from 'node:stream';
import { pathToFileURL } from 'node:url';
import {
  type Adapter,
  type AdapterName,
  createAdapter,
  type GuestKit,
  PRELUDE,
  type RegisteredFunction,
  type ResponseSink,
  STREAMING,
} from './adapters.mjs';
import {
  encodeFrame,
  frameReader,
  T_BIND,
  T_BOUND,
  T_ERROR,
  T_INVOKE,
  T_LOG,
  T_READY,
  T_REPLY,
  T_RESULT,
  T_SHUTDOWN,
} from './frames.mjs';
import { collectWhenIdle } from './idle.mjs';

const T_CALL = 21;
/** A streamed response: its status and headers, then chunks of its body, then its end (src/runtime/ipc/protocol.ts). */
const T_STREAM_HEAD = 22;
const T_STREAM_CHUNK = 23;
const T_STREAM_END = 24;
/** A streamed body leaves in pieces of at most this much, far below the host's per-frame bound. */
const STREAM_PIECE = 256 * 1024;
const EMPTY = Buffer.alloc(0);

type Handler = (
  event: unknown,
  context: unknown,
  callback?: (error: unknown, result?: unknown) => void,
) => unknown;

interface Bind {
  namespace: string;
  functionName: string;
  version: number;
  handler: string;
  codeDir: string;
  depsDir?: string;
  env: Record<string, string>;
  eventFormat:
    | 'auto'
    | 'hearth'
    | 'lambda'
    | 'lambda-v2'
    | 'lambda-v1'
    | 'lambda-direct'
    | 'lambda-alb'
    | 'web'
    | 'openfaas'
    | 'openfaas-classic'
    | 'gcf'
    | 'gcf-cloudevent'
    | 'fission'
    | 'netlify'
    | 'netlify-v2';
  memoryMiB: number;
  timeoutMs: number;
  /** limits.maxBody: the host ends a guest whose response is larger, so a larger one is refused here. */
  maxBodyBytes?: number;
}

/** Invoke frames carry their meta positionally (see InvokeWire in src/runtime/ipc/protocol.ts). */
type InvokeWire = [
  string,
  string,
  string,
  string,
  string[],
  number,
  string,
  (CloudEventAttributes | null)?,
  (string | null)?,
  (1 | null)?,
  Record<string, unknown>?,
];

function invokeFromWire(wire: InvokeWire): Invoke {
  return {
    invocationId: wire[0],
    method: wire[1],
    path: wire[2],
    rawQuery: wire[3],
    rawHeaders: wire[4],
    deadline: wire[5],
    sourceIp: wire[6],
    event: wire[7] ?? undefined,
    traceparent: wire[8] ?? undefined,
    direct: wire[9] === 1,
    auth: wire[10],
  };
}

export interface CloudEventAttributes {
  specversion: string;
  id: string;
  source: string;
  type: string;
  subject?: string;
  time?: string;
  datacontenttype?: string;
  dataschema?: string;
  extensions?: Record<string, unknown>;
}

export interface Invoke {
  invocationId: string;
  method: string;
  path: string;
  rawQuery: string;
  rawHeaders: string[];
  deadline: number;
  sourceIp: string;
  event: CloudEventAttributes | undefined;
  /** A continued trace's context for the function (its parent is the execution span); absent = derived. */
  traceparent: string | undefined;
  /** Direct invocation for this request whatever the bound format (the Lambda Invoke API). */
  direct: boolean;
  /** The caller's identity (API key or JWT claims) for a function with `auth: key | jwt`. */
  auth: Record<string, unknown> | undefined;
}

/**
 * fd 3 is a socket, except in a microVM, where it is a virtio-serial port (a character device net.Socket
 * refuses): there it is read and written as a file.
 */
const channel: Duplex = fstatSync(3).isCharacterDevice()
  ? Duplex.from({
      readable: createReadStream('', { fd: 3, autoClose: false, highWaterMark: 256 * 1024 }),
      writable: createWriteStream('', { fd: 3, autoClose: false }),
    })
  : new Socket({ fd: 3, readable: true, writable: true });
/** Frames sent during one tick, written together at its end. */
let outbox: Buffer[] = [];
/**
 * Output the host has not taken yet (queued this tick, or in the socket's buffer) past which more is dropped
 * and counted, then reported in one line: a function printing in a tight loop would otherwise queue output
 * until its memory wall ends it (issue 10, the log flood).
 */
const LOG_BACKLOG = 1024 * 1024;
let outboxLogBytes = 0;
let droppedWrites = 0;
let droppedBytes = 0;

/** While the stem cell binds its own warm-up function (`warmBind`): the frames it answers go nowhere. */
let warming = false;

function flushOutbox(): void {
  if (outbox.length === 0) return;
  const frames = outbox;
  outbox = [];
  outboxLogBytes = 0;
  if (warming) return;
  // One write of one buffer: cheaper than a stream write per frame, and it is one syscall either way.
  channel.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
}

function send(type: number, id: number, meta: unknown, body: Buffer = EMPTY): void {
  if (outbox.push(encodeFrame(type, id, meta, body)) === 1) process.nextTick(flushOutbox);
}

// --- logs: stdout/stderr of the function, tagged with the invocation that wrote them ---------------
/**
 * Which invocation wrote a line. AsyncLocalStorage answers that across awaits, but in Node 20 it turns
 * on async hooks for every promise and socket write, about a tenth of the guest's CPU (bench/RESULTS.md).
 * So it is switched on only once output is ambiguous: written while several invocations are in flight,
 * outside the synchronous part of a handler. Until then, the only invocation in flight, or the one whose
 * synchronous code is running, is the writer.
 */
const current = new AsyncLocalStorage<number>();
let trackContext = false;
let runningSeq = 0;
/** An array, not a Set: a Set churned once per request strands garbage in V8's old generation (see slot-table.ts). */
const inFlightSeqs: number[] = [];

function writerSeq(): number {
  if (trackContext) return current.getStore() ?? runningSeq;
  if (runningSeq !== 0) return runningSeq;
  if (inFlightSeqs.length === 1) return inFlightSeqs[0] ?? 0;
  if (inFlightSeqs.length > 1) trackContext = true;
  return 0;
}

/**
 * The host takes log frames of up to 1 MiB and keeps 16 KiB of a record, so a longer write is cut (between
 * characters) rather than sent whole: one write stays one record, as it always was.
 */
const LOG_MAX = 512 * 1024;

function clipLog(bytes: Buffer): Buffer {
  let end = LOG_MAX;
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end -= 1;
  return Buffer.concat([bytes.subarray(0, end), Buffer.from(`… [truncated ${bytes.length - end} bytes]\n`)]);
}

/** One stderr line for the writes dropped so far, once there is room for it; later if there is none yet. */
function reportDropped(): void {
  if (droppedWrites === 0) return;
  if (outboxLogBytes + channel.writableLength > LOG_BACKLOG) {
    setTimeout(reportDropped, 50).unref();
    return;
  }
  const notice = Buffer.from(
    `[hearth] ${droppedWrites} writes (${droppedBytes} bytes) of output dropped: written faster than the platform takes them (${LOG_RECORDS_PER_SECOND} records or 1 MiB a second, 1 MiB waiting)\n`,
  );
  droppedWrites = 0;
  droppedBytes = 0;
  outboxLogBytes += notice.length;
  send(T_LOG, writerSeq(), 2, notice);
}

/**
 * Write callbacks run at the end of the tick, as a stream's would. Held as runs of the same function: in a
 * tight loop `console.log` passes one shared callback per write, and a tick queued for each of millions of
 * writes took a Node function past its 128Mi memory wall within two seconds (bench/abuse.mjs, log flood).
 */
let afterWrite: (() => void)[] = [];
let afterWriteRuns: number[] = [];

function callAfterWrite(done: () => void): void {
  const last = afterWrite.length - 1;
  if (last >= 0 && afterWrite[last] === done) {
    afterWriteRuns[last] = (afterWriteRuns[last] ?? 0) + 1;
    return;
  }
  afterWrite.push(done);
  afterWriteRuns.push(1);
  if (afterWrite.length === 1) process.nextTick(runAfterWrite);
}

function runAfterWrite(): void {
  const callbacks = afterWrite;
  const runs = afterWriteRuns;
  afterWrite = [];
  afterWriteRuns = [];
  for (let i = 0; i < callbacks.length; i++)
    for (let n = runs[i] ?? 0; n > 0; n--) (callbacks[i] as () => void)();
}

/**
 * The platform takes 1000 records or 1 MiB of one instance's output a second and drops the rest after
 * reading each frame (guest-process.ts): dropping the rest here instead spares it even that reading, which
 * was most of what a flood still cost the platform's thread (56 of 94 ms per 2 s flood, bench/abuse.mjs).
 */
const LOG_RECORDS_PER_SECOND = 1000;
const LOG_BYTES_PER_SECOND = 1024 * 1024;
let logWindowEndsAt = 0;
let logWindowRecords = 0;
let logWindowBytes = 0;

function withinLogRate(bytes: number): boolean {
  const now = Date.now();
  if (now >= logWindowEndsAt) {
    logWindowEndsAt = now + 1000;
    logWindowRecords = 0;
    logWindowBytes = 0;
  }
  if (logWindowRecords >= LOG_RECORDS_PER_SECOND || logWindowBytes + bytes > LOG_BYTES_PER_SECOND)
    return false;
  logWindowRecords += 1;
  logWindowBytes += bytes;
  return true;
}

function capture(stream: NodeJS.WriteStream, tag: 1 | 2): void {
  stream.write = ((chunk: string | Uint8Array, encoding?: unknown, callback?: unknown): boolean => {
    const done = typeof encoding === 'function' ? encoding : callback;
    const textEncoding = typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8';
    const size = typeof chunk === 'string' ? chunk.length : chunk.byteLength;
    if (outboxLogBytes + channel.writableLength > LOG_BACKLOG || !withinLogRate(Math.min(size, LOG_MAX))) {
      // Counted without being copied: a flood's garbage would otherwise outrun the collector to the memory wall.
      droppedWrites += 1;
      droppedBytes += typeof chunk === 'string' ? Buffer.byteLength(chunk, textEncoding) : chunk.byteLength;
      // Said once the backlog has drained, even when the function writes nothing more.
      // Once the second is over: one notice per second of flood, not one per burst.
      if (droppedWrites === 1) setTimeout(reportDropped, Math.max(50, logWindowEndsAt - Date.now())).unref();
      if (typeof done === 'function') callAfterWrite(done as () => void);
      return true;
    }
    reportDropped();
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, textEncoding) : Buffer.from(chunk);
    outboxLogBytes += Math.min(bytes.length, LOG_MAX);
    send(T_LOG, writerSeq(), tag, bytes.length <= LOG_MAX ? bytes : clipLog(bytes));
    if (typeof done === 'function') callAfterWrite(done as () => void);
    return true;
  }) as typeof stream.write;
}

// --- calls into the platform (ctx.state, ctx.invoke): one request frame, one reply frame ---------------
let nextCallId = 1;
const calls = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();

/** Calls the platform on behalf of invocation `seq`; rejects with the platform's error. */
function hostCall(seq: number, method: string, args: unknown): Promise<unknown> {
  const id = nextCallId;
  nextCallId = id >= 0x7fff_ffff ? 1 : id + 1;
  return new Promise((resolvePromise, reject) => {
    calls.set(id, { resolve: resolvePromise, reject });
    send(T_CALL, id, [seq, method, args]);
  });
}

function settleCall(id: number, [ok, value]: [boolean, unknown]): void {
  const call = calls.get(id);
  if (call === undefined) return;
  calls.delete(id);
  if (ok) call.resolve(value);
  else {
    const failure = (value ?? {}) as { type?: string; message?: string };
    call.reject(
      Object.assign(new Error(failure.message ?? 'platform call failed'), {
        name: failure.type ?? 'HostCallError',
      }),
    );
  }
}

// --- handler loading ---------------------------------------------------------------------------------
let handler: Handler | undefined;
/** Another platform's convention (adapters.mts), or undefined for the bootstrap's own: one test per invocation. */
let adapter: Adapter | undefined;
let boundInfo: FunctionInfo | undefined;
/** The event shape (spec.eventFormat, resolved at bind): a number, compared once per invocation. */
const HEARTH = 0;
const LAMBDA_V2 = 1;
const LAMBDA_V1 = 2;
const LAMBDA_DIRECT = 3;
const FORMAT_NAMES = ['hearth', 'lambda-v2', 'lambda-v1', 'lambda-direct'] as const;
let format = HEARTH;
let maxBodyBytes = Number.POSITIVE_INFINITY;

function moduleFile(codeDir: string, modulePath: string): string | undefined {
  const base = resolve(codeDir, modulePath);
  const candidates = [
    base,
    `${base}.mjs`,
    `${base}.js`,
    `${base}.cjs`,
    join(base, 'index.mjs'),
    join(base, 'index.js'),
    join(base, 'index.cjs'),
  ];
  return candidates.find((candidate) => statSync(candidate, { throwIfNoEntry: false })?.isFile() === true);
}

function isCommonJs(file: string, codeDir: string): boolean {
  if (file.endsWith('.cjs')) return true;
  if (file.endsWith('.mjs')) return false;
  for (let dir = dirname(file); dir.startsWith(codeDir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        return (JSON.parse(readFileSync(manifest, 'utf8')) as { type?: string }).type !== 'module';
      } catch {
        return true;
      }
    }
    if (dir === codeDir) break;
  }
  return true;
}

interface LoadedModule {
  /** The handler's candidate: the named export, or the default export (else `handler`). */
  readonly exported: unknown;
  readonly exportName: string | undefined;
  readonly modulePath: string;
  readonly file: string;
  /** A CommonJS module's named export (`exports.handler`): Lambda's shape, which `auto` takes as API Gateway v2. */
  readonly commonJsNamed: boolean;
  /** An ES module's exports named after HTTP methods (`export function GET(request)`: Vercel's web handlers). */
  readonly methods: Record<string, Handler> | undefined;
  /** A built-in module's own adapter (BUILTIN_HANDLER), which takes every invocation as it comes. */
  readonly builtinAdapter?: ((kit: GuestKit) => Adapter) | undefined;
}

/**
 * A module of this folder that stands in for the function's handler (the launch's first argument): the
 * Lambda Runtime API for `runtime: provided`, the container supervisor for `runtime: image` (issue 17).
 */
const BUILTIN_HANDLER = process.argv[2];
/**
 * Loaded as the stem cell starts, so it can get ready before any function is known (the container
 * supervisor creates the container ahead); its `bind()` runs at Bind, once the environment is the function's.
 */
const builtinModule =
  BUILTIN_HANDLER === undefined
    ? undefined
    : (import(pathToFileURL(BUILTIN_HANDLER).href) as Promise<Record<string, unknown>>);
// Its failure is the bind's to report.
builtinModule?.catch(() => undefined);

async function loadModule(bind: Bind): Promise<LoadedModule> {
  if (BUILTIN_HANDLER !== undefined && builtinModule !== undefined) {
    const builtin = await builtinModule;
    if (typeof builtin.bind === 'function') await (builtin.bind as () => Promise<void>)();
    return {
      exported: builtin.handler,
      exportName: 'handler',
      modulePath: BUILTIN_HANDLER,
      file: BUILTIN_HANDLER,
      commonJsNamed: true,
      methods: undefined,
      builtinAdapter: builtin.adapter as ((kit: GuestKit) => Adapter) | undefined,
    };
  }
  const known = /\.(m?js|cjs)$/.test(bind.handler);
  const lastDot = bind.handler.lastIndexOf('.');
  const hasExport = !known && lastDot > bind.handler.lastIndexOf('/');
  const modulePath = hasExport ? bind.handler.slice(0, lastDot) : bind.handler;
  const exportName = hasExport ? bind.handler.slice(lastDot + 1) : undefined;
  const file = moduleFile(bind.codeDir, modulePath);
  if (file === undefined)
    throw Object.assign(
      new Error(`module "${modulePath}" not found in the function folder (tried .mjs, .js, .cjs)`),
      { name: 'HandlerNotFound' },
    );
  const commonJs = isCommonJs(file, bind.codeDir);
  if (!commonJs && wantsEsmShim(bind, file)) registerEsmShim();
  let exported: unknown;
  let commonJsNamed = false;
  let methods: Record<string, Handler> | undefined;
  if (commonJs) {
    const value: unknown = createRequire(file)(file);
    const record = (value ?? {}) as Record<string, unknown>;
    if (exportName !== undefined) {
      exported = record[exportName];
      commonJsNamed = true;
    } else if (typeof value === 'function') exported = value;
    else if (typeof record.default === 'function') exported = record.default;
    else if (typeof record.fetch === 'function') exported = record;
    else {
      exported = record.handler;
      commonJsNamed = true;
    }
  } else {
    const namespace = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    const fallback = (namespace.default ?? {}) as Record<string, unknown>;
    exported =
      exportName !== undefined
        ? (namespace[exportName] ?? fallback[exportName])
        : (namespace.default ?? namespace.handler);
    for (const method of HTTP_METHODS) {
      const exportedMethod = namespace[method];
      if (typeof exportedMethod !== 'function') continue;
      methods ??= {};
      methods[method] = exportedMethod as Handler;
    }
  }
  return { exported, exportName, modulePath, file, commonJsNamed, methods };
}

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** One handler for a module's method exports: the request's method, HEAD by GET, else 405 with `Allow`. */
function byMethod(methods: Record<string, Handler>): Handler {
  const allow = Object.keys(methods).join(', ');
  return (request, context) => {
    const method = (request as Request).method;
    const chosen = methods[method] ?? (method === 'HEAD' ? methods.GET : undefined);
    return chosen === undefined
      ? new Response(null, { status: 405, headers: { allow } })
      : chosen(request, context);
  };
}

function handlerNotFound(loaded: LoadedModule): Error {
  const wanted =
    loaded.exportName === undefined
      ? 'a default export (or an export named "handler") that is a function'
      : `a function exported as "${loaded.exportName}"`;
  return Object.assign(new Error(`module "${loaded.modulePath}" has no ${wanted}`), {
    name: 'HandlerNotFound',
  });
}

// --- Google Cloud Functions' `functions.http(name, fn)` registrations ----------------------------------------
const GCF_PACKAGE = '@google-cloud/functions-framework';
const GUEST_DIR = dirname(new URL(import.meta.url).pathname);
const GCF_SHIM = join(GUEST_DIR, 'functions-framework.cjs');
/** Where the real package's files are once loaded (`registeredFunction`). */
const GCF_INSTALLED = `${sep}${GCF_PACKAGE.replace('/', sep)}${sep}`;
let esmShimRegistered = false;

/**
 * `require('@google-cloud/functions-framework')` resolves to the guest's stand-in when the function did not
 * install the package. A wrapper around CommonJS resolution that costs a comparison on its failure path only.
 */
function installRequireShim(): void {
  const loader = Module.Module as unknown as {
    _resolveFilename(request: string, parent: unknown, isMain: boolean, options: unknown): string;
  };
  const original = loader._resolveFilename;
  loader._resolveFilename = function resolveWithShim(request, parent, isMain, options) {
    try {
      return original.call(this, request, parent, isMain, options);
    } catch (error) {
      if (request === GCF_PACKAGE) return GCF_SHIM;
      throw error;
    }
  };
}

/** ES modules need a loader hook (a thread of its own), so it is registered only for a module that asks for the package. */
function wantsEsmShim(bind: Bind, file: string): boolean {
  if (esmShimRegistered) return false;
  if (bind.eventFormat !== 'auto' && bind.eventFormat !== 'gcf' && bind.eventFormat !== 'gcf-cloudevent')
    return false;
  if (!readFileSync(file, 'utf8').includes(GCF_PACKAGE)) return false;
  try {
    // The require shim answers for a package that is not installed: only a real one resolves elsewhere.
    return createRequire(file).resolve(GCF_PACKAGE) === GCF_SHIM;
  } catch {
    return true;
  }
}

function registerEsmShim(): void {
  esmShimRegistered = true;
  register(pathToFileURL(join(GUEST_DIR, 'functions-framework-hooks.mjs')).href, {
    data: { shim: pathToFileURL(GCF_SHIM).href },
  });
}

/** The function registered under the handler's export name (or the only one), from the stand-in or the real package. */
function registeredFunction(loaded: LoadedModule): RegisteredFunction | undefined {
  const registries: Map<string, RegisteredFunction>[] = [];
  const shimModule = guestRequire.cache[GCF_SHIM]?.exports as Record<symbol, unknown> | undefined;
  const shimRegistry = shimModule?.[Symbol.for('hearth.gcf.registry')];
  if (shimRegistry instanceof Map) registries.push(shimRegistry as Map<string, RegisteredFunction>);
  // Only once the function has loaded the real package (CommonJS, so in the require cache even when an ES
  // module imported it): resolving a package that is not there walks every node_modules up to / and throws,
  // a seventh of a Node cold start's CPU for every function bound under `auto` (issue 11).
  const realLoaded = Object.keys(guestRequire.cache).some((path) => path.includes(GCF_INSTALLED));
  if (realLoaded) {
    try {
      // The real package keeps its registrations in build/src/function_registry.js, beside its main file.
      const main = createRequire(loaded.file).resolve(GCF_PACKAGE);
      const real = createRequire(loaded.file)(join(dirname(main), 'function_registry.js')) as {
        getRegisteredFunction?: (name: string) => RegisteredFunction | undefined;
      };
      const lookup = real.getRegisteredFunction;
      if (typeof lookup === 'function') {
        const found = loaded.exportName === undefined ? undefined : lookup(loaded.exportName);
        if (found !== undefined) return found;
      }
    } catch {
      // a package of that name without the registry file
    }
  }
  for (const registry of registries) {
    if (loaded.exportName !== undefined) {
      const found = registry.get(loaded.exportName);
      if (found !== undefined) return found;
    } else if (registry.size === 1) return registry.values().next().value;
  }
  return undefined;
}

const guestRequire = createRequire(import.meta.url);

/** A handler completed through `context.succeed/fail/done` (Lambda's oldest style) waits for them. */
const LEGACY_COMPLETION = /\.(succeed|fail|done)\s*\(/;
let legacyCompletion = false;

async function onBind(bind: Bind): Promise<void> {
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(
    process.env,
    // Lambda's defaults where the function sets none.
    { AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'us-east-1' },
    bind.env,
    {
      HEARTH_FUNCTION: bind.functionName,
      HEARTH_NAMESPACE: bind.namespace,
      HEARTH_VERSION: String(bind.version),
      AWS_LAMBDA_FUNCTION_NAME: bind.functionName,
      AWS_LAMBDA_FUNCTION_VERSION: String(bind.version),
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(bind.memoryMiB),
      AWS_LAMBDA_LOG_GROUP_NAME: `/hearth/${bind.namespace}/${bind.functionName}`,
      AWS_LAMBDA_LOG_STREAM_NAME: String(process.pid),
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs20.x',
      LAMBDA_TASK_ROOT: bind.codeDir,
      _HANDLER: bind.handler,
    },
  );
  const sm4Key =
    process.env.HEARTH_SM4_KEY === undefined ? undefined : Buffer.from(process.env.HEARTH_SM4_KEY, 'hex');
  delete process.env.HEARTH_SM4_KEY;
  try {
    // Loaded only for a function that uses it: node:crypto and the codec are ~5 ms of every boot otherwise.
    if (sm4Key !== undefined) sm4 = { key: sm4Key, codec: await import('./sm4-gcm.mjs') };
    writeSecretFiles();
    process.chdir(bind.codeDir);
    if (bind.eventFormat === 'auto' || bind.eventFormat === 'gcf' || bind.eventFormat === 'gcf-cloudevent')
      installRequireShim();
    const loaded = await loadModule(bind);
    // A built-in module may answer invocations itself, below any convention (the container proxy).
    if (loaded.builtinAdapter !== undefined) {
      handler = () => undefined;
      adapter = loaded.builtinAdapter(KIT);
      boundInfo = functionInfo(bind);
      maxBodyBytes = bind.maxBodyBytes ?? Number.POSITIVE_INFINITY;
      send(T_BOUND, 0, { ok: true, eventFormat: 'http' });
      return;
    }
    const convention = conventionOf(bind.eventFormat, loaded);
    boundInfo = functionInfo(bind);
    maxBodyBytes = bind.maxBodyBytes ?? Number.POSITIVE_INFINITY;
    if (typeof convention === 'number') {
      if (typeof loaded.exported !== 'function') throw handlerNotFound(loaded);
      handler = loaded.exported as Handler;
      format = convention;
      // Lambda's conventions only: a Hearth handler that returns nothing has answered.
      legacyCompletion =
        format !== HEARTH && LEGACY_COMPLETION.test(Function.prototype.toString.call(handler));
      send(T_BOUND, 0, { ok: true, eventFormat: FORMAT_NAMES[format] });
      return;
    }
    const [name, target, registered, lambdaFormat] = convention;
    // Web-standard conventions build a fetch Request per invocation: load fetch now, not on the first one.
    loadFetch();
    if (name !== 'workers' && typeof target !== 'function') throw handlerNotFound(loaded);
    handler = (name === 'workers' ? () => undefined : target) as Handler;
    legacyCompletion =
      (name === 'lambda-alb' || name === 'netlify') &&
      LEGACY_COMPLETION.test(Function.prototype.toString.call(target));
    if (lambdaFormat !== undefined) format = lambdaFormat;
    adapter = createAdapter(
      name,
      target,
      KIT,
      registered,
      lambdaFormat === undefined ? undefined : (meta, body) => lambdaShaped(meta, body),
    );
    send(T_BOUND, 0, { ok: true, eventFormat: name });
  } catch (error) {
    send(T_BOUND, 0, { ok: false, error: describe(error) });
  }
}

/**
 * Secrets with a mountPath (issue 13) arrive in the Bind env as HEARTH_SECRET_FILES, JSON of
 * {"<mountPath>/<key>": base64}; they become files in a 0700 folder of the instance's private tmp, and
 * HEARTH_SECRETS_DIR names it. The variable is removed before the handler loads.
 */
function writeSecretFiles(): void {
  const encoded = process.env.HEARTH_SECRET_FILES;
  delete process.env.HEARTH_SECRET_FILES;
  if (encoded === undefined) return;
  const dir = mkdtempSync(join(tmpdir(), 'hearth-secrets-'));
  for (const [path, value] of Object.entries(JSON.parse(encoded) as Record<string, string>)) {
    const file = join(dir, path);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, Buffer.from(value, 'base64'), { mode: 0o400 });
  }
  process.env.HEARTH_SECRETS_DIR = dir;
}

function isWorker(value: unknown): boolean {
  return (
    value !== null && typeof value === 'object' && typeof (value as { fetch?: unknown }).fetch === 'function'
  );
}

/**
 * The convention in force: one of the bootstrap's own formats (a number), or an adapter with its target.
 * `auto` picks only what cannot be mistaken: a module worker (`export default { fetch }`), a function
 * registered with the Functions Framework, a streamified Lambda handler, a CommonJS `exports.handler`
 * (API Gateway v2); anything else gets Hearth's event.
 */
function conventionOf(
  name: Bind['eventFormat'],
  loaded: LoadedModule,
): number | [AdapterName, unknown, RegisteredFunction?, number?] {
  const exported = loaded.exported;
  const streaming =
    typeof exported === 'function' && (exported as unknown as Record<symbol, unknown>)[STREAMING] === true;
  switch (name) {
    case 'hearth':
      return HEARTH;
    case 'lambda':
    case 'lambda-v2':
      return streaming ? ['lambda-stream', exported] : LAMBDA_V2;
    // A streamified handler streams under any of Lambda's formats, with that format's event.
    case 'lambda-v1':
      return streaming ? ['lambda-stream', exported, undefined, LAMBDA_V1] : LAMBDA_V1;
    case 'lambda-direct':
      return streaming ? ['lambda-stream', exported, undefined, LAMBDA_DIRECT] : LAMBDA_DIRECT;
    case 'web':
    case 'netlify-v2':
      if (isWorker(exported)) return ['workers', exported];
      return [
        'web',
        typeof exported !== 'function' && loaded.methods !== undefined ? byMethod(loaded.methods) : exported,
      ];
    case 'gcf':
    case 'gcf-cloudevent': {
      const registered = registeredFunction(loaded);
      return [
        registered?.signatureType === 'cloudevent' ? 'gcf-cloudevent' : name,
        registered?.userFunction ?? exported,
        registered,
      ];
    }
    case 'lambda-alb':
    case 'openfaas':
    case 'openfaas-classic':
    case 'fission':
    case 'netlify':
      return [name, exported];
    case 'auto': {
      if (isWorker(exported)) return ['workers', exported];
      const registered = registeredFunction(loaded);
      if (registered !== undefined)
        return [
          registered.signatureType === 'cloudevent' ? 'gcf-cloudevent' : 'gcf',
          registered.userFunction,
          registered,
        ];
      if (streaming) return ['lambda-stream', exported];
      return loaded.commonJsNamed ? LAMBDA_V2 : HEARTH;
    }
  }
}

// --- events and results ------------------------------------------------------------------------------
function parseQuery(raw: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  if (raw === '') return query;
  for (const [key, value] of new URLSearchParams(raw)) {
    const previous = query[key];
    if (previous === undefined) query[key] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else query[key] = [previous, value];
  }
  return query;
}

/** Request headers whose repeats Node drops rather than joins (its own `req.headers` rule). */
const SINGLE_VALUED = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

/** The raw `[name, value, ...]` list as a plain object with lower-case names, repeats joined. */
function headerObject(raw: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (!SINGLE_VALUED.has(name))
      headers[name] = `${previous}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return headers;
}

function flatHeaders(headers: Record<string, string | string[]>): string[] {
  const flat: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (Array.isArray(value)) for (const item of value) flat.push(name, item);
    else if (value !== undefined) flat.push(name, value);
  }
  return flat;
}

function contentTypeOf(headers: Record<string, unknown>): string {
  const value = headers['content-type'];
  return typeof value === 'string' ? value.toLowerCase() : '';
}

const TEXTUAL = /^(text\/|application\/(x-www-form-urlencoded|xml|javascript|graphql|x-ndjson)|[^;]*\+xml)/;
const JSONISH = /^(application\/json|application\/[^;]*\+json)/;

function hearthBody(body: Buffer, contentType: string): unknown {
  if (body.length === 0) return undefined;
  if (JSONISH.test(contentType)) {
    const text = body.toString('utf8');
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  if (TEXTUAL.test(contentType)) return body.toString('utf8');
  return body;
}

/** An event delivery (trigger, async queue): the CloudEvents attributes with the data decoded by its content type. */
function cloudEvent(attributes: CloudEventAttributes, body: Buffer): unknown {
  const { extensions, ...context } = attributes;
  return {
    ...extensions,
    ...context,
    data: hearthBody(body, (attributes.datacontenttype ?? 'application/json').toLowerCase()),
  };
}

function hearthEvent(meta: Invoke, body: Buffer): unknown {
  if (meta.event !== undefined) return cloudEvent(meta.event, body);
  const headers = headerObject(meta.rawHeaders);
  return {
    method: meta.method,
    path: meta.path,
    query: parseQuery(meta.rawQuery),
    rawQuery: meta.rawQuery,
    headers,
    body: hearthBody(body, contentTypeOf(headers)),
  };
}

/** The API Gateway HTTP API (payload 2.0) event that Lambda handlers expect. */
function lambdaEvent(meta: Invoke, body: Buffer): unknown {
  const headers = headerObject(meta.rawHeaders);
  const contentType = contentTypeOf(headers);
  const textual = body.length === 0 || JSONISH.test(contentType) || TEXTUAL.test(contentType);
  const cookies = headers.cookie?.split(/;\s*/);
  delete headers.cookie;
  const query: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(meta.rawQuery))
    query[key] = key in query ? `${query[key]},${value}` : value;
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: meta.path,
    rawQueryString: meta.rawQuery,
    cookies,
    headers,
    queryStringParameters: meta.rawQuery === '' ? undefined : query,
    requestContext: {
      accountId: 'hearth',
      apiId: 'hearth',
      domainName: headers.host ?? 'localhost',
      http: {
        method: meta.method,
        path: meta.path,
        protocol: 'HTTP/1.1',
        sourceIp: meta.sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: meta.invocationId,
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    body: body.length === 0 ? undefined : textual ? body.toString('utf8') : body.toString('base64'),
    isBase64Encoded: !textual,
  };
}

/** Names as the client sent them, each with its values in order: API Gateway REST's multi-value form. */
function multiValueHeaders(raw: readonly string[]): Record<string, string[]> {
  const headers: Record<string, string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const values = headers[name];
    if (values === undefined) headers[name] = [value];
    else values.push(value);
  }
  return headers;
}

/** The API Gateway REST API (payload 1.0) proxy event: single values are the last of each name, as AWS does. */
function restEvent(meta: Invoke, body: Buffer): unknown {
  const multiHeaders = multiValueHeaders(meta.rawHeaders);
  const headers: Record<string, string> = {};
  for (const name in multiHeaders) headers[name] = (multiHeaders[name] as string[]).at(-1) as string;
  let query: Record<string, string> | null = null;
  let multiQuery: Record<string, string[]> | null = null;
  if (meta.rawQuery !== '') {
    query = {};
    multiQuery = {};
    for (const [key, value] of new URLSearchParams(meta.rawQuery)) {
      query[key] = value;
      const values = multiQuery[key];
      if (values === undefined) multiQuery[key] = [value];
      else values.push(value);
    }
  }
  const lower = headerObject(meta.rawHeaders);
  const contentType = contentTypeOf(lower);
  const textual = body.length === 0 || JSONISH.test(contentType) || TEXTUAL.test(contentType);
  const proxy = meta.path.replace(/^\/+/, '');
  const resource = proxy === '' ? '/' : '/{proxy+}';
  const now = Date.now();
  return {
    resource,
    path: meta.path,
    httpMethod: meta.method,
    headers,
    multiValueHeaders: multiHeaders,
    queryStringParameters: query,
    multiValueQueryStringParameters: multiQuery,
    pathParameters: proxy === '' ? null : { proxy },
    stageVariables: null,
    requestContext: {
      accountId: 'hearth',
      apiId: 'hearth',
      resourceId: 'hearth',
      resourcePath: resource,
      httpMethod: meta.method,
      path: meta.path,
      protocol: 'HTTP/1.1',
      stage: '$default',
      domainName: lower.host ?? 'localhost',
      domainPrefix: (lower.host ?? 'localhost').split('.')[0],
      requestId: meta.invocationId,
      extendedRequestId: meta.invocationId,
      requestTime: awsTime(now),
      requestTimeEpoch: now,
      // API Gateway sends every identity field, null where the caller has none (no IAM or Cognito here).
      identity: {
        cognitoIdentityPoolId: null,
        accountId: null,
        cognitoIdentityId: null,
        caller: null,
        sourceIp: meta.sourceIp,
        principalOrgId: null,
        accessKey: null,
        cognitoAuthenticationType: null,
        cognitoAuthenticationProvider: null,
        userArn: null,
        userAgent: lower['user-agent'] ?? null,
        user: null,
      },
    },
    body: body.length === 0 ? null : textual ? body.toString('utf8') : body.toString('base64'),
    isBase64Encoded: !textual,
  };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** API Gateway's request time: `06/Dec/2026:21:04:05 +0000`. */
function awsTime(ms: number): string {
  const d = new Date(ms);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
}

/** A request the direct format cannot make an event of: answered 400 by the guest, not a function error. */
class BadEvent extends Error {}

/** Direct invocation: the body, parsed as JSON, is the event itself (no body: `{}`, as Lambda's console sends). */
function directEvent(meta: Invoke, body: Buffer): unknown {
  if (body.length === 0) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    // An event delivery's data that is not JSON is still that data.
    if (meta.event !== undefined) return cloudEvent(meta.event, body);
    throw new BadEvent(
      `body: got ${body.length} bytes that are not JSON (${(error as Error).message}), expected a JSON event (eventFormat lambda-direct)`,
    );
  }
}

/** Every format but Hearth's own: Lambda's shapes, resolved at bind. */
function lambdaShaped(meta: Invoke, body: Buffer): unknown {
  if (format === LAMBDA_DIRECT) return directEvent(meta, body);
  if (meta.event !== undefined) return cloudEvent(meta.event, body);
  return format === LAMBDA_V1 ? restEvent(meta, body) : lambdaEvent(meta, body);
}

/** Direct invocation answers the handler's return value as JSON (undefined: `null`), whatever its shape. */
function directResponse(value: unknown): HttpResult {
  return {
    status: 200,
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(value) ?? 'null', 'utf8'),
  };
}

const writeLog =
  (level: string) =>
  (message: unknown, fields?: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify({ level, msg: message, ...fields })}\n`);
  };
const LOGGER = Object.freeze({
  debug: writeLog('debug'),
  info: writeLog('info'),
  warn: writeLog('warn'),
  error: writeLog('error'),
});

/**
 * The handler's `ctx`: Hearth's fields plus the AWS Lambda context's, so Lambda handlers run unchanged.
 * A class with the per-function strings computed once at bind, because one is made per invocation.
 */
class Context {
  callbackWaitsForEmptyEventLoop = true;
  /** Set while a Lambda handler may still answer through `succeed`, `fail` or `done`. */
  settle: ((error: unknown, result?: unknown) => void) | undefined = undefined;
  constructor(
    readonly invocationId: string,
    readonly deadline: number,
    private readonly fn: FunctionInfo,
    /** The invocation's sequence number: calls into the platform made through this ctx carry it. */
    private readonly seq: number,
    private readonly trace: string | undefined,
    /** Who invoked it: `{type: "key", key, name, role}` or `{type: "jwt", ...claims}`; undefined when public. */
    readonly auth: Record<string, unknown> | undefined,
  ) {}
  /** A call into the platform on behalf of this invocation (what ctx.state and ctx.invoke are built on). */
  private platform(method: string, args: unknown): Promise<unknown> {
    return hostCall(this.seq, method, args);
  }
  get awsRequestId(): string {
    return this.invocationId;
  }
  get functionName(): string {
    return this.fn.functionName;
  }
  get functionVersion(): string {
    return this.fn.functionVersion;
  }
  get namespace(): string {
    return this.fn.namespace;
  }
  get invokedFunctionArn(): string {
    return this.fn.arn;
  }
  get memoryLimitInMB(): string {
    return this.fn.memoryLimitInMB;
  }
  get logGroupName(): string {
    return this.fn.logGroupName;
  }
  get logStreamName(): string {
    return this.fn.logStreamName;
  }
  get log(): typeof LOGGER {
    return LOGGER;
  }
  /** This function's key-value state (get, set with TTL, delete, incr, cas, keys); `.shared` is the namespace's. */
  get state(): StateClient {
    return new StateClient(this.seq, false);
  }
  /** Event-sourced streams (append with expectedVersion, read, snapshots). */
  get events(): EventsClient {
    return new EventsClient(this.seq);
  }
  /**
   * Sends one CloudEvent or several (structured form: `{ type, data, subject?, source?, id?, … }`) through
   * the platform's event routing: to the function `subject` names, else to the matching Triggers.
   */
  emit(events: unknown): Promise<{ accepted: number; ids: string[] }> {
    return this.platform('emit', { events }) as Promise<{ accepted: number; ids: string[] }>;
  }
  /** The W3C trace this invocation belongs to (32 hex digits). */
  get traceId(): string {
    return this.traceparent.slice(3, 35);
  }
  /** `traceparent` for calls this invocation makes, so they join its trace (its parent is the execution span). */
  get traceparent(): string {
    if (this.trace !== undefined) return this.trace;
    const hex = this.invocationId.replaceAll('-', '');
    return `00-${hex}-${hex.slice(16)}-01`;
  }
  getRemainingTimeInMillis(): number {
    return Math.max(0, this.deadline - Date.now());
  }
  /** Lambda's oldest way to answer (before callbacks and promises): the same as `callback(null, result)`. */
  succeed(result?: unknown): void {
    this.settle?.(null, result);
  }
  fail(error: unknown): void {
    this.settle?.(error ?? new Error('failed'));
  }
  done(error?: unknown, result?: unknown): void {
    this.settle?.(error, result);
  }
  get identity(): undefined {
    return undefined;
  }
  get clientContext(): undefined {
    return undefined;
  }
  /**
   * Invokes another function (`name`, or `name.namespace`) with `event` as its JSON body, within this
   * invocation's deadline; resolves with its response `{ statusCode, headers, body }`.
   */
  invoke(name: string, event?: unknown): Promise<unknown> {
    return this.platform('invoke', { name, event: event ?? null });
  }
}

type StateOptions = { ttl?: number | string; limit?: number };

/**
 * `ctx.state`: each operation is one Call frame to the platform, which keeps the data (SQLite or Redis)
 * so every instance of the function sees the same values. TTLs are seconds or durations like "10m".
 */
class StateClient {
  constructor(
    private readonly seq: number,
    private readonly isShared: boolean,
  ) {}
  private call(method: string, args: Record<string, unknown>): Promise<unknown> {
    if (this.isShared) args.shared = true;
    return hostCall(this.seq, method, args);
  }
  /** The namespace-wide store, shared by every function of this namespace. */
  get shared(): StateClient {
    return new StateClient(this.seq, true);
  }
  /** The value, or null when the key is absent or expired. */
  get(key: string): Promise<unknown> {
    return this.call('state.get', { key });
  }
  set(key: string, value: unknown, options: StateOptions = {}): Promise<void> {
    return this.call('state.set', { key, value, ttl: options.ttl }) as Promise<void>;
  }
  /** Whether the key was there. */
  delete(key: string): Promise<boolean> {
    return this.call('state.delete', { key }) as Promise<boolean>;
  }
  /** Adds `by` (default 1) atomically and returns the new count; `ttl` applies to a new counter. */
  incr(key: string, by = 1, options: StateOptions = {}): Promise<number> {
    return this.call('state.incr', { key, by, ttl: options.ttl }) as Promise<number>;
  }
  /** Sets `value` only if the key holds `expected` (null: only if absent); resolves whether it did. */
  cas(key: string, expected: unknown, value: unknown, options: StateOptions = {}): Promise<boolean> {
    return this.call('state.cas', {
      key,
      expected: expected ?? null,
      value,
      ttl: options.ttl,
    }) as Promise<boolean>;
  }
  /** Keys starting with `prefix`, sorted. */
  keys(prefix = '', options: StateOptions = {}): Promise<string[]> {
    return this.call('state.keys', { prefix, limit: options.limit }) as Promise<string[]>;
  }
}

/** Thrown by `ctx.events.append` when the stream moved past `expectedVersion`: read it again and retry. */
class StreamConflictError extends Error {
  override readonly name = 'StreamConflictError';
  readonly code = 'HEARTH_E_STREAM_CONFLICT';
}

/**
 * `ctx.events`: each operation is one Call frame; the platform keeps the log (SQLite). Streams are the
 * function's own, or the namespace's when its spec lists them in `streams.shared`.
 */
class EventsClient {
  readonly ConflictError = StreamConflictError;
  constructor(private readonly seq: number) {}
  private call(method: string, args: Record<string, unknown>): Promise<unknown> {
    return hostCall(this.seq, method, args).catch((error: Error) => {
      throw error.name === 'HEARTH_E_STREAM_CONFLICT' ? new StreamConflictError(error.message) : error;
    });
  }
  /** Appends `{type, data, id?}` event(s); with `expectedVersion` a moved stream throws StreamConflictError. */
  append(stream: string, events: unknown, options: { expectedVersion?: number } = {}): Promise<unknown> {
    return this.call('events.append', { stream, events, expectedVersion: options.expectedVersion });
  }
  /** Events from version `from` (default 1), at most `limit` (default 1000). */
  read(stream: string, options: { from?: number; limit?: number } = {}): Promise<unknown[]> {
    return this.call('events.read', { stream, from: options.from, limit: options.limit }) as Promise<
      unknown[]
    >;
  }
  version(stream: string): Promise<number> {
    return this.call('events.version', { stream }) as Promise<number>;
  }
  snapshot(stream: string, version: number, state: unknown): Promise<void> {
    return this.call('events.snapshot', { stream, version, state }) as Promise<void>;
  }
  /** `{ version, state }` or null. */
  latestSnapshot(stream: string): Promise<unknown> {
    return this.call('events.latestSnapshot', { stream });
  }
}

interface FunctionInfo {
  readonly functionName: string;
  readonly functionVersion: string;
  readonly namespace: string;
  readonly arn: string;
  readonly memoryLimitInMB: string;
  readonly logGroupName: string;
  readonly logStreamName: string;
}

function functionInfo(bind: Bind): FunctionInfo {
  return {
    functionName: bind.functionName,
    functionVersion: String(bind.version),
    namespace: bind.namespace,
    arn: `arn:hearth:function:${bind.namespace}:${bind.functionName}:${bind.version}`,
    memoryLimitInMB: String(bind.memoryMiB),
    logGroupName: `/hearth/${bind.namespace}/${bind.functionName}`,
    logStreamName: String(process.pid),
  };
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

function fetchHeaders(value: globalThis.Response): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  value.headers.forEach((v, k) => {
    if (k !== 'set-cookie') headers[k] = v;
  });
  const cookies = value.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  return headers;
}

/**
 * A fetch `Response`. A body that is all there when the first read returns (a string, bytes: undici gives
 * those in one piece) is sent whole, with its length; a body still being produced is streamed as it comes,
 * so its first chunk reaches the client before the rest exists.
 */
async function fromFetchResponse(value: globalThis.Response, seq: number): Promise<HttpResult | undefined> {
  const headers = fetchHeaders(value);
  if (value.body === null) return { status: value.status, headers, body: EMPTY };
  const reader = value.body.getReader();
  const first = await reader.read();
  if (first.done) return { status: value.status, headers, body: EMPTY };
  const pieces: Buffer[] = [Buffer.from(first.value)];
  let next = reader.read();
  // Whatever is already there arrives within this turn's microtasks; anything later is streamed.
  for (;;) {
    const ready = await Promise.race([
      next,
      new Promise<undefined>((resolveSoon) => setImmediate(() => resolveSoon(undefined))),
    ]);
    if (ready === undefined) break;
    if (ready.done) return { status: value.status, headers, body: Buffer.concat(pieces) };
    pieces.push(Buffer.from(ready.value));
    next = reader.read();
  }
  const sink = openStream(seq, value.status, headers);
  for (const piece of pieces) sink.write(piece);
  try {
    for (let chunk = await next; !chunk.done; chunk = await reader.read())
      sink.write(Buffer.from(chunk.value));
    sink.end();
  } catch (error) {
    sink.end(error);
  }
  return undefined;
}

/** Starts a streamed answer: the status and headers now, then each chunk as it is written. */
function openStream(seq: number, status: number, headers: Record<string, string | string[]>): ResponseSink {
  if (!Number.isInteger(status) || status < 200 || status > 599)
    throw Object.assign(
      new Error(`statusCode must be an integer from 200 to 599, got ${JSON.stringify(status)}`),
      {
        name: 'InvalidResponse',
      },
    );
  send(T_STREAM_HEAD, seq, [status, flatHeaders(headers)]);
  let ended = false;
  return {
    write(bytes: Buffer): void {
      if (ended) return;
      for (let at = 0; at < bytes.length; at += STREAM_PIECE)
        send(T_STREAM_CHUNK, seq, undefined, bytes.subarray(at, at + STREAM_PIECE));
    },
    end(error?: unknown): void {
      if (ended) return;
      ended = true;
      send(T_STREAM_END, seq, error === undefined ? undefined : describe(error));
    },
  };
}

/** Work a function asked to finish after its response (`waitUntil`): counted as in flight until it settles or the deadline. */
function hold(work: Promise<unknown>, deadline: number): void {
  inFlight += 1;
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    clearTimeout(timer);
    inFlight -= 1;
    if (shuttingDown && inFlight === 0) exit();
  };
  const timer = setTimeout(
    () => {
      process.stderr.write(
        "waitUntil: work still running at the invocation's deadline is no longer waited for\n",
      );
      release();
    },
    Math.max(0, deadline - Date.now()),
  );
  work.then(release, (error: unknown) => {
    process.stderr.write(
      `waitUntil: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    release();
  });
}

/** What adapters.mts borrows from the bootstrap. */
const KIT: GuestKit = {
  headerObject,
  parseQuery,
  isTextual: (contentType) => JSONISH.test(contentType) || TEXTUAL.test(contentType),
  hearthBody,
  cloudEvent,
  lambdaEvent,
  toResponse,
  call: (fn, event, ctx) => call(fn, event, ctx as Context),
  openStream,
  hold,
};

/**
 * Whether `value` is a fetch `Response`, without loading fetch to learn that a plain object is not one:
 * `globalThis.Response` is a lazy getter that loads undici (~15 ms of CPU in Node 20). While it is still the
 * getter, a Response can only have come from `fetch()` itself, and is then named so.
 */
function isFetchResponse(value: unknown): value is globalThis.Response {
  if (value === null || typeof value !== 'object') return false;
  if (!fetchLoaded) {
    // The function's own code may have loaded it (`new Response(...)`, a subclass): the getter is gone then.
    fetchLoaded = Object.getOwnPropertyDescriptor(globalThis, 'Response')?.get === undefined;
    if (!fetchLoaded && (value as { constructor?: { name?: unknown } }).constructor?.name !== 'Response')
      return false;
  }
  return value instanceof globalThis.Response;
}

/** Whether `globalThis.Response` has been loaded (its lazy getter replaced by the class). */
let fetchLoaded = false;

function loadFetch(): void {
  if (fetchLoaded) return;
  void globalThis.Response;
  fetchLoaded = true;
}

/** Synchronous for everything but a fetch `Response`: one less await on every invocation. */
function toResponse(value: unknown, seq = 0): HttpResult | Promise<HttpResult | undefined> {
  if (isFetchResponse(value)) return fromFetchResponse(value, seq);
  if (value !== null && typeof value === 'object' && !isBytes(value) && 'statusCode' in value) {
    const shaped = value as {
      statusCode: unknown;
      headers?: Record<string, unknown>;
      multiValueHeaders?: Record<string, unknown[]>;
      cookies?: string[];
      body?: unknown;
      isBase64Encoded?: boolean;
    };
    const status = Number(shaped.statusCode);
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw Object.assign(
        new Error(`statusCode must be an integer from 200 to 599, got ${JSON.stringify(shaped.statusCode)}`),
        { name: 'InvalidResponse' },
      );
    }
    const headers: Record<string, string | string[]> = {};
    for (const [name, v] of Object.entries(shaped.headers ?? {}))
      if (v !== undefined && v !== null) headers[name.toLowerCase()] = String(v);
    for (const [name, values] of Object.entries(shaped.multiValueHeaders ?? {}))
      if (Array.isArray(values)) headers[name.toLowerCase()] = values.map(String);
    if (Array.isArray(shaped.cookies) && shaped.cookies.length > 0)
      headers['set-cookie'] = shaped.cookies.map(String);
    let body: Buffer;
    const raw = shaped.body;
    if (raw === undefined || raw === null) body = EMPTY;
    else if (typeof raw === 'string')
      body = shaped.isBase64Encoded === true ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'utf8');
    else if (isBytes(raw)) body = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    else {
      body = Buffer.from(JSON.stringify(raw), 'utf8');
      headers['content-type'] ??= 'application/json';
    }
    if (headers['content-type'] === undefined && body.length > 0) {
      const first = body[0];
      headers['content-type'] =
        first === 0x7b || first === 0x5b ? 'application/json' : 'text/plain; charset=utf-8';
    }
    return { status, headers, body };
  }
  if (typeof value === 'string')
    return {
      status: 200,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: Buffer.from(value, 'utf8'),
    };
  if (isBytes(value))
    return {
      status: 200,
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
    };
  if (value === undefined) return { status: 200, headers: {}, body: EMPTY };
  return {
    status: 200,
    // A returned CloudEvent in structured form is marked as one, so the platform routes it on (issue 20).
    headers: { 'content-type': isCloudEvent(value) ? CLOUDEVENT_JSON : 'application/json' },
    body: Buffer.from(JSON.stringify(value) ?? 'null', 'utf8'),
  };
}

const CLOUDEVENT_JSON = 'application/cloudevents+json';

function isCloudEvent(value: unknown): boolean {
  return value !== null && typeof value === 'object' && 'specversion' in value && 'type' in value;
}

/** The guest's own folder (bootstrap, frames, adapters): the user's code is never loaded from it. */
const GUEST_DIR_URL = new URL('./', import.meta.url).href;

/** The user's frames only: the guest's own and Node's internals after them are noise in their logs. */
function userStack(stack: string): string {
  return stack
    .split('\n')
    .filter((line) => !line.includes(GUEST_DIR_URL) && !/\(?node:[a-z_/]+:\d+/.test(line))
    .join('\n');
}

/** An error's text is kept to 64 KiB: the host bounds the frames it reads and ends a guest past them. */
function clip(text: string): string {
  return text.length <= 65536 ? text : `${text.slice(0, 65536)}… (${text.length - 65536} more characters)`;
}

function describe(error: unknown): { type: string; message: string; stack?: string } {
  if (error instanceof Error) {
    return {
      type: clip(String(error.name)),
      message: clip(String(error.message)),
      ...(error.stack === undefined ? {} : { stack: clip(userStack(error.stack)) }),
    };
  }
  return { type: typeof error, message: clip(String(error)) };
}

function call(fn: Handler, event: unknown, ctx: Context): unknown {
  // Callback-style Lambda handlers: (event, context, callback) and not async; or answering through
  // context.succeed/fail/done, which Lambda's Node runtime still honours.
  if (legacyCompletion || (fn.length >= 3 && fn.constructor.name !== 'AsyncFunction')) {
    return new Promise((resolvePromise, reject) => {
      const settle = (error: unknown, result?: unknown): void => {
        ctx.settle = undefined;
        if (error !== null && error !== undefined) reject(error);
        else resolvePromise(result);
      };
      ctx.settle = settle;
      const returned = fn(event, ctx, settle);
      if (returned !== undefined && typeof (returned as Promise<unknown>).then === 'function')
        (returned as Promise<unknown>).then(resolvePromise, reject);
      else if (returned !== undefined && fn.length < 3) resolvePromise(returned);
    });
  }
  return fn(event, ctx);
}

// --- SM4 on the transaction path (issue 13) ------------------------------------------------------------
// The bound function's key and the codec, when its spec asks for SM4-GCM bodies (sm4-gcm.mts: GCM over
// OpenSSL's sm4-ecb).
interface Sm4 {
  readonly key: Buffer;
  readonly codec: typeof import('./sm4-gcm.mjs');
}
let sm4: Sm4 | undefined;

/** The request's body opened, and its content type restored; a refusal is a 400 naming the problem. */
function openInvocation({ key, codec }: Sm4, meta: Invoke, body: Buffer): [Invoke, Buffer] {
  if (body.length === 0) return [meta, body];
  const headers = meta.rawHeaders;
  let type = '';
  let plainType = 'application/octet-stream';
  const kept: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const name = (headers[i] as string).toLowerCase();
    if (name === 'content-type') type = (headers[i + 1] as string).split(';')[0]?.trim().toLowerCase() ?? '';
    else if (name === codec.PLAIN_TYPE_HEADER) plainType = headers[i + 1] as string;
    else if (name !== 'content-length') kept.push(headers[i] as string, headers[i + 1] as string);
  }
  if (type !== codec.SM4_CONTENT_TYPE)
    throw new BadEvent(
      `this function takes SM4-GCM sealed bodies (content-type application/hearth-sm4), got ${type === '' ? 'no content type' : type}; seal it with: hearth invoke --encrypt --key-file KEY`,
    );
  let plain: Buffer;
  try {
    plain = codec.openBody(key, body);
  } catch (error) {
    throw new BadEvent((error as Error).message);
  }
  kept.push('content-type', plainType, 'content-length', String(plain.length));
  return [{ ...meta, rawHeaders: kept }, plain];
}

/** Seals the answer in place: its body in the wire format, its own content type in a header. */
function sealResponse(
  { key, codec }: Sm4,
  response: { headers: Record<string, string | string[]>; body: Buffer },
): void {
  const plainType = response.headers['content-type'];
  response.body = codec.sealBody(key, response.body);
  response.headers['content-type'] = codec.SM4_CONTENT_TYPE;
  if (typeof plainType === 'string') response.headers[codec.PLAIN_TYPE_HEADER] = plainType;
}

let inFlight = 0;
let shuttingDown = false;

async function onInvoke(id: number, meta: Invoke, body: Buffer): Promise<void> {
  const fn = handler;
  const info = boundInfo;
  if (fn === undefined || info === undefined) {
    send(T_ERROR, id, { type: 'NotBound', message: 'instance received an invocation before it was bound' });
    return;
  }
  inFlight += 1;
  inFlightSeqs.push(id);
  try {
    if (sm4 !== undefined) [meta, body] = openInvocation(sm4, meta, body);
    // The Lambda Invoke API asks for direct invocation per request, whatever the convention in force.
    const direct = meta.direct === true || format === LAMBDA_DIRECT;
    const ctx = new Context(meta.invocationId, meta.deadline, info, id, meta.traceparent, meta.auth);
    let response: HttpResult | undefined;
    if (adapter === undefined || meta.direct === true) {
      const event = direct
        ? directEvent(meta, body)
        : format === HEARTH
          ? hearthEvent(meta, body)
          : lambdaShaped(meta, body);
      let pendingResult: unknown;
      runningSeq = id;
      try {
        pendingResult = trackContext ? current.run(id, () => call(fn, event, ctx)) : call(fn, event, ctx);
      } finally {
        runningSeq = 0;
      }
      const result = await pendingResult;
      const converted = direct ? directResponse(result) : toResponse(result, id);
      response = converted instanceof Promise ? await converted : converted;
    } else {
      const run = adapter;
      let pendingResponse: Promise<HttpResult | undefined>;
      runningSeq = id;
      try {
        pendingResponse = trackContext
          ? current.run(id, () => run(meta, body, ctx, id))
          : run(meta, body, ctx, id);
      } finally {
        runningSeq = 0;
      }
      response = await pendingResponse;
    }
    // Streamed: its head, chunks and end are sent already.
    if (response === undefined) return;
    if (response.body.length > maxBodyBytes)
      throw Object.assign(
        new Error(
          `the response body is ${response.body.length} bytes; limits.maxBody allows at most ${maxBodyBytes}`,
        ),
        { name: 'ResponseTooLarge' },
      );
    if (sm4 !== undefined) sealResponse(sm4, response);
    send(T_RESULT, id, [response.status, flatHeaders(response.headers)], response.body);
  } catch (error) {
    if (error instanceof BadEvent) {
      const answer = {
        error: { code: 'HEARTH_E_BAD_REQUEST', message: error.message, invocationId: meta.invocationId },
      };
      send(T_RESULT, id, [400, ['content-type', 'application/json']], Buffer.from(JSON.stringify(answer)));
    } else send(T_ERROR, id, describe(error));
  } finally {
    inFlight -= 1;
    inFlightSeqs.splice(inFlightSeqs.indexOf(id), 1);
    if (shuttingDown && inFlight === 0) exit();
  }
}

function exit(): void {
  flushOutbox();
  channel.end(() => process.exit(0));
}

// --- frame loop ----------------------------------------------------------------------------------------
/** One frame from the platform; the bind or invocation it starts, for the warm-up to wait on. */
function onFrame(type: number, id: number, meta: unknown, body: Buffer): Promise<void> | undefined {
  if (type === T_INVOKE) return onInvoke(id, invokeFromWire(meta as InvokeWire), body);
  if (type === T_REPLY) settleCall(id, meta as [boolean, unknown]);
  else if (type === T_BIND) return onBind(meta as Bind);
  else if (type === T_SHUTDOWN) {
    shuttingDown = true;
    if (inFlight === 0) exit();
  }
  return undefined;
}
channel.on(
  'data',
  frameReader((type, id, meta, body) => void onFrame(type, id, meta, body)),
);
// The host went away: nothing left to serve.
channel.on('end', () => process.exit(0));
channel.on('error', () => process.exit(1));

/**
 * Pays the one-time costs before the stem cell reports ready, so a cold start does not: the first dynamic
 * import initialises the ESM loader, and running the event and response code once warms it. Fetch is
 * not loaded here (see where Ready is sent).
 */
async function warmUp(): Promise<void> {
  const here = dirname(new URL(import.meta.url).pathname);
  await import(pathToFileURL(join(here, 'warm.mjs')).href);
  createRequire(join(here, 'warm-cjs.cjs'))(join(here, 'warm-cjs.cjs'));
  isCommonJs(join(here, 'warm.mjs'), here);
  moduleFile(here, 'warm');
  const sample: Invoke = {
    invocationId: 'warm-up',
    method: 'POST',
    path: '/',
    rawQuery: 'a=1&a=2',
    rawHeaders: ['Content-Type', 'application/json'],
    deadline: Date.now(),
    sourceIp: '127.0.0.1',
    event: undefined,
    traceparent: undefined,
    direct: false,
    auth: undefined,
  };
  hearthEvent(sample, Buffer.from('{"a":1}'));
  lambdaEvent(sample, Buffer.from('{"a":1}'));
  restEvent(sample, Buffer.from('{"a":1}'));
  await toResponse({ statusCode: 200, headers: { a: 'b' }, body: 'x' });
  await toResponse({ a: 1 });
  if (BUILTIN_HANDLER === undefined) await warmBind(here);
}

/**
 * Binds the guest's own warm-up function (`warm-handler.mjs`) and invokes it once, through the frames and
 * functions a cold start runs, then puts everything back as it was: V8 compiles a function's bytecode on its
 * first call, so without this a cold start compiled the bind's and the invocation's code (onBind, the
 * convention's look-up, onInvoke, Context…) and a second module import's share of Node's ES loader: ~1.2 ms
 * of a Node cell's ~2.9 ms of CPU from Bind to Result (issue 11; `node --no-lazy` measured the same saving).
 * Its Bound and Result frames go nowhere (`warming`). A built-in handler (Lambda's Runtime API, the container
 * supervisor) is not warmed: its `bind()` does real work.
 */
async function warmBind(here: string): Promise<void> {
  const env = { ...process.env };
  const cwd = process.cwd();
  const loader = Module.Module as unknown as { _resolveFilename: unknown };
  const resolveFilename = loader._resolveFilename;
  warming = true;
  try {
    const frames: Promise<void>[] = [];
    const read = frameReader((type, id, meta, body) => {
      const started = onFrame(type, id, meta, body);
      if (started !== undefined) frames.push(started);
    });
    const bind: Bind = {
      // Names no deployed function can have, so nothing of them can pass for a function's own.
      namespace: '.warm',
      functionName: '.warm-up',
      version: 1,
      handler: 'warm-handler',
      codeDir: here,
      env: {},
      eventFormat: 'auto',
      memoryMiB: 128,
      timeoutMs: 1000,
      maxBodyBytes: 1024,
    };
    read(encodeFrame(T_BIND, 0, bind));
    await Promise.all(frames.splice(0));
    const invoke: InvokeWire = [
      'warm-up',
      'GET',
      '/',
      'a=1',
      ['Host', 'warm-up'],
      Date.now() + 1000,
      '127.0.0.1',
    ];
    read(encodeFrame(T_INVOKE, 1, invoke, Buffer.from('{"a":1}')));
    await Promise.all(frames.splice(0));
  } catch {
    // Only a warm-up: a cold start compiles what it did not.
  } finally {
    handler = undefined;
    adapter = undefined;
    boundInfo = undefined;
    format = HEARTH;
    maxBodyBytes = Number.POSITIVE_INFINITY;
    legacyCompletion = false;
    loader._resolveFilename = resolveFilename;
    for (const key of Object.keys(process.env)) delete process.env[key];
    Object.assign(process.env, env);
    process.chdir(cwd);
    // The frames it answered leave with this tick's flush, which drops them (`warming`).
    await new Promise((resolveTick) => process.nextTick(resolveTick));
    warming = false;
  }
}

/**
 * The `awslambda` global of Lambda's Node runtime: `streamifyResponse` marks a handler as streaming (called
 * as `(event, responseStream, context)`), `HttpResponseStream.from` sets the status and headers to send first.
 */
Object.defineProperty(globalThis, 'awslambda', {
  value: Object.freeze({
    streamifyResponse<T extends Handler>(streamingHandler: T): T {
      Object.defineProperty(streamingHandler, STREAMING, { value: true });
      return streamingHandler;
    },
    HttpResponseStream: Object.freeze({
      from<S extends object>(stream: S, prelude: Record<string, unknown>): S {
        Object.defineProperty(stream, PRELUDE, { value: prelude, configurable: true });
        return stream;
      },
    }),
  }),
  enumerable: false,
});

await warmUp();
capture(process.stdout, 1);
capture(process.stderr, 2);
send(T_READY, 0, { runtime: 'node20', pid: process.pid, node: process.version });
// Fetch (`Response`, `Request`, undici) is not loaded ahead in a waiting cell: it is ~5 MiB of heap in every
// idle instance whose function never uses it (10 MiB PSS instead of 8 in the density bench, issue 11). A bind to
// a convention of other platforms loads it then (`onBind`), any other function on first use (~15 ms of CPU).
// Once quiet, the guest collects its garbage so V8 shrinks the heap (idle.mts).
collectWhenIdle(channel, { busy: () => inFlight > 0, bound: () => boundInfo });
