/**
 * @module Other platforms' handler conventions for the Node guest (issue 18): each turns an invocation
 * into the event (or request) that platform's handlers expect and their answer into a response.
 *
 * Loaded by the bootstrap at bind, and only for a function that follows one of these conventions, so
 * Hearth's own convention and Lambda's API Gateway events (in the bootstrap) pay nothing for them. Like
 * the bootstrap it imports only Node built-ins. The request and response objects below are written by
 * hand, as small as each platform's documented surface: Express, Flask and the platforms' SDKs are not
 * in the sandbox, and the guest is on every cold start.
 */

import { Writable } from 'node:stream';
import type { CloudEventAttributes, HttpResult, Invoke } from './bootstrap.mjs';

type Headers = Record<string, string | string[]>;
type Handler = (...args: unknown[]) => unknown;

/** What the bootstrap lends the adapters: its event builders, its response mapping and its frames. */
export interface GuestKit {
  headerObject(raw: readonly string[]): Record<string, string>;
  parseQuery(raw: string): Record<string, string | string[]>;
  /** Whether a body of this (lower-case) content type travels as text in Lambda's events, not base64. */
  isTextual(contentType: string): boolean;
  /** The body decoded by content type, as Hearth's event has it (JSON parsed, text as a string, else bytes). */
  hearthBody(body: Buffer, contentType: string): unknown;
  cloudEvent(attributes: CloudEventAttributes, body: Buffer): unknown;
  /** API Gateway HTTP API (2.0), what a Lambda function URL sends a streaming handler too. */
  lambdaEvent(meta: Invoke, body: Buffer): unknown;
  /** A return value in Hearth's (and Lambda's) shapes as a response; a fetch Response may stream. */
  toResponse(value: unknown, seq: number): HttpResult | undefined | Promise<HttpResult | undefined>;
  /** Calls a Lambda-style handler: `(event, context, callback)` callbacks and `context.succeed` included. */
  call(fn: Handler, event: unknown, ctx: object): unknown;
  /** Starts a streamed response for invocation `seq`. */
  openStream(seq: number, status: number, headers: Headers): ResponseSink;
  /** Keeps the instance's work counted until `work` settles or the deadline passes (waitUntil). */
  hold(work: Promise<unknown>, deadline: number): void;
}

export interface ResponseSink {
  write(bytes: Buffer): void;
  /** Ends the response; with an error, the client sees it cut short. */
  end(error?: unknown): void;
}

/**
 * One invocation in a convention: the response, or undefined when it was streamed already. `ctx` is the
 * bootstrap's context (Hearth's and Lambda's fields); adapters add their platform's fields to it.
 */
export type Adapter = (
  meta: Invoke,
  body: Buffer,
  ctx: object,
  seq: number,
) => Promise<HttpResult | undefined>;

/** Set by `awslambda.streamifyResponse` (defined in the bootstrap, before any function loads). */
export const STREAMING = Symbol.for('hearth.awslambda.streaming');
/** Set by `awslambda.HttpResponseStream.from`: the status and headers to send before the body. */
export const PRELUDE = Symbol.for('hearth.awslambda.prelude');

// --- request and response objects in Express's shape (Google Cloud Functions, Fission, OpenFaaS) --------
/** `req.body` as the Functions Framework's body parsers leave it: JSON, text, form fields, else the bytes. */
function expressBody(body: Buffer, contentType: string): unknown {
  if (body.length === 0) return {};
  if (/^application\/([^;]*\+)?json/.test(contentType)) {
    try {
      return JSON.parse(body.toString('utf8'));
    } catch {
      return body.toString('utf8');
    }
  }
  if (contentType.startsWith('text/')) return body.toString('utf8');
  if (contentType.startsWith('application/x-www-form-urlencoded'))
    return Object.fromEntries(new URLSearchParams(body.toString('utf8')));
  return body;
}

export interface ExpressRequest {
  method: string;
  url: string;
  originalUrl: string;
  path: string;
  query: Record<string, string | string[]>;
  headers: Record<string, string>;
  rawHeaders: readonly string[];
  body: unknown;
  rawBody: Buffer;
  params: Record<string, string>;
  ip: string;
  hostname: string;
  protocol: string;
  get(name: string): string | undefined;
  header(name: string): string | undefined;
}

