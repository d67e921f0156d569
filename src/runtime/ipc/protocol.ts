/**
 * @module The host side of the instance wire protocol: length-prefixed frames over the guest's fd 3.
 *
 * Written by hand because it is the hot path of every invocation: a frame is a 13-byte header, a small
 * JSON meta and the raw body bytes, so bodies are never base64-encoded or copied into JSON. The guests
 * (`node/guest/bootstrap.ts`, `python/guest/hearth_guest.py`) carry their own copy of the codec because
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
import type { EventFormat } from '../../domain/function.js';

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
  /**
   * guest → host: a streamed response begins (meta `[status, headers]`, checked like a Result's); its body
   * follows in StreamChunk frames and ends with StreamEnd (meta: nothing, or the error that cut it short).
   */
  StreamHead: 22,
  StreamChunk: 23,
  StreamEnd: 24,
  /**
   * Both ways, to and from a process that hosts many functions (`isolation: isolate`): the body is a
   * stream of frames of this protocol for the member `id`; meta is null for them, or a control object
   * (`{open}` and `{kill}` to the host, `{exit}` from it). See runtime/isolate.
   */
  Relay: 25,
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

/**
 * Largest instance-level or log frame a guest may send, and what a Result frame may add to its body for the
 * status and headers. A guest is untrusted: every frame is bounded before its bytes are kept (issue 21).
 */
export const CONTROL_FRAME_BYTES = 1024 * 1024;

/** Frames from this size up are read into one buffer allocated at their announced length, not gathered and joined. */
const LARGE_FRAME_BYTES = 256 * 1024;

/** A guest broke the wire protocol: the stream cannot be trusted any further. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export const FRAME_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(FrameType).map(([name, type]) => [type, name]),
);

/**
 * Incremental decoder. Chunks arrive at socket granularity; a frame may span many chunks or a chunk
 * hold many frames. Pending chunks are concatenated only when a frame actually spans them. Each frame
 * type has a largest length (`setLimit`), checked as soon as a frame's first 5 bytes are in, so an
 * oversized frame costs at most one socket read of buffering.
 */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the pending data must reach before a frame can complete. */
  private needed = 0;
  /** A large frame being filled in place, and how much of it has arrived. */
  private partial: Buffer | undefined;
  private filled = 0;
  private readonly limits: number[] = new Array<number>(256).fill(CONTROL_FRAME_BYTES);
  private readonly limitNotes: string[] = new Array<string>(256).fill('');

  /**
   * The last Result meta, as bytes and as its checked value. A function answers with the same status and
   * headers nearly every time, so the JSON is parsed and checked once and the value (frozen: it is shared)
   * reused while the bytes stay the same: a comparison instead of a decode, a parse and a check per response.
   */
  private lastResultBytes: Buffer | undefined;
  private lastResult: unknown;

  constructor(private readonly onFrame: (frame: Frame) => void) {}

  /** The largest length (everything after the length field) a frame of `type` may announce; `note` says why. */
  setLimit(type: FrameType, bytes: number, note: string): void {
    this.limits[type] = bytes;
    this.limitNotes[type] = note;
  }

  push(chunk: Buffer): void {
    let buffer = chunk;
    const partial = this.partial;
    if (partial !== undefined) {
      const take = Math.min(chunk.length, partial.length - this.filled);
      chunk.copy(partial, this.filled, 0, take);
      this.filled += take;
      if (this.filled < partial.length) return;
      this.partial = undefined;
      this.decode(partial);
      if (take === chunk.length) return;
      buffer = chunk.subarray(take);
    } else if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.needed) return;
      buffer = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    this.decode(buffer);
  }

  /** Emits every whole frame in `buffer` and keeps the rest for the next chunk. */
  private decode(buffer: Buffer): void {
    let offset = 0;
    while (buffer.length - offset >= 5) {
      const length = buffer.readUInt32BE(offset);
      const type = buffer.readUInt8(offset + 4);
      if (length < 9) throw new ProtocolError(`corrupt frame length ${length}`);
      if (length > (this.limits[type] as number)) throw this.tooLarge(type, length);
      const end = offset + 4 + length;
      if (end > buffer.length) break;
      const metaLength = buffer.readUInt32BE(offset + 9);
      const metaStart = offset + HEADER_BYTES;
      const bodyStart = metaStart + metaLength;
      if (bodyStart > end) throw new ProtocolError('corrupt frame meta length');
      let meta: unknown;
      try {
        meta =
          type === FrameType.Result || type === FrameType.StreamHead
            ? this.resultMeta(buffer, metaStart, bodyStart)
            : parseMeta(buffer, metaStart, bodyStart);
      } catch (error) {
        throw new ProtocolError(
          `a ${FRAME_NAMES[type] ?? `type ${type}`} frame's meta is not JSON (${(error as Error).message})`,
        );
      }
      this.onFrame({
        type,
        id: buffer.readUInt32BE(offset + 5),
        meta,
        body: buffer.subarray(bodyStart, end),
      });
      offset = end;
    }
    if (offset === buffer.length) return;
    const rest = buffer.subarray(offset);
    const total = rest.length >= 5 ? rest.readUInt32BE(0) + 4 : 5;
    if (total >= LARGE_FRAME_BYTES) {
      // Checked against the limit above; the pages are touched only as the bytes arrive.
      this.partial = Buffer.allocUnsafe(total);
      rest.copy(this.partial);
      this.filled = rest.length;
      return;
    }
    this.pending = [rest];
    this.pendingBytes = rest.length;
    this.needed = total;
  }

  private tooLarge(type: number, length: number): ProtocolError {
    const name = FRAME_NAMES[type] ?? `type ${type}`;
    const note = this.limitNotes[type];
    return new ProtocolError(
      `it sent a ${name} frame of ${length} bytes; at most ${this.limits[type]} bytes are accepted` +
        (note === '' || note === undefined ? '' : ` (${note})`),
    );
  }

  private resultMeta(buffer: Buffer, start: number, end: number): unknown {
    const last = this.lastResultBytes;
    if (last !== undefined && last.length === end - start && last.compare(buffer, start, end) === 0)
      return this.lastResult;
    const meta = checkResult(parseMeta(buffer, start, end));
    this.lastResultBytes = Buffer.from(buffer.subarray(start, end));
    this.lastResult = deepFreeze(meta);
    return meta;
  }
}

