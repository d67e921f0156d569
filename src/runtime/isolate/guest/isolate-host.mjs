// The isolate host (issue 11, `isolation: isolate`): one sandboxed Node process running many functions of
// one namespace, each in a V8 isolate of its own (isolated-vm) whose heap is capped at its limits.memory.
//
// fd 3 carries the platform's frame protocol (runtime/ipc/protocol.ts; the codec is frames.mjs, shared by
// the guests): u32 length | u8 type | u32 id | u32 metaLength | meta JSON | body. The host speaks it in
// Relay frames (type 25): id names a member (one function), meta is null for a stream of that member's own
// frames (Bind, Invoke, Shutdown in; Bound, Result, Error, Log out), or a control: {open: {files}} gives a
// member its sources (this process cannot see the function's folder; files null: they are the body, as
// JSON), {kill: true} disposes of it now;
// {exit: {...}} tells the platform a member ended.
//
// Like the other guests it imports nothing from the platform; isolated-vm is found through
// HEARTH_ISOLATED_VM, bound read-only into the sandbox.
//
// Inside an isolate there is ECMAScript and what this file adds: `console` (log, info, debug, warn, error).
// No `require`, no `node:` modules, no fs, no network, no timers, no `fetch`: README, "isolation: isolate".

import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { posix } from 'node:path';
import {
  encodeFrame,
  encodeRelayed,
  frameOutbox,
  frameReader,
  T_BIND,
  T_BOUND,
  T_ERROR,
  T_INVOKE,
  T_LOG,
  T_READY,
  T_RELAY,
  T_RESULT,
  T_SHUTDOWN,
} from './frames.mjs';

const ivm = createRequire(`${process.env.HEARTH_ISOLATED_VM}/`)('./isolated-vm.js');

const EMPTY = Buffer.alloc(0);
/** The smallest heap isolated-vm accepts. */
const MIN_HEAP_MIB = 8;
const JSONISH = /^application\/(.+\+)?json/;
const TEXTUAL = /^(text\/|application\/(x-www-form-urlencoded|xml|javascript))/;

const channel = new Socket({ fd: 3, readable: true, writable: true });
// Frames leave together once the turn's isolate callbacks have run (each comes in a callback of its own).
const { send, flush } = frameOutbox(channel, setImmediate);

// What every isolate runs before the function: `console`, and the call that gives the handler its ctx and
// reports its outcome through __hearthDone / __hearthFail (callbacks the host runs on its next turn).
const PRELUDE = `
const show = (value) => {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return value.stack || String(value);
  try { return JSON.stringify(value) ?? String(value); } catch { return String(value); }
};
const writer = (stream) => (...values) => { __hearthLog(stream, values.map(show).join(' ') + '\\n'); };
globalThis.console = { log: writer(1), info: writer(1), debug: writer(1), warn: writer(2), error: writer(2) };
const failure = (error) => ({
  type: typeof error?.name === 'string' ? error.name : 'Error',
  message: String(error?.message ?? error),
  stack: typeof error?.stack === 'string' ? error.stack : undefined,
});
// Returns the function the host calls per invocation (one reference, taken with the bind's own call).
globalThis.__hearthBind = (exported, name, infoJson) => {
  const base = JSON.parse(infoJson);
  const fallback = exported.default ?? {};
  const handler = name === '' ? (exported.default ?? exported.handler) : (exported[name] ?? fallback[name]);
  if (typeof handler !== 'function')
    throw Object.assign(new Error(name === '' ? 'the module has no default export or "handler" function' : 'the module exports no function "' + name + '"'), { name: 'HandlerNotFound' });
  // The event arrives as JSON (a tenth of the cost of copying the object across) and binary bodies apart.
  return (seq, eventJson, bytes, invocationId, deadline) => {
    const event = JSON.parse(eventJson);
    if (bytes !== undefined) event.body = bytes;
    const ctx = { ...base, invocationId, awsRequestId: invocationId, deadline, getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()) };
    let result;
    try {
      result = handler(event, ctx);
    } catch (error) {
      __hearthFail(seq, failure(error));
      return;
    }
    Promise.resolve(result).then((value) => __hearthDone(seq, value), (error) => __hearthFail(seq, failure(error)));
  };
};
`;

