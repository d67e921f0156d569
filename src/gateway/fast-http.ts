/**
 * @module The invocation path's own HTTP/1.1 front. On this machine node:http spends 17–21 µs of CPU on
 * answering a request, and a lean parser about 13 (the warm section of bench/RESULTS.md); the invocation
 * path is the product, so its common case is parsed here by hand: a `/function/` request with no body or
 * a small Content-Length body, over a keep-alive connection.
 *
 * Everything else goes to node:http on the same connection, at a request boundary and before any of that
 * request's bytes are consumed: the control API, the dashboard, chunked or large bodies, `Expect`,
 * `Upgrade`, `HEAD`, HTTP/1.0, and anything this parser does not fully understand (odd bytes, folded or
 * malformed headers, a missing Host). node:http (llhttp) then judges that request as it always did, so
 * the strictness of the front never drops below node's own.
 */

import type { OutgoingHttpHeaders, Server } from 'node:http';
import { STATUS_CODES, validateHeaderName, validateHeaderValue } from 'node:http';
import type { Socket } from 'node:net';
import { type ClientClosedEvent, clientClosedChannel } from '../domain/events.js';

/** node:http's default limit on a request's head; a longer head goes to node, which answers 431. */
const MAX_HEAD_BYTES = 16 * 1024;
/** Bodies up to this size are buffered here; larger ones are streamed by node:http and its body reader. */
const MAX_FAST_BODY_BYTES = 64 * 1024;
/** HEAD is left to node: its responses must drop the body while keeping the length. */
const FAST_METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** A request-target of visible ASCII only; anything else is for llhttp to judge. */
const ODD_TARGET = /[^\x21-\x7e]/;
/** Control bytes other than HTAB, or a CR or LF that is not part of a CRLF, anywhere in the header lines. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control bytes is this pattern's job
const ODD_HEADER_BYTES = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const DIGITS = /^\d+$/;
const EMPTY = Buffer.alloc(0);

/** A request this front read whole: the head, the body, and the client's address. */
export interface BufferedRequest {
  readonly method: string;
  readonly url: string;
  /** Names as sent, values without surrounding whitespace: the same as node's `rawHeaders`. */
  readonly rawHeaders: string[];
  readonly socket: { readonly remoteAddress: string };
  readonly body: Buffer;
}

export type FastRoute = (req: BufferedRequest, res: FastResponse) => void;

export interface FastFrontOptions {
  /** Requests whose target starts with this go to `route`; all others to the server's own handler. */
  readonly prefix: string;
  readonly route: FastRoute;
  readonly keepAliveTimeoutMs: number;
  readonly headersTimeoutMs: number;
  /**
   * The server is a node:https one: the front takes each connection once its TLS handshake is done
   * ('secureConnection', the event node:https serves HTTP from), and reads the decrypted stream.
   */
  readonly secure?: boolean;
}

interface Head {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly contentLength: number;
  readonly close: boolean;
}

/**
 * Puts the fast front before `server`'s own connection handling. The server keeps listening, closing and
 * serving everything the front hands over; `closeAllConnections`/`closeIdleConnections` reach the front's
 * connections too.
 */
export function installFastFront(server: Server, options: FastFrontOptions): void {
  const event = options.secure === true ? 'secureConnection' : 'connection';
  const nodeListeners = server.listeners(event) as ((socket: Socket) => void)[];
  server.removeAllListeners(event);
  const connections = new Set<FastConnection>();
  const front: Front = {
    options,
    connections,
    handOff: (socket) => {
      for (const listener of nodeListeners) listener.call(server, socket);
    },
  };
  server.on(event, (socket: Socket) => {
    connections.add(new FastConnection(socket, front));
  });
  const closeAll = server.closeAllConnections.bind(server);
  server.closeAllConnections = () => {
    for (const connection of connections) connection.socket.destroy();
    closeAll();
  };
  const closeIdle = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => {
    for (const connection of connections) if (connection.idle) connection.socket.destroy();
    closeIdle();
  };
  // One coarse sweep for idle and slow connections instead of a timer per request.
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const connection of connections) connection.expire(now);
  }, 1000);
  sweeper.unref();
  server.once('close', () => clearInterval(sweeper));
}

interface Front {
  readonly options: FastFrontOptions;
  readonly connections: Set<FastConnection>;
  readonly handOff: (socket: Socket) => void;
}

class FastConnection {
  /** Bytes received and not yet parsed. */
  private pending: Buffer | undefined;
  /** A request is being served; the next one waits, so responses leave in request order. */
  private busy = false;
  private parsing = false;
  private clientEnded = false;
  private lastActive = Date.now();
  /** When the oldest unparsed byte arrived: a head must be complete within the headers timeout. */
  private pendingSince = 0;
  private readonly peer: { readonly remoteAddress: string };

