/** @module `/api/v1/invocations`: async invocations (and queued events) by id, and a filtered list. */

import { HearthError, invalidField } from '../../domain/errors.js';
import { sendJson } from '../../gateway/index.js';
import type { MessageState, Queue } from '../../queue/index.js';
import { toInvocationRecord } from '../events/index.js';
import { type ApiContext, namespaceFilter } from './context.js';
import { eventsOf } from './gateways.js';
import type { Route } from './router.js';

const STATES: readonly MessageState[] = ['queued', 'running', 'succeeded', 'failed', 'dead'];

/**
 * The list filter of `?function=&namespace=&state=&source=&limit=&before=`. `before` is a cursor: the id of
 * a listed message; one the queue does not know would silently list nothing, so it is refused (400).
 */
export async function listFilter(queue: Queue, query: URLSearchParams, state?: MessageState) {
  const filter = parseListQuery(query, state);
  if (filter.before !== undefined && (await queue.get(filter.before)) === undefined)
    throw invalidField(
      'before',
      filter.before,
      'the id of an invocation from an earlier page (it may have passed its retention window)',
    );
  return filter;
}

function parseListQuery(query: URLSearchParams, state?: MessageState) {
  const fn = query.get('function') ?? undefined;
  const namespace = namespaceFilter(query.get('namespace')) ?? 'default';
  if (fn !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(fn))
    throw invalidField('function', fn, 'a function name (a lower-case DNS label)');
  const limitText = query.get('limit');
  const limit = limitText === null ? 100 : Number(limitText);
  if (!/^\d{1,5}$/.test(limitText ?? '100') || !Number.isInteger(limit) || limit < 1 || limit > 10_000)
    throw invalidField('limit', limitText, 'a whole number from 1 to 10000');
  const given = query.get('state') ?? undefined;
  if (given !== undefined && !(STATES as readonly string[]).includes(given))
    throw invalidField('state', given, STATES.join(', '));
  return {
    limit,
    ...(state !== undefined ? { state } : given === undefined ? {} : { state: given as MessageState }),
    ...(fn === undefined ? {} : { ref: { namespace, name: fn } }),
    ...(query.get('source') === null ? {} : { source: query.get('source') ?? '' }),
    ...(query.get('before') === null ? {} : { before: query.get('before') ?? '' }),
  };
}

export function invocationRoutes(context: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/invocations',
      access: { action: 'logs' },
      summary: 'List async invocations, newest first (?function=&namespace=&state=&limit=&before=)',
      handle: async ({ res, query }) => {
        const queue = eventsOf(context).queue;
        const items = await queue.list(await listFilter(queue, query));
        sendJson(res, 200, { items: items.map(toInvocationRecord) });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/invocations/:id',
      access: { action: 'logs' },
      summary:
        'An async invocation: its status, attempts, and result once finished (kept for the retention window)',
      handle: async ({ res, params }) => {
        const id = params.id ?? '';
        const message = await eventsOf(context).queue.get(id);
        if (message === undefined)
          throw new HearthError(
            'HEARTH_E_RESOURCE_NOT_FOUND',
            `invocation ${id} not found (unknown, or finished longer ago than the retention window)`,
          );
        sendJson(res, 200, toInvocationRecord(message));
      },
    },
  ];
}
