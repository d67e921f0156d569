/** @module PUT /api/v1/namespaces/{namespace}/functions/{name} — change a function's spec, keeping its code. */

import { readJsonBody, sendJson } from '../../gateway/index.js';
import { type ApiContext, refFrom } from './context.js';
import { detailOf } from './function-get.js';
import type { Route } from './router.js';

const MAX_MANIFEST_BYTES = 1024 * 1024;

export function configureFunction(context: ApiContext): Route {
  return {
    method: 'PUT',
    path: '/api/v1/namespaces/:namespace/functions/:name',
    summary: 'Apply a Function resource without code: a new version reusing the current code',
    handle: async (request) => {
      const ref = refFrom(request);
      const manifest = await readJsonBody(request.req, MAX_MANIFEST_BYTES);
      const outcome = await context.deployer.configure(ref, manifest);
      const fn = context.store.getFunction(ref);
      sendJson(request.res, 200, {
        unchanged: outcome.unchanged,
        deployment: outcome.deployment,
        function: fn === undefined ? null : detailOf(context, fn),
      });
    },
  };
}
