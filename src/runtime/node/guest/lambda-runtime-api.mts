/**
 * @module The AWS Lambda Runtime API (2018-06-01) as Hearth serves it to one runtime process (issue 17):
 * `runtime: provided` (an executable `bootstrap` in the function folder) and container images with
 * `protocol: lambda` (AWS's `aws-lambda-ric`, `awslambdaric`, aws-lambda-go…) run unchanged against it.
 *
 * It is loaded by the Node guest in place of a handler (bootstrap.mts, BUILTIN_HANDLER) and bound with the
 * `lambda` convention, so the API Gateway v2 event and the `{statusCode, headers, body, isBase64Encoded}`
 * answer are mapped by the guest exactly as for a Node function: `handler` hands the event to the runtime
 * process through `invocation/next` and returns what it posts to `/response`.
 *
 * Written by hand over node:http (no library serves the Runtime API; AWS ships only clients and its
 * emulator, a Go binary). It listens on 127.0.0.1 of the runtime's own network namespace.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, Readable } from 'node:stream';

const PREFIX = '/2018-06-01/runtime/';
/** Lambda's own limit for the init phase. */
export const INIT_TIMEOUT_MS = 10_000;
/** Content type of a streamed answer that starts with a JSON prelude (status, headers, cookies), then 8 NULs. */
const HTTP_INTEGRATION = 'application/vnd.awslambda.http-integration-response';
const PRELUDE_END = Buffer.alloc(8);
/** Largest request body the API takes from the runtime (Lambda's is 6 MiB buffered; streaming has no cap). */
const MAX_POST_BYTES = 20 * 1024 * 1024;

/** What the guest's Context gives us (bootstrap.mts, class Context). */
export interface LambdaContext {
  readonly awsRequestId: string;
  readonly invokedFunctionArn: string;
  readonly traceparent: string;
  getRemainingTimeInMillis(): number;
}

interface Pending {
  readonly id: string;
  readonly event: unknown;
  readonly deadline: number;
  readonly arn: string;
  readonly traceId: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  /** Handed to the runtime by `next`; answered once. */
  taken: boolean;
}

/** An error the runtime reported (`/error`, `/init/error`), with the type and message it gave. */
export class RuntimeReportedError extends Error {
  constructor(type: string, message: string, stack?: readonly string[]) {
    super(message);
    this.name = type;
    if (stack !== undefined && stack.length > 0)
      this.stack = `${type}: ${message}\n    ${stack.join('\n    ')}`;
  }
}

/**
 * The server. `ready` settles when the runtime first asks for an invocation (init done), or fails with its
 * `/init/error`, its exit or the init timeout. Invocations are handed out one at a time, in order.
 */
export class RuntimeApi {
  private readonly server: Server;
  private readonly queue: Pending[] = [];
  private readonly byId = new Map<string, Pending>();
  /** A `next` request waiting for an invocation. */
  private waiting: ServerResponse | undefined;
  private initDone = false;
  private initFailure: ((error: Error) => void) | undefined;
  private initSuccess: (() => void) | undefined;
  readonly ready: Promise<void>;

  constructor() {
    this.server = createServer((request, response) => this.route(request, response));
    this.server.keepAliveTimeout = 0;
    this.ready = new Promise<void>((resolve, reject) => {
      this.initSuccess = resolve;
      this.initFailure = reject;
    });
    // Failing before anyone awaits it must not crash the guest as an unhandled rejection.
    this.ready.catch(() => undefined);
  }

