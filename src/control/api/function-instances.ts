/** @module DELETE /api/v1/namespaces/{namespace}/functions/{name}/instances — release idle instances now (scale to zero). */

import { sendJson } from '../../gateway/index.js';
import { type ApiContext, existing, refFrom } from './context.js';
import type { Route } from './router.js';

export function releaseInstances(context: ApiContext): Route {
  return {
    method: 'DELETE',
    path: '/api/v1/namespaces/:namespace/functions/:name/instances',
    summary: "Stop a function's idle instances now; busy ones keep serving",
    handle: async (request) => {
      const ref = refFrom(request);
      existing(context, ref);
      const released = await context.scheduler.releaseIdle(ref);
      sendJson(request.res, 200, { released });
    },
  };
}