function expressRequest(meta: Invoke, body: Buffer, kit: GuestKit): ExpressRequest {
  const headers = kit.headerObject(meta.rawHeaders);
  const url = meta.rawQuery === '' ? meta.path : `${meta.path}?${meta.rawQuery}`;
  const get = (name: string): string | undefined => {
    const lower = name.toLowerCase();
    return headers[lower === 'referrer' ? 'referer' : lower];
  };
  return {
    method: meta.method,
    url,
    originalUrl: url,
    path: meta.path,
    query: kit.parseQuery(meta.rawQuery),
    headers,
    rawHeaders: meta.rawHeaders,
    body: expressBody(body, (headers['content-type'] ?? '').toLowerCase()),
    rawBody: body,
    params: {},
    ip: meta.sourceIp,
    hostname: (headers.host ?? 'localhost').replace(/:\d+$/, ''),
    protocol: 'http',
    get,
    header: get,
  };
}

/**
 * The subset of Express's `res` that functions use; the answer is the body once `end` (or send/json) is
 * called. Given a way to open a stream, `write` before `end` streams: the status and headers leave with the
 * first write and each chunk as it is written, as Cloud Functions does.
 */
export class ExpressResponse {
  statusCode = 200;
  readonly locals: Record<string, unknown> = {};
  private readonly headers: Headers = {};
  private readonly chunks: Buffer[] = [];
  headersSent = false;
  writableEnded = false;
  private sink: ResponseSink | undefined;
  private finish: ((result: HttpResult | undefined) => void) | undefined;
  /** Resolves with the response once the function ends it, or undefined when it was streamed. */
  readonly done: Promise<HttpResult | undefined>;

  constructor(private readonly openStream?: (status: number, headers: Headers) => ResponseSink) {
    this.done = new Promise((resolve) => {
      this.finish = resolve;
    });
  }

  /** A failure after the first streamed byte cuts the stream short; before it, it is the caller's to answer. */
  failStreaming(error: unknown): boolean {
    if (this.sink === undefined || this.writableEnded) return false;
    this.writableEnded = true;
    this.sink.end(error);
    this.finish?.(undefined);
    return true;
  }

  status(code: number): this {
    this.statusCode = code;
    return this;
  }
  set(name: string | Record<string, unknown>, value?: unknown): this {
    if (typeof name === 'object') for (const [key, item] of Object.entries(name)) this.set(key, item);
    else if (value !== undefined && value !== null)
      this.headers[name.toLowerCase()] = Array.isArray(value) ? value.map(String) : String(value);
    return this;
  }
  header(name: string | Record<string, unknown>, value?: unknown): this {
    return this.set(name, value);
  }
  setHeader(name: string, value: unknown): this {
    return this.set(name, value);
  }
  append(name: string, value: unknown): this {
    const previous = this.headers[name.toLowerCase()];
    const added = Array.isArray(value) ? value.map(String) : [String(value)];
    const list =
      previous === undefined ? added : [...(Array.isArray(previous) ? previous : [previous]), ...added];
    this.headers[name.toLowerCase()] = list.length === 1 ? (list[0] as string) : list;
    return this;
  }
  get(name: string): string | string[] | undefined {
    return this.headers[name.toLowerCase()];
  }
  getHeader(name: string): string | string[] | undefined {
    return this.get(name);
  }
  removeHeader(name: string): void {
    delete this.headers[name.toLowerCase()];
  }
  type(type: string): this {
    return this.set(
      'content-type',
      type.includes('/') ? type : type === 'json' ? 'application/json' : `text/${type}`,
    );
  }
  writeHead(status: number, headers?: Record<string, unknown>): this {
    this.statusCode = status;
    if (headers !== undefined) this.set(headers);
    return this;
  }
  write(chunk: string | Uint8Array): boolean {
    if (this.writableEnded) return false;
    const bytes = Buffer.from(chunk);
    if (this.openStream === undefined) this.chunks.push(bytes);
    else {
      this.sink ??= this.openStream(this.statusCode, this.headers);
      this.headersSent = true;
      this.sink.write(bytes);
    }
    return true;
  }
  /** Express's send: text is text/html unless a type was set, bytes octet-stream, anything else JSON. */
  send(body?: unknown): this {
    if (typeof body === 'string') {
      this.headers['content-type'] ??= 'text/html; charset=utf-8';
      return this.end(body);
    }
    if (body instanceof Uint8Array) {
      this.headers['content-type'] ??= 'application/octet-stream';
      return this.end(body);
    }
    if (body === undefined || body === null) return this.end();
    return this.json(body);
  }
  json(value: unknown): this {
    this.headers['content-type'] ??= 'application/json; charset=utf-8';
    return this.end(JSON.stringify(value) ?? '');
  }
  sendStatus(code: number): this {
    this.statusCode = code;
    this.headers['content-type'] ??= 'text/plain; charset=utf-8';
    return this.end(String(code));
  }
  redirect(statusOrUrl: number | string, url?: string): this {
    this.statusCode = typeof statusOrUrl === 'number' ? statusOrUrl : 302;
    this.headers.location = String(typeof statusOrUrl === 'number' ? url : statusOrUrl);
    return this.end();
  }
  end(chunk?: string | Uint8Array): this {
    if (this.writableEnded) return this;
    this.writableEnded = true;
    this.headersSent = true;
    if (this.sink !== undefined) {
      if (chunk !== undefined) this.sink.write(Buffer.from(chunk));
      this.sink.end();
      this.finish?.(undefined);
      return this;
    }
    if (chunk !== undefined) this.chunks.push(Buffer.from(chunk));
    this.finish?.({ status: this.statusCode, headers: this.headers, body: Buffer.concat(this.chunks) });
    return this;
  }
}

