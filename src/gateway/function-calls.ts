/**
 * @module `ctx.invoke(name, event)`: one function calling another through the scheduler, inside the
 * caller's deadline, with the same error codes an HTTP client would see.
 */

import { randomUUID } from 'node:crypto';
import type { DeployedVersion, InvocationRequest, InvocationResponse } from '../domain/deployment.js';
import { HearthError, invalidField, isHearthError } from '../domain/errors.js';
import { type InvocationEvent, invocationChannel } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import { executionSpanIdOf, type TraceContext, traceFor, traceIdOf } from '../domain/trace.js';
import type { HostCallContext, Scheduler } from '../scheduler/index.js';

export interface InvokeCallResult {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  /** Parsed JSON for JSON responses, a string for text, base64 otherwise (with `isBase64Encoded`). */
  readonly body: unknown;
  readonly isBase64Encoded: boolean;
}

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Function-to-function calls are invocations too: observers see them with trigger `invoke`. */
function published(
  ref: FunctionRef,
  invocationId: string,
  started: number,
  trace: TraceContext | undefined,
  response: InvocationResponse | undefined,
  error: unknown,
): void {
  if (!invocationChannel.hasSubscribers) return;
  const durationMs = performance.now() - started;
  const failure = error === undefined ? undefined : isHearthError(error) ? error : undefined;
  invocationChannel.publish({
    ref,
    version: response?.version ?? 0,
    invocationId,
    status: response?.status ?? failure?.status ?? 500,
    durationMs,
    waitMs: response?.waitMs ?? 0,
    coldStart: response?.coldStart ?? false,
    errorCode: error === undefined ? undefined : (failure?.code ?? 'HEARTH_E_INTERNAL'),
    trigger: 'invoke',
    startedAt: performance.timeOrigin + started,
    execMs: response === undefined ? undefined : durationMs - response.waitMs,
    coldStartPhases: response?.coldStartPhases,
    trace,
    method: 'POST',
    path: '/',
    instanceId: response?.instanceId,
  } satisfies InvocationEvent);
}

export function createFunctionCalls(
  scheduler: Scheduler,
  /** Tenancy (src/security): throws to refuse a call from `caller` to `target`. */
  admit?: (caller: FunctionRef, target: DeployedVersion) => void,
): (context: HostCallContext, args: unknown) => Promise<InvokeCallResult> {
  return async (context, args) => {
    const { name, event } = (args ?? {}) as { name?: unknown; event?: unknown };
    if (typeof name !== 'string')
      throw invalidField('ctx.invoke name', name, 'a function name, or name.namespace');
    const dot = name.indexOf('.');
    const ref: FunctionRef =
      dot < 0
        ? { namespace: context.ref.namespace, name }
        : { namespace: name.slice(dot + 1), name: name.slice(0, dot) };
    if (!NAME.test(ref.name) || !NAME.test(ref.namespace))
      throw invalidField('ctx.invoke name', name, 'a function name, or name.namespace');
    const target = scheduler.lookup(ref);
    if (target === undefined)
      throw new HearthError(
        'HEARTH_E_FN_NOT_FOUND',
        `function ${ref.name} not found in namespace ${ref.namespace}`,
      );
    admit?.(context.ref, target);
    const now = Date.now();
    const own = now + target.spec.limits.timeoutMs;
    const deadline = context.deadline === undefined ? own : Math.min(own, context.deadline);
    const body = Buffer.from(JSON.stringify(event ?? null));
    const invocationId = randomUUID();
    // The callee joins the caller's trace as a child of the caller's execution span.
    const caller = context.invocationId;
    const trace =
      caller === undefined
        ? undefined
        : traceFor(invocationId, {
            traceId: context.trace?.traceId ?? traceIdOf(caller),
            parentId: context.trace?.spanId ?? executionSpanIdOf(caller),
            flags: context.trace?.flags ?? 1,
          });
    const started = performance.now();
    const request: InvocationRequest = {
      invocationId,
      method: 'POST',
      path: '/',
      rawQuery: '',
      rawHeaders: [
        'content-type',
        'application/json',
        'x-hearth-caller',
        `${context.ref.namespace}/${context.ref.name}`,
      ],
      body,
      sourceIp: '',
      deadline,
      timeoutMs: deadline - now,
      timeoutSource: deadline < own ? 'X-Hearth-Timeout' : 'limits.timeout',
      trace,
    };
    let response: InvocationResponse;
    try {
      response = await scheduler.invoke(ref, request);
    } catch (error) {
      published(ref, invocationId, started, trace, undefined, error);
      throw error;
    }
    published(ref, invocationId, started, trace, response, undefined);
    const headers: Record<string, string> = {};
    for (let i = 0; i + 1 < response.headers.length; i += 2)
      headers[response.headers[i] as string] = response.headers[i + 1] as string;
    const type = headers['content-type'] ?? '';
    if (/json/.test(type)) {
      const text = response.body.toString('utf8');
      try {
        return {
          statusCode: response.status,
          headers,
          body: JSON.parse(text) as unknown,
          isBase64Encoded: false,
        };
      } catch {
        return { statusCode: response.status, headers, body: text, isBase64Encoded: false };
      }
    }
    if (type === '' || /^text\/|xml|x-www-form-urlencoded/.test(type)) {
      return {
        statusCode: response.status,
        headers,
        body: response.body.toString('utf8'),
        isBase64Encoded: false,
      };
    }
    return {
      statusCode: response.status,
      headers,
      body: response.body.toString('base64'),
      isBase64Encoded: true,
    };
  };
}
