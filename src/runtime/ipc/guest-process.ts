/** @module The host's handle on one guest process: frames in and out over fd 3, its stdio, and its exit. */

import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import {
  type BindMessage,
  type BoundMessage,
  CONTROL_FRAME_BYTES,
  type ErrorMeta,
  type Frame,
  FrameDecoder,
  FrameType,
  FrameWriter,
  type InvokeMeta,
  type InvokeWireElement,
  ProtocolError,
  type ResultMeta,
  type ResultWire,
} from './protocol.js';
import { SlotTable } from './slot-table.js';

export type GuestResult =
  | {
      readonly ok: true;
      readonly status: number;
      readonly headers: ResultMeta['headers'];
      readonly body: Buffer;
      /** A streamed response's body (`body` is then empty): chunks as the function writes them. */
      readonly stream?: Readable;
    }
  | { readonly ok: false; readonly error: ErrorMeta };

export interface GuestLog {
  /** Invocation sequence number on this process; 0 when written outside any invocation. */
  readonly seq: number;
  readonly stream: 'stdout' | 'stderr';
  readonly text: string;
}

export interface GuestExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Why the platform ended the process, when it broke the protocol (an oversized frame, say). */
  readonly violation?: string;
  /** The kernel killed a process of it for passing its memory limit (its cgroup's OOM count rose). */
  readonly outOfMemory?: boolean;
}

/**
 * Called once per invocation: with the guest's result, with GuestCrashedError if the process died, or with
 * InvalidResponseError if it answered with a response the platform will not pass on.
 */
export type GuestCallback = (
  error: GuestCrashedError | InvalidResponseError | undefined,
  result: GuestResult | undefined,
) => void;

const BATCH_FRAMES = 8;

/**
 * What one guest's output may cost the platform per second: records beyond either figure are counted and
 * dropped before they are decoded, and one stderr record then says how many. A function writing at full
 * speed otherwise had the platform's one thread decode and store tens of thousands of records a second,
 * which its neighbours' requests queued behind (the log flood of bench/abuse.mjs).
 */
export const LOG_RECORDS_PER_SECOND = 1000;
export const LOG_BYTES_PER_SECOND = 1024 * 1024;

/** A call may always carry this much: ctx.state's compare-and-set holds two values of up to 1 MiB of JSON. */
const MIN_CALL_BYTES = 4 * 1024 * 1024;

/** The guest's Result frame held a response no client may get: `message` says what (see checkResult). */
export class InvalidResponseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidResponseError';
  }
}

export class GuestCrashedError extends Error {
  constructor(readonly exit: GuestExit) {
    super(
      exit.violation !== undefined
        ? `the platform ended its process: ${exit.violation}`
        : exit.outOfMemory === true
          ? 'the kernel killed its process for passing its memory limit'
          : exit.signal === null
            ? `process exited with code ${exit.code}`
            : `process was killed by ${exit.signal}`,
    );
    this.name = 'GuestCrashedError';
  }
}

/**
 * Emits 'log' (GuestLog) and 'exit' (GuestExit). Invocations are multiplexed by sequence number, so a
 * Node guest serves many at once over one channel.
 */
/** A guest's call into the platform (ctx.state, ctx.invoke...), made on behalf of one invocation. */
export interface GuestCall {
  /** The calling invocation's sequence number (0 when made outside one). */
  readonly seq: number;
  readonly method: string;
  readonly args: unknown;
  /** Answers the call; exactly once. */
  reply(result: { ok: true; value: unknown } | { ok: false; error: { type: string; message: string } }): void;
}

/**
 * What a guest process is to its handle: a child process with fd 3, or a function inside a shared host
 * (`isolation: isolate`), which plays one with a stream of its own (runtime/isolate).
 */
export interface GuestChild {
  readonly pid?: number | undefined;
  readonly stdio: readonly unknown[];
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  once(event: 'error', listener: (error: Error) => void): unknown;
  kill(signal?: NodeJS.Signals): boolean;
}

