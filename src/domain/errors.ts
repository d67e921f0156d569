/** @module The one catalogue of Hearth error codes: HTTP status, kind and user-facing meaning. */

export type ErrorKind = 'user' | 'function' | 'system';

interface CatalogueEntry {
  readonly status: number;
  readonly kind: ErrorKind;
  /** One line for docs/errors.md; a test keeps the two in step. */
  readonly summary: string;
}

export const ERROR_CATALOGUE = {
  /** A resource, field or parameter failed validation; details name the field, value and expectation. */
  HEARTH_E_VALIDATION: { status: 400, kind: 'user', summary: 'A field has an invalid value.' },
  /** The request itself is malformed (bad JSON, missing body, wrong content type). */
  HEARTH_E_BAD_REQUEST: { status: 400, kind: 'user', summary: 'The request is malformed.' },
  /** The uploaded archive is unsafe or corrupt: absolute paths, `..`, escaping links, special files. */
  HEARTH_E_ARCHIVE_INVALID: {
    status: 400,
    kind: 'user',
    summary: 'The uploaded archive is unsafe or corrupt.',
  },
  /** The API key is missing or wrong. */
  HEARTH_E_UNAUTHORIZED: { status: 401, kind: 'user', summary: 'Authentication is required.' },
  /** The key or token is valid but its role or namespaces do not cover the request; details name what is needed. */
  HEARTH_E_FORBIDDEN: {
    status: 403,
    kind: 'user',
    summary: "The key's role or namespaces do not allow the request.",
  },
  /** A namespace quota on a count or a size (functions, instances, memory, code bytes) refused the change. */
  HEARTH_E_QUOTA_EXCEEDED: { status: 403, kind: 'user', summary: "A namespace's quota is used up." },
  /** A package signature is required and missing, altered or by an untrusted key (issue 13). */
  HEARTH_E_SIGNATURE_INVALID: {
    status: 403,
    kind: 'user',
    summary: 'The code package is unsigned, altered or signed by an untrusted key.',
  },
  /** No function of that name exists in that namespace. */
  HEARTH_E_FN_NOT_FOUND: { status: 404, kind: 'user', summary: 'The function does not exist.' },
  /** No route matches the path. */
  HEARTH_E_NOT_FOUND: { status: 404, kind: 'user', summary: 'No route matches the path.' },
  /** A named resource other than a function (gateway, async invocation, dead letter, code package) does not exist. */
  HEARTH_E_RESOURCE_NOT_FOUND: {
    status: 404,
    kind: 'user',
    summary: 'The named gateway, invocation, dead letter or code package does not exist.',
  },
  /** The route exists but not for this HTTP method. */
  HEARTH_E_METHOD_NOT_ALLOWED: {
    status: 405,
    kind: 'user',
    summary: 'The route does not accept this method.',
  },
  /** A conflicting change is in progress (for example two deploys of one function at once). */
  HEARTH_E_CONFLICT: { status: 409, kind: 'user', summary: 'A conflicting change is in progress.' },
  /** ctx.events.append with expectedVersion: another append moved the stream first (retry after reading). */
  HEARTH_E_STREAM_CONFLICT: {
    status: 409,
    kind: 'user',
    summary: 'The event stream is not at the expected version.',
  },
  /** An EventGateway route overlaps a route of another gateway (same method and path shape); both are named. */
  HEARTH_E_ROUTE_CONFLICT: {
    status: 409,
    kind: 'user',
    summary: "A gateway route conflicts with another gateway's route.",
  },
  /** The request body exceeds the function's `limits.maxBody`. */
  HEARTH_E_BODY_TOO_LARGE: {
    status: 413,
    kind: 'user',
    summary: "The request body exceeds the function's maxBody.",
  },
  /** The uploaded archive, or its unpacked content, exceeds the platform's limits. */
  HEARTH_E_ARCHIVE_TOO_LARGE: { status: 413, kind: 'user', summary: 'The uploaded archive is too large.' },
  /** Installing the function's dependencies failed; the previous version keeps serving. */
  HEARTH_E_BUILD_FAILED: { status: 422, kind: 'user', summary: 'Building the dependency layer failed.' },
  /** The function's code could not be loaded or its handler export is missing. */
  HEARTH_E_HANDLER_INVALID: { status: 422, kind: 'user', summary: 'The handler could not be loaded.' },
  /** The spec asks for something this platform build or node does not offer (a runtime missing here, say). */
  HEARTH_E_UNSUPPORTED: { status: 422, kind: 'user', summary: 'The requested feature is not available.' },
  /** The image reference names a repository, tag or digest the registry does not have (issue 17). */
  HEARTH_E_IMAGE_NOT_FOUND: {
    status: 404,
    kind: 'user',
    summary: 'The image, tag or digest does not exist in the registry.',
  },
  /** The registry refused the credentials (or asked for some and none are stored); its answer is quoted. */
  HEARTH_E_REGISTRY_AUTH: {
    status: 422,
    kind: 'user',
    summary: 'The registry refused the credentials; use hearth registry login.',
  },
  /** The image cannot be used: a digest mismatch, an unsupported media type or architecture, an unsafe layer. */
  HEARTH_E_IMAGE_INVALID: {
    status: 422,
    kind: 'user',
    summary: 'The image is corrupt, unsafe or of an unsupported kind.',
  },
  /** The registry could not be reached or answered with a server error; the previous version keeps serving. */
  HEARTH_E_REGISTRY_UNAVAILABLE: {
    status: 502,
    kind: 'system',
    summary: 'The image registry cannot be reached.',
  },
  /** Too many requests: a rate limit refused this one. */
  HEARTH_E_RATE_LIMITED: { status: 429, kind: 'user', summary: 'A rate limit refused the request.' },
  /** A namespace's requests-per-second or async queue depth quota refused the request; retry later. */
  HEARTH_E_QUOTA_THROTTLED: {
    status: 429,
    kind: 'user',
    summary: "A namespace's rate or queue quota refused the request.",
  },
  /** The handler threw or rejected; the instance stays healthy. */
  HEARTH_E_FN_ERROR: { status: 500, kind: 'function', summary: 'The handler threw an error.' },
  /** The function's process exited or broke the protocol while serving the request. */
  HEARTH_E_FN_CRASHED: { status: 502, kind: 'function', summary: "The function's process crashed." },
  /** The kernel killed the function's process for passing `limits.memory`; the instance is replaced. */
  HEARTH_E_FN_OOM: { status: 502, kind: 'function', summary: 'The function ran out of memory.' },
  /** No capacity was free within the request's deadline or the wait queue is full. */
  HEARTH_E_SATURATED: { status: 503, kind: 'system', summary: 'The function is saturated; retry later.' },
  /** The function's circuit breaker is open after consecutive failures; it answers fast until a probe succeeds. */
  HEARTH_E_CIRCUIT_OPEN: {
    status: 503,
    kind: 'system',
    summary: "The function's circuit breaker is open; retry later.",
  },
  /** Sandboxed isolation was asked for but bubblewrap is not installed on this node. */
  HEARTH_E_SANDBOX_UNAVAILABLE: {
    status: 503,
    kind: 'system',
    summary: 'Sandboxed isolation is unavailable on this node.',
  },
  /** A runtime process for the function could not be started (its sandbox setup or its boot failed); the message names the cause. */
  HEARTH_E_START_FAILED: {
    status: 503,
    kind: 'system',
    summary: 'A runtime process for the function could not be started.',
  },
  /** `ctx.state` could not reach its store (Redis down or unreachable); the call may be retried. */
  HEARTH_E_STATE_UNAVAILABLE: {
    status: 503,
    kind: 'system',
    summary: 'The state store cannot be reached.',
  },
  /** The platform is shutting down. */
  HEARTH_E_SHUTTING_DOWN: { status: 503, kind: 'system', summary: 'The platform is shutting down.' },
  /** The invocation did not finish within its deadline. */
  HEARTH_E_TIMEOUT: { status: 504, kind: 'function', summary: 'The invocation ran past its timeout.' },
  /** An unexpected platform fault; the log has the details. */
  HEARTH_E_INTERNAL: { status: 500, kind: 'system', summary: 'An internal platform error occurred.' },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface ErrorDetails {
  readonly field?: string;
  readonly value?: unknown;
  readonly expected?: string;
  readonly [key: string]: unknown;
}

/** Every failure the platform reports to a user is one of these; anything else is HEARTH_E_INTERNAL. */
export class HearthError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetails | undefined;
  /** Seconds a client should wait before retrying (429/503). */
  readonly retryAfter: number | undefined;
  /** Response headers that make a traffic decision visible (`RateLimit-*`, `X-Hearth-Circuit`…). */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      details?: ErrorDetails;
      retryAfter?: number;
      cause?: unknown;
      headers?: Readonly<Record<string, string>>;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HearthError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    this.details = options.details === undefined ? undefined : boundedDetails(options.details);
    this.retryAfter = options.retryAfter;
    this.headers = options.headers;
  }
}

