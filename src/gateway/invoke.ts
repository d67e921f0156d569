/**
 * @module The invocation route, `ANY /function/<name>[.<namespace>][/<rest>]`: the platform's hot path.
 * Parses by hand and allocates little; everything else (scheduling, instances) sits behind `Scheduler`.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { DeployedVersion, InvocationResponse } from '../domain/deployment.js';
import { HearthError, isHearthError } from '../domain/errors.js';
import { type InvocationEvent, invocationChannel } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import { parseTraceparent, type TraceContext, traceFor } from '../domain/trace.js';
import { parseDuration } from '../domain/units.js';
import type { Scheduler } from '../scheduler/index.js';
import { type BufferedRequest, FastResponse } from './fast-http.js';
import {
  HOP_BY_HOP,
  pipeStream,
  type ResponseWriter,
  rawHeaderValue,
  readBody,
  sendError,
  streamBounds,
  tooLarge,
  withoutRawHeader,
} from './http.js';
import { clientKeyOf, takeTokens } from './rate-limit.js';
import type { Traffic } from './traffic.js';

export const FUNCTION_PREFIX = '/function/';

export interface InvokeRouteOptions {
  readonly scheduler: Scheduler;
  readonly onInternal: (error: unknown) => void;
  /** Add a `Server-Timing` header breaking each response's time into queue, cold start and execution. */
  readonly serverTiming?: boolean;
  /** Per-function rate limits (`spec.rateLimit`); consulted only while some function has one. */
  readonly traffic?: Traffic;
  /** Function-level auth and namespace rate quotas (src/security); consulted only for guarded invocations. */
  readonly guard?: InvocationGuard;
  /** Cluster mode (src/cluster): may take an invocation to another node; absent on a single node. */
  readonly forwarder?: InvocationForwarder;
}

/** What the gateway asks the cluster about an invocation it is about to run here. */
export interface InvocationForwarder {
  /**
   * Takes the invocation to another node and answers `res` itself (true), or leaves it to this node
   * (false). `local` serves it here after all, when the chosen node could not be reached.
   */
  forward(
    deployed: DeployedVersion,
    request: ForwardedRequest,
    res: ResponseWriter,
    local: () => void,
  ): boolean;
}

/** An invocation as the entry node received it, its body read and its deadline set. */
export interface ForwardedRequest {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
  readonly deadline: number;
}

/** What the gateway asks the security part about an invocation (src/security `Security` implements it). */
export interface InvocationGuard {
  /** Whether `checkInvocation` must run: false for a public function when no namespace policy applies. */
  invocationChecked(deployed: DeployedVersion): boolean;
  checkInvocation(
    deployed: DeployedVersion,
    authorization: string | undefined,
    done: (
      error: HearthError | undefined,
      auth:
        | {
            readonly claims: Readonly<Record<string, unknown>> | undefined;
            readonly stripAuthorization: boolean;
          }
        | undefined,
    ) => void,
  ): void;
}

/** Splits `<prefix><name>[.<namespace>][/rest][?query]`; the prefix is `/function/` or `/async-function/`. */
export function parseFunctionPath(
  url: string,
  prefix: string = FUNCTION_PREFIX,
): { ref: FunctionRef; path: string; rawQuery: string } | undefined {
  const queryAt = url.indexOf('?');
  const pathname = queryAt < 0 ? url : url.slice(0, queryAt);
  const rawQuery = queryAt < 0 ? '' : url.slice(queryAt + 1);
  const nameEnd = pathname.indexOf('/', prefix.length);
  const qualified = nameEnd < 0 ? pathname.slice(prefix.length) : pathname.slice(prefix.length, nameEnd);
  if (qualified === '') return undefined;
  const dot = qualified.indexOf('.');
  const ref =
    dot < 0
      ? { namespace: 'default', name: qualified }
      : { namespace: qualified.slice(dot + 1), name: qualified.slice(0, dot) };
  return { ref, path: nameEnd < 0 ? '/' : pathname.slice(nameEnd), rawQuery };
}