/**
 * Isolates made ahead, with their context and prelude, by heap limit: a bind takes one and only compiles
 * and runs the function's module (~0.2 ms, where making an isolate and its context costs 1-4 ms).
 */
const SPARES_PER_LIMIT = 2;
const spares = new Map();

function newIsolate(memoryMiB) {
  return new ivm.Isolate({ memoryLimit: Math.max(MIN_HEAP_MIB, memoryMiB) });
}

/**
 * A module bound once in every spare context before a function's, so that V8's first-call work (compiling
 * __hearthBind, lazily, in each new isolate: ~70 µs) is done while the context is a spare, not in a bind.
 */
const WARM_MODULE = 'export default () => undefined;';
const refuseImports = () => {
  throw new Error('the warm-up module imports nothing');
};

/** A slot for an isolate and its context: the globals a function's console and outcome go through. */
function slotOf(isolate, context) {
  const jail = context.global;
  const slot = { isolate, context, bind: undefined, member: undefined };
  const route = (handle) => new ivm.Callback((...args) => slot.member?.[handle](...args), { ignored: true });
  jail.setSync('globalThis', jail.derefInto());
  jail.setSync('__hearthLog', route('onLog'));
  jail.setSync('__hearthDone', route('onDone'));
  jail.setSync('__hearthFail', route('onFail'));
  return slot;
}

/** For a bind that found no spare: all of it on this thread, now (~1.3 ms). */
function makeIsolate(memoryMiB) {
  const isolate = newIsolate(memoryMiB);
  const context = isolate.createContextSync();
  const slot = slotOf(isolate, context);
  context.evalSync(PRELUDE);
  slot.bind = context.global.getSync('__hearthBind', { reference: true });
  return slot;
}

/**
 * Where spares' isolates are made. `new ivm.Isolate` holds its caller's thread ~1 ms (V8 deserialises the
 * isolate's heap and isolated-vm's default context, synchronously; isolated-vm has no asynchronous way to
 * make one): made on this thread, a bind that arrived meanwhile waited for it (host alone, a bind 1 ms after
 * the previous function's answer: 1.1 ms there and back, against 0.3 ms 2 ms after it). This isolate, the
 * host's own (no function's code runs in it), holds isolated-vm's module and makes them in an async call,
 * on isolated-vm's threads; the isolate it returns is handed to this thread. One more small isolate per
 * host, made with the first spare.
 */
let factory;

function newIsolateElsewhere(memoryMiB) {
  if (factory === undefined) {
    const context = new ivm.Isolate({ memoryLimit: MIN_HEAP_MIB }).createContextSync();
    context.global.setSync('ivm', ivm);
    factory = context;
  }
  const made = factory;
  return made
    .evalClosure('return new ivm.Isolate({ memoryLimit: $0 });', [Math.max(MIN_HEAP_MIB, memoryMiB)], {
      result: { copy: false },
    })
    .catch((error) => {
      // A factory that failed once is made again for the next spare.
      if (factory === made) factory = undefined;
      throw error;
    });
}

/**
 * A spare, made off this thread: its isolate (newIsolateElsewhere), its context, the prelude and the
 * warm-up bind run on isolated-vm's own threads (the async calls), while this thread reads and binds; only
 * their completions come back here.
 */
