/**
 * @module The wasm host (`runtime: wasm` with `isolation: isolate`): one sandboxed Node process running the
 * WebAssembly functions of ONE namespace, so a cold start is an instantiation in a process that is already
 * up, not a process of its own binding and compiling the module.
 *
 * fd 3 carries the platform's frame protocol in Relay frames, as the isolate host's does
 * (src/runtime/isolate/guest/isolate-host.mjs): id names a member (one function instance); meta null is that
 * member's own frames (Bind, Invoke, Shutdown in; Bound, Result, Error, Log out); `{open: {wasm: {hash,
 * file}}}` with the module's bytes as body (or none, when this host has that hash) opens a member,
 * `{kill: true}` ends it, `{exit}` says it ended.
 *
 * Modules are compiled once per content hash (the platform's sha-256 of the file) and kept; every request
 * runs on a fresh instance (WASI command) or the function's kept instance (exported function) in one of a
 * few worker threads (guest/wasm-worker.mts, running wasm-runner.mts), so a run past its deadline is ended
 * by terminating its worker while the others serve. A WASI command's first instance is made at its bind, on
 * the worker its first request will go to, while the platform turns the Bound round into that request.
 * Linear memory is capped per function by limits.memory (the memory's maximum).
 */

import { Socket } from 'node:net';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import {
  encodeFrame,
  encodeRelayed,
  frameOutbox,
  frameReader,
  T_BIND,
  T_ERROR,
  T_INVOKE,
  T_LOG,
  T_READY,
  T_RELAY,
  T_RESULT,
  T_SHUTDOWN,
} from './frames.mjs';
import { importMemory, parseHandler, warmModule } from './wasm-abi.mjs';
import type { FunctionInfo, Job, JobOutcome } from './wasm-runner.mjs';

const EMPTY = Buffer.alloc(0);
const PAGE = 64 * 1024;
/** Kept of limits.memory as in the per-process guest, so deploy's check and the cap are the same for both. */
const RUNTIME_RESERVE_MIB = 40;
const WASI_MODULE = 'wasi_snapshot_preview1';
/** The linear memory cap of the default limits.memory (128Mi, less the reserve). */
const DEFAULT_MAX_PAGES = ((128 - RUNTIME_RESERVE_MIB) * 1024 * 1024) / PAGE;
/**
 * A run is stopped at its deadline (its worker terminated at once, freeing the thread), but its error is
 * sent this much later, only if the platform has not ended the instance by then: the platform answers 504
 * at the deadline itself, and the host's error must not overtake it.
 */
const DEADLINE_GRACE_MS = 500;
/**
 * Worker threads per host: requests of the namespace's functions run on these, one at a time each. At least
 * 3, so that with one worker being replaced after a deadline and one held by a loop, one still serves.
 */
const WORKERS =
  Number.parseInt(process.env.HEARTH_WASM_WORKERS ?? '', 10) ||
  Math.max(3, Math.min(4, availableParallelism()));
const channel = new Socket({ fd: 3, readable: true, writable: true });
const { send, flush } = frameOutbox(channel);

// --- modules, compiled once per content hash ------------------------------------------------------------------

interface Compiled {
  readonly module: WebAssembly.Module;
  /** Instantiating it runs none of its code (no start function): a command's instance is made untimed. */
  readonly quietInstantiation: boolean;
  readonly minPages: number;
  readonly wasiNames: string[];
  readonly functions: ReadonlySet<string>;
}

/** Compiled modules by content hash. Never dropped: the platform remembers which hashes this host has. */
const compiled = new Map<string, Compiled>();

/**
 * Compiled lazily (this host starts with --wasm-lazy-compilation; the platform validated the module at
 * deploy): a function body is compiled on its first call, once for every instance and worker after it.
 */
function compile(hash: string, original: Uint8Array): Compiled {
  const known = compiled.get(hash);
  if (known !== undefined) return known;
  const { bytes, minPages, hasStart } = importMemory(original);
  if (minPages < 0) throw new Error('the module defines no memory');
  const module = new WebAssembly.Module(bytes);
  const entry: Compiled = {
    module,
    quietInstantiation: !hasStart,
    minPages,
    wasiNames: WebAssembly.Module.imports(module)
      .filter((item) => item.module === WASI_MODULE)
      .map((item) => item.name),
    functions: new Set(
      WebAssembly.Module.exports(module)
        .filter((item) => item.kind === 'function')
        .map((item) => item.name),
    ),
  };
  compiled.set(hash, entry);
  return entry;
}