/** Serves requests from node:http and from the fast front, whose requests arrive with their body read. */
export type InvokeRoute = (req: IncomingMessage | BufferedRequest, res: ResponseWriter) => void;

export function createInvokeRoute(options: InvokeRouteOptions): InvokeRoute {
  const { scheduler } = options;
  const serverTiming = options.serverTiming === true;
  return (req, res) => {
    const invocationId = randomUUID();
    const started = performance.now();
    const target = parseFunctionPath(req.url ?? '/');
    let trace: TraceContext | undefined;
    const fail = (error: unknown, ref?: FunctionRef, version = 0): void => {
      sendError(res, error, invocationId, options.onInternal);
      if (ref !== undefined)
        publish(
          ref,
          version,
          invocationId,
          res.statusCode,
          started,
          0,
          false,
          isHearthError(error) ? error.code : 'HEARTH_E_INTERNAL',
          trace,
        );
    };
    if (target === undefined) {
      fail(new HearthError('HEARTH_E_NOT_FOUND', 'no function named in the path; use /function/<name>'));
      return;
    }
    const deployed = scheduler.lookup(target.ref);
    if (deployed === undefined) {
      fail(
        new HearthError(
          'HEARTH_E_FN_NOT_FOUND',
          `function ${target.ref.name} not found in namespace ${target.ref.namespace}`,
        ),
      );
      return;
    }
    const limits = deployed.spec.limits;
    // The deployed version's ref, not the one parsed from this request: its strings are hashed already,
    // so the scheduler's and telemetry's lookups by name cost no hashing per request.
    const ref = deployed.ref;
    // One pass over the raw headers: req.headers would build an object the hot path never needs.
    const raw = req.rawHeaders;
    let hasBody = false;
    let timeoutHeader: string | undefined;
    let traceparent: string | undefined;
    let tracestate: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      if (name.length === 14 && name.toLowerCase() === 'content-length') hasBody = raw[i + 1] !== '0';
      else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') hasBody = true;
      else if (name.length === 16 && name.toLowerCase() === 'x-hearth-timeout') timeoutHeader = raw[i + 1];
      else if (name.length === 11 && name.toLowerCase() === 'traceparent') traceparent = raw[i + 1];
      else if (name.length === 10 && name.toLowerCase() === 'tracestate') tracestate = raw[i + 1];
    }
    // A client's trace is continued; without one the invocation's own ids are derived later, for free.
    const incoming = traceparent === undefined ? undefined : parseTraceparent(traceparent);
    if (incoming !== undefined) trace = traceFor(invocationId, incoming, tracestate);
    // Rate limits cost one boolean test here unless some function has one (issue 3).
    let limitHeaders: string[] | undefined;
    if (options.traffic?.functionLimited === true) {
      const rule = options.traffic.functionRule(target.ref);
      if (rule !== undefined) {
        try {
          limitHeaders = takeTokens([rule], clientKeyOf(raw, req.socket.remoteAddress))?.headers;
        } catch (error) {
          fail(error, target.ref, deployed.version);
          return;
        }
      }
    }
    const timeoutMs = clientTimeout(timeoutHeader, limits.timeoutMs);
    const deadline = Date.now() + timeoutMs;
    // Set by the guard for a non-public function: the caller's claims (ctx.auth) and the headers it sees.
    let auth: Readonly<Record<string, unknown>> | undefined;
    let headersIn: readonly string[] = raw;
    const submitHere = (body: Buffer): void => {
      const submitted = hasBody ? performance.now() : started;
      scheduler.submit(
        ref,
        {
          invocationId,
          method: req.method ?? 'GET',
          path: target.path,
          rawQuery: target.rawQuery,
          rawHeaders: headersIn,
          body,
          sourceIp: req.socket.remoteAddress ?? '',
          deadline,
          timeoutMs,
          timeoutSource: timeoutMs < limits.timeoutMs ? 'X-Hearth-Timeout' : 'limits.timeout',
          trace,
          auth,
        },
        (error, response) => {
          if (error !== undefined || response === undefined) {
            fail(error, ref, deployed.version);
            return;
          }
          const fromFunction = response.headers;
          const headers: string[] = [];
          for (let i = 0; i < fromFunction.length; i += 2) {
            const name = fromFunction[i] as string;
            if (!HOP_BY_HOP.has(name)) headers.push(name, fromFunction[i + 1] as string);
          }
          const fast = res instanceof FastResponse;
          const stream = response.stream;
          headers.push(
            stream === undefined ? 'content-length' : 'transfer-encoding',
            stream === undefined ? String(response.body.length) : 'chunked',
            'x-hearth-invocation-id',
            invocationId,
          );
          if (response.coldStart) headers.push('x-hearth-cold-start', '1');
          // Traffic decisions, visible to the client (issue 3): all absent on the warm fast path.
          if (response.waitMs > 0) headers.push('x-hearth-wait-ms', String(Math.round(response.waitMs)));
          if (response.circuit !== undefined) headers.push('x-hearth-circuit', response.circuit);
          if (limitHeaders !== undefined) headers.push(...limitHeaders);
          const now = serverTiming || invocationChannel.hasSubscribers ? performance.now() : 0;
          const execMs = now - submitted - response.waitMs;
          if (serverTiming) headers.push('server-timing', timingHeader(response, execMs, now - started));
          try {
            // A function's status and headers were checked where they entered the platform, once per
            // distinct list (checkResult in runtime/ipc/protocol.ts): names are lower-case tokens, values
            // hold no CR, LF or NUL, and framing headers are gone in any case.
            if (fast) res.writeCheckedHead(response.status, headers);
            else res.writeHead(response.status, headers);
          } catch (headerError) {
            // Node refuses header names or values with forbidden characters; that is the function's fault.
            // writeHead had already taken the status text ("OK"); forget it so the 502 gets its own.
            res.statusMessage = '';
            fail(
              new HearthError(
                'HEARTH_E_FN_CRASHED',
                `the function returned an invalid response header: ${(headerError as Error).message}`,
              ),
              ref,
              response.version,
            );
            return;
          }
          if (stream === undefined) endWith(res, response.body);
          else pipeStream(res, response.body, stream, streamBounds(deadline, limits.maxBodyBytes));
          if (invocationChannel.hasSubscribers)
            invocationChannel.publish({
              ref,
              version: response.version,
              invocationId,
              status: response.status,
              durationMs: now - started,
              waitMs: response.waitMs,
              coldStart: response.coldStart,
              errorCode: undefined,
              trigger: 'http',
              startedAt: performance.timeOrigin + started,
              execMs,
              coldStartPhases: response.coldStartPhases,
              trace,
              method: req.method ?? 'GET',
              path: target.path,
              instanceId: response.instanceId,
              payload: body,
              sourceIp: req.socket.remoteAddress,
            } satisfies InvocationEvent);
        },
      );
    };
    // Cluster mode asks whether another node should run it (one test on a single node). The peer
    // checks auth itself: it gets the request's own headers.
    const forwarder = options.forwarder;
    const submit =
      forwarder === undefined
        ? submitHere
        : (body: Buffer): void => {
            const request = {
              method: req.method ?? 'GET',
              url: req.url ?? '/',
              rawHeaders: raw,
              body,
              deadline,
            };
            if (!forwarder.forward(deployed, request, res, () => submitHere(body))) submitHere(body);
          };
    // Function auth and namespace rate quotas (issue 10): one test for a public function.
    if (options.guard?.invocationChecked(deployed) === true) {
      options.guard.checkInvocation(deployed, rawHeaderValue(raw, 'authorization'), (error, result) => {
        if (error !== undefined) {
          fail(error, ref, deployed.version);
          return;
        }
        auth = result?.claims;
        // An API key is the platform's credential, not the function's: the function never sees it.
        if (result?.stripAuthorization === true) headersIn = withoutRawHeader(raw, 'authorization');
        submitWithBody(req, hasBody, limits.maxBodyBytes, submit, fail, ref, deployed.version);
      });
      return;
    }
    submitWithBody(req, hasBody, limits.maxBodyBytes, submit, fail, ref, deployed.version);
  };
}

