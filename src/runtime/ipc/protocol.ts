/**
 * @module The host side of the instance wire protocol: length-prefixed frames over the guest's fd 3.
 *
 * Written by hand because it is the hot path of every invocation: a frame is a 13-byte header, a small
 * JSON meta and the raw body bytes, so bodies are never base64-encoded or copied into JSON. The guests
 * (`node/guest/bootstrap.ts`, `python/guest/bootstrap.py`) carry their own copy of the codec because
 * guest code imports nothing from the platform.
 *
 *   u32 length of everything after this field (big-endian)
 *   u8  type
 *   u32 id      invocation sequence number on this instance; 0 for instance-level frames
 *   u32 metaLength
 *   meta        UTF-8 JSON
 *   body        raw bytes (the rest)
 */

import type { CloudEventAttributes } from '../../domain/deployment.js';

export const HEADER_BYTES = 13;

export const FrameType = {
  /** host → guest: bind this stem cell to one function's code. */
  Bind: 1,
  /** host → guest: run one invocation. */
  Invoke: 2,
  /** host → guest: finish in-flight work and exit. */
  Shutdown: 4,
  /** host → guest: the answer to a Call (`[ok, value | {type, message}]`). */
  Reply: 5,
  /** guest → host: the generic runtime is up and waiting for Bind. */
  Ready: 16,
  /** guest → host: the handler is loaded (or failed to load). */
  Bound: 17,
  /** guest → host: an invocation's response. */
  Result: 18,
  /** guest → host: an invocation's handler threw. */
  Error: 19,
  /** guest → host: a chunk of stdout/stderr written during an invocation. */
  Log: 20,
  /** guest → host: a call into the platform on behalf of an invocation (`[invocationSeq, method, args]`), e.g. ctx.state. */
  Call: 21,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  readonly type: number;
  readonly id: number;
  readonly meta: unknown;
  readonly body: Buffer;
}

const EMPTY = Buffer.alloc(0);

/**
 * Encodes frames back to back into one buffer, so a batch leaves in one write without a buffer per
 * frame, a second pass to measure the JSON, or a concat. Small batches come from Node's shared 8 KiB
 * pool; `take` hands the bytes over and starts a fresh buffer (the socket may still hold the old one).
 */
export class FrameWriter {
  private buffer = Buffer.allocUnsafe(WRITER_CHUNK);
  private length = 0;
  private count = 0;

  /** Appends a frame; returns how many frames are waiting. */
  add(type: FrameType, id: number, meta: unknown, body: Buffer = EMPTY): number {
    const start = this.length;
    if (meta !== undefined) {
      // The fast path writes the meta's JSON straight into the buffer; it declines (-1) anything unusual
      // or a buffer too short, and the general path below takes over.
      const metaEnd = writePlainJson(
        this.buffer,
        start + HEADER_BYTES,
        meta,
        this.buffer.length - body.length,
      );
      if (metaEnd > 0) return this.finish(type, id, start, metaEnd - start - HEADER_BYTES, body);
    }
    const metaText = meta === undefined ? '' : JSON.stringify(meta);
    // UTF-8 takes at most 3 bytes per UTF-16 unit; reserve that, write, then use the real length.
    const worst = HEADER_BYTES + metaText.length * 3 + body.length;
    if (this.length + worst > this.buffer.length) this.grow(worst);
    const metaLength = metaText.length === 0 ? 0 : this.buffer.write(metaText, start + HEADER_BYTES, 'utf8');
    return this.finish(type, id, start, metaLength, body);
  }

  /** Writes the header and the body around a meta already in place. */
  private finish(type: FrameType, id: number, start: number, metaLength: number, body: Buffer): number {
    this.buffer.writeUInt32BE(9 + metaLength + body.length, start);
    this.buffer.writeUInt8(type, start + 4);
    this.buffer.writeUInt32BE(id, start + 5);
    this.buffer.writeUInt32BE(metaLength, start + 9);
    if (body.length > 0) body.copy(this.buffer, start + HEADER_BYTES + metaLength);
    this.length = start + HEADER_BYTES + metaLength + body.length;
    this.count += 1;
    return this.count;
  }