// --- worker threads -----------------------------------------------------------------------------------------

interface Pending {
  readonly member: Member;
  readonly seq: number;
  readonly wire: Job['wire'];
  readonly body: Uint8Array;
}

/**
 * Runs posted to one worker before its earlier ones answered, when every worker is busy: the worker then goes
 * from one to the next without waiting for this thread, which under load is most of a run's cost. Only the
 * first is timed; the others are put back in the queue if the worker is ended.
 */
const PIPELINE = 4;

class Lane {
  readonly worker: Worker;
  /** Posted and not yet answered, in order; the first is running. */
  jobs: Pending[] = [];
  timer: NodeJS.Timeout | undefined;
  up = false;
  readonly members = new Set<number>();
  readonly hashes = new Set<string>();

  constructor() {
    this.worker = new Worker(new URL('./wasm-worker.mjs', import.meta.url), {
      // The JavaScript heap of a worker holds request copies and small objects; linear memories are
      // outside it and capped per function.
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 4 },
      stdout: false,
      stderr: false,
    });
    this.worker.on('message', (outcome: JobOutcome) => pool.done(this, outcome));
    this.worker.on('error', (error) => pool.lost(this, error));
    this.worker.on('exit', () => pool.lost(this, new Error('the worker thread exited')));
    this.worker.unref();
  }
}

class Pool {
  private lanes: Lane[] = [];
  private queue: Pending[] = [];
  private warming = 0;
  /** Workers that ended before their warm-up finished, in a row. */
  private failedStarts = 0;
  private onAllUp: (() => void) | undefined;

  start(count: number, onAllUp: () => void): void {
    this.onAllUp = onAllUp;
    for (let i = 0; i < count; i++) this.add();
  }

  /** Maximum page counts of the functions bound so far: each worker keeps memories of these sizes ready. */
  private readonly sizes = new Set<number>([DEFAULT_MAX_PAGES]);

  /** Tells the workers to keep memories of `maxPages` ready (a function with another limits.memory). */
  prepare(maxPages: number): void {
    if (this.sizes.has(maxPages)) return;
    this.sizes.add(maxPages);
    for (const lane of this.lanes) lane.worker.postMessage({ prepare: maxPages });
  }

  private add(): void {
    const lane = new Lane();
    this.lanes.push(lane);
    for (const maxPages of this.sizes) lane.worker.postMessage({ prepare: maxPages });
    this.warming += 1;
    // A warm run first: this thread's WASI and CGI code are compiled before a function's request needs them.
    lane.hashes.add('warm');
    lane.jobs = [{ member: WARM_MEMBER, seq: 0, wire: WARM_WIRE, body: EMPTY }];
    lane.worker.postMessage({ job: warmJob() });
  }

  /**
   * Makes a WASI command's first instance ahead, on the worker its first request will go to (an idle one;
   * none when every worker is busy). Only where instantiation runs none of the module's code (no start
   * function): nothing times a worker that is not running a request.
   */
  ready(member: Member): void {
    const info = member.info;
    const entry = info === undefined ? undefined : compiled.get(info.hash);
    if (info === undefined || entry === undefined || !info.command || !entry.quietInstantiation) return;
    const lane = this.laneFor(member.id);
    if (lane === undefined || lane.jobs.length > 0) return;
    lane.worker.postMessage({
      ready: { member: member.id, info, ...(lane.hashes.has(info.hash) ? {} : { module: entry.module }) },
    });
    lane.members.add(member.id);
    lane.hashes.add(info.hash);
  }

  submit(pending: Pending): void {
    const lane = this.laneFor(pending.member.id);
    if (lane === undefined) this.queue.push(pending);
    else this.run(lane, pending);
  }