/** Bodiless requests (most GETs) skip the body reader and its promise entirely. */
function submitWithBody(
  req: IncomingMessage | BufferedRequest,
  hasBody: boolean,
  maxBodyBytes: number,
  submit: (body: Buffer) => void,
  fail: (error: unknown, ref: FunctionRef, version: number) => void,
  ref: FunctionRef,
  version: number,
): void {
  if (!hasBody) submit(EMPTY_BODY);
  else if ('body' in req) {
    if (req.body.length > maxBodyBytes) fail(tooLarge(req.body.length, maxBodyBytes), ref, version);
    else submit(req.body);
  } else readBody(req, maxBodyBytes).then(submit, (error: unknown) => fail(error, ref, version));
}

const EMPTY_BODY = Buffer.alloc(0);

/**
 * Node writes the head and a Buffer body with two chunks (a writev); a latin1 string — byte for byte the
 * same data — is joined to the head and leaves in one write. Worth it for the small bodies that dominate
 * (measured: bench/RESULTS.md); large bodies keep the zero-copy path.
 */
function endWith(res: ResponseWriter, body: Buffer): void {
  if (body.length <= 16 * 1024) res.end(body.toString('latin1'), 'latin1');
  else res.end(body);
}

/** `X-Hearth-Timeout` (ms, or a duration like `2s`) can only shorten the function's own timeout. */
function clientTimeout(header: string | undefined, functionTimeoutMs: number): number {
  if (typeof header !== 'string') return functionTimeoutMs;
  const asNumber = Number(header);
  const requested = Number.isFinite(asNumber) ? asNumber : parseDuration(header);
  return requested !== undefined && requested > 0
    ? Math.min(requested, functionTimeoutMs)
    : functionTimeoutMs;
}