export function isHearthError(error: unknown): error is HearthError {
  return error instanceof HearthError;
}

/** The JSON body of every error response: `{error:{code,message,invocationId?,details?}}`. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; invocationId?: string; details?: ErrorDetails };
}

export function errorBody(error: HearthError, invocationId?: string): ErrorBody {
  const body: ErrorBody = { error: { code: error.code, message: error.message } };
  if (invocationId !== undefined) body.error.invocationId = invocationId;
  if (error.details !== undefined) body.error.details = error.details;
  return body;
}

/** Shorthand for the most common user error: one field, its value, and what was expected. */
export function invalidField(field: string, value: unknown, expected: string): HearthError {
  return new HearthError(
    'HEARTH_E_VALIDATION',
    `${field}: got ${describeValue(value)}, expected ${expected}`,
    {
      details: { field, value, expected },
    },
  );
}

/** The longest `details.value` an error echoes back; a caller's value can be megabytes (issue 19). */
export const MAX_ECHOED_CHARS = 200;

/** A caller's value in a message: JSON-like text of at most 80 characters, safe for any depth or cycle. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  return preview(value, 80);
}

/**
 * JSON-like text of `value`, cut to `max` characters (ending "...") when longer. It stops writing once past
 * the budget, so a value nested 100,000 deep, a cyclic one or a huge one costs at most ~`max` steps and
 * as many stack frames — where JSON.stringify would overflow the stack or copy megabytes.
 */
