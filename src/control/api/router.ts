/** @module A small method + path-pattern router for the control API (`/api/v1/...`). */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { describeValue, HearthError } from '../../domain/errors.js';
import { type Handler, sendError } from '../../gateway/index.js';

export interface ApiRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
}

export interface Route {
  readonly method: string;
  /** e.g. `/api/v1/namespaces/:namespace/functions/:name` */
  readonly path: string;
  readonly summary: string;
  handle(request: ApiRequest): Promise<void> | void;
}

interface CompiledRoute {
  readonly route: Route;
  readonly pattern: RegExp;
  readonly names: readonly string[];
}

export function createRouter(routes: readonly Route[], onInternal: (error: unknown) => void): Handler {
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
        .then(() => route.handle({ req, res, params: decodeParams(names, match), query: url.searchParams }))
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
