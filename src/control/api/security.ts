/**
 * @module Keys, tokens and namespaces over the API (issue 10): `/api/v1/keys` (admin only),
 * `POST /api/v1/tokens` (any key, for itself), `/api/v1/namespaces` (read; admin to delete).
 */

import { HearthError } from '../../domain/errors.js';
import { readJsonBody, sendJson } from '../../gateway/index.js';
import { ALL_NAMESPACES, type Security } from '../../security/index.js';
import type { ApiContext } from './context.js';
import { namespaceFilter } from './context.js';
import type { Route } from './router.js';
import type { NamespaceDetail } from './types.js';

const MAX_BODY_BYTES = 64 * 1024;

export function securityRoutes(context: ApiContext): Route[] {
  const security = context.security;
  if (security === undefined) return [];
  return [
    {
      method: 'GET',
      path: '/api/v1/keys',
      summary: 'List API keys (id, name, role, namespaces; never the secret) — admin',
      access: { action: 'admin' },
      handle: ({ res }) => sendJson(res, 200, { items: security.listKeys() }),
    },
    {
      method: 'POST',
      path: '/api/v1/keys',
      summary:
        'Create an API key {role, namespaces, name?}; the answer is the only time the key (and its AWS credentials) is shown — admin',
      access: { action: 'admin' },
      handle: async ({ req, res }) => {
        const body = objectBody(await readJsonBody(req, MAX_BODY_BYTES));
        const created = security.createKey({ role: body.role, namespaces: body.namespaces, name: body.name });
        sendJson(res, 201, {
          ...created.summary,
          key: created.key,
          // For the AWS SDKs/CLI on the Lambda Invoke API (SigV4); like the key, shown only here.
          awsAccessKeyId: created.aws.accessKeyId,
          awsSecretAccessKey: created.aws.secretAccessKey,
        });
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/keys/:id',
      summary: 'Revoke an API key and every token derived from it, at once — admin',
      access: { action: 'admin' },
      handle: ({ res, params }) => {
        const id = params.id ?? '';
        if (!security.revokeKey(id))
          throw new HearthError(
            'HEARTH_E_RESOURCE_NOT_FOUND',
            `no active API key has the id ${id.slice(0, 40)}`,
          );
        sendJson(res, 200, { revoked: id });
      },
    },
    {
      method: 'POST',
      path: '/api/v1/keys/aws-credentials',
      summary:
        "The calling key's AWS credentials (SigV4 on the Lambda Invoke API); only for the key itself, not a token",
      access: 'handler',
      handle: ({ res, principal }) => {
        if (principal === undefined)
          throw new HearthError(
            'HEARTH_E_BAD_REQUEST',
            'auth is off on this platform (no API key exists yet): there is no key to have AWS credentials',
          );
        const credentials = security.awsCredentialsOf(principal);
        sendJson(res, 200, {
          id: principal.keyId,
          awsAccessKeyId: credentials.accessKeyId,
          awsSecretAccessKey: credentials.secretAccessKey,
        });
      },
    },
    {
      method: 'POST',
      path: '/api/v1/tokens',
      summary:
        'A short-lived token from the calling key {ttlSeconds?, role?, namespaces?}: same or narrower scope',
      access: 'handler',
      handle: async ({ req, res, principal }) => {
        if (principal === undefined)
          throw new HearthError(
            'HEARTH_E_BAD_REQUEST',
            'auth is off on this platform (no API key exists yet): there is no key to derive a token from',
          );
        const body = objectBody(await readJsonBody(req, MAX_BODY_BYTES));
        const issued = security.issueToken(principal, {
          ttlSeconds: body.ttlSeconds,
          role: body.role,
          namespaces: body.namespaces,
        });
        sendJson(res, 201, issued);
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces',
      summary:
        'Namespaces (defined ones and those with functions) the caller may read, with quotas and usage',
      access: 'handler',
      handle: ({ res, principal }) => {
        const names = new Set<string>(security.listNamespaces().map((stored) => stored.name));
        for (const fn of context.store.listFunctions()) names.add(fn.namespace);
        const visible = [...names]
          .sort()
          .filter(
            (name) =>
              principal === undefined ||
              principal.role === 'admin' ||
              (principal.role !== 'invoker' &&
                (principal.namespaces.includes(ALL_NAMESPACES) || principal.namespaces.includes(name))),
          );
        sendJson(res, 200, { items: visible.map((name) => namespaceDetail(security, name)) });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace',
      summary: "A namespace's policy, quotas and what it uses of them",
      handle: ({ res, params }) => {
        const name = namespaceFilter(params.namespace) ?? 'default';
        sendJson(res, 200, namespaceDetail(security, name));
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/namespaces/:namespace',
      summary: 'Delete a Namespace resource (its quotas and policy; its functions stay) — admin',
      access: { action: 'admin' },
      handle: ({ res, params }) => {
        const name = namespaceFilter(params.namespace) ?? 'default';
        if (!security.deleteNamespace(name))
          throw new HearthError('HEARTH_E_RESOURCE_NOT_FOUND', `no Namespace resource named ${name}`);
        sendJson(res, 200, { deleted: true, name });
      },
    },
  ];
}

export function namespaceDetail(security: Security, name: string): NamespaceDetail {
  const stored = security.listNamespaces().find((item) => item.name === name);
  const policy = security.policy(name);
  const quotas: Record<string, number> = {};
  for (const [quota, limit] of Object.entries(policy?.quotas ?? {}))
    if (typeof limit === 'number') quotas[quota] = limit;
  return {
    name,
    defined: stored !== undefined,
    functionAuth: policy?.functionAuth ?? 'public',
    quotas,
    usage: security.usage(name),
    createdAt: stored?.createdAt ?? null,
    updatedAt: stored?.updatedAt ?? null,
  };
}

function objectBody(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new HearthError('HEARTH_E_BAD_REQUEST', 'body: expected a JSON object', {
      details: { field: 'body', expected: 'a JSON object' },
    });
  return body as Record<string, unknown>;
}
