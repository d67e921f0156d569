/**
 * @module The control plane: the resource store, deployments and the `/api/v1` HTTP API over them.
 */

import type { Handler } from '../gateway/index.js';
import { applyDocuments } from './api/apply.js';
import { auditRoutes } from './api/audit.js';
import type { ApiContext } from './api/context.js';
import { configureFunction } from './api/function-configure.js';
import { deleteFunction } from './api/function-delete.js';
import { deployFunction } from './api/function-deploy.js';
import { describeFunction } from './api/function-get.js';
import { releaseInstances } from './api/function-instances.js';
import { functionLogs } from './api/function-logs.js';
import { listFunctions } from './api/functions-list.js';
import { eventRoutes } from './api/gateways.js';
import { imageRoutes } from './api/images.js';
import { openApi } from './api/openapi.js';
import { createRouter, type Route } from './api/router.js';
import { secretRoutes } from './api/secrets.js';
import { securityRoutes } from './api/security.js';
import { stats } from './api/stats.js';

export type { ApiContext } from './api/context.js';
export type * from './api/events-types.js';
export type { ImagesApi } from './api/images.js';
export { namespaceDetail } from './api/security.js';
export type * from './api/types.js';
export { type LayerObtained, LayerStore, type SharedLayers } from './build/index.js';
export { Deployer, type DeployImages, type DeployOutcome, MANIFEST_FILE } from './deploy.js';
export { type EventsApi, GatewayService } from './events/index.js';
export { type CollectedGarbage, collectGarbage, GarbageCollector } from './gc.js';
export { CodeStore } from './packages/index.js';
export { SqliteStore, type Store, type StoredFunction } from './store/index.js';

export function createControlApi(context: ApiContext, version: string): Handler {
  const routes: Route[] = [
    ...listFunctions(context),
    describeFunction(context),
    configureFunction(context),
    deleteFunction(context),
    deployFunction(context),
    applyDocuments(context),
    functionLogs(context),
    releaseInstances(context),
    stats(context),
  ];
  routes.push(...eventRoutes(context));
  routes.push(...securityRoutes(context));
  routes.push(...secretRoutes(context));
  routes.push(...imageRoutes(context));
  routes.push(...auditRoutes(context));
  routes.push(openApi(() => routes, version));
  return createRouter(
    audited(routes, context),
    context.onInternal,
    context.security,
    context.compliance === undefined
      ? undefined
      : (req, error) => context.compliance?.recordRefused(req, error.status, error.message),
  );
}

/** Every route that changes something is audited (issue 13): who, what, when, from where, the outcome. */
function audited(routes: readonly Route[], context: ApiContext): Route[] {
  const compliance = context.compliance;
  if (compliance === undefined) return [...routes];
  return routes.map((route) =>
    route.method === 'GET' || route.method === 'HEAD'
      ? route
      : {
          ...route,
          handle: (request) => {
            compliance.recordRequest(request.req, request.res, `${route.method} ${route.path}`);
            return route.handle(request);
          },
        },
  );
}