  /**
   * An idle worker, one that already has the member's context when there is one (its kept instance); when
   * none is idle, the least loaded below PIPELINE; else none (the run waits in the queue).
   */
  private laneFor(member: number): Lane | undefined {
    let idle: Lane | undefined;
    let least: Lane | undefined;
    for (const lane of this.lanes) {
      if (!lane.up) continue;
      if (lane.jobs.length === 0) {
        if (lane.members.has(member)) return lane;
        idle ??= lane;
      } else if (lane.jobs.length < PIPELINE && (least === undefined || lane.jobs.length < least.jobs.length))
        least = lane;
    }
    return idle ?? least;
  }

  private run(lane: Lane, pending: Pending): void {
    const member = pending.member;
    const info = member.info as FunctionInfo;
    const body = new Uint8Array(pending.body);
    const job: Job = {
      member: member.id,
      seq: pending.seq,
      wire: pending.wire,
      body,
      ...(lane.members.has(member.id) ? {} : { info }),
      ...(lane.hashes.has(info.hash) ? {} : { module: (compiled.get(info.hash) as Compiled).module }),
    };
    lane.jobs.push(pending);
    lane.members.add(member.id);
    lane.hashes.add(info.hash);
    lane.worker.postMessage({ job }, [body.buffer]);
    if (lane.jobs.length === 1) this.arm(lane);
  }

  /** Times the worker's running job: at its deadline the worker is ended. */
  private arm(lane: Lane): void {
    const head = lane.jobs[0];
    if (head === undefined) return;
    lane.timer = setTimeout(() => this.expire(lane, head), Math.max(1, head.wire[5] - Date.now()));
  }

  done(lane: Lane, outcome: JobOutcome): void {
    const pending = lane.jobs.shift();
    if (lane.timer !== undefined) clearTimeout(lane.timer);
    if (!lane.up) {
      lane.up = true;
      this.failedStarts = 0;
      this.warming -= 1;
      lane.hashes.delete('warm');
      lane.worker.postMessage({ forget: 0 });
      if (this.warming === 0 && this.onAllUp !== undefined) {
        const up = this.onAllUp;
        this.onAllUp = undefined;
        up();
      }
    } else if (pending !== undefined) pending.member.answer(outcome);
    this.arm(lane);
    this.next(lane);
  }

  private next(lane: Lane): void {
    if (!lane.up || lane.jobs.length > 0 || this.queue.length === 0) return;
    // Waiting runs go to this worker, those whose member it knows first, up to PIPELINE.
    while (lane.jobs.length < PIPELINE && this.queue.length > 0) {
      let index = this.queue.findIndex((pending) => lane.members.has(pending.member.id));
      if (index < 0) index = 0;
      const [pending] = this.queue.splice(index, 1);
      if (pending !== undefined) this.run(lane, pending);
    }
  }

  /** A run past its deadline: its worker is ended (this interrupts wasm) and replaced. */
  private expire(lane: Lane, pending: Pending): void {
    if (lane.jobs[0] !== pending) return;
    this.replace(lane);
    this.timedOut(pending);
  }

  /** Says a run was stopped at its deadline, unless the platform ended the instance meanwhile. */
  timedOut(pending: Pending): void {
    setTimeout(
      () =>
        pending.member.fail(pending.seq, {
          type: 'Timeout',
          message: `the module ran past its deadline (limits.timeout ${pending.member.timeoutMs}ms) and was stopped`,
        }),
      DEADLINE_GRACE_MS,
    );
  }

  /** A worker that died (its JavaScript heap limit, a crash): its run fails, a new one takes its place. */
  lost(lane: Lane, error: Error): void {
    if (!this.lanes.includes(lane)) return;
    if (!lane.up) this.failedStarts += 1;
    if (this.failedStarts >= 3) {
      // Workers that cannot start would be replaced forever: the host ends, and the platform reports why.
      process.stderr.write(`wasm host: its worker threads do not start: ${error.message}\n`);
      process.exit(1);
    }
    const pending = lane.jobs[0];
    this.replace(lane);
    if (pending !== undefined && pending.member !== WARM_MEMBER)
      pending.member.fail(pending.seq, {
        type: 'WasmWorkerLost',
        message: `the run's worker thread ended: ${error.message}`,
      });
  }