// --- AWS Lambda: Application Load Balancer and response streaming -----------------------------------------
/**
 * An ALB target's event (multi-value headers off): lower-case headers, the query as sent (ALB does not
 * decode it), `{}` without one, and the body as `""` when there is none.
 */
function albEvent(meta: Invoke, body: Buffer, kit: GuestKit): unknown {
  const headers = kit.headerObject(meta.rawHeaders);
  const query: Record<string, string> = {};
  if (meta.rawQuery !== '')
    for (const pair of meta.rawQuery.split('&')) {
      if (pair === '') continue;
      const at = pair.indexOf('=');
      query[at < 0 ? pair : pair.slice(0, at)] = at < 0 ? '' : pair.slice(at + 1);
    }
  const contentType = (headers['content-type'] ?? '').toLowerCase();
  const textual = body.length === 0 || kit.isTextual(contentType);
  return {
    requestContext: {
      elb: { targetGroupArn: 'arn:aws:elasticloadbalancing:hearth:000000000000:targetgroup/hearth/0' },
    },
    httpMethod: meta.method,
    path: meta.path,
    queryStringParameters: query,
    headers,
    body: textual ? body.toString('utf8') : body.toString('base64'),
    isBase64Encoded: !textual,
  };
}

/** The response stream a streamified handler writes: a Writable whose first write sends the status and headers. */
function responseStream(
  kit: GuestKit,
  seq: number,
): { stream: Writable; opened(): boolean; close(error?: unknown): void } {
  let sink: ResponseSink | undefined;
  let contentType = 'application/octet-stream';
  let closed = false;
  const open = (stream: Writable): ResponseSink => {
    if (sink !== undefined) return sink;
    const prelude = (stream as unknown as Record<symbol, unknown>)[PRELUDE] as
      | { statusCode?: number; headers?: Record<string, unknown>; cookies?: string[] }
      | undefined;
    const headers: Headers = { 'content-type': contentType };
    for (const [name, value] of Object.entries(prelude?.headers ?? {}))
      if (value !== undefined && value !== null) headers[name.toLowerCase()] = String(value);
    if (Array.isArray(prelude?.cookies)) headers['set-cookie'] = prelude.cookies.map(String);
    sink = kit.openStream(seq, Number(prelude?.statusCode ?? 200), headers);
    return sink;
  };
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      open(stream).write(chunk);
      callback();
    },
    final(callback) {
      open(stream);
      callback();
    },
  });
  Object.assign(stream, {
    setContentType(type: string) {
      contentType = type;
    },
  });
  return {
    stream,
    opened: () => sink !== undefined,
    close(error?: unknown) {
      if (closed) return;
      closed = true;
      open(stream).end(error);
    },
  };
}