/**
 * `Server-Timing` (https://www.w3.org/TR/server-timing/): where the time went, in milliseconds — waiting
 * for an instance, the cold start by phase when this request paid for one, and the function's execution.
 */
function timingHeader(response: InvocationResponse, execMs: number, totalMs: number): string {
  const phases = response.coldStartPhases;
  if (phases === undefined)
    return `queue;dur=${ms(response.waitMs)}, exec;dur=${ms(execMs)}, total;dur=${ms(totalMs)}`;
  const cold = phases.code + phases.stemCell + phases.attach + phases.load;
  return (
    `queue;dur=${ms(Math.max(0, response.waitMs - cold))}, cold;dur=${ms(cold)};desc="cold start", ` +
    `cold-code;dur=${ms(phases.code)}, cold-stemcell;dur=${ms(phases.stemCell)}, ` +
    `cold-attach;dur=${ms(phases.attach)}, cold-load;dur=${ms(phases.load)}, ` +
    `exec;dur=${ms(execMs)}, total;dur=${ms(totalMs)}`
  );
}

function ms(value: number): number {
  return Math.round(value * 100) / 100;
}

function publish(
  ref: FunctionRef,
  version: number,
  invocationId: string,
  status: number,
  started: number,
  waitMs: number,
  coldStart: boolean,
  errorCode: string | undefined,
  trace: TraceContext | undefined,
): void {
  if (!invocationChannel.hasSubscribers) return;
  invocationChannel.publish({
    ref,
    version,
    invocationId,
    status,
    durationMs: performance.now() - started,
    waitMs,
    coldStart,
    errorCode,
    trigger: 'http',
    startedAt: performance.timeOrigin + started,
    trace,
  } satisfies InvocationEvent);
}
