/** @module A raw HTTP/1.1 client for tests that must control every byte: pipelining, odd heads, packet splits. */

import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Record<string, string>;
  readonly body: string;
  /** The head as it arrived, status line and header lines, for tests of repeated or forged headers. */
  readonly head: string;
}

/**
 * Connects, writes `parts` (30 ms apart, so each can arrive as its own packet) and reads back `count`
 * responses, or what came before the server closed. `bodiless` is for HEAD: lengths without bodies.
 */
export async function exchange(
  port: number,
  parts: readonly string[],
  count: number,
  bodiless = false,
): Promise<{ answers: RawAnswer[]; closed: boolean; socket: Socket }> {
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const answers: RawAnswer[] = [];
  let closed = false;
  const done = new Promise<void>((resolve) => {
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const headEnd = pending.indexOf('\r\n\r\n');
        if (headEnd < 0) break;
        const head = pending.toString('latin1', 0, headEnd);
        const [statusLine = '', ...lines] = head.split('\r\n');
        const headers: Record<string, string> = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
        }
        const length = bodiless ? 0 : Number(headers['content-length'] ?? 0);
        if (pending.length < headEnd + 4 + length) break;
        answers.push({
          status: Number(statusLine.split(' ')[1]),
          headers,
          body: pending.toString('utf8', headEnd + 4, headEnd + 4 + length),
          head,
        });
        pending = pending.subarray(headEnd + 4 + length);
      }
      if (answers.length >= count) resolve();
    });
    socket.on('close', () => {
      closed = true;
      resolve();
    });
  });
  for (const [index, part] of parts.entries()) {
    if (index > 0) await new Promise((resolve) => setTimeout(resolve, 30));
    socket.write(part);
  }
  await done;
  return { answers, closed, socket };
}