  /** Ends a worker and starts another; the runs posted behind its first go back to the queue's front. */
  private replace(lane: Lane): void {
    this.lanes = this.lanes.filter((other) => other !== lane);
    const behind = lane.jobs.slice(1).filter((pending) => pending.member !== WARM_MEMBER);
    lane.jobs = [];
    if (lane.timer !== undefined) clearTimeout(lane.timer);
    if (!lane.up) this.warming -= 1;
    void lane.worker.terminate();
    this.add();
    this.queue = [...behind, ...this.queue];
    for (const other of this.lanes) this.next(other);
  }

  /** A member that ended: its queued runs are dropped, a run in progress is stopped, workers forget it. */
  forget(member: Member): void {
    this.queue = this.queue.filter((pending) => pending.member !== member);
    for (const lane of [...this.lanes]) {
      if (lane.jobs[0]?.member === member) {
        lane.jobs = lane.jobs.filter((pending, index) => index === 0 || pending.member !== member);
        this.replace(lane);
      } else if (lane.members.delete(member.id)) lane.worker.postMessage({ forget: member.id });
    }
  }
}

// --- members (function instances) --------------------------------------------------------------------------

interface Bind {
  namespace: string;
  functionName: string;
  version: number;
  handler: string;
  env: Record<string, string>;
  memoryMiB: number;
  timeoutMs: number;
  maxBodyBytes?: number;
}

function named(message: string, name: string): Error {
  return Object.assign(new Error(message), { name });
}

class Member {
  info: FunctionInfo | undefined;
  timeoutMs = 0;
  /** Why its bind failed: the platform answered the Bind itself (runtime/wasm/host.ts), so each invoke says. */
  private bindError: { type: string; message: string } | undefined;
  private readonly inFlight = new Set<number>();
  private closing = false;
  private ended = false;
  readonly read: (chunk: Buffer) => void;

  constructor(
    readonly id: number,
    private readonly hash: string,
    private readonly openError: string | undefined,
  ) {
    this.read = frameReader((type, seq, meta, body) => this.onFrame(type, seq, meta, body));
  }

  private out(type: number, seq: number, meta: unknown, body?: Uint8Array): void {
    if (!this.ended) send(encodeRelayed(this.id, type, seq, meta, body));
  }

  private onFrame(type: number, seq: number, meta: unknown, body: Buffer): void {
    if (type === T_INVOKE) {
      if (this.info === undefined) {
        this.out(
          T_ERROR,
          seq,
          this.bindError ?? { type: 'NotBound', message: 'invoked before it was bound' },
        );
        return;
      }
      this.inFlight.add(seq);
      pool.submit({ member: this, seq, wire: meta as Job['wire'], body });
    } else if (type === T_BIND) this.bind(meta as Bind);
    else if (type === T_SHUTDOWN) {
      this.closing = true;
      if (this.inFlight.size === 0) this.end({ code: 0 });
    }
  }

  private bind(bind: Bind): void {
    try {
      if (this.openError !== undefined) throw named(this.openError, 'WasmModuleInvalid');
      const target = compiled.get(this.hash);
      if (target === undefined) throw new Error('the host was not given this module');
      const { file, entry } = parseHandler(bind.handler);
      if (!target.functions.has(entry))
        throw named(`${file} exports no function "${entry}" (handler ${bind.handler})`, 'HandlerNotFound');
      const command = entry === '_start';
      if (!command && !target.functions.has('alloc'))
        throw named(
          `${file} exports no function "alloc": the exported-function ABI needs alloc(len) -> ptr`,
          'HandlerNotFound',
        );
      const maxPages = Math.floor(((bind.memoryMiB - RUNTIME_RESERVE_MIB) * 1024 * 1024) / PAGE);
      if (target.minPages > maxPages)
        throw named(
          `${file} starts with ${((target.minPages * PAGE) / 1024 ** 2).toFixed(1)} MiB of linear memory; limits.memory ${bind.memoryMiB}Mi leaves it ${Math.max(0, bind.memoryMiB - RUNTIME_RESERVE_MIB)} MiB: raise limits.memory`,
          'WasmMemoryLimit',
        );
      const env = {
        ...bind.env,
        HEARTH_FUNCTION: bind.functionName,
        HEARTH_NAMESPACE: bind.namespace,
        HEARTH_VERSION: String(bind.version),
      };
      this.timeoutMs = bind.timeoutMs;
      pool.prepare(maxPages);
      this.info = {
        id: this.id,
        hash: this.hash,
        file,
        entry,
        command,
        minPages: target.minPages,
        maxPages,
        env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
        maxBodyBytes: bind.maxBodyBytes ?? Number.MAX_SAFE_INTEGER,
        wasiNames: target.wasiNames,
      };
      // No Bound: the platform answered the Bind itself. The first request's instance is made now, while
      // the platform turns the Bound round into that request.
      pool.ready(this);
    } catch (error) {
      const failure = error as Error;
      this.bindError = { type: failure.name, message: failure.message };
    }
  }

