/** @module GET /api/v1/functions — every function, or one namespace's (`?namespace=`). */

import { sendJson } from '../../gateway/index.js';
import { type ApiContext, namespaceFilter } from './context.js';
import { toSummary } from './present.js';
import type { Route } from './router.js';

export function listFunctions(context: ApiContext): Route[] {
  // The live count only: a full status (every instance's info, the autoscaler's decisions) per function
  // made a list of 1,000 functions take up to a second (issue 11).
  const list = (namespace: string | undefined) =>
    context.store.listFunctions(namespace).map((fn) => toSummary(fn, context.scheduler.liveInstances(fn)));
  return [
    {
      method: 'GET',
      path: '/api/v1/functions',
      summary: 'List functions (all namespaces, or ?namespace=NS)',
      handle: ({ res, query }) =>
        sendJson(res, 200, { items: list(namespaceFilter(query.get('namespace'))) }),
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace/functions',
      summary: "List one namespace's functions",
      handle: ({ res, params }) => sendJson(res, 200, { items: list(namespaceFilter(params.namespace)) }),
    },
  ];
}
