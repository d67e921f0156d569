/** @module GET /api/v1/namespaces/{namespace}/functions/{name} — one function in full. */

import { sendJson } from '../../gateway/index.js';
import { type ApiContext, existing, refFrom } from './context.js';
import { toDetail } from './present.js';
import type { Route } from './router.js';
import type { FunctionDetail } from './types.js';

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

export function detailOf(context: ApiContext, fn: ReturnType<typeof existing>): FunctionDetail {
  const status = context.scheduler.status(fn);
  const detail = toDetail(fn, status, context.store.versions(fn, 10), context.store.lastDeployment(fn));
  const walls =
    detail.spec.isolation === 'sandbox'
      ? context.walls
      : detail.spec.isolation === 'microvm'
        ? context.microvmWalls
        : undefined;
  // Traffic control and triggers (issue 3): the circuit, the gateway's instance cap, each trigger's status.
  return {
    ...detail,
    ...(walls === undefined ? {} : { walls }),
    ...(status?.circuit === undefined ? {} : { circuit: status.circuit }),
    ...(status?.instanceCap === undefined ? {} : { instanceCap: status.instanceCap }),
    ...(context.events === undefined
      ? {}
      : {
          triggers: context.events.triggers.statusOf({
            kind: 'function',
            namespace: fn.namespace,
            name: fn.name,
          }),
        }),
  };
}