  constructor(
    readonly socket: Socket,
    private readonly front: Front,
  ) {
    this.peer = { remoteAddress: socket.remoteAddress ?? '' };
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  get idle(): boolean {
    return !this.busy && this.pending === undefined;
  }

  /** Closes a connection idle past the keep-alive timeout, or still sending one head past the headers timeout. */
  expire(now: number): void {
    if (this.busy) return;
    if (this.pending === undefined) {
      if (now - this.lastActive > this.front.options.keepAliveTimeoutMs) this.socket.destroy();
    } else if (now - this.pendingSince > this.front.options.headersTimeoutMs) this.socket.destroy();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.lastActive = Date.now();
    if (this.pending === undefined) {
      this.pending = chunk;
      this.pendingSince = this.lastActive;
    } else this.pending = Buffer.concat([this.pending, chunk]);
    if (!this.busy) this.parse();
    // A client pipelining faster than its requests are served is read no further until they are.
    else if (this.pending.length > MAX_HEAD_BYTES + MAX_FAST_BODY_BYTES) this.socket.pause();
  };

  private readonly onEnd = (): void => {
    this.clientEnded = true;
    if (!this.busy) this.socket.end();
  };

  private readonly onError = (): void => {
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.front.connections.delete(this);
    // A whole head with part of its body: the client hung up mid-body. Counted like node:http's (issue 19).
    const pending = this.pending;
    if (pending === undefined || this.busy || !clientClosedChannel.hasSubscribers) return;
    const headEnd = pending.indexOf(HEAD_END);
    if (headEnd < 0) return;
    const [method = 'GET', url = '/'] = pending.toString('latin1', 0, pending.indexOf('\r\n')).split(' ');
    clientClosedChannel.publish({
      method,
      path: url.split('?')[0] ?? url,
      receivedBytes: pending.length - headEnd - 4,
    } satisfies ClientClosedEvent);
  };

  private parse(): void {
    this.parsing = true;
    try {
      this.parseRequests();
    } finally {
      this.parsing = false;
    }
  }

  private parseRequests(): void {
    while (!this.busy && this.pending !== undefined && !this.socket.destroyed) {
      const buffer = this.pending;
      const headEnd = buffer.indexOf(HEAD_END);
      if (headEnd < 0) {
        if (buffer.length > MAX_HEAD_BYTES) this.handOff();
        break;
      }
      const head =
        headEnd <= MAX_HEAD_BYTES
          ? parseHead(buffer.toString('latin1', 0, headEnd), this.front.options.prefix)
          : undefined;
      if (head === undefined) {
        this.handOff();
        break;
      }
      const end = headEnd + 4 + head.contentLength;
      if (buffer.length < end) break;
      const body = head.contentLength === 0 ? EMPTY : buffer.subarray(headEnd + 4, end);
      this.pending = end === buffer.length ? undefined : buffer.subarray(end);
      if (this.pending !== undefined) this.pendingSince = Date.now();
      this.busy = true;
      this.front.options.route(
        { method: head.method, url: head.url, rawHeaders: head.rawHeaders, socket: this.peer, body },
        new FastResponse(this, head.close),
      );
    }
  }

  /** Called once per request by its response. */
  respond(
    head: string,
    body: string | Buffer | undefined,
    encoding: BufferEncoding,
    closeAfter: boolean,
  ): void {
    const socket = this.socket;
    if (!socket.destroyed) {
      if (body === undefined || body.length === 0) socket.write(head, 'latin1');
      else if (typeof body === 'string' && encoding === 'latin1') socket.write(head + body, 'latin1');
      else {
        socket.cork();
        socket.write(head, 'latin1');
        if (typeof body === 'string') socket.write(body, encoding);
        else socket.write(body);
        socket.uncork();
      }
    }
    this.lastActive = Date.now();
    if (closeAfter || this.clientEnded) {
      this.pending = undefined;
      socket.end();
      return;
    }
    this.busy = false;
    if (socket.isPaused()) socket.resume();
    if (this.parsing || this.pending === undefined) return;
    if (socket.writableNeedDrain) socket.once('drain', () => this.parse());
    else this.parse();
  }

  private handOff(): void {
    const socket = this.socket;
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('error', this.onError);
    socket.off('close', this.onClose);
    this.front.connections.delete(this);
    // node:http's data listener resumes the socket and reads these bytes before any newer ones.
    if (this.pending !== undefined) socket.unshift(this.pending);
    this.pending = undefined;
    if (socket.isPaused()) socket.resume();
    this.front.handOff(socket);
  }
}

/** Parses a request head (without its final CRLF CRLF); undefined when the request is not for this front. */
function parseHead(text: string, prefix: string): Head | undefined {
  const lineEnd = text.indexOf('\r\n');
  if (lineEnd < 0) return undefined; // no header lines, so no Host
  const firstSpace = text.indexOf(' ');
  const secondSpace = text.indexOf(' ', firstSpace + 1);
  if (firstSpace < 0 || secondSpace < 0 || secondSpace + 9 !== lineEnd) return undefined;
  if (!text.startsWith('HTTP/1.1', secondSpace + 1)) return undefined;
  const method = text.slice(0, firstSpace);
  if (!FAST_METHODS.has(method)) return undefined;
  const url = text.slice(firstSpace + 1, secondSpace);
  if (!url.startsWith(prefix) || ODD_TARGET.test(url)) return undefined;
  const lines = text.slice(lineEnd + 2);
  if (ODD_HEADER_BYTES.test(lines)) return undefined;
  const rawHeaders: string[] = [];
  let contentLength = -1;
  let close = false;
  let hosts = 0;
  let at = 0;
  while (at <= lines.length) {
    let next = lines.indexOf('\r\n', at);
    if (next < 0) next = lines.length;
    const colon = lines.indexOf(':', at);
    // An empty line, a line without a colon, or a folded continuation line (leading whitespace).
    if (colon <= at || colon > next) return undefined;
    const name = lines.slice(at, colon);
    if (!TOKEN.test(name)) return undefined;
    const value = trimWhitespace(lines, colon + 1, next);
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') hosts++;
        break;
      case 6:
        if (name.toLowerCase() === 'expect') return undefined;
        break;
      case 7:
        if (name.toLowerCase() === 'upgrade') return undefined;
        break;
      case 10:
        if (name.toLowerCase() === 'connection') {
          const lower = value.toLowerCase();
          if (lower.includes('upgrade')) return undefined;
          if (lower.includes('close')) close = true;
        }
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') {
          if (contentLength >= 0 || !DIGITS.test(value)) return undefined;
          contentLength = Number(value);
          if (contentLength > MAX_FAST_BODY_BYTES) return undefined;
        }
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') return undefined;
        break;
    }
    rawHeaders.push(name, value);
    at = next + 2;
  }
  if (hosts !== 1) return undefined;
  return { method, url, rawHeaders, contentLength: Math.max(contentLength, 0), close };
}

