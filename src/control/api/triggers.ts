/** @module `/api/v1/triggers` and a function's triggers: state, lag, delivered/failed counts, last error. */

import { sendJson } from '../../gateway/index.js';
import { type ApiContext, existing, refFrom } from './context.js';
import { eventsOf } from './gateways.js';
import type { Route } from './router.js';

export function triggerRoutes(context: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/triggers',
      summary: 'Every running trigger (function triggers and gateway event protocols) with its status',
      handle: ({ res }) => sendJson(res, 200, { items: eventsOf(context).triggers.all() }),
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace/functions/:name/triggers',
      summary: "A function's triggers with their status (lag, delivered, failed, last error)",
      handle: (request) => {
        const ref = refFrom(request);
        existing(context, ref);
        sendJson(request.res, 200, {
          items: eventsOf(context).triggers.statusOf({ kind: 'function', ...ref }),
        });
      },
    },
  ];
}
