/**
 * @module The gateway: one HTTP server for invocations (`/function/…`), the control API (`/api/v1/…`,
 * mounted by the composition root) and health. Routing is a few prefix checks, not a framework, because
 * every invocation pays for it.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { HearthError } from '../domain/errors.js';
import type { Scheduler } from '../scheduler/index.js';
import { type Handler, sendError, sendJson } from './http.js';
import { createInvokeRoute, FUNCTION_PREFIX } from './invoke.js';

export { createFunctionCalls, type InvokeCallResult } from './function-calls.js';
export { type Handler, parseJsonBody, readBody, sendError, sendJson } from './http.js';
export { parseFunctionPath } from './invoke.js';

export interface GatewayOptions {
  readonly scheduler: Scheduler;
  /** Handles `/api/…`. */
  readonly api: Handler;
  /** Answers `/healthz`. */
  readonly health: () => unknown;
  readonly onInternal: (error: unknown) => void;
}

export function createGatewayHandler(options: GatewayOptions): Handler {
  const invoke = createInvokeRoute({ scheduler: options.scheduler, onInternal: options.onInternal });
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url.startsWith(FUNCTION_PREFIX)) {
      invoke(req, res);
      return;
    }
    try {
      if (url.startsWith('/api/')) options.api(req, res);
      else if (url === '/healthz' || url.startsWith('/healthz?')) sendJson(res, 200, options.health());
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
}

export function createGatewayServer(handler: Handler): Server {
  const server = createServer(
    { keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout: 60_000 },
    handler,
  );
  // Long-lived keep-alive connections from load balancers and clients are the norm for a gateway.
  server.maxRequestsPerSocket = 0;
  return server;
}
