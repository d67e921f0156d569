/**
 * @module `/api/v1/triggers` and a function's triggers: state, lag, delivered/failed counts, last error; and
 * `/api/v1/…/event-triggers`: Trigger resources (Knative-style filters on CloudEvents, issue 20).
 */

import { HearthError, invalidField } from '../../domain/errors.js';
import { readJsonBody, sendJson } from '../../gateway/index.js';
import { type ApiContext, existing, namespaceFilter, refFrom } from './context.js';
import { eventsOf } from './gateways.js';
import type { ApiRequest, Route } from './router.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const MAX_MANIFEST_BYTES = 1024 * 1024;

function triggerRef(request: ApiRequest): { namespace: string; name: string } {
  const namespace = request.params.namespace ?? 'default';
  const name = request.params.name ?? '';
  if (!DNS_LABEL.test(namespace)) throw invalidField('namespace', namespace, 'a lower-case DNS label');
  if (!DNS_LABEL.test(name)) throw invalidField('name', name, 'a lower-case DNS label');
  return { namespace, name };
}

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
    {
      method: 'GET',
      path: '/api/v1/event-triggers',
      summary: 'List Trigger resources (all namespaces, or ?namespace=NS) with delivered/failed counts',
      handle: ({ res, query }) =>
        sendJson(res, 200, {
          items: eventsOf(context).eventing.list(namespaceFilter(query.get('namespace'))),
        }),
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace/event-triggers/:name',
      summary: 'Describe a Trigger resource: filter, subscriber, delivery, counts, last error, log position',
      handle: async (request) => {
        const ref = triggerRef(request);
        sendJson(request.res, 200, await eventsOf(context).eventing.detail(ref.namespace, ref.name));
      },
    },
    {
      method: 'PUT',
      path: '/api/v1/namespaces/:namespace/event-triggers/:name',
      summary: 'Apply a Trigger resource (create or replace)',
      handle: async (request) => {
        const ref = triggerRef(request);
        const eventing = eventsOf(context).eventing;
        const manifest = await readJsonBody(request.req, MAX_MANIFEST_BYTES);
        const prepared = eventing.prepare(ref.namespace, ref.name, manifest);
        eventing.put(prepared);
        sendJson(request.res, 200, {
          unchanged: prepared.unchanged,
          trigger: await eventing.detail(ref.namespace, ref.name),
        });
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/namespaces/:namespace/event-triggers/:name',
      summary: 'Delete a Trigger resource (its projection cursor goes with it)',
      handle: async (request) => {
        const ref = triggerRef(request);
        const deleted = await eventsOf(context).eventing.delete(ref.namespace, ref.name);
        if (!deleted)
          throw new HearthError(
            'HEARTH_E_RESOURCE_NOT_FOUND',
            `trigger ${ref.name} not found in namespace ${ref.namespace}`,
          );
        sendJson(request.res, 200, { deleted });
      },
    },
  ];
}