  /** The encoded frames so far, or undefined when there are none. */
  take(): Buffer | undefined {
    if (this.length === 0) return undefined;
    const out = this.buffer.subarray(0, this.length);
    this.buffer = Buffer.allocUnsafe(WRITER_CHUNK);
    this.length = 0;
    this.count = 0;
    return out;
  }

  private grow(needed: number): void {
    const next = Buffer.allocUnsafe(Math.max(WRITER_CHUNK, this.length + needed));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }
}

/** Characters a JSON string may hold as they are: printable ASCII without `"` and `\`. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * Writes `value` as JSON at `offset`, byte for byte what JSON.stringify would give, when it is made only of
 * arrays, null/undefined, booleans, finite numbers and strings of printable ASCII without `"` or `\`, and
 * fits before `limit`. Returns the end offset, or -1 to decline. Invoke metas (an id, a method, a path,
 * header lines) nearly always qualify; for them this is cheaper than JSON.stringify followed by a UTF-8
 * write, on every request (bench/RESULTS.md). Written by hand because it is the hot path.
 */
export function writePlainJson(buffer: Buffer, offset: number, value: unknown, limit: number): number {
  const text = plainJsonText(value);
  if (text === undefined || offset + text.length > limit) return -1;
  return offset + buffer.write(text, offset, 'latin1');
}

function plainJsonText(value: unknown): string | undefined {
  if (typeof value === 'string') return PLAIN.test(value) ? `"${value}"` : undefined;
  if (Array.isArray(value)) {
    let text = '[';
    for (let i = 0; i < value.length; i++) {
      const item = plainJsonText(value[i]);
      if (item === undefined) return undefined;
      text += i === 0 ? item : `,${item}`;
    }
    return `${text}]`;
  }
  if (typeof value === 'number') return Number.isFinite(value) ? numberText(value) : undefined;
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return undefined;
}

let lastNumber = Number.NaN;
let lastNumberText = '';

/**
 * For finite numbers JSON's form is the number's own string form (1e+21, 0 for -0). The last one is kept:
 * the deadlines of requests that arrive in the same millisecond are the same 13-digit number.
 */
function numberText(value: number): string {
  // -0 === 0, and both are written as 0.
  if (value !== lastNumber) {
    lastNumber = value;
    lastNumberText = String(value);
  }
  return lastNumberText;
}

/** Below Node's pool threshold (poolSize / 2), so a fresh writer buffer is a slice of the shared pool. */
const WRITER_CHUNK = 4095;

