/** @module A small method + path-pattern router for the control API (`/api/v1/...`). */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeValue, HearthError } from '../../domain/errors.js';
import { type Handler, sendError } from '../../gateway/index.js';
import type { Action, Principal } from '../../security/index.js';

export interface ApiRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** Who is asking; undefined while auth is off. */
  readonly principal?: Principal | undefined;
  /** 403 unless the caller may do `action` in `namespace` (undefined: every namespace); a no-op with auth off. */
  readonly authorize: (action: Action, namespace: string | undefined) => void;
}

/**
 * What a route needs (issue 10): `action` in the request's namespace (`:namespace`, else `?namespace=`,
 * else every namespace); `handler`: any valid credentials, the handler checks per item (apply); `public`.
 * Without it: `read` for GET, `deploy` for the rest.
 */
export type RouteAccess = { readonly action: Action } | 'handler' | 'public';

/** Checks a request against its route's access before the handler runs (the security part's). */
export interface ApiGuard {
  /** The principal, or undefined when auth is off; throws 401/403. */
  guard(req: IncomingMessage, access: RouteAccess, namespace: string | undefined): Principal | undefined;
  check(principal: Principal | undefined, action: Action, namespace: string | undefined): void;
}

export interface Route {
  readonly method: string;
  /** e.g. `/api/v1/namespaces/:namespace/functions/:name` */
  readonly path: string;
  readonly summary: string;
  readonly access?: RouteAccess;
  handle(request: ApiRequest): Promise<void> | void;
}

interface CompiledRoute {
  readonly route: Route;
  readonly pattern: RegExp;
  readonly names: readonly string[];
}

export function createRouter(
  routes: readonly Route[],
  onInternal: (error: unknown) => void,
  guard?: ApiGuard,
  /** Told of every request the guard refuses (401 or 403), for the audit log's refused logins. */
  onRefused?: (req: IncomingMessage, error: HearthError) => void,
): Handler {
  const compiled: CompiledRoute[] = routes.map((route) => {
    const names: string[] = [];
    const source = route.path.replace(/:([a-zA-Z]+)/g, (_, name: string) => {
      names.push(name);
      return '([^/]+)';
    });
    return { route, pattern: new RegExp(`^${source}$`), names };
  });
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let pathMatched = false;
    for (const { route, pattern, names } of compiled) {
      const match = pattern.exec(url.pathname);
      if (match === null) continue;
      pathMatched = true;
      if (route.method !== req.method) continue;
      Promise.resolve()
        .then(() => {
          const params = decodeParams(names, match);
          const access = route.access ?? { action: req.method === 'GET' ? 'read' : 'deploy' };
          let principal: Principal | undefined;
          try {
            principal = guard?.guard(
              req,
              access,
              params.namespace ?? url.searchParams.get('namespace') ?? undefined,
            );
          } catch (error) {
            if (error instanceof HearthError) onRefused?.(req, error);
            throw error;
          }
          const authorize = (action: Action, namespace: string | undefined): void =>
            guard?.check(principal, action, namespace);
          return route.handle({ req, res, params, query: url.searchParams, principal, authorize });
        })
        .catch((error: unknown) => sendError(res, error, undefined, onInternal));
      return;
    }
    sendError(
      res,
      pathMatched
        ? new HearthError(
            'HEARTH_E_METHOD_NOT_ALLOWED',
            `${req.method ?? 'GET'} is not allowed on ${url.pathname}`,
          )
        : new HearthError('HEARTH_E_NOT_FOUND', `no API route for ${url.pathname}`),
    );
  };
}

/** The path's named parts, percent-decoded; a malformed escape ("%E0%A4%A") is the caller's mistake (400). */
function decodeParams(names: readonly string[], match: RegExpExecArray): Record<string, string> {
  const params: Record<string, string> = {};
  names.forEach((name, index) => {
    const raw = match[index + 1] ?? '';
    try {
      params[name] = decodeURIComponent(raw);
    } catch {
      throw new HearthError(
        'HEARTH_E_BAD_REQUEST',
        `${name} in the path: got ${describeValue(raw)}, expected valid percent-encoding (%XX escapes of UTF-8 bytes)`,
        { details: { field: name, value: raw, expected: 'valid percent-encoding' } },
      );
    }
  });
  return params;
}
