/**
 * @module `ctx.invoke(name, event)`: one function calling another through the scheduler, inside the
 * caller's deadline, with the same error codes an HTTP client would see.
 */

import { randomUUID } from 'node:crypto';
import { HearthError, invalidField } from '../domain/errors.js';
import type { FunctionRef } from '../domain/function.js';
import type { HostCallContext, Scheduler } from '../scheduler/index.js';

export interface InvokeCallResult {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  /** Parsed JSON for JSON responses, a string for text, base64 otherwise (with `isBase64Encoded`). */
  readonly body: unknown;
  readonly isBase64Encoded: boolean;
}

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function createFunctionCalls(
  scheduler: Scheduler,
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
    const now = Date.now();
    const own = now + target.spec.limits.timeoutMs;
    const deadline = context.deadline === undefined ? own : Math.min(own, context.deadline);
    const body = Buffer.from(JSON.stringify(event ?? null));
    const response = await scheduler.invoke(ref, {
      invocationId: randomUUID(),
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
    });
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
