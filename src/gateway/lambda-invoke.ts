/**
 * @module The AWS Lambda Invoke API on the gateway (issue 18): `POST /2015-03-31/functions/{name}/invocations`
 * as the AWS SDKs and CLI send it, so `@aws-sdk/client-lambda`, boto3 and `aws lambda invoke --endpoint-url`
 * invoke Hearth functions; plus GetFunction and GetFunctionConfiguration, read from the active version.
 *
 * The payload is always the event (direct invocation, whatever the function's `eventFormat`), answers and
 * errors are shaped as Lambda's (botocore and the JS SDK read the error's name from `x-amzn-ErrorType` and
 * its text from the body's `Message`). This route is off the `/function/` hot path: it is reached only by
 * its own prefix, after the invocation route's.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DeployedVersion, InvocationResponse } from '../domain/deployment.js';
import { type ErrorCode, isHearthError } from '../domain/errors.js';
import { type InvocationEvent, invocationChannel } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import type { RetryPolicy } from '../domain/triggers.js';
import type { Queue } from '../queue/index.js';
import type { Scheduler } from '../scheduler/index.js';
import { rawHeaderValue, readBody } from './http.js';
import { clientKeyOf, takeTokens } from './rate-limit.js';
import type { Traffic } from './traffic.js';

/** Lambda's API version is part of every path its clients send. */
export const LAMBDA_API_PREFIX = '/2015-03-31/functions/';
/** The queue source of `Event` invocations: the queue worker invokes them directly too. */
export const LAMBDA_QUEUE_SOURCE = 'lambda';

/** The region and account an ARN names when the request does not say: ARNs in answers need some. */
const DEFAULT_REGION = 'us-east-1';
const DEFAULT_ACCOUNT = '000000000000';
/** `X-Amz-Log-Result` carries the last 4 KB of the invocation's log, as Lambda's does. */
const LOG_TAIL_BYTES = 4096;

const INVOCATION_TYPES = ['Event', 'RequestResponse', 'DryRun'] as const;
const LOG_TYPES = ['None', 'Tail'] as const;

export interface LambdaApiOptions {
  readonly scheduler: Scheduler;
  /** `Event` invocations go to the durable queue, as `/async-function/` ones do. */
  readonly queue: Queue;
  readonly retry: RetryPolicy;
  /** Wakes the queue worker after an `Event` invocation is accepted. */
  readonly onAccepted: () => void;
  /** The log lines one invocation wrote, oldest first (for `X-Amz-Log-Type: Tail`). */
  readonly invocationLogs: (ref: FunctionRef, invocationId: string) => readonly string[];
  readonly traffic?: Traffic;
  readonly onInternal: (error: unknown) => void;
}

/** A failure answered as Lambda answers it: the exception's name in `x-amzn-ErrorType`, `{Type, Message}`. */
export class LambdaApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly kind: 'User' | 'Service' = 'User',
    readonly extra: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = type;
  }
}

/** What a request's SigV4 `Authorization` header says about who sent it. */
export interface SigV4Identity {
  readonly accessKeyId: string | undefined;
  /** The credential scope's region, used in the ARNs of answers. */
  readonly region: string | undefined;
}

/**
 * The credential scope of a request's SigV4 `Authorization` header (for the region in ARNs). The
 * signature itself is verified before this route, by the security part's guard (security/http.ts
 * `guardLambda`), whenever the request needs a principal: a function with key auth, or reading a
 * configuration while auth is on.
 */
export function mapSigV4Credentials(rawHeaders: readonly string[]): SigV4Identity {
  const authorization = rawHeaderValue(rawHeaders, 'authorization');
  // `AWS4-HMAC-SHA256 Credential=AKID/20261206/us-east-1/lambda/aws4_request, SignedHeaders=…, Signature=…`
  const scope = authorization?.match(/Credential=([^/,\s]+)\/\d{8}\/([^/,\s]+)\//);
  return { accessKeyId: scope?.[1], region: scope?.[2] };
}

/** The function a Lambda API path names: its Hearth ref and the qualifier asked for. */
export interface LambdaTarget {
  readonly ref: FunctionRef;
  readonly qualifier: string | undefined;
  readonly region: string | undefined;
  readonly account: string | undefined;
}

// Lambda's own FunctionName pattern, loosened to Hearth's names: a name, a partial ARN
// (`123456789012:function:name`) or a full one, each with an optional `:qualifier`.
const FUNCTION_NAME =
  /^(?:arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):(\d+):function:|(\d+):function:)?([A-Za-z0-9_.-]+)(?::(\$LATEST|[A-Za-z0-9_-]+))?$/;

