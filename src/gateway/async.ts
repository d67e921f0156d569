/**
 * @module `POST /async-function/<name>[.<namespace>][/<rest>]`: accepts an invocation into the durable
 * queue and answers 202 with its id once it is on disk. An unknown function, a body over the function's
 * `maxBody`, or an `X-Callback-Url` that is malformed or points into private address space, is refused
 * here, never accepted and dropped later.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { HearthError } from '../domain/errors.js';
import type { RetryPolicy } from '../domain/triggers.js';
import type { Queue } from '../queue/index.js';
import type { Scheduler } from '../scheduler/index.js';
import { readBody, sendError, sendJson } from './http.js';
import { parseFunctionPath } from './invoke.js';
import { clientKeyOf, takeTokens } from './rate-limit.js';
import type { Traffic } from './traffic.js';

export const ASYNC_PREFIX = '/async-function/';

/** Connection-level headers are not part of the request the function will see later. */
const NOT_KEPT = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'expect',
  'upgrade',
]);

export interface AsyncRouteOptions {
  readonly scheduler: Scheduler;
  readonly queue: Queue;
  readonly traffic: Traffic;
  readonly retry: RetryPolicy;
  /** Accept-time check of `X-Callback-Url` (scheme, and destinations a callback may not reach). */
  readonly vetCallback: (value: string) => Promise<unknown>;
  /** Wakes the queue worker: the invocation can start at once. */
  readonly onAccepted: () => void;
  readonly onInternal: (error: unknown) => void;
}

export function parseAsyncPath(url: string): ReturnType<typeof parseFunctionPath> {
  return parseFunctionPath(url, ASYNC_PREFIX);
}

/** The route, told the caller's claims (`ctx.auth`) once the security guard has checked its credentials. */
export type AsyncRoute = (
  req: IncomingMessage,
  res: ServerResponse,
  checked?: { readonly auth?: Readonly<Record<string, unknown>> },
) => void;

export function createAsyncRoute(options: AsyncRouteOptions): AsyncRoute {
  const { scheduler, queue, traffic } = options;
  return (req, res, checked) => {
    // The caller's claims, when the guard checked a function's auth: kept with the message for `ctx.auth`.
    const auth = checked?.auth;
    const fail = (error: unknown): void => sendError(res, error, undefined, options.onInternal);
    const target = parseAsyncPath(req.url ?? '/');
    if (target === undefined) {
      fail(
        new HearthError('HEARTH_E_NOT_FOUND', 'no function named in the path; use /async-function/<name>'),
      );
      return;
    }
    const deployed = scheduler.lookup(target.ref);
    if (deployed === undefined) {
      fail(
        new HearthError(
          'HEARTH_E_FN_NOT_FOUND',
          `function ${target.ref.name} not found in namespace ${target.ref.namespace}; nothing was accepted`,
        ),
      );
      return;
    }
    let limitHeaders: string[] | undefined;
    if (traffic.functionLimited) {
      const rule = traffic.functionRule(target.ref);
      try {
        if (rule !== undefined)
          limitHeaders = takeTokens([rule], clientKeyOf(req.rawHeaders, req.socket.remoteAddress))?.headers;
      } catch (error) {
        fail(error);
        return;
      }
    }
    const headers: string[] = [];
    let callbackUrl: string | undefined;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const value = raw[i + 1] ?? '';
      if (name === 'x-callback-url') {
        callbackUrl = value;
        continue;
      }
      if (!NOT_KEPT.has(name)) headers.push(name, value);
    }
    (callbackUrl === undefined ? Promise.resolve() : options.vetCallback(callbackUrl))
      .then(() => readBody(req, deployed.spec.limits.maxBodyBytes))
      .then((body) =>
        queue.enqueue({
          ref: target.ref,
          source: 'async',
          request: {
            method: req.method ?? 'POST',
            path: target.path,
            rawQuery: target.rawQuery,
            headers,
            body,
            ...(auth === undefined ? {} : { auth }),
          },
          maxAttempts: options.retry.attempts,
          backoffMs: options.retry.backoffMs,
          maxBackoffMs: options.retry.maxBackoffMs,
          ...(callbackUrl === undefined ? {} : { callbackUrl }),
        }),
      )
      .then(
        (message) => {
          options.onAccepted();
          const statusUrl = `/api/v1/invocations/${message.id}`;
          const extra: Record<string, string> = { 'x-hearth-invocation-id': message.id, location: statusUrl };
          if (limitHeaders !== undefined)
            for (let i = 0; i + 1 < limitHeaders.length; i += 2)
              extra[limitHeaders[i] as string] = limitHeaders[i + 1] as string;
          sendJson(
            res,
            202,
            {
              id: message.id,
              status: message.state,
              function: target.ref.name,
              namespace: target.ref.namespace,
              statusUrl,
              ...(callbackUrl === undefined ? {} : { callbackUrl }),
            },
            extra,
          );
        },
        (error: unknown) => fail(error),
      );
  };
}
