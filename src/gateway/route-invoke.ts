/**
 * @module Invoking a function through an EventGateway route: the route's rate limits, timeout, priority and
 * queue bound apply; the function sees the full request path plus `x-hearth-route` and the `:param` values.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InvocationRequest, InvocationResponse } from '../domain/deployment.js';
import { HearthError, isHearthError } from '../domain/errors.js';
import { type InvocationEvent, invocationChannel } from '../domain/events.js';
import { parseDuration } from '../domain/units.js';
import type { Scheduler } from '../scheduler/index.js';
import { HOP_BY_HOP, pipeStream, readBody, type StreamBounds, sendError, streamBounds } from './http.js';
import { clientKeyOf, takeTokens } from './rate-limit.js';
import type { RouteMatch } from './routes.js';
import type { Traffic } from './traffic.js';

export interface RouteInvokerOptions {
  readonly scheduler: Scheduler;
  readonly traffic: Traffic;
  readonly onInternal: (error: unknown) => void;
}

export type RouteInvoker = (
  req: IncomingMessage,
  res: ServerResponse,
  match: RouteMatch,
  pathname: string,
  rawQuery: string,
) => void;

export function createRouteInvoker(options: RouteInvokerOptions): RouteInvoker {
  const { scheduler, traffic } = options;
  return (req, res, match, pathname, rawQuery) => {
    const { route, params } = match;
    const invocationId = randomUUID();
    const started = performance.now();
    const routeId = `${route.gateway}#${route.index}`;
    const fail = (error: unknown, version = 0): void => {
      if (!res.headersSent) res.setHeader('x-hearth-route', routeId);
      sendError(res, error, invocationId, options.onInternal);
      publish(
        route.ref,
        version,
        invocationId,
        res.statusCode,
        started,
        isHearthError(error) ? error.code : 'HEARTH_E_INTERNAL',
      );
    };
    const deployed = scheduler.lookup(route.ref);
    if (deployed === undefined) {
      fail(
        new HearthError(
          'HEARTH_E_FN_NOT_FOUND',
          `route ${route.path} of gateway ${route.gateway} leads to function ${route.ref.name} (namespace ${route.ref.namespace}), which is not deployed`,
        ),
      );
      return;
    }
    const raw = req.rawHeaders;
    let limitHeaders: string[] | undefined;
    try {
      limitHeaders = takeTokens(traffic.rulesFor(route), clientKeyOf(raw, req.socket.remoteAddress))?.headers;
    } catch (error) {
      fail(error, deployed.version);
      return;
    }
    let timeoutHeader: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      if ((raw[i] as string).toLowerCase() === 'x-hearth-timeout') timeoutHeader = raw[i + 1];
    }
    const fnTimeout = deployed.spec.limits.timeoutMs;
    let timeoutMs = fnTimeout;
    let timeoutSource: InvocationRequest['timeoutSource'] = 'limits.timeout';
    if (route.timeoutMs !== undefined && route.timeoutMs < timeoutMs) {
      timeoutMs = route.timeoutMs;
      timeoutSource = 'route.timeout';
    }
    const asked =
      timeoutHeader === undefined
        ? undefined
        : Number.isFinite(Number(timeoutHeader))
          ? Number(timeoutHeader)
          : parseDuration(timeoutHeader);
    if (asked !== undefined && asked > 0 && asked < timeoutMs) {
      timeoutMs = asked;
      timeoutSource = 'X-Hearth-Timeout';
    }
    const deadline = Date.now() + timeoutMs;
    const headers = [...raw, 'x-hearth-route', routeId];
    if (route.paramNames.length > 0) headers.push('x-hearth-route-params', JSON.stringify(params));
    readBody(req, deployed.spec.limits.maxBodyBytes).then(
      (body) => {
        const request: InvocationRequest = {
          invocationId,
          method: req.method ?? 'GET',
          path: pathname,
          rawQuery,
          rawHeaders: headers,
          body,
          sourceIp: req.socket.remoteAddress ?? '',
          deadline,
          timeoutMs,
          timeoutSource,
          ...(route.entry.priority === undefined ? {} : { priority: route.entry.priority }),
          ...(route.maxWaitMs === undefined ? {} : { queueTimeoutMs: route.maxWaitMs }),
        };
        scheduler.submit(route.ref, request, (error, response) => {
          if (error !== undefined || response === undefined) {
            fail(error, deployed.version);
            return;
          }
          const extra = ['x-hearth-route', routeId];
          if (limitHeaders !== undefined) extra.push(...limitHeaders);
          if (
            !writeResponse(
              res,
              response,
              invocationId,
              extra,
              streamBounds(deadline, deployed.spec.limits.maxBodyBytes),
            )
          ) {
            fail(
              new HearthError('HEARTH_E_FN_CRASHED', 'the function returned an invalid response header'),
              response.version,
            );
            return;
          }
          publish(route.ref, response.version, invocationId, response.status, started, undefined, response);
        });
      },
      (error: unknown) => fail(error, deployed.version),
    );
  };
}

/** Writes a function's response with the platform's headers; false when the function's headers are invalid. */
export function writeResponse(
  res: ServerResponse,
  response: InvocationResponse,
  invocationId: string,
  extra: readonly string[] = [],
  /** A streamed response's deadline and size bound (the function's); without them, a minute and 20 MiB. */
  bounds: StreamBounds = streamBounds(Date.now() + 60_000, 0),
): boolean {
  const headers: string[] = [];
  const fromFunction = response.headers;
  for (let i = 0; i < fromFunction.length; i += 2) {
    const name = fromFunction[i] as string;
    if (!HOP_BY_HOP.has(name)) headers.push(name, fromFunction[i + 1] as string);
  }
  const stream = response.stream;
  headers.push(
    stream === undefined ? 'content-length' : 'transfer-encoding',
    stream === undefined ? String(response.body.length) : 'chunked',
    'x-hearth-invocation-id',
    invocationId,
    ...extra,
  );
  if (response.coldStart) headers.push('x-hearth-cold-start', '1');
  if (response.waitMs > 0) headers.push('x-hearth-wait-ms', String(Math.round(response.waitMs)));
  if (response.circuit !== undefined) headers.push('x-hearth-circuit', response.circuit);
  try {
    res.writeHead(response.status, headers);
  } catch {
    res.statusMessage = '';
    return false;
  }
  if (stream === undefined) res.end(response.body);
  else pipeStream(res, response.body, stream, bounds);
  return true;
}

function publish(
  ref: InvocationEvent['ref'],
  version: number,
  invocationId: string,
  status: number,
  started: number,
  errorCode: string | undefined,
  response?: InvocationResponse,
): void {
  if (!invocationChannel.hasSubscribers) return;
  invocationChannel.publish({
    ref,
    version,
    invocationId,
    status,
    durationMs: performance.now() - started,
    waitMs: response?.waitMs ?? 0,
    coldStart: response?.coldStart ?? false,
    errorCode,
    trigger: 'http',
  } satisfies InvocationEvent);
}