/**
 * Parses a FunctionName as the SDKs send it (percent-encoded) and `?Qualifier=`. `name.namespace` names a
 * function outside the default namespace, as `/function/name.namespace` does (Lambda names have no dots).
 */
export function parseLambdaFunctionName(encoded: string, queryQualifier: string | undefined): LambdaTarget {
  let raw: string;
  try {
    raw = decodeURIComponent(encoded);
  } catch {
    raw = encoded;
  }
  const match = FUNCTION_NAME.exec(raw);
  if (match === null)
    throw new LambdaApiError(
      400,
      'ValidationException',
      `1 validation error detected: Value '${raw}' at 'functionName' failed to satisfy constraint: Member must be a function name (name or name.namespace), a partial ARN (ACCOUNT:function:NAME) or an ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME), each with an optional :QUALIFIER`,
    );
  const qualified = match[4] as string;
  const nameQualifier = match[5];
  if (nameQualifier !== undefined && queryQualifier !== undefined && nameQualifier !== queryQualifier)
    throw new LambdaApiError(
      400,
      'InvalidParameterValueException',
      `The derived qualifier from the function name (${nameQualifier}) does not match the specified qualifier (${queryQualifier}).`,
    );
  const dot = qualified.indexOf('.');
  return {
    ref:
      dot < 0
        ? { namespace: 'default', name: qualified }
        : { namespace: qualified.slice(dot + 1), name: qualified.slice(0, dot) },
    qualifier: nameQualifier ?? queryQualifier,
    region: match[1],
    account: match[2] ?? match[3],
  };
}

/** What the security guard found before the route: handed on so nothing is read or checked twice. */
export interface LambdaGuarded {
  /** The request's body, when the guard read it (to hash it for SigV4). */
  readonly body?: Buffer;
  /** The caller's claims for a function with key or JWT auth: the function's `ctx.auth`. */
  readonly auth?: Readonly<Record<string, unknown>> | undefined;
}

export type LambdaRoute = (req: IncomingMessage, res: ServerResponse, guarded?: LambdaGuarded) => void;

export function createLambdaApi(options: LambdaApiOptions): LambdaRoute {
  return (req, res, guarded) => {
    const requestId = randomUUID();
    const answerError = (error: unknown): void => sendLambdaError(res, error, requestId, options.onInternal);
    try {
      const url = req.url ?? '/';
      const queryAt = url.indexOf('?');
      const pathname = queryAt < 0 ? url : url.slice(0, queryAt);
      const query = new URLSearchParams(queryAt < 0 ? '' : url.slice(queryAt + 1));
      const [encodedName = '', operation, ...more] = pathname.slice(LAMBDA_API_PREFIX.length).split('/');
      const method = req.method ?? 'GET';
      const identity = mapSigV4Credentials(req.rawHeaders);
      const target = (): LambdaTarget =>
        parseLambdaFunctionName(encodedName, query.get('Qualifier') ?? undefined);
      if (encodedName !== '' && more.length === 0) {
        if (operation === 'invocations' && method === 'POST') {
          invokeFunction(options, req, res, target(), identity, requestId, guarded);
          return;
        }
        if ((operation === undefined || operation === '') && method === 'GET') {
          const found = resolveTarget(options.scheduler, target(), identity);
          sendAws(res, 200, requestId, {
            Configuration: configuration(found),
            Code: { RepositoryType: 'Hearth' },
            Tags: {},
          });
          return;
        }
        if (operation === 'configuration' && method === 'GET') {
          sendAws(res, 200, requestId, configuration(resolveTarget(options.scheduler, target(), identity)));
          return;
        }
      }
      throw new LambdaApiError(
        404,
        'UnknownOperationException',
        `Hearth serves Invoke (POST ${LAMBDA_API_PREFIX}{name}/invocations), GetFunction and GetFunctionConfiguration (GET ${LAMBDA_API_PREFIX}{name}[/configuration]) of the Lambda API; not ${method} ${pathname}`,
      );
    } catch (error) {
      answerError(error);
    }
  };
}

/** The target's active version, or Lambda's ResourceNotFoundException naming the ARN asked for. */
interface Resolved {
  readonly deployed: DeployedVersion;
  readonly arn: string;
  /** What `X-Amz-Executed-Version` says: `$LATEST` unless a version number was asked for. */
  readonly executedVersion: string;
}