/** Largest frame a guest may send; a bigger length prefix means the stream is corrupt. */
export const MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/**
 * Incremental decoder. Chunks arrive at socket granularity; a frame may span many chunks or a chunk
 * hold many frames. Pending chunks are concatenated only when a frame actually spans them.
 */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the pending data must reach before a frame can complete. */
  private needed = 0;

  /**
   * The last Result meta, as bytes and as its parsed value. A function answers with the same status and
   * headers nearly every time, so the JSON is parsed once and the value (frozen: it is shared) reused while
   * the bytes stay the same: a comparison instead of a decode and a parse per response.
   */
  private lastResultBytes: Buffer | undefined;
  private lastResult: unknown;

  constructor(private readonly onFrame: (frame: Frame) => void) {}

  push(chunk: Buffer): void {
    let buffer = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.needed) return;
      buffer = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let offset = 0;
    while (buffer.length - offset >= 4) {
      const length = buffer.readUInt32BE(offset);
      if (length < 9 || length > MAX_FRAME_BYTES) throw new Error(`corrupt frame length ${length}`);
      const end = offset + 4 + length;
      if (end > buffer.length) break;
      const metaLength = buffer.readUInt32BE(offset + 9);
      const metaStart = offset + HEADER_BYTES;
      const bodyStart = metaStart + metaLength;
      if (bodyStart > end) throw new Error('corrupt frame meta length');
      const type = buffer.readUInt8(offset + 4);
      const meta =
        type === FrameType.Result
          ? this.resultMeta(buffer, metaStart, bodyStart)
          : parseMeta(buffer, metaStart, bodyStart);
      this.onFrame({
        type,
        id: buffer.readUInt32BE(offset + 5),
        meta,
        body: buffer.subarray(bodyStart, end),
      });
      offset = end;
    }
    if (offset < buffer.length) {
      const rest = buffer.subarray(offset);
      this.pending = [rest];
      this.pendingBytes = rest.length;
      this.needed = rest.length >= 4 ? rest.readUInt32BE(0) + 4 : 4;
    }
  }

  private resultMeta(buffer: Buffer, start: number, end: number): unknown {
    const last = this.lastResultBytes;
    if (last !== undefined && last.length === end - start && last.compare(buffer, start, end) === 0)
      return this.lastResult;
    const meta = parseMeta(buffer, start, end);
    this.lastResultBytes = Buffer.from(buffer.subarray(start, end));
    this.lastResult = deepFreeze(meta);
    return meta;
  }
}

function parseMeta(buffer: Buffer, start: number, end: number): unknown {
  return end === start ? undefined : JSON.parse(buffer.toString('utf8', start, end));
}

function deepFreeze(value: unknown): unknown {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}

/** What the host sends to bind a stem cell to one function version. */
export interface BindMessage {
  readonly namespace: string;
  readonly functionName: string;
  readonly version: number;
  readonly handler: string;
  /** Paths as the guest sees them. */
  readonly codeDir: string;
  readonly depsDir: string | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly eventFormat: 'hearth' | 'lambda' | 'auto';
  readonly memoryMiB: number;
  readonly timeoutMs: number;
}

export interface BoundMessage {
  readonly ok: boolean;
  /** Python: whether the handler is a coroutine function and may run concurrently. */
  readonly concurrent?: boolean;
  readonly eventFormat?: 'hearth' | 'lambda';
  readonly error?: { readonly type: string; readonly message: string; readonly stack?: string };
}

export interface InvokeMeta {
  readonly invocationId: string;
  readonly method: string;
  readonly path: string;
  readonly rawQuery: string;
  /** Node's rawHeaders: names in their original case, `[name, value, name, value, ...]`. */
  readonly rawHeaders: readonly string[];
  /** Epoch milliseconds. */
  readonly deadline: number;
  readonly sourceIp: string;
  readonly event?: CloudEventAttributes;
  /** A continued trace, as the function should see it (its parent is the execution span); absent = derived from the id. */
  readonly traceparent?: string;
}

/**
 * How an Invoke frame's meta travels: `[invocationId, method, path, rawQuery, rawHeaders, deadline, sourceIp]`,
 * plus the CloudEvents attributes as an eighth element for an event (the body is then the event's data).
 */
export type InvokeWire =
  | readonly [string, string, string, string, readonly string[], number, string]
  | readonly [string, string, string, string, readonly string[], number, string, CloudEventAttributes]
  | readonly [
      string,
      string,
      string,
      string,
      readonly string[],
      number,
      string,
      CloudEventAttributes | null,
      string,
    ];

/** How a Result frame's meta travels: `[status, headers]`. */
export type ResultWire = readonly [number, readonly string[]];

export interface ResultMeta {
  readonly status: number;
  /** Flat `[name, value, ...]`; a name repeats for a multi-valued header such as set-cookie. */
  readonly headers: readonly string[];
}

export interface ErrorMeta {
  readonly type: string;
  readonly message: string;
  readonly stack?: string;
}

export interface LogMeta {
  /** 1 = stdout, 2 = stderr. */
  readonly s: 1 | 2;
}