function streamingAdapter(fn: Handler, kit: GuestKit, makeEvent: EventMaker | undefined): Adapter {
  return async (meta, body, ctx, seq) => {
    const event =
      makeEvent !== undefined
        ? makeEvent(meta, body)
        : meta.event === undefined
          ? kit.lambdaEvent(meta, body)
          : kit.cloudEvent(meta.event, body);
    const response = responseStream(kit, seq);
    const finished = new Promise<void>((resolve) => response.stream.once('finish', resolve));
    try {
      await fn(event, response.stream, ctx);
      // A handler that returns without ending its stream has said all it will.
      if (!response.stream.writableEnded) response.stream.end();
      await finished;
      response.close();
    } catch (error) {
      // Before the first byte the failure is an ordinary error answer; after it, the stream is cut short.
      if (!response.opened()) throw error;
      response.close(error);
    }
    return undefined;
  };
}

// --- web standard: Request in, Response out; module workers ----------------------------------------------
function webRequest(meta: Invoke, body: Buffer, kit: GuestKit): Request {
  const headers = new Headers();
  for (let i = 0; i + 1 < meta.rawHeaders.length; i += 2)
    headers.append(meta.rawHeaders[i] as string, meta.rawHeaders[i + 1] as string);
  const host = kit.headerObject(meta.rawHeaders).host ?? 'localhost';
  const url = `http://${host}${meta.path}${meta.rawQuery === '' ? '' : `?${meta.rawQuery}`}`;
  const bodiless = meta.method === 'GET' || meta.method === 'HEAD';
  return new Request(url, {
    method: meta.method,
    headers,
    body: bodiless || body.length === 0 ? null : body,
  });
}

/** `waitUntil(promise)`: work that may go on after the response, until the invocation's deadline. */
function waitUntilFor(kit: GuestKit, deadline: number): (work: unknown) => void {
  return (work) => kit.hold(Promise.resolve(work), deadline);
}

function webAdapter(fn: Handler, kit: GuestKit): Adapter {
  return async (meta, body, ctx, seq) => {
    Object.assign(ctx, {
      waitUntil: waitUntilFor(kit, meta.deadline),
      ip: meta.sourceIp,
      requestId: meta.invocationId,
      params: {},
    });
    return kit.toResponse(await fn(webRequest(meta, body, kit), ctx), seq);
  };
}

function workersAdapter(worker: { fetch: Handler }, kit: GuestKit): Adapter {
  // Workers' `env` holds the bindings; here, the function's environment as it was at bind.
  const env = Object.freeze({ ...process.env });
  return async (meta, body, ctx, seq) => {
    Object.assign(ctx, { waitUntil: waitUntilFor(kit, meta.deadline), passThroughOnException() {} });
    return kit.toResponse(await worker.fetch(webRequest(meta, body, kit), env, ctx), seq);
  };
}

// --- OpenFaaS -----------------------------------------------------------------------------------------
/** The node20/node18 templates' `context`: `status()`, `headers()`, `succeed()`, `fail()`, chained. */
class FunctionContext {
  statusCode = 200;
  headerValues: Record<string, unknown> = {};
  cbCalled = 0;
  constructor(private readonly cb: (error: unknown, value?: unknown) => void) {}
  status(code?: number): number | this {
    if (code === undefined) return this.statusCode;
    this.statusCode = code;
    return this;
  }
  headers(values?: Record<string, unknown>): Record<string, unknown> | this {
    if (values === undefined) return this.headerValues;
    this.headerValues = values;
    return this;
  }
  succeed(value?: unknown): void {
    this.cbCalled += 1;
    this.cb(undefined, value);
  }
  fail(error: unknown): void {
    this.cbCalled += 1;
    this.cb(error);
  }
}

