/** @module HTTP plumbing shared by the gateway and the control API: bodies in, JSON and errors out. */

import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { ERROR_CATALOGUE, errorBody, HearthError, isHearthError } from '../domain/errors.js';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** What answering a request takes: node's ServerResponse has it, and so has the fast front's (fast-http.ts). */
export interface ResponseWriter {
  statusCode: number;
  statusMessage: string;
  readonly headersSent: boolean;
  writeHead(status: number, headers?: OutgoingHttpHeaders | string[]): unknown;
  end(body: string | Buffer, encoding?: BufferEncoding): unknown;
  destroy(): unknown;
}

/** Headers that describe one hop of the connection, not the response; never copied from a function. */
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

/** Reads the whole body, refusing more than `maxBytes` (413) before buffering it. */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) {
    return lingerThenRefuse(req, tooLarge(Number(declared), maxBytes));
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
        lingerThenRefuse(req, tooLarge(size, maxBytes)).catch(reject);
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
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

export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0)
    throw new HearthError('HEARTH_E_BAD_REQUEST', 'request body is empty; expected JSON');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new HearthError(
      'HEARTH_E_BAD_REQUEST',
      `request body is not valid JSON: ${(error as Error).message}`,
    );
  }
}
