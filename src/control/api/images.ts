/**
 * @module Image routes (issue 17): upload an `oci-archive` for a node without a registry, and the namespace's
 * registry logins (`hearth registry login|ls|logout`). Passwords go in and never come out.
 */

import type { Readable } from 'node:stream';
import { HearthError, invalidField } from '../../domain/errors.js';
import { readJsonBody, sendJson } from '../../gateway/index.js';
import { type ApiContext, namespaceFilter } from './context.js';
import type { Route } from './router.js';

const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/;
const ARCHIVE_TYPES = new Set(['application/x-tar', 'application/octet-stream', 'application/gzip']);

/** What the routes need from the platform's image store and credential store. */
export interface ImagesApi {
  importArchive(
    namespace: string,
    archive: Readable,
    name: string,
  ): Promise<{
    readonly reference: string;
    readonly manifestDigest: string;
    readonly sizeBytes: number;
    readonly storedBytes: number;
  }>;
  /** Throws (HEARTH_E_REGISTRY_AUTH, …_UNAVAILABLE) when the registry refuses the login or cannot be reached. */
  checkLogin(registry: string, credentials: { username: string; password: string }): Promise<void>;
  readonly logins: {
    put(namespace: string, registry: string, credentials: { username: string; password: string }): void;
    delete(namespace: string, registry: string): boolean;
    list(namespace: string): readonly {
      readonly registry: string;
      readonly username: string;
      readonly updatedAt: string;
    }[];
  };
}

export function imageRoutes(context: ApiContext): Route[] {
  const images = context.images;
  if (images === undefined) return [];
  const namespaceOf = (value: string | undefined): string => namespaceFilter(value ?? 'default') ?? 'default';
  const hostOf = (value: string | undefined): string => {
    const host = decodeURIComponent(value ?? '');
    if (!HOST.test(host))
      throw invalidField('registry', host, 'a registry host such as registry.example.com:5000');
    return host;
  };
  return [
    {
      method: 'POST',
      path: '/api/v1/namespaces/:namespace/images',
      summary:
        'Upload an OCI image layout tarball (buildah push IMG oci-archive:FILE); answers the oci-archive:NAME@sha256:… reference a Function spec.image names',
      handle: async (request) => {
        const namespace = namespaceOf(request.params.namespace);
        const contentType =
          (request.req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
        if (!ARCHIVE_TYPES.has(contentType))
          throw new HearthError(
            'HEARTH_E_BAD_REQUEST',
            `Content-Type: got "${contentType || 'none'}", expected application/x-tar (an oci-archive)`,
          );
        const name = request.query.get('name') ?? 'image';
        const imported = await images.importArchive(namespace, request.req, name);
        sendJson(request.res, 200, imported);
      },
    },
    {
      method: 'GET',
      path: '/api/v1/namespaces/:namespace/registries',
      summary: "List the namespace's registry logins (host and user, never the password)",
      handle: (request) => {
        const namespace = namespaceOf(request.params.namespace);
        sendJson(request.res, 200, { items: images.logins.list(namespace) });
      },
    },
    {
      method: 'PUT',
      path: '/api/v1/namespaces/:namespace/registries/:registry',
      summary:
        'Store credentials for a registry, sealed like secrets: {"username", "password"}; checked against the registry first unless ?verify=false',
      handle: async (request) => {
        const namespace = namespaceOf(request.params.namespace);
        const registry = hostOf(request.params.registry);
        const body = (await readJsonBody(request.req, 64 * 1024)) as {
          username?: unknown;
          password?: unknown;
        } | null;
        const username = body?.username;
        const password = body?.password;
        if (typeof username !== 'string' || username.length === 0 || username.includes(':'))
          throw invalidField('username', username, 'a non-empty user name without ":"');
        if (typeof password !== 'string' || password.length === 0)
          throw invalidField(
            'password',
            password === undefined ? undefined : '(hidden)',
            'a non-empty password',
          );
        if (request.query.get('verify') !== 'false')
          await images.checkLogin(registry, { username, password });
        images.logins.put(namespace, registry, { username, password });
        sendJson(request.res, 200, { namespace, registry, username });
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/namespaces/:namespace/registries/:registry',
      summary: 'Forget the credentials of a registry',
      handle: (request) => {
        const namespace = namespaceOf(request.params.namespace);
        const registry = hostOf(request.params.registry);
        if (!images.logins.delete(namespace, registry))
          throw new HearthError(
            'HEARTH_E_RESOURCE_NOT_FOUND',
            `no login for registry ${registry} in namespace ${namespace}`,
          );
        sendJson(request.res, 200, { deleted: true, namespace, registry });
      },
    },
  ];
}