function openfaasAdapter(fn: Handler, kit: GuestKit): Adapter {
  return async (meta, body) => {
    const req = expressRequest(meta, body, kit);
    // The template's body parsers: JSON, text/*, and the raw bytes for anything else.
    const event = {
      body: req.body,
      headers: req.headers,
      method: req.method,
      query: req.query,
      path: req.path,
    };
    const res = new ExpressResponse();
    const context = new FunctionContext((error, value) => {
      if (error !== undefined && error !== null) {
        res.status(500).send(String(error instanceof Error ? error.toString() : error));
        return;
      }
      res.set(context.headerValues).status(context.statusCode);
      if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array))
        res.send(JSON.stringify(value));
      else res.send(value === undefined ? undefined : value instanceof Uint8Array ? value : String(value));
    });
    try {
      const result = await fn(event, context, (error: unknown, value: unknown) =>
        error === undefined || error === null ? context.succeed(value) : context.fail(error),
      );
      if (context.cbCalled === 0) context.succeed(result);
    } catch (error) {
      context.fail(error);
    }
    return res.done;
  };
}

/** The classic template: `(body, callback)`, the body as text; the answer is what it prints. */
function openfaasClassicAdapter(fn: Handler): Adapter {
  return (_meta, body) =>
    new Promise((resolve, reject) => {
      const answer = (error: unknown, value?: unknown): void => {
        if (error !== undefined && error !== null) {
          reject(error);
          return;
        }
        const object = value !== null && typeof value === 'object' && !(value instanceof Uint8Array);
        resolve({
          status: 200,
          headers: {
            'content-type':
              process.env.content_type ?? (object ? 'application/json' : 'text/plain; charset=utf-8'),
          },
          body: Buffer.from(
            object ? `${JSON.stringify(value)}\n` : value instanceof Uint8Array ? value : String(value ?? ''),
          ),
        });
      };
      try {
        const returned = fn(body.toString('utf8'), answer);
        if (returned instanceof Promise)
          returned.then((value) => value !== undefined && answer(undefined, value), reject);
      } catch (error) {
        reject(error);
      }
    });
}

// --- Google Cloud Functions (Functions Framework) ----------------------------------------------------------
export interface RegisteredFunction {
  readonly userFunction: Handler;
  readonly signatureType: 'http' | 'cloudevent' | 'event' | string;
}

/** A CloudEvent from an event delivery, or from the request itself (binary mode `ce-*` headers, or structured). */
function cloudEventOf(meta: Invoke, body: Buffer, kit: GuestKit): Record<string, unknown> {
  if (meta.event !== undefined) return kit.cloudEvent(meta.event, body) as Record<string, unknown>;
  const headers = kit.headerObject(meta.rawHeaders);
  const contentType = (headers['content-type'] ?? '').toLowerCase();
  if (contentType.startsWith('application/cloudevents+json'))
    return JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  const event: Record<string, unknown> = {};
  for (const name in headers)
    if (name.startsWith('ce-')) event[name.slice(3)] = decodeURIComponent(headers[name] as string);
  if (headers['content-type'] !== undefined) event.datacontenttype = headers['content-type'];
  event.data = kit.hearthBody(body, contentType === '' ? 'application/json' : contentType);
  return event;
}

function gcfAdapter(registered: RegisteredFunction, kit: GuestKit): Adapter {
  const fn = registered.userFunction;
  if (registered.signatureType === 'cloudevent')
    return async (meta, body) => {
      const result = await fn(cloudEventOf(meta, body, kit));
      // The Functions Framework answers an event function 204, or with the value it returned.
      const res = new ExpressResponse();
      if (result === undefined || result === null) res.status(204).end();
      else res.send(result);
      return res.done;
    };
  return async (meta, body, _ctx, seq) => {
    const res = new ExpressResponse((status, headers) => kit.openStream(seq, status, headers));
    try {
      await fn(expressRequest(meta, body, kit), res);
    } catch (error) {
      if (res.failStreaming(error)) return undefined;
      throw error;
    }
    return res.done;
  };
}

// --- Fission and Netlify --------------------------------------------------------------------------------
/** Fission's Node environment: `async (context) => ({ status, body, headers })`, or `(context, callback(status, body, headers))`. */
function fissionAdapter(fn: Handler, kit: GuestKit): Adapter {
  return async (meta, body) => {
    const res = new ExpressResponse();
    const context = { request: expressRequest(meta, body, kit), response: res };
    const answer = (
      result: { status?: number; body?: unknown; headers?: Record<string, unknown> } | undefined,
    ): void => {
      res.status(result?.status ?? 200).set(result?.headers ?? {});
      res.send(result?.body);
    };
    if (fn.length >= 2)
      fn(context, (status: number, answerBody: unknown, headers?: Record<string, unknown>) =>
        answer({ status, body: answerBody, headers }),
      );
    else {
      const result = (await fn(context)) as Parameters<typeof answer>[0];
      if (!res.writableEnded) answer(result);
    }
    return res.done;
  };
}