async function makeSpare(memoryMiB) {
  const isolate = await newIsolateElsewhere(memoryMiB);
  try {
    const context = await isolate.createContext();
    const slot = slotOf(isolate, context);
    await context.eval(PRELUDE);
    slot.bind = await context.global.get('__hearthBind', { reference: true });
    const warm = await isolate.compileModule(WARM_MODULE, { filename: 'file:///hearth-warm-up.mjs' });
    await warm.instantiate(context, refuseImports);
    await warm.evaluate();
    const call = await slot.bind.apply(undefined, [warm.namespace.derefInto(), '', '{}'], {
      result: { reference: true },
    });
    call.release();
    warm.release();
    return slot;
  } catch (error) {
    if (!isolate.isDisposed) isolate.dispose();
    throw error;
  }
}

function takeIsolate(memoryMiB) {
  const ready = spares.get(memoryMiB);
  const slot = ready?.pop() ?? makeIsolate(memoryMiB);
  if (ready === undefined) spares.set(memoryMiB, []);
  refillWanted = true;
  refillLater();
  return slot;
}

/**
 * Making a spare once held this thread ~1 ms (new ivm.Isolate; now made elsewhere: newIsolateElsewhere),
 * and it still takes a core ~1.5 ms in all, so it is made where no frame of a cold start waits behind it: it once ran on the next immediate, before the Bound that
 * took the spare had left (2 of the bind's 2.26 ms over the socket). Now it is made right after the next
 * answer (Result or Error) has left, which is the function's first request once it is bound (its Invoke
 * follows the Bound within a millisecond, and would have waited), or, with no answer, once the host has
 * read no frame for REFILL_QUIET_MS (every frame read puts it back: the frame loop refreshes the timer).
 */
const REFILL_QUIET_MS = 20;
let refillTimer;
/** A spare was taken and is not made again yet. */
let refillWanted = false;

function refillLater() {
  if (refillTimer === undefined) refillTimer = setTimeout(refill, REFILL_QUIET_MS);
  else refillTimer.refresh();
}

/** After an answer: queued behind the outbox's flush (an immediate too, queued when the answer was). */
function refillAfterAnswer() {
  if (!refillWanted) return;
  refillWanted = false;
  setImmediate(refill);
}

/** Spares whose context is being made on isolated-vm's threads, by heap limit. */
const making = new Map();

/**
 * One spare at a time, so that a burst of refills does not take both cores from the binds. Once the whole
 * 1.4 ms of a spare held this thread, and in a burst of cold starts the next bind often arrived in the middle
 * of it (bench/isolate.mjs); then its `new ivm.Isolate` alone; now none of it (newIsolateElsewhere).
 */
function refill() {
  clearTimeout(refillTimer);
  refillTimer = undefined;
  for (const [memoryMiB, ready] of spares) {
    if (ready.length + (making.get(memoryMiB) ?? 0) >= SPARES_PER_LIMIT) continue;
    making.set(memoryMiB, (making.get(memoryMiB) ?? 0) + 1);
    makeSpare(memoryMiB).then(
      (slot) => {
        making.set(memoryMiB, making.get(memoryMiB) - 1);
        ready.push(slot);
      },
      (error) => {
        making.set(memoryMiB, making.get(memoryMiB) - 1);
        process.stderr.write(`a spare isolate could not be made: ${error?.message ?? error}\n`);
      },
    );
    refillWanted = true;
    refillLater();
    return;
  }
  refillWanted = false;
}

class Member {
  constructor(id, files) {
    this.id = id;
    this.files = files;
    this.isolate = undefined;
    this.slot = undefined;
    this.call = undefined;
    this.info = undefined;
    this.maxBody = Number.POSITIVE_INFINITY;
    this.inFlight = new Set();
    this.closing = false;
    this.ended = false;
    this.read = frameReader((type, seq, meta, body) => this.onFrame(type, seq, meta, body));
  }

  out(type, seq, meta, body) {
    if (this.ended) return;
    send(encodeRelayed(this.id, type, seq, meta, body));
    if (type === T_RESULT || type === T_ERROR) refillAfterAnswer();
    // The Bound leaves now, not on the next immediate (~50 µs of the cold start): nothing else of this
    // member's is coming to be batched with it, only the console lines its module wrote, already queued.
    else if (type === T_BOUND) flush();
  }

