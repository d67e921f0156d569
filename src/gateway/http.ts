/** @module HTTP plumbing shared by the gateway and the control API: bodies in, JSON and errors out. */

import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { ERROR_CATALOGUE, errorBody, HearthError, isHearthError } from '../domain/errors.js';
import { type ClientClosedEvent, clientClosedChannel } from '../domain/events.js';
import { formatBytes } from '../domain/units.js';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** What answering a request takes: node's ServerResponse has it, and so has the fast front's (fast-http.ts). */
export interface ResponseWriter {
  statusCode: number;
  statusMessage: string;
  readonly headersSent: boolean;
  writeHead(status: number, headers?: OutgoingHttpHeaders | string[]): unknown;
  end(body: string | Buffer, encoding?: BufferEncoding): unknown;
  /** A chunk of a streamed (chunked) body; the head leaves with the first. */
  write(chunk: Buffer): unknown;
  /** 'close': the connection is gone (or, for node's response, the response is done). */
  once(event: 'close', listener: () => void): unknown;
  destroy(): unknown;
}

/** What bounds a streamed response: the function's deadline, and a total size. */
export interface StreamBounds {
  readonly deadline: number;
  readonly maxBytes: number;
}

/**
 * A streamed body may pass limits.maxBody (that is what streaming is for) up to 20 MiB, Lambda's own default
 * for streamed responses; a larger maxBody raises it.
 */
export function streamBounds(deadline: number, maxBodyBytes: number): StreamBounds {
  return { deadline, maxBytes: Math.max(maxBodyBytes, 20 * 1024 * 1024) };
}

/**
 * Sends a streamed response's body as it arrives (the head is written, with `transfer-encoding: chunked`):
 * each chunk the function writes goes out at once. The function's deadline still bounds it, a client that
 * goes away stops it, and a stream the function cut short (it failed part way) ends the connection
 * without the last chunk, which is how HTTP/1.1 tells the client the body is incomplete.
 */
export function pipeStream(res: ResponseWriter, first: Buffer, stream: Readable, bounds: StreamBounds): void {
  const timer = setTimeout(
    () => stream.destroy(new Error('the function did not finish its streamed response by its deadline')),
    Math.max(0, bounds.deadline - Date.now()),
  );
  res.once('close', () => stream.destroy());
  // Written even when empty: the head leaves now, before the function's first chunk.
  res.write(first);
  let sent = first.length;
  stream.on('data', (chunk: Buffer) => {
    sent += chunk.length;
    if (sent > bounds.maxBytes) stream.destroy(new Error('the streamed response passed its size bound'));
    else res.write(chunk);
  });
  stream.once('end', () => {
    clearTimeout(timer);
    res.end('', 'latin1');
  });
  stream.once('error', () => {
    clearTimeout(timer);
    res.destroy();
  });
}

/** Headers that describe one hop of the connection, not the response; never copied from a function. */
/** The first value of header `lowerName` in Node's flat `[name, value, ...]` raw headers. */
export function rawHeaderValue(rawHeaders: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2)
    if ((rawHeaders[i] as string).toLowerCase() === lowerName) return rawHeaders[i + 1];
  return undefined;
}

/** The raw headers without header `lowerName` (every occurrence). */
export function withoutRawHeader(rawHeaders: readonly string[], lowerName: string): string[] {
  const kept: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2)
    if ((rawHeaders[i] as string).toLowerCase() !== lowerName)
      kept.push(rawHeaders[i] as string, rawHeaders[i + 1] as string);
  return kept;
}

export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);

/**
 * Reads the whole body, refusing more than `maxBytes` (413, worded by `refuse`: a function's maxBody by
 * default) before buffering it. A client that goes away mid-body rejects with a ClientClosedError.
 */