/** Netlify Functions v1: Lambda's handler on a REST-like event whose query objects are never null. */
function netlifyEvent(meta: Invoke, body: Buffer, kit: GuestKit): unknown {
  const headers = kit.headerObject(meta.rawHeaders);
  const multiValueHeaders: Record<string, string[]> = {};
  for (let i = 0; i + 1 < meta.rawHeaders.length; i += 2) {
    const name = (meta.rawHeaders[i] as string).toLowerCase();
    const values = multiValueHeaders[name];
    if (values === undefined) multiValueHeaders[name] = [meta.rawHeaders[i + 1] as string];
    else values.push(meta.rawHeaders[i + 1] as string);
  }
  const queryStringParameters: Record<string, string> = {};
  const multiValueQueryStringParameters: Record<string, string[]> = {};
  for (const [key, value] of new URLSearchParams(meta.rawQuery)) {
    queryStringParameters[key] =
      key in queryStringParameters ? `${queryStringParameters[key]}, ${value}` : value;
    const values = multiValueQueryStringParameters[key];
    if (values === undefined) multiValueQueryStringParameters[key] = [value];
    else values.push(value);
  }
  const contentType = (headers['content-type'] ?? '').toLowerCase();
  const textual = body.length === 0 || kit.isTextual(contentType);
  const host = headers.host ?? 'localhost';
  return {
    path: meta.path,
    httpMethod: meta.method,
    headers,
    multiValueHeaders,
    queryStringParameters,
    multiValueQueryStringParameters,
    body: body.length === 0 ? null : textual ? body.toString('utf8') : body.toString('base64'),
    isBase64Encoded: !textual,
    rawUrl: `http://${host}${meta.path}${meta.rawQuery === '' ? '' : `?${meta.rawQuery}`}`,
    rawQuery: meta.rawQuery,
  };
}

function lambdaLikeAdapter(
  fn: Handler,
  kit: GuestKit,
  makeEvent: (meta: Invoke, body: Buffer, kit: GuestKit) => unknown,
): Adapter {
  return async (meta, body, ctx, seq) => {
    const event = meta.event === undefined ? makeEvent(meta, body, kit) : kit.cloudEvent(meta.event, body);
    return kit.toResponse(await kit.call(fn, event, ctx), seq);
  };
}

// --- choosing one ---------------------------------------------------------------------------------------
/** The conventions this module serves, by the name the bootstrap resolved. */
export type AdapterName =
  | 'lambda-alb'
  | 'lambda-stream'
  | 'web'
  | 'workers'
  | 'openfaas'
  | 'openfaas-classic'
  | 'gcf'
  | 'gcf-cloudevent'
  | 'fission'
  | 'netlify';

/** The event a streaming Lambda handler gets under `lambda-v1` or `lambda-direct` (else a function URL's, v2). */
export type EventMaker = (meta: Invoke, body: Buffer) => unknown;

export function createAdapter(
  name: AdapterName,
  exported: unknown,
  kit: GuestKit,
  registered?: RegisteredFunction,
  makeEvent?: EventMaker,
): Adapter {
  const fn = exported as Handler;
  switch (name) {
    case 'lambda-alb':
      return lambdaLikeAdapter(fn, kit, albEvent);
    case 'netlify':
      return lambdaLikeAdapter(fn, kit, netlifyEvent);
    case 'lambda-stream':
      return streamingAdapter(fn, kit, makeEvent);
    case 'web':
      return webAdapter(fn, kit);
    case 'workers':
      return workersAdapter(exported as { fetch: Handler }, kit);
    case 'openfaas':
      return openfaasAdapter(fn, kit);
    case 'openfaas-classic':
      return openfaasClassicAdapter(fn);
    case 'gcf':
      return gcfAdapter(registered ?? { userFunction: fn, signatureType: 'http' }, kit);
    case 'gcf-cloudevent':
      return gcfAdapter(registered ?? { userFunction: fn, signatureType: 'cloudevent' }, kit);
    case 'fission':
      return fissionAdapter(fn, kit);
  }
}
