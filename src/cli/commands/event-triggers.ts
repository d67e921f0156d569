/** @module `hearth ls triggers`, `hearth describe trigger NAME`, `hearth rm trigger NAME`: Trigger resources (issue 20). */

import type { TriggerFilter } from '../../domain/eventing.js';
import type { EventTriggerDetail, EventTriggerSummary } from '../../eventing/types.js';
import type { CommandContext, ConnectionOptions, NamespaceOptions, OutputOptions } from '../options.js';
import { connect, namespaceOf, parseLabel } from '../options.js';
import { formatAge, renderTable, writeJson } from '../output.js';

type Options = ConnectionOptions & NamespaceOptions & OutputOptions & { readonly allNamespaces?: boolean };

export async function listTriggers(options: Options, { io, version }: CommandContext): Promise<void> {
  const client = connect(options, io, version);
  const namespace = options.allNamespaces === true ? undefined : namespaceOf(options);
  const response = await client.json<{ items: EventTriggerSummary[] }>('/api/v1/event-triggers', {
    query: { namespace },
  });
  if (options.output === 'json') {
    writeJson(io.stdout, response);
    return;
  }
  if (response.items.length === 0) {
    io.stdout.write('No triggers. Apply a Trigger resource with: hearth apply -f trigger.yaml\n');
    return;
  }
  const now = Date.now();
  const rows = response.items.map((trigger) => [
    trigger.name,
    trigger.namespace,
    renderFilter(trigger.filter),
    `${trigger.subscriber.function}${trigger.subscriber.namespace === trigger.namespace ? '' : `.${trigger.subscriber.namespace}`}${trigger.subscriber.deployed ? '' : ' (not deployed)'}`,
    String(trigger.delivered),
    String(trigger.failed),
    trigger.lastError === null ? '-' : `${formatAge(trigger.lastError.at, now)} ago`,
  ]);
  io.stdout.write(
    renderTable(['NAME', 'NAMESPACE', 'FILTER', 'SUBSCRIBER', 'DELIVERED', 'FAILED', 'LAST ERROR'], rows),
  );
}

export async function describeTrigger(
  name: string,
  options: Options,
  { io, version }: CommandContext,
): Promise<void> {
  const client = connect(options, io, version);
  const namespace = namespaceOf(options);
  const trigger = parseLabel('trigger name', name);
  const detail = await client.json<EventTriggerDetail>(
    `/api/v1/namespaces/${namespace}/event-triggers/${trigger}`,
  );
  if (options.output === 'json') {
    writeJson(io.stdout, detail);
    return;
  }
  const now = Date.now();
  const fields: [string, string][] = [
    ['Name', detail.name],
    ['Namespace', detail.namespace],
    ['Filter', renderFilter(detail.filter)],
    [
      'Subscriber',
      `${detail.subscriber.namespace}/${detail.subscriber.function}${detail.subscriber.deployed ? '' : ' (not deployed: deliveries fail until it is)'}`,
    ],
    [
      'Delivery',
      `${detail.delivery.attempts} attempt(s), backoff ${detail.delivery.backoffMs}ms doubling up to ${detail.delivery.maxBackoffMs}ms, dead letters to ${detail.delivery.deadLetter ?? 'hearth dlq'}`,
    ],
    ['Delivered', String(detail.delivered)],
    ['Failed', `${detail.failed} (retried ${detail.retried}, dead-lettered ${detail.deadLettered})`],
    ['In flight', String(detail.inFlight)],
    [
      'Last error',
      detail.lastError === null
        ? '-'
        : `${detail.lastError.message} (${formatAge(detail.lastError.at, now)} ago)`,
    ],
    ['Last delivery', detail.lastDeliveryAt === null ? '-' : `${formatAge(detail.lastDeliveryAt, now)} ago`],
    [
      'Streams',
      `log position ${detail.streams.position} of ${detail.streams.head} (lag ${detail.streams.lag})`,
    ],
    ['Created', `${detail.createdAt} (${formatAge(detail.createdAt, now)} ago)`],
  ];
  const width = Math.max(...fields.map(([label]) => label.length)) + 2;
  io.stdout.write(`${fields.map(([label, value]) => `${`${label}:`.padEnd(width)}${value}`).join('\n')}\n`);
}

export async function removeTrigger(
  name: string,
  options: Options,
  { io, version }: CommandContext,
): Promise<void> {
  const client = connect(options, io, version);
  const namespace = namespaceOf(options);
  const trigger = parseLabel('trigger name', name);
  await client.json<unknown>(`/api/v1/namespaces/${namespace}/event-triggers/${trigger}`, {
    method: 'DELETE',
  });
  if (options.output === 'json') writeJson(io.stdout, { namespace, name: trigger, deleted: true });
  else io.stdout.write(`trigger/${trigger} deleted\n`);
}

/** `type=order.paid source^=/shop/ type$=.paid`, or `(every event)`. */
export function renderFilter(filter: TriggerFilter): string {
  const parts = [
    ...Object.entries(filter.attributes ?? {}).map(([name, value]) => `${name}=${value}`),
    ...Object.entries(filter.prefix ?? {}).map(([name, value]) => `${name}^=${value}`),
    ...Object.entries(filter.suffix ?? {}).map(([name, value]) => `${name}$=${value}`),
  ];
  return parts.length === 0 ? '(every event)' : parts.join(' ');
}
