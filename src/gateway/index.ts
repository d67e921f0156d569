/**
 * @module The gateway: one HTTP server for invocations (`/function/…`), the control API (`/api/v1/…`,
 * mounted by the composition root) and health. Routing is a few prefix checks, not a framework, because
 * every invocation pays for it.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { HearthError } from '../domain/errors.js';
import type { Scheduler } from '../scheduler/index.js';
import { ASYNC_PREFIX } from './async.js';
import { isEventsPath } from './events-ingress.js';
import { type FastRoute, installFastFront } from './fast-http.js';
import { type Handler, sendError, sendJson } from './http.js';
import {
  createInvokeRoute,
  FUNCTION_PREFIX,
  type InvocationForwarder,
  type InvocationGuard,
  type InvokeRoute,
} from './invoke.js';
import { LAMBDA_API_PREFIX } from './lambda-invoke.js';
import { createRouteInvoker } from './route-invoke.js';
import type { TlsReloader } from './tls.js';
import type { Traffic } from './traffic.js';

export {
  ASYNC_PREFIX,
  type AsyncRoute,
  type AsyncRouteOptions,
  createAsyncRoute,
  parseAsyncPath,
} from './async.js';
export {
  createEventsIngress,
  EVENTS_PATH,
  EVENTS_QUEUE_SOURCE,
  type EventsIngressOptions,
  isEventsPath,
} from './events-ingress.js';
export { createFunctionCalls, type InvokeCallResult } from './function-calls.js';
export {
  clientClosed,
  type Handler,
  parseJsonBody,
  readBody,
  readJsonBody,
  sendError,
  sendJson,
  withoutRawHeader,
} from './http.js';
export {
  type ForwardedRequest,
  type InvocationForwarder,
  type InvocationGuard,
  type InvokeRoute,
  parseFunctionPath,
} from './invoke.js';
export {
  createLambdaApi,
  LAMBDA_API_PREFIX,
  LAMBDA_QUEUE_SOURCE,
  LambdaApiError,
  type LambdaApiOptions,
  type LambdaGuarded,
  type LambdaRoute,
  mapSigV4Credentials,
  parseLambdaFunctionName,
  sendLambdaError,
} from './lambda-invoke.js';
export { GatewayListeners, type ListenerStatus } from './listeners.js';
export { clientKeyOf, formatRate, LimitRule, TokenBucket, takeTokens } from './rate-limit.js';
export { createRouteInvoker, writeResponse } from './route-invoke.js';
export {
  compileRoutes,
  describeRoute,
  findConflict,
  type Route,
  type RouteMatch,
  RouteTable,
} from './routes.js';
export { readTls, type TlsFiles, type TlsMaterial, TlsReloader } from './tls.js';
export { Traffic } from './traffic.js';

export interface GatewayOptions {
  readonly scheduler: Scheduler;
  /** Handles `/api/…`. */
  readonly api: Handler;
  /** Answers `/healthz` (liveness: the process serves HTTP). */
  readonly health: () => unknown;
  /** Answers `/readyz`: 200 when `ready`, else 503, with `body` either way. */
  readonly readiness?: () => { readonly ready: boolean; readonly body: unknown };
  readonly onInternal: (error: unknown) => void;
  /** Add a `Server-Timing` header to invocation responses. */
  readonly serverTiming?: boolean;
  /** Further routes by path prefix (`/metrics`, `/ui`), checked after `/api/`. */
  readonly mounts?: readonly { readonly prefix: string; readonly handler: Handler }[];
  /** EventGateway routes, rate limits and caps (issue 3); without it only `/function/` routes exist. */
  readonly traffic?: Traffic;
  /** `/async-function/…`, mounted by the composition root with the durable queue. */
  readonly asyncRoute?: Handler;
  /** `POST /events`, the CloudEvents ingress, mounted by the composition root with the durable queue. */
  readonly eventsRoute?: Handler;
  /** `/2015-03-31/functions/…`, the Lambda Invoke API (gateway/lambda-invoke.ts), mounted by the composition root. */
  readonly lambdaRoute?: Handler;
  /** Function-level auth and namespace rate quotas for `/function/` (src/security, issue 10). */
  readonly guard?: InvocationGuard;
  /** Cluster mode (issue 12): invocations this node should not run go to another node. */
  readonly forwarder?: InvocationForwarder;
}

/** The gateway's request handler, and its invocation route on its own for the fast front. */
export interface GatewayHandlers {
  readonly handle: Handler;
  readonly invoke: InvokeRoute;
}