function resolveTarget(scheduler: Scheduler, target: LambdaTarget, identity: SigV4Identity): Resolved {
  const qualifiedName =
    target.ref.namespace === 'default' ? target.ref.name : `${target.ref.name}.${target.ref.namespace}`;
  const arn = `arn:aws:lambda:${target.region ?? identity.region ?? DEFAULT_REGION}:${target.account ?? DEFAULT_ACCOUNT}:function:${qualifiedName}`;
  const deployed = scheduler.lookup(target.ref);
  if (deployed === undefined)
    throw new LambdaApiError(
      404,
      'ResourceNotFoundException',
      `Function not found: ${arn}${target.qualifier === undefined ? '' : `:${target.qualifier}`} (Hearth function ${target.ref.name} in namespace ${target.ref.namespace})`,
    );
  const qualifier = target.qualifier;
  // Hearth serves the active version only: `$LATEST` and its number name it; older versions and
  // aliases are not served (a rollback makes an older version active again).
  if (qualifier !== undefined && qualifier !== '$LATEST' && qualifier !== String(deployed.version))
    throw new LambdaApiError(
      404,
      'ResourceNotFoundException',
      `Function not found: ${arn}:${qualifier} (Hearth serves only the active version, ${deployed.version}, or $LATEST)`,
    );
  return {
    deployed,
    arn,
    executedVersion: qualifier === undefined || qualifier === '$LATEST' ? '$LATEST' : qualifier,
  };
}

const LAMBDA_RUNTIMES: Record<string, string> = { node20: 'nodejs20.x', python3: 'python3.12' };

function configuration(found: Resolved): Record<string, unknown> {
  const { spec, ref, version } = found.deployed;
  return {
    FunctionName: ref.name,
    FunctionArn: found.arn,
    Runtime: LAMBDA_RUNTIMES[spec.runtime] ?? spec.runtime,
    Handler: spec.handler,
    MemorySize: Math.round(spec.limits.memoryBytes / 1024 ** 2),
    Timeout: Math.ceil(spec.limits.timeoutMs / 1000),
    Version: String(version),
    Environment: { Variables: spec.env },
    State: 'Active',
    LastUpdateStatus: 'Successful',
    PackageType: 'Zip',
  };
}

function invokeFunction(
  options: LambdaApiOptions,
  req: IncomingMessage,
  res: ServerResponse,
  target: LambdaTarget,
  identity: SigV4Identity,
  requestId: string,
  guarded: LambdaGuarded | undefined,
): void {
  const fail = (error: unknown): void => sendLambdaError(res, error, requestId, options.onInternal);
  const invocationType = rawHeaderValue(req.rawHeaders, 'x-amz-invocation-type') ?? 'RequestResponse';
  if (!(INVOCATION_TYPES as readonly string[]).includes(invocationType))
    throw enumError('invocationType', invocationType, INVOCATION_TYPES);
  const logType = rawHeaderValue(req.rawHeaders, 'x-amz-log-type') ?? 'None';
  if (!(LOG_TYPES as readonly string[]).includes(logType)) throw enumError('logType', logType, LOG_TYPES);
  const found = resolveTarget(options.scheduler, target, identity);
  const { deployed } = found;
  let limitHeaders: string[] | undefined;
  const rule =
    options.traffic?.functionLimited === true ? options.traffic.functionRule(deployed.ref) : undefined;
  if (rule !== undefined)
    limitHeaders = takeTokens([rule], clientKeyOf(req.rawHeaders, req.socket.remoteAddress))?.headers;
  const maxBody = deployed.spec.limits.maxBodyBytes;
  (guarded?.body === undefined ? readBody(req, maxBody) : Promise.resolve(guarded.body))
    .then((body) => {
      checkJson(body);
      if (invocationType === 'DryRun') {
        res.writeHead(204, { 'x-amzn-requestid': requestId, ...pairs(limitHeaders) });
        res.end();
        return;
      }
      if (invocationType === 'Event') {
        return options.queue
          .enqueue({
            ref: deployed.ref,
            source: LAMBDA_QUEUE_SOURCE,
            request: { method: 'POST', path: '/', rawQuery: '', headers: JSON_HEADERS, body },
            maxAttempts: options.retry.attempts,
            backoffMs: options.retry.backoffMs,
            maxBackoffMs: options.retry.maxBackoffMs,
            id: requestId,
          })
          .then((message) => {
            options.onAccepted();
            res.writeHead(202, {
              'x-amzn-requestid': message.id,
              'x-hearth-invocation-id': message.id,
              location: `/api/v1/invocations/${message.id}`,
              'content-length': '0',
              ...pairs(limitHeaders),
            });
            res.end();
          });
      }
      invokeNow(options, req, res, found, body, logType === 'Tail', requestId, limitHeaders, guarded?.auth);
      return undefined;
    })
    .catch(fail);
}