  /** Listens on 127.0.0.1 (`port` 0: any free one); returns `host:port` for AWS_LAMBDA_RUNTIME_API. */
  async listen(port = 0): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve());
    });
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The runtime could not start: init fails with `error`, or, after init, every invocation does. */
  fail(error: Error): void {
    if (!this.initDone) {
      this.initDone = true;
      this.initFailure?.(error);
    }
    for (const pending of this.queue.splice(0)) pending.reject(error);
    for (const pending of this.byId.values()) pending.reject(error);
    this.byId.clear();
  }

  /** One invocation: the value or stream the runtime answers with, or its reported error. */
  invoke(event: unknown, context: LambdaContext): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const pending: Pending = {
        id: context.awsRequestId,
        event,
        deadline: Date.now() + context.getRemainingTimeInMillis(),
        arn: context.invokedFunctionArn,
        traceId: amznTraceId(context.traceparent),
        resolve,
        reject,
        taken: false,
      };
      this.byId.set(pending.id, pending);
      this.queue.push(pending);
      this.handOut();
    });
  }

  private handOut(): void {
    const response = this.waiting;
    if (response === undefined) return;
    const pending = this.queue.shift();
    if (pending === undefined) return;
    this.waiting = undefined;
    pending.taken = true;
    const body = Buffer.from(JSON.stringify(pending.event));
    response.writeHead(200, {
      'content-type': 'application/json',
      'content-length': body.length,
      'lambda-runtime-aws-request-id': pending.id,
      'lambda-runtime-deadline-ms': String(pending.deadline),
      'lambda-runtime-invoked-function-arn': pending.arn,
      'lambda-runtime-trace-id': pending.traceId,
    });
    response.end(body);
  }

  private route(request: IncomingMessage, response: ServerResponse): void {
    const url = request.url ?? '';
    const path = url.startsWith(PREFIX) ? url.slice(PREFIX.length) : '';
    const match = /^invocation\/([^/]+)\/(response|error)$/.exec(path);
    if (path === 'invocation/next' && request.method === 'GET') this.next(response);
    else if (path === 'init/error' && request.method === 'POST') void this.initError(request, response);
    else if (match !== null && request.method === 'POST') {
      const id = decodeURIComponent(match[1] as string);
      const pending = this.byId.get(id);
      if (pending === undefined || !pending.taken) {
        answer(response, 400, 'InvalidRequestID', `no invocation ${id} is waiting for an answer`);
        return;
      }
      this.byId.delete(id);
      if (match[2] === 'error') void this.invocationError(pending, request, response);
      else void this.invocationResponse(pending, request, response);
    } else answer(response, 404, 'UnknownPath', `no such path: ${request.method} ${url}`);
  }

  private next(response: ServerResponse): void {
    if (!this.initDone) {
      this.initDone = true;
      this.initSuccess?.();
    }
    // A second poller replaces the first (a runtime that gave up on its connection).
    this.waiting?.destroy();
    this.waiting = response;
    response.once('close', () => {
      if (this.waiting === response) this.waiting = undefined;
    });
    this.handOut();
  }

  private async initError(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const reported = await reportedError(request);
    answer(response, 202, undefined, undefined);
    this.fail(reported);
  }

  private async invocationError(
    pending: Pending,
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    const reported = await reportedError(request);
    answer(response, 202, undefined, undefined);
    pending.reject(reported);
  }

  private async invocationResponse(
    pending: Pending,
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void> {
    const streaming =
      String(request.headers['lambda-runtime-function-response-mode'] ?? '').toLowerCase() === 'streaming';
    if (streaming) {
      pending.resolve(await streamedAnswer(request));
      request.once('end', () => answer(response, 202, undefined, undefined));
      request.once('error', () => answer(response, 202, undefined, undefined));
      return;
    }
    let body: Buffer;
    try {
      body = await readAll(request);
    } catch (error) {
      answer(response, 413, 'RequestEntityTooLarge', (error as Error).message);
      pending.reject(new RuntimeReportedError('Function.ResponseSizeTooLarge', (error as Error).message));
      return;
    }
    answer(response, 202, undefined, undefined);
    const text = body.toString('utf8');
    try {
      pending.resolve(text === '' ? null : JSON.parse(text));
    } catch {
      // Not JSON: Lambda passes the payload on as it is; as a string it becomes the body.
      pending.resolve(text);
    }
  }

  close(): void {
    this.waiting?.destroy();
    this.server.close();
  }
}

/**
 * A streamed `/response` as a fetch Response the guest streams on. With Lambda's HTTP integration content
 * type the stream starts with a JSON prelude (statusCode, headers, cookies) and 8 NUL bytes.
 */
async function streamedAnswer(request: IncomingMessage): Promise<Response> {
  const contentType = String(request.headers['content-type'] ?? 'application/octet-stream');
  if (!contentType.startsWith(HTTP_INTEGRATION)) {
    return new Response(Readable.toWeb(request) as ReadableStream<Uint8Array>, {
      status: 200,
      headers: { 'content-type': contentType },
    });
  }
  let head = Buffer.alloc(0);
  const rest = new PassThrough();
  let prelude: { statusCode?: number; headers?: Record<string, string>; cookies?: string[] } | undefined;
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer): void => {
      if (prelude !== undefined) return;
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf(PRELUDE_END);
      if (end < 0) return;
      try {
        prelude = JSON.parse(head.subarray(0, end).toString('utf8')) as typeof prelude;
      } catch {
        prelude = {};
      }
      request.off('data', onData);
      const after = head.subarray(end + PRELUDE_END.length);
      if (after.length > 0) rest.write(after);
      request.pipe(rest);
      resolve();
    };
    request.on('data', onData);
    request.once('end', () => {
      if (prelude === undefined) {
        prelude = {};
        rest.end(head);
        resolve();
      }
    });
  });
  const headers = new Headers();
  for (const [name, value] of Object.entries(prelude?.headers ?? {})) headers.set(name, String(value));
  for (const cookie of prelude?.cookies ?? []) headers.append('set-cookie', cookie);
  return new Response(Readable.toWeb(rest) as ReadableStream<Uint8Array>, {
    status: prelude?.statusCode ?? 200,
    headers,
  });
}

