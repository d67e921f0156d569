/** @module How the CLI shows gateways, triggers, invocations and dead letters to people. */

import type {
  GatewayDetail,
  GatewaySummary,
  InvocationRecord,
  TriggerStatus,
} from '../../control/api/events-types.js';
import { formatAge, renderTable } from '../output.js';

export function renderGatewayList(items: readonly GatewaySummary[], now: number): string {
  if (items.length === 0) return 'No gateways. Apply one with `hearth apply -f gateway.yaml`.\n';
  return renderTable(
    ['NAMESPACE', 'NAME', 'PROTOCOLS', 'ROUTES', 'FUNCTIONS', 'AGE'],
    items.map((g) => [
      g.namespace,
      g.name,
      g.protocols.join(','),
      String(g.routes),
      String(g.functions),
      formatAge(g.updatedAt, now),
    ]),
  );
}

export function renderGateway(g: GatewayDetail, now: number): string {
  const listeners =
    g.http.listeners.length === 0
      ? 'the platform port'
      : `the platform port and ${g.http.listeners
          .map((l) => `${l.port} (${l.listening ? 'listening' : `not listening: ${l.error ?? 'unknown'}`})`)
          .join(', ')}`;
  const lines = [
    `Name:        ${g.name}`,
    `Namespace:   ${g.namespace}`,
    `Protocols:   ${g.protocols.join(', ') || 'none'}`,
    `HTTP:        served on ${listeners}; rate limit ${g.http.rateLimit ?? 'none'}`,
    `Updated:     ${g.updatedAt} (${formatAge(g.updatedAt, now)} ago)`,
    '',
  ];
  if (g.routeTable.length === 0) lines.push('Routes: none');
  else {
    lines.push('Routes:');
    lines.push(
      indent(
        renderTable(
          ['#', 'METHOD', 'PATH / TOPIC', 'FUNCTION', 'CONCURRENCY', 'PRIORITY', 'RATE LIMIT', 'TIMEOUT'],
          g.routeTable.map((r) => [
            String(r.index),
            r.methods === 'ANY' ? 'ANY' : r.methods.join('|'),
            r.path ?? (r.topic === null ? '(events)' : `topic ${r.topic}`),
            `${r.function}${r.namespace === g.namespace ? '' : `.${r.namespace}`}${r.deployed ? '' : ' (not deployed)'}`,
            r.concurrency === null ? '-' : String(r.concurrency),
            r.priority === null ? '-' : String(r.priority),
            r.rateLimit ?? '-',
            r.timeout ?? '-',
          ]),
        ),
      ),
    );
  }
  lines.push('', renderTriggers(g.triggers, now, 'Event protocols'));
  return `${lines.join('\n')}\n`;
}

export function renderTriggers(triggers: readonly TriggerStatus[], now: number, title = 'Triggers'): string {
  if (triggers.length === 0) return `${title}: none`;
  const rows = triggers.map((t) => [
    t.name,
    t.kind,
    t.state,
    describeSource(t),
    t.lag === null ? '-' : String(t.lag),
    String(t.delivered),
    String(t.failed),
    String(t.deadLettered),
    t.lastDeliveryAt === null ? '-' : `${formatAge(t.lastDeliveryAt, now)} ago`,
  ]);
  const errors = triggers
    .filter((t) => t.lastError !== null)
    .map(
      (t) =>
        `  ${t.name}: last error ${formatAge(t.lastError?.at ?? now, now)} ago: ${t.lastError?.message ?? ''}`,
    );
  return [
    `${title}:`,
    indent(
      renderTable(['NAME', 'KIND', 'STATE', 'SOURCE', 'LAG', 'DELIVERED', 'FAILED', 'DEAD', 'LAST'], rows),
    ),
    ...errors,
  ].join('\n');
}

function describeSource(t: TriggerStatus): string {
  const d = t.detail;
  switch (t.kind) {
    case 'kafka':
      return `topic ${String(d.topic)} group ${String(d.group)}`;
    case 'mqtt':
      return `${String(d.subscription)} @ ${String(d.url)}`;
    case 'nats':
      return `${String(d.subject)} (stream ${String(d.stream)}, consumer ${String(d.consumer)})`;
    case 'cron':
      return `${String(d.schedule)} ${String(d.timezone)}, next ${d.nextRun === null ? '-' : String(d.nextRun)}`;
  }
}

export function renderInvocations(items: readonly InvocationRecord[], now: number, empty: string): string {
  if (items.length === 0) return `${empty}\n`;
  return renderTable(
    ['ID', 'FUNCTION', 'SOURCE', 'STATUS', 'ATTEMPTS', 'ACCEPTED', 'LAST ERROR'],
    items.map((i) => [
      i.id,
      i.namespace === 'default' ? i.function : `${i.function}.${i.namespace}`,
      i.source,
      i.status,
      `${i.attempts}/${i.maxAttempts}`,
      `${formatAge(i.acceptedAt, now)} ago`,
      i.error === null ? '-' : truncate(`${i.error.code}: ${i.error.message}`, 80),
    ]),
  );
}

export function renderInvocation(i: InvocationRecord, now: number): string {
  const lines = [
    `ID:          ${i.id}`,
    `Function:    ${i.function} (namespace ${i.namespace})`,
    `Source:      ${i.source}`,
    `Status:      ${i.status}`,
    `Attempts:    ${i.attempts} of ${i.maxAttempts}`,
    `Accepted:    ${i.acceptedAt} (${formatAge(i.acceptedAt, now)} ago)`,
  ];
  if (i.nextAttemptAt !== null) lines.push(`Next try:    ${i.nextAttemptAt}`);
  if (i.startedAt !== null) lines.push(`Started:     ${i.startedAt}`);
  if (i.finishedAt !== null) lines.push(`Finished:    ${i.finishedAt}`);
  lines.push(`Request:     ${i.request.method} ${i.request.path} (${i.request.bodyBytes} bytes)`);
  if (i.event !== null)
    lines.push(
      `Event:       ${String(i.event.type)} from ${String(i.event.source)} (id ${String(i.event.id)})`,
    );
  if (i.error !== null) lines.push(`Error:       ${i.error.code}: ${i.error.message}`);
  if (i.callback !== null)
    lines.push(
      `Callback:    ${i.callback.url}: ${i.callback.state} after ${i.callback.attempts} attempt(s)${i.callback.error === null ? '' : ` (${i.callback.error})`}`,
    );
  if (i.result !== null) {
    lines.push(`Result:      HTTP ${i.result.statusCode}${i.result.isBase64Encoded ? ' (base64)' : ''}`);
    lines.push(indent(truncate(i.result.body, 4000)));
  }
  return `${lines.join('\n')}\n`;
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}
