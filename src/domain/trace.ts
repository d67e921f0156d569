/**
 * @module W3C Trace Context (https://www.w3.org/TR/trace-context/) without a telemetry SDK: parsing and
 * writing `traceparent`, and the span ids an invocation uses, derived from its invocation id.
 *
 * Deriving ids from the invocation's UUID (122 random bits) means the hot path generates nothing for
 * tracing: a request without a `traceparent` costs no extra random bytes, and the gateway, the guest and
 * `observe/` all compute the same ids from the id they already share.
 */

/** The trace an invocation belongs to, as the gateway passes it on. */
export interface TraceContext {
  /** 32 lower-case hex digits. */
  readonly traceId: string;
  /** The span the function's own work is a child of (the invocation's execution span), 16 hex digits. */
  readonly spanId: string;
  /** The caller's span (a client's, or the calling function's execution span), when there is one. */
  readonly parentSpanId: string | undefined;
  /** The `sampled` flag (bit 0 of trace-flags) as received; 1 when the trace started here. */
  readonly flags: number;
  /** Vendor state from a client's `tracestate`, passed on untouched. */
  readonly traceState: string | undefined;
}

const HEX = /^[0-9a-f]+$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/** The parts of a `traceparent` header, or undefined when it is malformed (the spec says: start a new trace). */
export function parseTraceparent(
  header: string | undefined,
): { traceId: string; parentId: string; flags: number } | undefined {
  if (header === undefined) return undefined;
  const value = header.trim().toLowerCase();
  // version "00" is exactly 55 characters; later versions may append fields after a dash.
  if (value.length < 55 || value[2] !== '-' || value[35] !== '-' || value[52] !== '-') return undefined;
  if (value.length > 55 && value[55] !== '-') return undefined;
  const version = value.slice(0, 2);
  if (!HEX.test(version) || version === 'ff' || (version === '00' && value.length !== 55)) return undefined;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  const flags = value.slice(53, 55);
  if (!HEX.test(traceId) || traceId === ZERO_TRACE) return undefined;
  if (!HEX.test(parentId) || parentId === ZERO_SPAN) return undefined;
  if (!HEX.test(flags)) return undefined;
  return { traceId, parentId, flags: Number.parseInt(flags, 16) };
}

export function formatTraceparent(traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${flags & 1 ? '01' : '00'}`;
}

/** The 32 hex digits of a UUID. */
function uuidHex(invocationId: string): string {
  return invocationId.replaceAll('-', '').toLowerCase();
}

/** The trace id of an invocation that started its own trace. */
export function traceIdOf(invocationId: string): string {
  return uuidHex(invocationId);
}

/** The span id of an invocation's gateway (request) span. */
export function requestSpanIdOf(invocationId: string): string {
  return uuidHex(invocationId).slice(0, 16);
}

/** The span id of an invocation's execution span: the parent of whatever the function does. */
export function executionSpanIdOf(invocationId: string): string {
  return uuidHex(invocationId).slice(16, 32);
}

/**
 * The trace context of an invocation: continuing `incoming` (a client's traceparent, or a calling
 * function's) or, without one, a trace of its own.
 */
export function traceFor(
  invocationId: string,
  incoming: { traceId: string; parentId: string; flags: number } | undefined,
  traceState?: string,
): TraceContext {
  return {
    traceId: incoming?.traceId ?? traceIdOf(invocationId),
    spanId: executionSpanIdOf(invocationId),
    parentSpanId: incoming?.parentId,
    flags: incoming?.flags ?? 1,
    traceState: traceState === undefined || traceState === '' ? undefined : traceState,
  };
}