const JSON_HEADERS: readonly string[] = ['content-type', 'application/json'];

function invokeNow(
  options: LambdaApiOptions,
  req: IncomingMessage,
  res: ServerResponse,
  found: Resolved,
  body: Buffer,
  tail: boolean,
  requestId: string,
  limitHeaders: string[] | undefined,
  auth: Readonly<Record<string, unknown>> | undefined,
): void {
  const { deployed } = found;
  const started = performance.now();
  const timeoutMs = deployed.spec.limits.timeoutMs;
  options.scheduler.submit(
    deployed.ref,
    {
      invocationId: requestId,
      method: 'POST',
      path: '/',
      rawQuery: '',
      rawHeaders: JSON_HEADERS,
      body,
      sourceIp: req.socket.remoteAddress ?? '',
      deadline: Date.now() + timeoutMs,
      timeoutMs,
      timeoutSource: 'limits.timeout',
      direct: true,
      ...(auth === undefined ? {} : { auth }),
    },
    (error, response) => {
      const durationMs = performance.now() - started;
      publish(deployed, requestId, started, durationMs, error, response);
      if (error !== undefined || response === undefined) {
        const unhandled = functionFailure(error, requestId, timeoutMs);
        if (unhandled === undefined) {
          sendLambdaError(res, error, requestId, options.onInternal);
          return;
        }
        answer(200, Buffer.from(JSON.stringify(unhandled)), true, undefined);
        return;
      }
      if (response.status === 400) {
        // The guest's answer to a payload it could not make an event of; checkJson makes this rare.
        sendLambdaError(
          res,
          new LambdaApiError(400, 'InvalidRequestContentException', response.body.toString('utf8')),
          requestId,
          options.onInternal,
        );
        return;
      }
      const functionError = response.headers.includes('x-amz-function-error');
      answer(200, response.body, functionError, response);
    },
  );

  function answer(
    status: number,
    payload: Buffer,
    functionError: boolean,
    response: InvocationResponse | undefined,
  ): void {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'content-length': String(payload.length),
      'x-amzn-requestid': requestId,
      'x-amz-executed-version': found.executedVersion,
      'x-hearth-invocation-id': requestId,
      ...pairs(limitHeaders),
    };
    if (functionError) headers['x-amz-function-error'] = 'Unhandled';
    if (response?.coldStart === true) headers['x-hearth-cold-start'] = '1';
    if (tail) headers['x-amz-log-result'] = logTail(options, found, requestId, performance.now() - started);
    res.writeHead(status, headers);
    res.end(payload);
  }
}

/**
 * The invocation's log as Lambda's `LogType: Tail` gives it: START, the function's lines, END and REPORT,
 * cut to its last 4 KB and base64-encoded. The function's lines are in the log store by now: a guest
 * writes its Log frames before its Result frame, and the host stores each as it arrives.
 */
function logTail(options: LambdaApiOptions, found: Resolved, requestId: string, durationMs: number): string {
  const { spec, ref } = found.deployed;
  const lines = options.invocationLogs(ref, requestId);
  const text =
    `START RequestId: ${requestId} Version: ${found.executedVersion}\n` +
    lines.map((line) => (line.endsWith('\n') ? line : `${line}\n`)).join('') +
    `END RequestId: ${requestId}\n` +
    `REPORT RequestId: ${requestId}\tDuration: ${durationMs.toFixed(2)} ms\tBilled Duration: ${Math.max(1, Math.ceil(durationMs))} ms\tMemory Size: ${Math.round(spec.limits.memoryBytes / 1024 ** 2)} MB\t\n`;
  const bytes = Buffer.from(text, 'utf8');
  return bytes.subarray(Math.max(0, bytes.length - LOG_TAIL_BYTES)).toString('base64');
}

/**
 * A failure of the function itself, as Lambda reports it: 200 with `X-Amz-Function-Error: Unhandled` and
 * this body. Undefined when the failure is the platform's (answered as an API error instead).
 */