  onFrame(type, seq, meta, body) {
    if (type === T_BIND) this.bind(meta);
    else if (type === T_INVOKE) this.invoke(seq, meta, body);
    else if (type === T_SHUTDOWN) {
      this.closing = true;
      if (this.inFlight.size === 0) this.end({ code: 0 });
    }
  }

  bind(bind) {
    const started = performance.now();
    try {
      this.maxBody = bind.maxBodyBytes;
      this.info = {
        functionName: bind.functionName,
        namespace: bind.namespace,
        functionVersion: String(bind.version),
        memoryLimitInMB: bind.memoryMiB,
      };
      const spare = spares.get(bind.memoryMiB)?.length > 0;
      const slot = takeIsolate(bind.memoryMiB);
      const taken = performance.now();
      this.slot = slot;
      slot.member = this;
      this.isolate = slot.isolate;
      const { modulePath, exportName } = splitHandler(bind.handler);
      const entry = this.moduleFile(modulePath);
      if (entry === undefined)
        throw Object.assign(
          new Error(`module "${modulePath}" not found in the function folder (tried .mjs, .js)`),
          {
            name: 'HandlerNotFound',
          },
        );
      const module = this.compile(entry);
      module.instantiateSync(slot.context, (specifier, referrer) => this.resolve(specifier, referrer));
      const linked = performance.now();
      module.evaluateSync();
      const ran = performance.now();
      this.call = slot.bind.applySync(
        undefined,
        [module.namespace.derefInto(), exportName ?? '', JSON.stringify(this.info)],
        { result: { reference: true } },
      );
      // bindMs: the bind inside this process, and its steps (bench/isolate.mjs reports them beside the
      // platform's figure): taking an isolate (a spare, or one made now), compiling and linking the
      // modules, running them, finding the handler.
      const done = performance.now();
      this.out(T_BOUND, 0, {
        ok: true,
        eventFormat: 'hearth',
        bindMs: done - started,
        bindSteps: {
          spare,
          take: taken - started,
          compile: linked - taken,
          run: ran - linked,
          handler: done - ran,
        },
      });
    } catch (error) {
      this.out(T_BOUND, 0, { ok: false, error: describe(error) });
    }
    // After the Bound has left: what the bound function no longer needs.
    this.slot?.bind.release();
    this.slot = undefined;
    this.files = undefined;
    this.modules = undefined;
    this.paths = undefined;
  }