export function readBody(
  req: IncomingMessage,
  maxBytes: number,
  refuse: (size: number, maxBytes: number) => HearthError = tooLarge,
): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    return lingerThenRefuse(req, refuse(Number(declared), maxBytes));
  }
  if (declared === '0' || (declared === undefined && req.headers['transfer-encoding'] === undefined)) {
    return Promise.resolve(EMPTY);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        req.removeAllListeners('data');
        req.removeAllListeners('end');
        lingerThenRefuse(req, refuse(size, maxBytes)).catch(reject);
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)));
    req.once('error', (error) =>
      reject(
        isAbort(error)
          ? new ClientClosedError(size, declared === undefined ? undefined : Number(declared))
          : error,
      ),
    );
  });
}

/**
 * The client closed its connection before its request body ended. That is the client's doing, not a
 * platform fault: sendError counts it and logs it at debug level (issue 19), and nobody is left to answer.
 */
export class ClientClosedError extends HearthError {
  constructor(
    readonly received: number,
    declared: number | undefined,
  ) {
    super(
      'HEARTH_E_BAD_REQUEST',
      `the client closed the connection after ${received}${declared === undefined ? '' : ` of ${declared}`} body bytes`,
      { details: { received, ...(declared === undefined ? {} : { declared }) } },
    );
  }
}

/** node:http's error on a request whose connection closed mid-body ("aborted", ECONNRESET). */
function isAbort(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error as NodeJS.ErrnoException).code === 'ECONNRESET' &&
    error.message === 'aborted'
  );
}

/**
 * True (and published on `hearth:client-closed`) when `error` means the client went away mid-request;
 * for failures reported outside sendError, such as a streamed deploy's.
 */
export function clientClosed(error: unknown, req: IncomingMessage | undefined): boolean {
  if (!(error instanceof ClientClosedError) && !isAbort(error)) return false;
  if (clientClosedChannel.hasSubscribers) {
    const url = req?.url ?? '';
    const query = url.indexOf('?');
    clientClosedChannel.publish({
      method: req?.method ?? 'GET',
      path: query < 0 ? url : url.slice(0, query),
      receivedBytes: error instanceof ClientClosedError ? error.received : undefined,
    } satisfies ClientClosedEvent);
  }
  return true;
}

const EMPTY = Buffer.alloc(0);

/** How long an oversized upload is read and discarded before the 413 goes out anyway. */
const LINGER_MS = 2000;

/**
 * Like nginx's lingering close: answering 413 and closing while the client is still sending makes its
 * kernel reset the connection, and most clients then report "socket closed" instead of our JSON error.
 * So the rest of the upload is read and dropped (briefly, and never buffered) before the answer.
 */
function lingerThenRefuse(req: IncomingMessage, error: HearthError): Promise<Buffer> {
  return new Promise((_resolve, reject) => {
    const refuse = (): void => {
      clearTimeout(timer);
      reject(error);
    };
    const timer = setTimeout(refuse, LINGER_MS);
    req.once('end', refuse);
    req.once('error', refuse);
    req.resume();
  });
}

export function tooLarge(size: number, maxBytes: number): HearthError {
  return new HearthError(
    'HEARTH_E_BODY_TOO_LARGE',
    `request body is ${size} bytes or more; this function accepts at most ${maxBytes} bytes (limits.maxBody)`,
    {
      details: { field: 'limits.maxBody', value: size, expected: `at most ${maxBytes} bytes` },
    },
  );
}

/** The control API's own body limit (its manifests and requests), not a function's `limits.maxBody`. */
export function apiBodyTooLarge(size: number, maxBytes: number): HearthError {
  return new HearthError(
    'HEARTH_E_BODY_TOO_LARGE',
    `request body is ${size} bytes or more; this API endpoint accepts at most ${formatBytes(maxBytes)}B`,
    { details: { limit: maxBytes, value: size, expected: `at most ${maxBytes} bytes` } },
  );
}