export function preview(value: unknown, max: number): string {
  return cut(value, max).text;
}

function cut(value: unknown, max: number): { text: string; whole: boolean } {
  const out = { text: '' };
  write(value, out, max);
  return out.text.length > max
    ? { text: `${out.text.slice(0, max - 3)}...`, whole: false }
    : { text: out.text, whole: true };
}

function write(value: unknown, out: { text: string }, max: number): void {
  if (out.text.length > max) return;
  if (typeof value === 'string') {
    out.text += JSON.stringify(value.length > max ? value.slice(0, max + 1) : value);
    return;
  }
  if (value === null || typeof value !== 'object') {
    out.text += typeof value === 'bigint' ? String(value) : (JSON.stringify(value) ?? String(value));
    return;
  }
  if (value instanceof Date) {
    out.text += JSON.stringify(value) ?? 'null';
    return;
  }
  if (Array.isArray(value)) {
    out.text += '[';
    for (let i = 0; i < value.length && out.text.length <= max; i++) {
      if (i > 0) out.text += ',';
      write(value[i] === undefined ? null : value[i], out, max);
    }
    out.text += ']';
    return;
  }
  out.text += '{';
  let first = true;
  for (const key in value) {
    if (out.text.length > max) break;
    const inner = (value as Record<string, unknown>)[key];
    if (!Object.hasOwn(value, key) || inner === undefined) continue;
    out.text += `${first ? '' : ','}${JSON.stringify(key.length > max ? key.slice(0, max + 1) : key)}:`;
    first = false;
    write(inner, out, max);
  }
  out.text += '}';
}

/**
 * What an error may echo of a caller's value: the value itself when it is short, else its preview (a
 * string ending "..."). Errors are serialised with JSON.stringify, which must not meet a deep value.
 */
export function echoable(value: unknown): unknown {
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean')
    return value;
  if (typeof value === 'string')
    return value.length > MAX_ECHOED_CHARS ? `${value.slice(0, MAX_ECHOED_CHARS - 3)}...` : value;
  if (typeof value !== 'object') return String(value);
  const { text, whole } = cut(value, MAX_ECHOED_CHARS);
  return whole ? value : text;
}

function boundedDetails(details: ErrorDetails): ErrorDetails {
  if (!('value' in details)) return details;
  const value = echoable(details.value);
  return value === details.value ? details : { ...details, value };
}
