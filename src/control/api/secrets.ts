/**
 * @module The Secret routes (issue 13): set, list, show and delete secrets, and rotate the master key.
 * No route ever answers with a value: a secret is shown as its name and key names.
 */

import type { ComplianceApi } from '../../compliance/index.js';
import { isSecretName, parseSecretData } from '../../domain/compliance.js';
import { HearthError, invalidField } from '../../domain/errors.js';
import { readJsonBody, sendJson } from '../../gateway/index.js';
import { type ApiContext, namespaceFilter } from './context.js';
import type { ApiRequest, Route } from './router.js';

const MAX_BODY_BYTES = 1024 * 1024;

export function secretRoutes(context: ApiContext): Route[] {
  const compliance = context.compliance;
  if (compliance === undefined) return [];
  const { secrets } = compliance;
  return [
    {
      method: 'GET',
      path: '/api/v1/secrets',
      summary: 'List secrets in every namespace (names and key names only)',
      handle: (request) => {
        const namespace = namespaceFilter(request.query.get('namespace'));
        sendJson(request.res, 200, { items: secrets.list(namespace).filter(userSecret) });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace/secrets',
      summary: "List a namespace's secrets (names and key names only)",
      handle: (request) => {
        sendJson(request.res, 200, {
          items: secrets.list(namespaceFilter(request.params.namespace)).filter(userSecret),
        });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace/secrets/:name',
      summary: 'Show a secret: its key names and which functions use it, never its values',
      handle: (request) => {
        const { namespace, name } = secretRef(request);
        sendJson(request.res, 200, {
          ...existingSecret(compliance, namespace, name),
          usedBy: users(context, namespace, name),
        });
      },
    },
    {
      method: 'PUT',
      path: '/api/v1/namespaces/:namespace/secrets/:name',
      summary: 'Create or replace a secret: {"data": {key: base64}} and/or {"stringData": {key: text}}',
      handle: async (request) => {
        const { namespace, name } = secretRef(request);
        const body = await readJsonBody(request.req, MAX_BODY_BYTES);
        if (body === null || typeof body !== 'object' || Array.isArray(body))
          throw invalidField('body', body, 'an object {"data"?: {...}, "stringData"?: {...}}');
        const { data, stringData } = body as { data?: unknown; stringData?: unknown };
        const values = parseSecretData(data, stringData, `secret ${namespace}/${name}`);
        const summary = secrets.put(namespace, name, values);
        for (const value of values.values()) value.fill(0);
        // In a cluster: once every node's instances would start with it.
        await secrets.settled();
        sendJson(request.res, 200, summary);
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/namespaces/:namespace/secrets/:name',
      summary: 'Delete a secret no function uses',
      handle: async (request) => {
        const { namespace, name } = secretRef(request);
        existingSecret(compliance, namespace, name);
        const usedBy = users(context, namespace, name);
        if (usedBy.length > 0)
          throw new HearthError(
            'HEARTH_E_CONFLICT',
            `secret ${namespace}/${name} is used by ${usedBy.map((fn) => `function ${fn}`).join(', ')}; remove it from their spec.secrets first`,
            { details: { field: 'name', value: name, expected: 'a secret no function uses', usedBy } },
          );
        secrets.delete(namespace, name);
        await secrets.settled();
        sendJson(request.res, 200, { deleted: true, namespace, name });
      },
    },
    {
      method: 'POST',
      path: '/api/v1/secrets/rotate-key',
      summary: 'Re-seal every secret under a new master key (the old key stays until all are done)',
      handle: (request) => {
        sendJson(request.res, 200, secrets.rotateKey());
      },
    },
  ];
}

function secretRef(request: ApiRequest): { namespace: string; name: string } {
  const namespace = namespaceFilter(request.params.namespace) ?? 'default';
  const name = request.params.name ?? '';
  if (!isSecretName(name)) throw invalidField('name', name, 'a lower-case DNS label');
  return { namespace, name };
}

function existingSecret(compliance: ComplianceApi, namespace: string, name: string) {
  const summary = compliance.secrets.summary(namespace, name);
  if (summary === undefined)
    throw new HearthError(
      'HEARTH_E_RESOURCE_NOT_FOUND',
      `secret ${name} not found in namespace ${namespace}`,
    );
  return summary;
}

/** `namespace/name` of the functions whose active version names the secret in spec.secrets. */
function users(context: ApiContext, namespace: string, name: string): string[] {
  return context.store
    .listFunctions(namespace)
    .filter((fn) => fn.active.manifest.spec.secrets?.some((ref) => ref.name === name) === true)
    .map((fn) => `${fn.namespace}/${fn.name}`);
}

/** Registry logins are sealed in the same table (`registry:HOST`, src/images/credentials.ts); `hearth registry ls` shows them. */
function userSecret(secret: { readonly name: string }): boolean {
  return !secret.name.startsWith('registry:');
}