export function sendJson(
  res: ResponseWriter,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

/**
 * Answers any failure as `{error:{code,message,invocationId}}` with the catalogue's status. Errors that
 * are not HearthErrors are internal: the client gets a generic message, `onInternal` gets the detail.
 */
export function sendError(
  res: ResponseWriter,
  error: unknown,
  invocationId?: string,
  onInternal?: (error: unknown) => void,
): void {
  let failure: HearthError;
  if (clientClosed(error, 'req' in res ? (res as ServerResponse).req : undefined)) {
    // Never sent (nobody is left to read it); nginx's "client closed request", for whoever records the status.
    res.statusCode = 499;
    res.destroy();
    return;
  }
  if (isHearthError(error)) failure = error;
  else {
    onInternal?.(error);
    failure = new HearthError(
      'HEARTH_E_INTERNAL',
      'an internal error occurred; the platform log has the details',
    );
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  if (invocationId !== undefined) headers['x-hearth-invocation-id'] = invocationId;
  if (failure.retryAfter !== undefined) headers['retry-after'] = String(failure.retryAfter);
  if (failure.headers !== undefined) Object.assign(headers, failure.headers);
  if (failure.code === 'HEARTH_E_BODY_TOO_LARGE') headers.connection = 'close';
  sendJson(res, ERROR_CATALOGUE[failure.code].status, errorBody(failure, invocationId), headers);
}

/** How deep a JSON body the control API takes; resources nest about 6 levels (docs/errors.md). */
export const MAX_JSON_DEPTH = 64;

/** Reads and parses a control-API JSON body of at most `maxBytes` (see parseJsonBody). */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  return parseJsonBody(await readBody(req, maxBytes, apiBodyTooLarge));
}

/**
 * Parses a JSON body, refusing (400) bytes that are not UTF-8 — decoding would turn them into U+FFFD and
 * store that — and nesting deeper than MAX_JSON_DEPTH, checked by a scan before any recursion could
 * overflow the stack on it (issue 19).
 */
export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0)
    throw new HearthError('HEARTH_E_BAD_REQUEST', 'request body is empty; expected JSON');
  if (!isUtf8(body)) {
    const offset = firstInvalidUtf8(body);
    throw new HearthError(
      'HEARTH_E_BAD_REQUEST',
      `request body is not valid UTF-8: byte ${offset} (0x${(body[offset] ?? 0).toString(16).padStart(2, '0')}) starts no valid character; JSON must be UTF-8`,
      { details: { offset, expected: 'UTF-8 text' } },
    );
  }
  const deepAt = tooDeepAt(body, MAX_JSON_DEPTH);
  if (deepAt >= 0)
    throw new HearthError(
      'HEARTH_E_BAD_REQUEST',
      `request body nests JSON more than ${MAX_JSON_DEPTH} levels deep (at byte ${deepAt}); the API accepts at most ${MAX_JSON_DEPTH}`,
      { details: { offset: deepAt, limit: MAX_JSON_DEPTH } },
    );
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new HearthError(
      'HEARTH_E_BAD_REQUEST',
      `request body is not valid JSON: ${(error as Error).message}`,
    );
  }
}

/** Offset of the first `[` or `{` nested deeper than `limit` outside strings, or -1. One pass, no recursion. */
export function tooDeepAt(body: Uint8Array, limit: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i] as number;
    if (inString) {
      if (byte === 0x5c)
        i++; // backslash: the next byte is escaped
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) inString = true;
    else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > limit) return i;
    } else if (byte === 0x5d || byte === 0x7d) depth--;
  }
  return -1;
}

/**
 * Offset of the first byte that does not begin a well-formed UTF-8 sequence (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF), or -1. Only called once isUtf8 has said there is one.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i] as number;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let length: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) low = 0xa0;
      else if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) low = 0x90;
      else if (lead === 0xf4) high = 0x8f;
    } else return i;
    for (let k = 1; k < length; k++) {
      const next = bytes[i + k];
      const min = k === 1 ? low : 0x80;
      const max = k === 1 ? high : 0xbf;
      if (next === undefined || next < min || next > max) return i;
    }
    i += length;
  }
  return -1;
}
