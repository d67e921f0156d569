/**
 * @module `/api/v1/…/gateways`: list, describe, apply (PUT an EventGateway resource) and delete gateways.
 * One verb per route below; they share the lookup of the events part.
 */

import { HearthError, invalidField } from '../../domain/errors.js';
import { readJsonBody, sendJson } from '../../gateway/index.js';
import type { EventsApi } from '../events/index.js';
import { type ApiContext, namespaceFilter } from './context.js';
import { dlqRoutes } from './dlq.js';
import type { ApplyGatewayResponse } from './events-types.js';
import { invocationRoutes } from './invocations.js';
import type { ApiRequest, Route } from './router.js';
import { triggerRoutes } from './triggers.js';

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function eventsOf(context: ApiContext): EventsApi {
  if (context.events === undefined)
    throw new HearthError('HEARTH_E_UNSUPPORTED', 'the event gateway is not enabled on this platform');
  return context.events;
}

function gatewayRef(request: ApiRequest): { namespace: string; name: string } {
  const namespace = request.params.namespace ?? 'default';
  const name = request.params.name ?? '';
  if (!DNS_LABEL.test(namespace)) throw invalidField('namespace', namespace, 'a lower-case DNS label');
  if (!DNS_LABEL.test(name)) throw invalidField('name', name, 'a lower-case DNS label');
  return { namespace, name };
}

/** All of the event gateway's routes: gateways, invocations, dead letters, triggers. */
export function eventRoutes(context: ApiContext): Route[] {
  if (context.events === undefined) return [];
  return [
    ...gatewayRoutes(context),
    ...invocationRoutes(context),
    ...dlqRoutes(context),
    ...triggerRoutes(context),
  ];
}

export function gatewayRoutes(context: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/gateways',
      summary: 'List EventGateways (all namespaces, or ?namespace=NS)',
      handle: ({ res, query }) =>
        sendJson(res, 200, {
          items: eventsOf(context).gateways.list(namespaceFilter(query.get('namespace'))),
        }),
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace/gateways',
      summary: "List one namespace's EventGateways",
      handle: ({ res, params }) =>
        sendJson(res, 200, { items: eventsOf(context).gateways.list(namespaceFilter(params.namespace)) }),
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace/gateways/:name',
      summary: 'Describe an EventGateway: routes, limits, listeners, event protocols and their status',
      handle: (request) => {
        const ref = gatewayRef(request);
        sendJson(request.res, 200, eventsOf(context).gateways.detail(ref.namespace, ref.name));
      },
    },
    {
      method: 'PUT',
      path: '/api/v1/namespaces/:namespace/gateways/:name',
      summary: 'Apply an EventGateway resource (create or replace); conflicting routes are refused',
      handle: async (request) => {
        const ref = gatewayRef(request);
        const events = eventsOf(context);
        const manifest = await readJsonBody(request.req, MAX_MANIFEST_BYTES);
        const outcome = await events.gateways.apply(ref.namespace, ref.name, manifest);
        sendJson(request.res, 200, {
          unchanged: outcome.unchanged,
          gateway: events.gateways.detail(ref.namespace, ref.name),
        } satisfies ApplyGatewayResponse);
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/namespaces/:namespace/gateways/:name',
      summary: 'Delete an EventGateway: its routes, listeners and event protocols stop',
      handle: async (request) => {
        const ref = gatewayRef(request);
        const existed = await eventsOf(context).gateways.delete(ref.namespace, ref.name);
        if (!existed)
          throw new HearthError(
            'HEARTH_E_RESOURCE_NOT_FOUND',
            `gateway ${ref.name} not found in namespace ${ref.namespace}`,
          );
        sendJson(request.res, 200, { namespace: ref.namespace, name: ref.name, deleted: true });
      },
    },
  ];
}