  moduleFile(path) {
    const clean = posix.normalize(path).replace(/^\.\//, '');
    for (const candidate of [clean, `${clean}.mjs`, `${clean}.js`, `${clean}/index.mjs`, `${clean}/index.js`])
      if (this.files?.[candidate] !== undefined) return candidate;
    return undefined;
  }

  compile(path) {
    this.modules ??= new Map();
    this.paths ??= new Map();
    const known = this.modules.get(path);
    if (known !== undefined) return known;
    const source = this.files[path];
    const module = this.isolate.compileModuleSync(
      path.endsWith('.json') ? `export default ${source};` : source,
      {
        filename: `file:///${path}`,
      },
    );
    this.modules.set(path, module);
    this.paths.set(module, path);
    return module;
  }

  resolve(specifier, referrer) {
    if (!specifier.startsWith('./') && !specifier.startsWith('../'))
      throw new Error(
        `"${specifier}" cannot be imported inside an isolate: only the function's own files (./…)`,
      );
    const from = posix.dirname(this.paths.get(referrer) ?? '');
    const target = this.moduleFile(posix.join(from, specifier));
    if (target === undefined) throw new Error(`"${specifier}" not found in the function folder`);
    return this.compile(target);
  }

  /**
   * Runs the handler's synchronous part on this thread (applySync: no hop to the isolate's thread and
   * back, a tenth of the cost of apply); its outcome comes back through onDone / onFail. An isolate has
   * no timers and no I/O, so its promises settle within the call's own microtasks.
   */
  invoke(seq, wire, body) {
    if (this.call === undefined) {
      this.out(T_ERROR, seq, { type: 'NotBound', message: 'invoked before it was bound' });
      return;
    }
    this.inFlight.add(seq);
    const [invocationId, method, path, rawQuery, rawHeaders, deadline] = wire;
    try {
      const headers = headerObject(rawHeaders);
      const parsed = eventBody(body, String(headers['content-type'] ?? '').toLowerCase());
      const bytes = parsed instanceof Uint8Array ? parsed : undefined;
      const event = JSON.stringify({
        method,
        path,
        query: parseQuery(rawQuery),
        rawQuery,
        headers,
        body: bytes === undefined ? parsed : null,
      });
      this.running = seq;
      // A handler that never yields is stopped at its deadline; until then it holds this host's thread.
      this.call.applySync(undefined, [seq, event, bytes, invocationId, deadline], {
        arguments: { copy: true },
        timeout: Math.max(1, deadline - Date.now()),
      });
    } catch (error) {
      this.onFail(seq, describe(error));
    } finally {
      this.running = 0;
    }
  }

  onLog(stream, text) {
    // The invocation running now, or the only one in flight; else the member's, untagged.
    const seq = this.running || (this.inFlight.size === 1 ? this.inFlight.values().next().value : 0);
    this.out(T_LOG, seq, stream, Buffer.from(String(text).slice(0, 512 * 1024), 'utf8'));
  }

  onDone(seq, value) {
    if (!this.inFlight.delete(seq)) return;
    try {
      const response = toResponse(value);
      if (response.body.length > this.maxBody)
        throw Object.assign(
          new Error(
            `the response body is ${response.body.length} bytes; limits.maxBody allows at most ${this.maxBody}`,
          ),
          { name: 'ResponseTooLarge' },
        );
      this.out(T_RESULT, seq, [response.status, response.headers], response.body);
    } catch (error) {
      this.out(T_ERROR, seq, describe(error));
    }
    this.settled();
  }

  onFail(seq, error) {
    if (!this.inFlight.delete(seq)) return;
    if (this.isolate?.isDisposed === true) {
      // The isolate passed its heap limit (isolated-vm disposed of it): the member is gone, as a process
      // the kernel killed at its memory limit would be; its neighbours go on.
      this.end({ signal: 'SIGKILL', outOfMemory: !this.killed });
      return;
    }
    this.out(T_ERROR, seq, {
      type: typeof error?.type === 'string' ? error.type : 'Error',
      message: String(error?.message ?? 'unknown error'),
      ...(typeof error?.stack === 'string' ? { stack: error.stack } : {}),
    });
    this.settled();
  }

  settled() {
    if (this.closing && this.inFlight.size === 0) this.end({ code: 0 });
  }

  kill() {
    this.killed = true;
    this.end({ signal: 'SIGKILL' });
  }

  end(exit) {
    if (this.ended) return;
    send(encodeFrame(T_RELAY, this.id, { exit }));
    this.ended = true;
    members.delete(this.id);
    this.call?.release();
    if (this.isolate !== undefined && !this.isolate.isDisposed) this.isolate.dispose();
  }
}

function splitHandler(handler) {
  const known = /\.(m?js|cjs)$/.test(handler);
  const lastDot = handler.lastIndexOf('.');
  const hasExport = !known && lastDot > handler.lastIndexOf('/');
  return hasExport
    ? { modulePath: handler.slice(0, lastDot), exportName: handler.slice(lastDot + 1) }
    : { modulePath: handler, exportName: undefined };
}

function describe(error) {
  if (error instanceof Error || (typeof error === 'object' && error !== null && 'message' in error))
    return {
      type: typeof error.name === 'string' ? error.name : 'Error',
      message: String(error.message).slice(0, 64 * 1024),
      ...(typeof error.stack === 'string' ? { stack: error.stack.slice(0, 64 * 1024) } : {}),
    };
  return { type: 'Error', message: String(error).slice(0, 64 * 1024) };
}

function headerObject(raw) {
  const headers = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    headers[name] = headers[name] === undefined ? raw[i + 1] : `${headers[name]}, ${raw[i + 1]}`;
  }
  return headers;
}