export function createGatewayHandler(options: GatewayOptions): GatewayHandlers {
  const invoke = createInvokeRoute({
    scheduler: options.scheduler,
    onInternal: options.onInternal,
    serverTiming: options.serverTiming === true,
    ...(options.traffic === undefined ? {} : { traffic: options.traffic }),
    ...(options.guard === undefined ? {} : { guard: options.guard }),
    ...(options.forwarder === undefined ? {} : { forwarder: options.forwarder }),
  });
  const mounts = options.mounts ?? [];
  const routes =
    options.traffic === undefined
      ? undefined
      : createRoutesHandler(options.scheduler, options.traffic, options.onInternal);
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    if (url.startsWith(FUNCTION_PREFIX)) {
      invoke(req, res);
      return;
    }
    if (options.asyncRoute !== undefined && url.startsWith(ASYNC_PREFIX)) {
      options.asyncRoute(req, res);
      return;
    }
    if (options.eventsRoute !== undefined && isEventsPath(url)) {
      options.eventsRoute(req, res);
      return;
    }
    if (options.lambdaRoute !== undefined && url.startsWith(LAMBDA_API_PREFIX)) {
      options.lambdaRoute(req, res);
      return;
    }
    try {
      if (url.startsWith('/api/')) {
        // `/api/v1/` is the control API; other `/api/…` paths may be EventGateway routes (the seed's `/api/orders`).
        if (url.startsWith('/api/v1/') || routes?.(req, res) !== true) options.api(req, res);
      } else if (url === '/healthz' || url.startsWith('/healthz?')) sendJson(res, 200, options.health());
      else if (options.readiness !== undefined && (url === '/readyz' || url.startsWith('/readyz?'))) {
        const readiness = options.readiness();
        sendJson(res, readiness.ready ? 200 : 503, readiness.body);
      } else if (mounts.some((mount) => mountMatches(url, mount.prefix)))
        mounts.find((mount) => mountMatches(url, mount.prefix))?.handler(req, res);
      else if (routes?.(req, res) === true) return;
      else if (url === '/' || url.startsWith('/?'))
        sendJson(res, 200, { service: 'hearth', docs: '/api/v1/openapi.json', invoke: '/function/<name>' });
      else
        sendError(
          res,
          new HearthError(
            'HEARTH_E_NOT_FOUND',
            `no route for ${req.method ?? 'GET'} ${url.split('?')[0] ?? url}`,
          ),
        );
    } catch (error) {
      sendError(res, error, undefined, options.onInternal);
    }
  };
  return { handle, invoke };
}

/** `/ui` matches `/ui`, `/ui/…` and `/ui?…`, not `/uix`. */
function mountMatches(url: string, prefix: string): boolean {
  if (!url.startsWith(prefix)) return false;
  const next = url[prefix.length];
  return next === undefined || next === '/' || next === '?';
}

/**
 * Serves EventGateway routes (of every gateway, or of one when `only` names it, for a gateway's own port);
 * returns false when no route has the path, so the caller can answer 404 its own way.
 */
export function createRoutesHandler(
  scheduler: Scheduler,
  traffic: Traffic,
  onInternal: (error: unknown) => void,
  only?: string,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const invokeRoute = createRouteInvoker({ scheduler, traffic, onInternal });
  return (req, res) => {
    if (traffic.routes.size === 0) return false;
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const pathname = queryAt < 0 ? url : url.slice(0, queryAt);
    const method = req.method ?? 'GET';
    const { match, methodMismatch } = traffic.routes.match(method, pathname);
    if (match !== undefined && (only === undefined || match.route.gateway === only)) {
      invokeRoute(req, res, match, pathname, queryAt < 0 ? '' : url.slice(queryAt + 1));
      return true;
    }
    if (methodMismatch) {
      sendError(
        res,
        new HearthError('HEARTH_E_METHOD_NOT_ALLOWED', `${method} is not allowed on ${pathname}`),
      );
      return true;
    }
    return false;
  };
}

const KEEP_ALIVE_TIMEOUT_MS = 65_000;
const HEADERS_TIMEOUT_MS = 60_000;

/**
 * The HTTP server for `handler`. With `fastInvoke`, `/function/` requests are read by the fast front
 * (fast-http.ts) and go straight to it; node:http serves everything else on the same connections. With
 * `tls`, it is a node:https server serving the reloader's current certificate, and later ones.
 */
export function createGatewayServer(handler: Handler, fastInvoke?: FastRoute, tls?: TlsReloader): Server {
  const options = {
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: 0,
    headersTimeout: HEADERS_TIMEOUT_MS,
  };
  let server: Server;
  if (tls === undefined) server = createServer(options, handler);
  else {
    const secure = createHttpsServer({ ...options, ...tls.current() }, handler);
    tls.attach(secure);
    server = secure;
  }
  // Long-lived keep-alive connections from load balancers and clients are the norm for a gateway.
  server.maxRequestsPerSocket = 0;
  if (fastInvoke !== undefined)
    installFastFront(server, {
      prefix: FUNCTION_PREFIX,
      route: fastInvoke,
      keepAliveTimeoutMs: KEEP_ALIVE_TIMEOUT_MS,
      headersTimeoutMs: HEADERS_TIMEOUT_MS,
      secure: tls !== undefined,
    });
  return server;
}