  answer(outcome: JobOutcome): void {
    if (!this.inFlight.delete(outcome.seq)) return;
    // Logs first: the platform tags them with the invocation only while it is in flight.
    for (const [stream, text] of outcome.logs) this.out(T_LOG, outcome.seq, stream, text);
    if ('result' in outcome) {
      const [status, headers, body] = outcome.result;
      this.out(T_RESULT, outcome.seq, [status, headers], body);
    } else this.out(T_ERROR, outcome.seq, outcome.error);
    this.settled();
  }

  fail(seq: number, error: { type: string; message: string }): void {
    if (!this.inFlight.delete(seq)) return;
    this.out(T_ERROR, seq, error);
    this.settled();
  }

  private settled(): void {
    if (this.closing && this.inFlight.size === 0) this.end({ code: 0 });
  }

  end(exit: { code?: number; signal?: string }): void {
    if (this.ended) return;
    send(encodeFrame(T_RELAY, this.id, { exit }));
    this.ended = true;
    members.delete(this.id);
    pool.forget(this);
  }
}

// --- the warm-up module ---------------------------------------------------------------------------------------

const WARM_WIRE: Job['wire'] = [
  'warm',
  'POST',
  '/',
  'a=1',
  ['Host', 'localhost'],
  Date.now() + 3_600_000,
  '127.0.0.1',
];
const WARM_MEMBER = new Member(0, 'warm', undefined);

function warmJob(): Job {
  const warm = compile('warm', warmModule());
  const info: FunctionInfo = {
    id: 0,
    hash: 'warm',
    file: 'warm.wasm',
    entry: '_start',
    command: true,
    minPages: warm.minPages,
    maxPages: DEFAULT_MAX_PAGES,
    env: ['WARM=1'],
    maxBodyBytes: 1024,
    wasiNames: warm.wasiNames,
  };
  return { member: 0, seq: 0, wire: WARM_WIRE, body: EMPTY, info, module: warm.module };
}

// --- the frame loop -------------------------------------------------------------------------------------------

const members = new Map<number, Member>();
const pool = new Pool();

channel.on(
  'data',
  frameReader((type, id, meta, body) => {
    if (type === T_SHUTDOWN && id === 0) {
      flush();
      process.exit(0);
    }
    if (type !== T_RELAY) return;
    const control = meta as { open?: { wasm?: { hash: string } }; kill?: boolean } | null | undefined;
    if (control?.open?.wasm !== undefined) {
      const { hash } = control.open.wasm;
      let openError: string | undefined;
      try {
        if (!compiled.has(hash) && body.length > 0) compile(hash, body);
      } catch (error) {
        openError = `the module could not be compiled: ${(error as Error).message}`;
      }
      members.set(id, new Member(id, hash, openError));
      return;
    }
    const member = members.get(id);
    if (member === undefined) return;
    if (control?.kill === true) member.end({ signal: 'SIGKILL' });
    else member.read(body);
  }),
);
channel.on('end', () => process.exit(0));
channel.on('error', () => process.exit(1));

pool.start(WORKERS, () =>
  send(encodeFrame(T_READY, 0, { runtime: 'wasm-host', pid: process.pid, node: process.version })),
);