/**
 * Response headers that describe the connection or the message's framing, never the response: the
 * platform frames every response itself, so a function's copy, in any letter case, would split it.
 */
export const FRAMING_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'content-length',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** RFC 9110 `token`: what a field name may be made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What a field value may not hold: CR, LF, NUL and other controls but tab, and anything past one byte. */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * A Result meta as the platform may use it, or a string saying what is wrong with it. The guest is
 * untrusted (it can write frames on fd 3 itself, past the bootstrap): names are lower-cased, framing and
 * hop-by-hop headers are dropped whatever their case, and a name that is not a token, a value with CR, LF
 * or NUL, or a status outside 200-599 makes the whole response invalid (502, as node:http's own check did). Numbers are taken as their text,
 * as a Python handler's `{"X-Count": 5}` means.
 */
export function checkResult(meta: unknown): ResultWire | string {
  if (!Array.isArray(meta) || meta.length < 2 || !Array.isArray(meta[1]))
    return 'its meta is not [status, headers]';
  const status: unknown = meta[0];
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599)
    return `status ${JSON.stringify(status)} is not an integer from 200 to 599`;
  const raw = meta[1] as unknown[];
  if (raw.length % 2 !== 0) return 'its headers are not [name, value, ...] pairs';
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    let value = raw[i + 1];
    if (typeof name !== 'string' || !TOKEN.test(name))
      return `header name ${JSON.stringify(name)} is not a valid HTTP token`;
    if (typeof value === 'number' || typeof value === 'boolean') value = String(value);
    if (typeof value !== 'string' || BAD_VALUE.test(value))
      return `header ${name} has a value that is not valid in HTTP (${JSON.stringify(value)})`;
    const lower = name.toLowerCase();
    if (!FRAMING_HEADERS.has(lower)) headers.push(lower, value);
  }
  return [status, headers];
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
  /**
   * The code package's content hash: codeDir holds exactly that package's files, so whoever reads them on
   * the platform's side (an isolate host's sources) may keep them by it. Optional: the guests ignore it.
   */
  readonly codeHash?: string;
  readonly depsDir: string | undefined;
  readonly env: Readonly<Record<string, string>>;
  /** spec.eventFormat as given; the guest resolves `auto` and `lambda` (= `lambda-v2`). */
  readonly eventFormat: EventFormat;
  readonly memoryMiB: number;
  readonly timeoutMs: number;
  /** limits.maxBody: the largest response body the host accepts; the guest refuses a larger one itself. */
  readonly maxBodyBytes: number;
}

export interface BoundMessage {
  readonly ok: boolean;
  /** Python: whether the handler is a coroutine function and may run concurrently. */
  readonly concurrent?: boolean;
  /**
   * The convention in force, as the guest resolved it: `hearth`, `lambda-v2`, `lambda-v1`, `lambda-alb`,
   * `lambda-direct`, `lambda-stream`, `web`, `workers`, `openfaas`, `openfaas-classic`, `gcf`, `gcf-cloudevent`,
   * `fission` or `netlify`.
   */
  readonly eventFormat?: string;
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
  /** Direct invocation for this request, whatever the bound eventFormat (the Lambda Invoke API). */
  readonly direct?: boolean;
  /** The caller's identity for a function with `auth: key | jwt` (its `ctx.auth`); absent for public ones. */
  readonly auth?: Readonly<Record<string, unknown>> | undefined;
}

/**
 * How an Invoke frame's meta travels: `[invocationId, method, path, rawQuery, rawHeaders, deadline, sourceIp]`,
 * then, only as far as the last one that is set: the CloudEvents attributes (the body is then the event's
 * data), a traceparent, `1` for a direct invocation (the Lambda Invoke API), and the caller's identity
 * (`ctx.auth`); an element before a set one is `null` when unset.
 */
export type InvokeWire = readonly [
  string,
  string,
  string,
  string,
  readonly string[],
  number,
  string,
  (CloudEventAttributes | null)?,
  (string | null)?,
  (1 | null)?,
  Readonly<Record<string, unknown>>?,
];

/** Any one element of an Invoke frame's meta. */
export type InvokeWireElement = NonNullable<InvokeWire[number]> | null;

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
