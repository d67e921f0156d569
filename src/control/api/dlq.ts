/** @module `/api/v1/dlq`: the dead-letter list (invocations and events whose retries ran out), and redriving it. */

import { HearthError, invalidField } from '../../domain/errors.js';
import { readJsonBody, sendJson } from '../../gateway/index.js';
import { toInvocationRecord } from '../events/index.js';
import type { ApiContext } from './context.js';
import type { RedriveResponse } from './events-types.js';
import { eventsOf } from './gateways.js';
import { listFilter } from './invocations.js';
import type { Route } from './router.js';

export function dlqRoutes(context: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/dlq',
      access: { action: 'logs' },
      summary: 'Dead letters, newest first (?function=&namespace=&source=&limit=)',
      handle: async ({ res, query }) => {
        const queue = eventsOf(context).queue;
        const items = await queue.list(await listFilter(queue, query, 'dead'));
        sendJson(res, 200, { items: items.map(toInvocationRecord) });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/dlq/:id',
      access: { action: 'logs' },
      summary: 'One dead letter: the request or event, every attempt, and the last error',
      handle: async ({ res, params }) => {
        const id = params.id ?? '';
        const message = await eventsOf(context).queue.get(id);
        if (message === undefined || message.state !== 'dead')
          throw new HearthError('HEARTH_E_RESOURCE_NOT_FOUND', `no dead letter ${id}`);
        sendJson(res, 200, toInvocationRecord(message));
      },
    },
    {
      method: 'POST',
      path: '/api/v1/dlq/:id/redrive',
      summary: 'Put one dead letter back in the queue, with fresh attempts',
      handle: async ({ res, params }) => {
        const id = params.id ?? '';
        const events = eventsOf(context);
        const redriven = await events.queue.redrive([id]);
        if (redriven === 0) throw new HearthError('HEARTH_E_RESOURCE_NOT_FOUND', `no dead letter ${id}`);
        events.notifyQueue();
        sendJson(res, 200, { redriven } satisfies RedriveResponse);
      },
    },
    {
      method: 'POST',
      path: '/api/v1/dlq/redrive',
      summary:
        'Redrive dead letters: {"ids":[…]}, or {"function","namespace","source"} filters, or {"all":true}',
      handle: async ({ req, res }) => {
        const body = await readJsonBody(req, 1024 * 1024);
        if (body === null || typeof body !== 'object' || Array.isArray(body))
          throw invalidField(
            'body',
            body,
            'an object such as {"ids": [...]} or {"function": "name"} or {"all": true}',
          );
        const input = body as {
          ids?: unknown;
          function?: unknown;
          namespace?: unknown;
          source?: unknown;
          all?: unknown;
        };
        const events = eventsOf(context);
        let redriven: number;
        if (input.ids !== undefined) {
          if (!Array.isArray(input.ids) || !input.ids.every((id) => typeof id === 'string'))
            throw invalidField('ids', input.ids, 'a list of dead-letter ids');
          redriven = await events.queue.redrive(input.ids as string[]);
        } else {
          if (input.function !== undefined && typeof input.function !== 'string')
            throw invalidField('function', input.function, 'a function name');
          if (input.source !== undefined && typeof input.source !== 'string')
            throw invalidField(
              'source',
              input.source,
              'a source such as "async" or "cron:default/fn/nightly"',
            );
          if (input.function === undefined && input.source === undefined && input.all !== true)
            throw invalidField(
              'body',
              body,
              '"ids", "function", "source", or "all": true (to redrive everything)',
            );
          const namespace = typeof input.namespace === 'string' ? input.namespace : 'default';
          redriven = await events.queue.redrive({
            ...(typeof input.function === 'string' ? { ref: { namespace, name: input.function } } : {}),
            ...(typeof input.source === 'string' ? { source: input.source } : {}),
          });
        }
        if (redriven > 0) events.notifyQueue();
        sendJson(res, 200, { redriven } satisfies RedriveResponse);
      },
    },
  ];
}