async function reportedError(request: IncomingMessage): Promise<RuntimeReportedError> {
  const headerType = request.headers['lambda-runtime-function-error-type'];
  let body: { errorType?: unknown; errorMessage?: unknown; stackTrace?: unknown } = {};
  try {
    body = JSON.parse((await readAll(request)).toString('utf8')) as typeof body;
  } catch {
    // A runtime may post no body or not JSON: the header, if any, still names the error.
  }
  const type =
    typeof body.errorType === 'string'
      ? body.errorType
      : typeof headerType === 'string'
        ? headerType
        : 'Runtime.Unknown';
  const message = typeof body.errorMessage === 'string' ? body.errorMessage : 'the runtime reported an error';
  const stack = Array.isArray(body.stackTrace) ? body.stackTrace.map(String) : undefined;
  return new RuntimeReportedError(type, message, stack);
}

function readAll(request: IncomingMessage): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    request.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > MAX_POST_BYTES) {
        request.destroy();
        reject(new Error(`the answer is larger than ${MAX_POST_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    request.once('end', () => resolve(Buffer.concat(chunks)));
    request.once('error', reject);
  });
}

function answer(
  response: ServerResponse,
  status: number,
  type: string | undefined,
  message: string | undefined,
): void {
  if (response.headersSent) return;
  const body =
    type === undefined ? '{"status":"OK"}' : JSON.stringify({ errorType: type, errorMessage: message });
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  response.end(body);
}

/** X-Ray's trace header from a W3C traceparent: `Root=1-<8 hex time>-<24 hex>;Parent=<16 hex>;Sampled=1`. */
function amznTraceId(traceparent: string): string {
  const [, trace = '', parent = '', flags = '01'] = traceparent.split('-');
  return `Root=1-${trace.slice(0, 8)}-${trace.slice(8)};Parent=${parent};Sampled=${flags === '01' ? 1 : 0}`;
}

/** Keeps the last `limit` bytes written to it: what a failed start's message quotes. */
export class OutputTail {
  private text = '';
  constructor(private readonly limit = 2048) {}
  add(chunk: Buffer): void {
    this.text = (this.text + chunk.toString('utf8')).slice(-this.limit);
  }
  /** The tail as one line to append to a message, or empty. */
  describe(): string {
    const trimmed = this.text.trim();
    return trimmed === '' ? '' : `; its last output: ${trimmed.split('\n').slice(-5).join(' | ')}`;
  }
}

/**
 * Forwards a child's output to the guest's stdout and stderr (the platform's per-invocation logs) and keeps
 * a tail of it for error messages.
 */
export function forwardOutput(child: ChildProcess, tail: OutputTail): void {
  child.stdout?.on('data', (chunk: Buffer) => {
    tail.add(chunk);
    process.stdout.write(chunk);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    tail.add(chunk);
    process.stderr.write(chunk);
  });
}

/** How a child ended, in words. */
export function exitText(code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
}

// --- runtime: provided -------------------------------------------------------------------------------------
/**
 * Starts the function folder's `bootstrap` against a Runtime API of its own: the guest's handler for a
 * `runtime: provided` function. Loaded only there (a container image loads container.mjs instead).
 */
async function startProvided(): Promise<RuntimeApi> {
  const api = new RuntimeApi();
  const address = await api.listen();
  const taskRoot = process.cwd();
  const tail = new OutputTail();
  const child = spawn(`${taskRoot}/bootstrap`, [], {
    cwd: taskRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      AWS_LAMBDA_RUNTIME_API: address,
      AWS_EXECUTION_ENV: 'AWS_Lambda_provided.al2023',
      LAMBDA_TASK_ROOT: taskRoot,
      LAMBDA_RUNTIME_DIR: taskRoot,
      _HANDLER: process.env._HANDLER ?? 'bootstrap',
    },
  });
  forwardOutput(child, tail);
  child.once('error', (error) =>
    api.fail(
      new RuntimeReportedError('Runtime.InvalidEntrypoint', `bootstrap could not start: ${error.message}`),
    ),
  );
  child.once('exit', (code, signal) => {
    const error = new RuntimeReportedError(
      'Runtime.ExitError',
      `bootstrap ${exitText(code, signal)}${tail.describe()}`,
    );
    api.fail(error);
    // After init the runtime is this instance: without it the guest ends, and the platform replaces it.
    if (apiReady) setImmediate(() => process.exit(1));
  });
  const timer = setTimeout(
    () =>
      api.fail(
        new RuntimeReportedError(
          'Runtime.InitTimeout',
          `bootstrap did not ask for an invocation within ${INIT_TIMEOUT_MS / 1000}s${tail.describe()}`,
        ),
      ),
    INIT_TIMEOUT_MS,
  );
  try {
    await api.ready;
  } finally {
    clearTimeout(timer);
  }
  apiReady = true;
  return api;
}

let apiReady = false;
let providedApi: RuntimeApi | undefined;

/** The guest binds this as a Lambda handler: each invocation goes through the Runtime API. */
export async function handler(event: unknown, context: LambdaContext): Promise<unknown> {
  if (providedApi === undefined) throw new Error('the Runtime API is not started');
  return providedApi.invoke(event, context);
}

/** Called by the guest at Bind when this module is the handler itself (runtime: provided). */
export async function bind(): Promise<void> {
  providedApi = await startProvided();
}