function trimWhitespace(text: string, start: number, end: number): string {
  let from = start;
  let to = end;
  while (from < to && (text.charCodeAt(from) === 32 || text.charCodeAt(from) === 9)) from++;
  while (to > from && (text.charCodeAt(to - 1) === 32 || text.charCodeAt(to - 1) === 9)) to--;
  return text.slice(from, to);
}

let dateSecond = -1;
let dateLine = '';

/** The `Date` line, rebuilt at most once a second (as node:http does). */
function dateHeader(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = `Date: ${new Date(now).toUTCString()}\r\n`;
  }
  return dateLine;
}

/** The subset of node's ServerResponse the invocation path uses, writing straight to the connection. */
export class FastResponse {
  statusCode = 200;
  statusMessage = '';
  headersSent = false;
  private head = '';
  private closeAfter = false;

  constructor(
    private readonly connection: FastConnection,
    /** The request asked for `Connection: close`. */
    private readonly closeRequested: boolean,
  ) {}

  /** Validates like node:http: an invalid status, header name or value throws and nothing is sent. */
  writeHead(status: number, headers?: OutgoingHttpHeaders | readonly string[]): this {
    const list: string[] = [];
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) list.push(String(headers[i]), String(headers[i + 1]));
    } else if (headers !== undefined) {
      for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
        if (value === undefined) continue;
        if (Array.isArray(value)) for (const item of value) list.push(name, item);
        else list.push(name, String(value));
      }
    }
    for (let i = 0; i < list.length; i += 2) {
      validateHeaderName(list[i] as string);
      validateHeaderValue(list[i] as string, list[i + 1] as string);
    }
    return this.writeCheckedHead(status, list);
  }

  /**
   * writeHead for headers the caller has validated already: the invocation route checks a function's
   * headers once per distinct list (the IPC decoder hands back the same list while the answers stay the
   * same), and its own headers are valid by construction.
   */
  writeCheckedHead(status: number, headers: readonly string[]): this {
    if (this.headersSent) throw new Error('the response head was already written');
    if (!Number.isInteger(status) || status < 100 || status > 999)
      throw new RangeError(`invalid status code: ${status}`);
    let text = `HTTP/1.1 ${status} ${this.statusMessage || STATUS_CODES[status] || 'unknown'}\r\n`;
    let closeAfter = this.closeRequested;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      const value = headers[i + 1] as string;
      if (name.length === 10 && name.toLowerCase() === 'connection') {
        if (value.toLowerCase().includes('close')) closeAfter = true;
      } else text += `${name}: ${value}\r\n`;
    }
    text += dateHeader();
    text += closeAfter
      ? 'Connection: close\r\n\r\n'
      : 'Connection: keep-alive\r\nKeep-Alive: timeout=65\r\n\r\n';
    this.head = text;
    this.closeAfter = closeAfter;
    this.statusCode = status;
    this.headersSent = true;
    return this;
  }

  end(body?: string | Buffer, encoding: BufferEncoding = 'utf8'): this {
    if (!this.headersSent) {
      const length =
        body === undefined ? 0 : typeof body === 'string' ? Buffer.byteLength(body, encoding) : body.length;
      this.writeHead(this.statusCode, ['content-length', String(length)]);
    }
    // 1xx, 204 and 304 responses carry no body.
    const bodiless = this.statusCode < 200 || this.statusCode === 204 || this.statusCode === 304;
    this.connection.respond(this.head, bodiless ? undefined : body, encoding, this.closeAfter);
    return this;
  }

  destroy(): void {
    this.connection.socket.destroy();
  }
}
