/**
 * @module What goes into the audit log (issue 13): every control-plane request that changes something
 * (any method but GET/HEAD on /api/v1), with who, what, when, from where and the outcome; and, with
 * `audit.invocations`, every invocation (function, caller, status, duration, SM3 of the payload — never
 * the payload). Handlers add particulars (a package's signer) with `auditDetail`.
 */

import { createHash } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InvocationEvent } from '../domain/events.js';
import { type Actor, actorOf } from './actor.js';
import type { AuditLog, AuditOutcome } from './audit.js';

type Detail = Record<string, string | number | boolean | null>;

const details = new WeakMap<IncomingMessage, Detail>();

/** Adds particulars to the audit record of this request (e.g. `{ signer: <key id> }`). */
export function auditDetail(request: IncomingMessage, detail: Detail): void {
  details.set(request, { ...details.get(request), ...detail });
}

function outcomeOf(status: number): AuditOutcome {
  if (status === 401 || status === 403) return 'refused';
  return status < 400 ? 'success' : 'failure';
}

/**
 * Records the request once its answer is sent (or the connection dropped: outcome failure, status 499).
 * `action` is the route, `METHOD /api/v1/...pattern`; the target is the concrete path.
 */
export function recordRequest(
  audit: AuditLog,
  request: IncomingMessage,
  response: ServerResponse,
  action: string,
): void {
  const actor: Actor = actorOf(request);
  const target = new URL(request.url ?? '/', 'http://localhost').pathname;
  let done = false;
  const record = (status: number): void => {
    if (done) return;
    done = true;
    const detail = details.get(request);
    // A streamed answer (deploy progress as NDJSON) is a 200 whose last event may be an error: the
    // handler puts that error's status in the detail, and it decides the outcome.
    const errorStatus = typeof detail?.errorStatus === 'number' ? detail.errorStatus : undefined;
    audit.append({
      action,
      target,
      outcome: outcomeOf(errorStatus ?? status),
      status: errorStatus ?? status,
      actor,
      ...(detail === undefined ? {} : { detail }),
    });
  };
  response.once('finish', () => record(response.statusCode));
  response.once('close', () => record(response.writableFinished ? response.statusCode : 499));
}

/** A control-API request refused for its credentials (401) or for its role or namespace (403). */
export function recordRefusedLogin(
  audit: AuditLog,
  request: IncomingMessage,
  status: number,
  reason: string,
): void {
  audit.append({
    action: `login ${request.method ?? 'GET'}`,
    target: new URL(request.url ?? '/', 'http://localhost').pathname,
    outcome: 'refused',
    status,
    actor: actorOf(request),
    detail: { reason },
  });
}

/** With `audit.invocations: true`: one record per invocation, written in groups per event-loop turn. */
export function auditInvocations(audit: AuditLog): () => void {
  const onInvocation = (message: unknown): void => {
    const event = message as InvocationEvent;
    audit.appendSoon({
      action: 'invoke',
      target: `${event.ref.namespace}/${event.ref.name}`,
      outcome: event.status < 400 ? 'success' : 'failure',
      status: event.status,
      actor: { remote: event.sourceIp ?? '-' },
      detail: {
        invocationId: event.invocationId,
        trigger: event.trigger ?? null,
        durationMs: Math.round(event.durationMs * 100) / 100,
        payloadSm3:
          event.payload === undefined ? null : createHash('sm3').update(event.payload).digest('hex'),
        errorCode: event.errorCode ?? null,
      },
    });
  };
  subscribe('hearth:invocation', onInvocation);
  return () => unsubscribe('hearth:invocation', onInvocation);
}
