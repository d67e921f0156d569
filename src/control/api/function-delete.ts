/** @module DELETE /api/v1/namespaces/{namespace}/functions/{name} — remove a function, its versions and logs. */

import { sendJson } from '../../gateway/index.js';
import { type ApiContext, existing, refFrom } from './context.js';
import type { Route } from './router.js';

export function deleteFunction(context: ApiContext): Route {
  return {
    method: 'DELETE',
    path: '/api/v1/namespaces/:namespace/functions/:name',
    summary: 'Delete a function; in-flight requests finish, new ones get 404',
    handle: async (request) => {
      const ref = refFrom(request);
      existing(context, ref);
      await context.deployer.remove(ref);
      context.logs.deleteFunction(ref);
      sendJson(request.res, 200, { deleted: true, namespace: ref.namespace, name: ref.name });
    },
  };
}
