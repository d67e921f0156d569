/**
 * @module The frame codec of the guests (the Node guest, the wasm guest and host, the isolate host), the
 * guest side of src/runtime/ipc/protocol.ts: u32 length | u8 type | u32 id | u32 metaLength | meta JSON |
 * body. Guests import nothing from the platform, so this one file is copied beside each guest by
 * scripts/build.mjs (tsconfig's rootDirs lets their `./frames.mjs` imports see it here).
 */

/** Frame types, as protocol.ts's FrameType numbers them. */
export const T_BIND = 1;
export const T_INVOKE = 2;
export const T_SHUTDOWN = 4;
export const T_REPLY = 5;
export const T_READY = 16;
export const T_BOUND = 17;
export const T_RESULT = 18;
export const T_ERROR = 19;
export const T_LOG = 20;
export const T_RELAY = 25;

const HEADER = 13;
const EMPTY = Buffer.alloc(0);
/** A Relay frame's meta when it carries a member's own frames. */
const RELAY_META = Buffer.from('null');

/** One frame in one buffer. */
export function encodeFrame(type: number, id: number, meta: unknown, body: Uint8Array = EMPTY): Buffer {
  const metaText = meta === undefined ? '' : JSON.stringify(meta);
  const metaLength = Buffer.byteLength(metaText);
  const frame = Buffer.allocUnsafe(HEADER + metaLength + body.length);
  frame.writeUInt32BE(9 + metaLength + body.length, 0);
  frame[4] = type;
  frame.writeUInt32BE(id, 5);
  frame.writeUInt32BE(metaLength, 9);
  frame.write(metaText, HEADER, 'utf8');
  if (body.length > 0) frame.set(body, HEADER + metaLength);
  return frame;
}

/** A Relay frame of member `member` holding one of its frames, built in one buffer (the per-response path). */
export function encodeRelayed(
  member: number,
  type: number,
  id: number,
  meta: unknown,
  body: Uint8Array = EMPTY,
): Buffer {
  const metaText = meta === undefined ? '' : JSON.stringify(meta);
  const metaLength = Buffer.byteLength(metaText);
  const inner = HEADER + metaLength + body.length;
  const frame = Buffer.allocUnsafe(HEADER + RELAY_META.length + inner);
  frame.writeUInt32BE(9 + RELAY_META.length + inner, 0);
  frame[4] = T_RELAY;
  frame.writeUInt32BE(member, 5);
  frame.writeUInt32BE(RELAY_META.length, 9);
  frame.set(RELAY_META, HEADER);
  const at = HEADER + RELAY_META.length;
  frame.writeUInt32BE(9 + metaLength + body.length, at);
  frame[at + 4] = type;
  frame.writeUInt32BE(id, at + 5);
  frame.writeUInt32BE(metaLength, at + 9);
  frame.write(metaText, at + HEADER, 'utf8');
  if (body.length > 0) frame.set(body, at + HEADER + metaLength);
  return frame;
}

export type FrameHandler = (type: number, id: number, meta: unknown, body: Buffer) => void;

/**
 * Splits a byte stream into frames, calling `onFrame` for each whole one; a partial frame waits for the
 * next chunk. A body is a view into the chunk: copy it to keep it past the call.
 */
export function frameReader(onFrame: FrameHandler): (chunk: Buffer) => void {
  let pending = EMPTY;
  return (chunk) => {
    const buffer = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let offset = 0;
    while (buffer.length - offset >= 4) {
      const end = offset + 4 + buffer.readUInt32BE(offset);
      if (end > buffer.length) break;
      const type = buffer[offset + 4] as number;
      const id = buffer.readUInt32BE(offset + 5);
      const metaLength = buffer.readUInt32BE(offset + 9);
      const metaStart = offset + HEADER;
      const meta: unknown =
        metaLength === 0 ? undefined : JSON.parse(buffer.toString('utf8', metaStart, metaStart + metaLength));
      offset = end;
      onFrame(type, id, meta, buffer.subarray(metaStart + metaLength, end));
    }
    // What is left is copied: the chunk's memory is not held for a frame's last bytes.
    pending = offset < buffer.length ? Buffer.from(buffer.subarray(offset)) : EMPTY;
  };
}

/**
 * Frames sent meanwhile, written together in one buffer (one write syscall for a burst of answers): at the
 * end of the tick by default, or when `later` runs the flush (the isolate host's answers arrive in
 * callbacks of their own, which an immediate gathers). `flush` writes what waits now (before an exit).
 */
export function frameOutbox(
  channel: { write(data: Buffer): unknown },
  later: (flush: () => void) => void = process.nextTick,
): {
  send(frame: Buffer): void;
  flush(): void;
} {
  let outbox: Buffer[] = [];
  const flush = (): void => {
    if (outbox.length === 0) return;
    const frames = outbox;
    outbox = [];
    channel.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
  };
  return {
    send(frame) {
      if (outbox.push(frame) === 1) later(flush);
    },
    flush,
  };
}