function parseQuery(raw) {
  const query = {};
  if (raw === '') return query;
  for (const [key, value] of new URLSearchParams(raw)) {
    const previous = query[key];
    if (previous === undefined) query[key] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else query[key] = [previous, value];
  }
  return query;
}

function eventBody(body, contentType) {
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
  return new Uint8Array(body);
}

/** The Node guest's mapping, for what an isolate can return: status objects, strings, bytes, JSON. */
function toResponse(value) {
  if (
    value !== null &&
    typeof value === 'object' &&
    !(value instanceof Uint8Array) &&
    'statusCode' in value
  ) {
    const status = Number(value.statusCode);
    if (!Number.isInteger(status) || status < 200 || status > 599)
      throw Object.assign(
        new Error(`statusCode must be an integer from 200 to 599, got ${JSON.stringify(value.statusCode)}`),
        {
          name: 'InvalidResponse',
        },
      );
    const headers = [];
    let contentType;
    for (const [name, v] of Object.entries(value.headers ?? {})) {
      if (v === undefined || v === null) continue;
      headers.push(name.toLowerCase(), String(v));
      if (name.toLowerCase() === 'content-type') contentType = String(v);
    }
    const raw = value.body;
    let body = EMPTY;
    if (typeof raw === 'string') body = Buffer.from(raw, value.isBase64Encoded === true ? 'base64' : 'utf8');
    else if (raw instanceof Uint8Array) body = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    else if (raw !== undefined && raw !== null) {
      body = Buffer.from(JSON.stringify(raw), 'utf8');
      contentType ??= 'application/json';
      if (!headers.includes('content-type')) headers.push('content-type', contentType);
    }
    if (contentType === undefined && body.length > 0)
      headers.push(
        'content-type',
        body[0] === 0x7b || body[0] === 0x5b ? 'application/json' : 'text/plain; charset=utf-8',
      );
    return { status, headers, body };
  }
  if (typeof value === 'string')
    return {
      status: 200,
      headers: ['content-type', 'text/plain; charset=utf-8'],
      body: Buffer.from(value, 'utf8'),
    };
  if (value instanceof Uint8Array)
    return {
      status: 200,
      headers: ['content-type', 'application/octet-stream'],
      body: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
    };
  if (value === undefined) return { status: 200, headers: [], body: EMPTY };
  return {
    status: 200,
    headers: ['content-type', 'application/json'],
    body: Buffer.from(JSON.stringify(value) ?? 'null', 'utf8'),
  };
}

const members = new Map();

const readFrames = frameReader((type, id, meta, body) => {
  if (type === T_SHUTDOWN && id === 0) {
    flush();
    process.exit(0);
  }
  if (type !== T_RELAY) return;
  if (meta !== null && meta !== undefined && meta.open !== undefined) {
    // The platform sends the files as the body (JSON), encoded once per code package.
    members.set(id, new Member(id, meta.open.files ?? JSON.parse(body.toString('utf8'))));
    return;
  }
  const member = members.get(id);
  if (member === undefined) return;
  if (meta !== null && meta !== undefined && meta.kill === true) member.kill();
  else member.read(body);
});
channel.on('data', (chunk) => {
  // A spare's making waits for a quiet moment (refillLater): traffic puts it back.
  refillTimer?.refresh();
  readFrames(chunk);
});
channel.on('end', () => process.exit(0));
channel.on('error', () => process.exit(1));
send(encodeFrame(T_READY, 0, { runtime: 'isolate-host', pid: process.pid, node: process.version }));
// The usual heap limit (limits.memory's default) is made ready first.
spares.set(128, []);
refillWanted = true;
refillLater();
