/**
 * @module The audit log's routes (issue 13): read records, verify the chain and checkpoints, the platform's
 * public key, and each sink's lag.
 */

import { invalidField } from '../../domain/errors.js';
import { sendJson } from '../../gateway/index.js';
import type { ApiContext } from './context.js';
import type { Route } from './router.js';

const MAX_LIMIT = 1000;

export function auditRoutes(context: ApiContext): Route[] {
  const compliance = context.compliance;
  if (compliance === undefined) return [];
  const { audit } = compliance;
  return [
    {
      method: 'GET',
      path: '/api/v1/audit',
      // Every tenant's actions: admin only (issue 10).
      access: { action: 'admin' },
      summary: 'Audit records, oldest first after ?after=SEQ (default: the newest ?limit=, 100)',
      handle: (request) => {
        const limit = count(request.query.get('limit'), 'limit', 100, MAX_LIMIT);
        const after = request.query.get('after');
        const items =
          after === null
            ? audit.tail(limit)
            : audit.list(count(after, 'after', 0, Number.MAX_SAFE_INTEGER), limit);
        sendJson(request.res, 200, { items, lastSeq: audit.lastSeq });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/audit/verify',
      // Every tenant's actions: admin only (issue 10).
      access: { action: 'admin' },
      summary: 'Check the SM3 chain and the signed checkpoints; names the first bad record',
      handle: (request) => {
        sendJson(request.res, 200, audit.verify());
      },
    },
    {
      method: 'GET',
      path: '/api/v1/audit/public-key',
      // A public key, for whoever checks the checkpoints (issue 10).
      access: 'public',
      summary: "The platform's Ed25519 public key (PEM) that signs audit checkpoints",
      handle: (request) => {
        sendJson(request.res, 200, { algorithm: 'ed25519', publicKey: audit.publicKeyPem() });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/audit/sinks',
      // Every tenant's actions: admin only (issue 10).
      access: { action: 'admin' },
      summary: 'Each audit sink: records not yet delivered (lag) and its last error',
      handle: (request) => {
        sendJson(request.res, 200, {
          items: compliance.sinks.map((runner) => ({
            name: runner.sink.name,
            lag: runner.lag,
            lastError: runner.lastError ?? null,
          })),
        });
      },
    },
  ];
}

function count(value: string | null, field: string, fallback: number, max: number): number {
  if (value === null) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > max)
    throw invalidField(field, value, `a whole number from 0 to ${max}`);
  return number;
}