export class GuestProcess extends EventEmitter<{
  log: [GuestLog];
  exit: [GuestExit];
  call: [GuestCall];
  relay: [number, unknown, Buffer];
}> {
  readonly ready: Promise<{ runtime: string; pid: number }>;
  private readonly channel: Socket;
  private readonly pending = new SlotTable<GuestCallback>();
  /** Streamed responses still being written, by invocation sequence number (keys are not reused while live). */
  private readonly streams = new Map<number, PassThrough>();
  private bindWaiter: ((message: BoundMessage) => void) | undefined;
  private readonly outbox = new FrameWriter();
  private exitInfo: GuestExit | undefined;
  private readonly decoder: FrameDecoder;
  private violation: string | undefined;
  /** This second's log budget (see LOG_RECORDS_PER_SECOND) and what was dropped beyond it. */
  private logWindowEndsAt = 0;
  private logRecords = 0;
  private logBytes = 0;
  private droppedRecords = 0;
  private droppedBytes = 0;
  /** V8 said its heap (sized from limits.memory) was exhausted: an out-of-memory end like the cgroup's. */
  private heapExhausted = false;
  /**
   * Set by the isolation: asked once, as the process exits, whether its memory limit killed it (the
   * cgroup is read before anything is told of the exit, and before it is removed).
   */
  outOfMemoryProbe: (() => boolean) | undefined;

  constructor(private readonly child: GuestChild | ChildProcess) {
    super();
    const channel: unknown = child.stdio[3];
    if (typeof channel !== 'object' || channel === null || !('write' in channel))
      throw new Error('guest started without an fd 3 channel');
    this.channel = channel as Socket;
    let markReady: (info: { runtime: string; pid: number }) => void = () => {};
    let failReady: (error: Error) => void = () => {};
    this.ready = new Promise((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    // Unobserved readiness failures are reported through 'exit'; avoid an unhandled rejection.
    this.ready.catch(() => {});
    const decoder = new FrameDecoder((frame) => this.onFrame(frame, markReady));
    this.decoder = decoder;
    this.channel.on('data', (chunk: Buffer) => {
      if (this.violation !== undefined) return;
      try {
        decoder.push(chunk);
      } catch (error) {
        this.violate(error instanceof ProtocolError ? error.message : `it broke the protocol (${error})`);
      }
    });
    this.channel.on('error', () => {});
    this.pipeOutput(child, 'stdout');
    this.pipeOutput(child, 'stderr');
    child.once('exit', (code, signal) => {
      // V8 writes why it gave up just before it aborts: wait (briefly) for that line to be read.
      const stderr = child.stderr;
      if ((code === 134 || signal === 'SIGABRT') && stderr !== null && !stderr.readableEnded) {
        let told = false;
        const tell = (): void => {
          if (told) return;
          told = true;
          this.onExit(code, signal, failReady);
        };
        stderr.once('end', tell);
        setTimeout(tell, 200).unref();
      } else this.onExit(code, signal, failReady);
    });
    child.once('error', () => this.kill('SIGKILL'));
  }

  /** The process's id; for a function in a shared host, the host's (read when asked: it is known at bind). */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** The process is gone: its in-flight invocations, streams and bind fail with why. */
  private onExit(
    code: number | null,
    signal: NodeJS.Signals | null,
    failReady: (error: Error) => void,
  ): void {
    const outOfMemory = this.outOfMemoryProbe?.() === true || this.heapExhausted;
    const exit: GuestExit = {
      code,
      signal,
      ...(this.violation === undefined ? {} : { violation: this.violation }),
      ...(outOfMemory ? { outOfMemory } : {}),
    };
    this.exitInfo = exit;
    const error = new GuestCrashedError(exit);
    failReady(error);
    const callbacks = this.pending.drain();
    for (const callback of callbacks) callback(error, undefined);
    for (const stream of this.streams.values()) stream.destroy(error);
    this.streams.clear();
    this.bindWaiter?.({ ok: false, error: { type: 'Crashed', message: error.message } });
    this.bindWaiter = undefined;
    this.emit('exit', exit);
  }

  get exited(): boolean {
    return this.exitInfo !== undefined;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  bind(message: BindMessage): Promise<BoundMessage> {
    return new Promise((resolve) => {
      if (this.exitInfo !== undefined) {
        resolve({
          ok: false,
          error: { type: 'Crashed', message: new GuestCrashedError(this.exitInfo).message },
        });
        return;
      }
      this.bindWaiter = resolve;
      // Bound from here on by the function's own limits: a response or an error up to its maxBody, a call
      // (a state value, ctx.invoke's event) up to that or the state store's limit, whichever is larger.
      const maxBody = message.maxBodyBytes;
      const resultNote = `limits.maxBody is ${maxBody} bytes, plus ${CONTROL_FRAME_BYTES} for the status and headers`;
      this.decoder.setLimit(FrameType.Result, maxBody + CONTROL_FRAME_BYTES, resultNote);
      this.decoder.setLimit(FrameType.Error, maxBody + CONTROL_FRAME_BYTES, resultNote);
      this.decoder.setLimit(FrameType.StreamHead, maxBody + CONTROL_FRAME_BYTES, resultNote);
      this.decoder.setLimit(FrameType.StreamChunk, maxBody + CONTROL_FRAME_BYTES, resultNote);
      this.decoder.setLimit(
        FrameType.Call,
        Math.max(maxBody, MIN_CALL_BYTES) + CONTROL_FRAME_BYTES,
        'limits.maxBody or 4 MiB, whichever is larger, plus 1 MiB',
      );
      this.write(FrameType.Bind, 0, message);
      // A cold start waits on the Bind alone: it leaves now, not at the end of the turn.
      this.flush();
    });
  }

  /**
   * Sends one invocation and returns its sequence number (which tags its logs). Callback-based rather
   * than a promise because this is the per-request hot path (measured in bench/RESULTS.md).
   */
  invoke(meta: InvokeMeta, body: Buffer, callback: GuestCallback): number {
    if (this.exitInfo !== undefined) {
      const error = new GuestCrashedError(this.exitInfo);
      process.nextTick(() => callback(error, undefined));
      return 0;
    }
    const seq = this.pending.add(callback);
    // Positional arrays, not objects, on the per-request frames: no key names to write and parse. The
    // optional elements go only as far as the last one set, so the common frame stays seven long.
    const wire: InvokeWireElement[] = [
      meta.invocationId,
      meta.method,
      meta.path,
      meta.rawQuery,
      meta.rawHeaders,
      meta.deadline,
      meta.sourceIp,
    ];
    const optional =
      meta.auth !== undefined
        ? 4
        : meta.direct === true
          ? 3
          : meta.traceparent !== undefined
            ? 2
            : meta.event !== undefined
              ? 1
              : 0;
    if (optional > 0) wire.push(meta.event ?? null);
    if (optional > 1) wire.push(meta.traceparent ?? null);
    if (optional > 2) wire.push(meta.direct === true ? 1 : null);
    if (meta.auth !== undefined) wire.push(meta.auth);
    this.write(FrameType.Invoke, seq, wire, body);
    return seq;
  }

  /**
   * Lets this guest send Relay frames (it hosts other functions' guests) of up to `bytes` each, and sends
   * one: `body` holds frames for member `id`, `meta` a control object or null.
   */
  acceptRelays(bytes: number): void {
    this.decoder.setLimit(FrameType.Relay, bytes, 'the largest limits.maxBody of an isolate, plus 1 MiB');
  }

  relay(id: number, meta: unknown, body?: Buffer, now = false): void {
    this.write(FrameType.Relay, id, meta, body);
    if (now) this.flush();
  }

  /** Forgets an invocation the host gave up on (timed out); a late result is dropped. */
  abandon(seq: number): void {
    this.pending.take(seq);
  }

  shutdown(): void {
    if (this.exitInfo === undefined) this.write(FrameType.Shutdown, 0, undefined);
  }

  /**
   * Ends a guest that broke the protocol: it is not read any further (an oversized frame is never
   * buffered), and its in-flight invocations fail with `reason`.
   */
  private violate(reason: string): void {
    if (this.violation !== undefined || this.exitInfo !== undefined) return;
    this.violation = reason;
    this.channel.pause();
    this.kill('SIGKILL');
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitInfo !== undefined) return;
    try {
      // bubblewrap runs the guest as its child; with --die-with-parent, killing bwrap takes the guest along.
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  waitForExit(): Promise<GuestExit> {
    const exit = this.exitInfo;
    if (exit !== undefined) return Promise.resolve(exit);
    return new Promise((resolve) => this.once('exit', resolve));
  }

  /**
   * Frames leave in small batches: every BATCH_FRAMES frames, or at the end of the event-loop turn for
   * fewer. Writing each at once costs a wakeup of the guest per request (the guest's CPU per request
   * fell by a quarter with batches of 4, and its read and write syscalls from 0.24 to 0.14 per request
   * with 8); batches of 16, or flushing only once per turn, made gateway and guest take turns instead of
   * working side by side (a convoy: less throughput). Measured in bench/RESULTS.md.
   */
  private write(type: FrameType, id: number, meta: unknown, body?: Buffer): void {
    if (this.exitInfo !== undefined) return;
    const waiting = this.outbox.add(type, id, meta, body);
    if (waiting >= BATCH_FRAMES) this.flush();
    else if (waiting === 1) setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    const data = this.outbox.take();
    if (data !== undefined && this.exitInfo === undefined) this.channel.write(data);
  };

  private onFrame(frame: Frame, markReady: (info: { runtime: string; pid: number }) => void): void {
    // Frames after a violation in the same read are not believed either.
    if (this.violation !== undefined) return;
    switch (frame.type) {
      case FrameType.Result: {
        const callback = this.pending.take(frame.id);
        if (callback === undefined) return;
        // The decoder checked the meta (checkResult): a string says what made the response invalid.
        if (typeof frame.meta === 'string') {
          callback(new InvalidResponseError(frame.meta), undefined);
          return;
        }
        const [status, headers] = frame.meta as ResultWire;
        callback(undefined, { ok: true, status, headers, body: frame.body });
        return;
      }
      case FrameType.StreamHead: {
        const callback = this.pending.take(frame.id);
        if (callback === undefined) return;
        if (typeof frame.meta === 'string') {
          callback(new InvalidResponseError(frame.meta), undefined);
          return;
        }
        const [status, headers] = frame.meta as ResultWire;
        const stream = new PassThrough();
        this.streams.set(frame.id, stream);
        // A client that went away stops the stream; the guest's later chunks are dropped.
        stream.once('close', () => this.streams.delete(frame.id));
        callback(undefined, { ok: true, status, headers, body: frame.body, stream });
        return;
      }
      case FrameType.StreamChunk:
        if (frame.body.length > 0) this.streams.get(frame.id)?.write(frame.body);
        return;
      case FrameType.StreamEnd: {
        const stream = this.streams.get(frame.id);
        if (stream === undefined) return;
        this.streams.delete(frame.id);
        if (frame.meta === undefined || frame.meta === null) stream.end();
        else {
          const { type, message } = errorMeta(frame.meta);
          stream.destroy(new Error(`${type}: ${message}`));
        }
        return;
      }
      case FrameType.Error: {
        const callback = this.pending.take(frame.id);
        if (callback === undefined) return;
        callback(undefined, { ok: false, error: errorMeta(frame.meta) });
        return;
      }
      case FrameType.Log:
        if (!this.withinLogBudget(frame.body.length)) return;
        this.emit('log', {
          seq: frame.id,
          stream: frame.meta === 2 ? 'stderr' : 'stdout',
          text: frame.body.toString('utf8'),
        });
        return;
      case FrameType.Call: {
        const [seq, method, args] = frame.meta as [number, string, unknown];
        const callId = frame.id;
        let answered = false;
        const call: GuestCall = {
          seq,
          method,
          args,
          reply: (result) => {
            if (answered) return;
            answered = true;
            this.write(
              FrameType.Reply,
              callId,
              result.ok ? [true, result.value ?? null] : [false, result.error],
            );
          },
        };
        if (this.listenerCount('call') === 0)
          call.reply({ ok: false, error: { type: 'Unsupported', message: `${method} is not available` } });
        else this.emit('call', call);
        return;
      }
      case FrameType.Relay:
        if (this.listenerCount('relay') === 0) this.violate('it sent a Relay frame but hosts no functions');
        else this.emit('relay', frame.id, frame.meta, frame.body);
        return;
      case FrameType.Ready:
        markReady(frame.meta as { runtime: string; pid: number });
        return;
      case FrameType.Bound: {
        const waiter = this.bindWaiter;
        this.bindWaiter = undefined;
        waiter?.(frame.meta as BoundMessage);
        return;
      }
      default:
        // An unknown frame means a guest from another version or a corrupt stream.
        this.violate(`it sent a frame of unknown type ${frame.type}`);
    }
  }

  private pipeOutput(child: GuestChild | ChildProcess, stream: 'stdout' | 'stderr'): void {
    // Output written straight to fd 1/2 (native code, subprocesses) bypasses the guest's capture.
    const source = child[stream];
    if (source === null) return;
    source.setEncoding('utf8');
    source.on('data', (text: string) => {
      if (stream === 'stderr' && text.includes('JavaScript heap out of memory')) this.heapExhausted = true;
      if (this.withinLogBudget(text.length)) this.emit('log', { seq: -1, stream, text });
    });
  }

  /** Whether a record of `bytes` fits this second's budget; counts it as dropped when not. */
  private withinLogBudget(bytes: number): boolean {
    const now = Date.now();
    if (now >= this.logWindowEndsAt) {
      this.logWindowEndsAt = now + 1000;
      this.logRecords = 0;
      this.logBytes = 0;
    }
    if (this.logRecords < LOG_RECORDS_PER_SECOND && this.logBytes + bytes <= LOG_BYTES_PER_SECOND) {
      this.logRecords += 1;
      this.logBytes += bytes;
      return true;
    }
    // Said once the second is over, whether or not the guest writes again.
    if (this.droppedRecords === 0) setTimeout(this.reportDroppedLogs, this.logWindowEndsAt - now).unref();
    this.droppedRecords += 1;
    this.droppedBytes += bytes;
    return false;
  }

  private readonly reportDroppedLogs = (): void => {
    const text = `[hearth] ${this.droppedRecords} records (${this.droppedBytes} bytes) of output dropped: over ${LOG_RECORDS_PER_SECOND} records or ${LOG_BYTES_PER_SECOND / 1024 ** 2} MiB a second for one instance\n`;
    this.droppedRecords = 0;
    this.droppedBytes = 0;
    this.emit('log', { seq: 0, stream: 'stderr', text });
  };
}

/** An Error frame's meta as the platform may use it: the guest may have written anything there. */
function errorMeta(meta: unknown): ErrorMeta {
  const { type, message, stack } = (typeof meta === 'object' && meta !== null ? meta : {}) as Record<
    string,
    unknown
  >;
  return {
    type: typeof type === 'string' ? type : 'Error',
    message: typeof message === 'string' ? message : String(message),
    ...(typeof stack === 'string' ? { stack } : {}),
  };
}
