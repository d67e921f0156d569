/** @module GET /api/v1/namespaces/{namespace}/functions/{name} — one function in full. */

import { sendJson } from '../../gateway/index.js';
import { type ApiContext, existing, refFrom } from './context.js';
import { toDetail } from './present.js';
import type { Route } from './router.js';

export function describeFunction(context: ApiContext): Route {
  return {
    method: 'GET',
    path: '/api/v1/namespaces/:namespace/functions/:name',
    summary: 'Describe a function: spec, code, instances, versions, last deployment',
    handle: (request) => {
      const ref = refFrom(request);
      const fn = existing(context, ref);
      sendJson(request.res, 200, detailOf(context, fn));
    },
  };
}

export function detailOf(context: ApiContext, fn: ReturnType<typeof existing>) {
  return toDetail(
    fn,
    context.scheduler.status(fn),
    context.store.versions(fn, 10),
    context.store.lastDeployment(fn),
  );
}