function functionFailure(
  error: unknown,
  requestId: string,
  timeoutMs: number,
): Record<string, string> | undefined {
  if (!isHearthError(error)) return undefined;
  switch (error.code) {
    case 'HEARTH_E_TIMEOUT':
      return {
        errorType: 'Sandbox.Timedout',
        errorMessage: `RequestId: ${requestId} Error: Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`,
      };
    case 'HEARTH_E_FN_OOM':
      return {
        errorType: 'Runtime.OutOfMemory',
        errorMessage: `RequestId: ${requestId} Error: Runtime exited with error: ${error.message}`,
      };
    case 'HEARTH_E_FN_CRASHED':
      return {
        errorType: 'Runtime.ExitError',
        errorMessage: `RequestId: ${requestId} Error: Runtime exited with error: ${error.message}`,
      };
    case 'HEARTH_E_FN_ERROR':
      return { errorType: 'Error', errorMessage: error.message };
    default:
      return undefined;
  }
}

/** Hearth's platform errors as the Lambda exceptions its clients know (and retry: 429, 5xx). */
const AS_LAMBDA: Partial<Record<ErrorCode, readonly [number, string]>> = {
  HEARTH_E_FN_NOT_FOUND: [404, 'ResourceNotFoundException'],
  HEARTH_E_BODY_TOO_LARGE: [413, 'RequestTooLargeException'],
  HEARTH_E_RATE_LIMITED: [429, 'TooManyRequestsException'],
  HEARTH_E_SATURATED: [429, 'TooManyRequestsException'],
  HEARTH_E_CIRCUIT_OPEN: [429, 'TooManyRequestsException'],
  HEARTH_E_START_FAILED: [502, 'ResourceNotReadyException'],
  HEARTH_E_HANDLER_INVALID: [502, 'ResourceNotReadyException'],
  HEARTH_E_UNAUTHORIZED: [403, 'UnrecognizedClientException'],
  HEARTH_E_FORBIDDEN: [403, 'AccessDeniedException'],
  HEARTH_E_BAD_REQUEST: [400, 'InvalidRequestContentException'],
};

export function sendLambdaError(
  res: ServerResponse,
  error: unknown,
  requestId: string,
  onInternal: (error: unknown) => void,
): void {
  let failure: LambdaApiError;
  if (error instanceof LambdaApiError) failure = error;
  else if (isHearthError(error)) {
    const [status, type] = AS_LAMBDA[error.code] ?? [500, 'ServiceException'];
    failure = new LambdaApiError(
      status,
      type,
      error.message,
      status >= 500 ? 'Service' : 'User',
      error.retryAfter === undefined ? {} : { 'retry-after': String(error.retryAfter) },
    );
  } else {
    onInternal(error);
    failure = new LambdaApiError(
      500,
      'ServiceException',
      'an internal error occurred; the platform log has the details',
      'Service',
    );
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendAws(
    res,
    failure.status,
    requestId,
    { Type: failure.kind, Message: failure.message },
    {
      'x-amzn-errortype': failure.type,
      ...failure.extra,
    },
  );
}

function sendAws(
  res: ServerResponse,
  status: number,
  requestId: string,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    'x-amzn-requestid': requestId,
    ...headers,
  });
  res.end(payload);
}

/** Lambda refuses a payload that is not JSON before invoking anything; so does Hearth. */
function checkJson(body: Buffer): void {
  if (body.length === 0) return;
  try {
    JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new LambdaApiError(
      400,
      'InvalidRequestContentException',
      `Could not parse request body into json: ${(error as Error).message}`,
    );
  }
}

function enumError(field: string, value: string, allowed: readonly string[]): LambdaApiError {
  return new LambdaApiError(
    400,
    'ValidationException',
    `1 validation error detected: Value '${value}' at '${field}' failed to satisfy constraint: Member must satisfy enum value set: [${allowed.join(', ')}]`,
  );
}

function pairs(flat: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (flat !== undefined)
    for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}

function publish(
  deployed: DeployedVersion,
  invocationId: string,
  started: number,
  durationMs: number,
  error: unknown,
  response: InvocationResponse | undefined,
): void {
  if (!invocationChannel.hasSubscribers) return;
  invocationChannel.publish({
    ref: deployed.ref,
    version: response?.version ?? deployed.version,
    invocationId,
    status: response?.status ?? (isHearthError(error) ? error.status : 500),
    durationMs,
    waitMs: response?.waitMs ?? 0,
    coldStart: response?.coldStart ?? false,
    errorCode: response === undefined ? (isHearthError(error) ? error.code : 'HEARTH_E_INTERNAL') : undefined,
    trigger: 'lambda',
    startedAt: performance.timeOrigin + started,
    method: 'POST',
    path: '/',
    ...(response === undefined ? {} : { instanceId: response.instanceId }),
  } satisfies InvocationEvent);
}
