/**
 * @module The route table of every EventGateway's HTTP routes: exact paths, `:param` segments and `/*`
 * prefixes. The most specific match wins (exact, then the most literal segments, then the longest prefix);
 * two routes that would match the same requests are refused, naming both.
 */

import { HearthError } from '../domain/errors.js';
import type { FunctionRef } from '../domain/function.js';
import { type GatewayFunctionEntry, type GatewayManifest, methodsOf } from '../domain/gateway.js';
import { parseDuration } from '../domain/units.js';

export interface Route {
  /** `namespace/name` of the gateway. */
  readonly gateway: string;
  /** Position in the gateway's `spec.functions`. */
  readonly index: number;
  readonly ref: FunctionRef;
  readonly path: string;
  /** Undefined: any method. */
  readonly methods: readonly string[] | undefined;
  readonly entry: GatewayFunctionEntry;
  readonly timeoutMs: number | undefined;
  readonly maxWaitMs: number | undefined;
  readonly kind: 'exact' | 'param' | 'prefix';
  /** Literal segments, or `undefined` for a `:param` segment. */
  readonly segments: readonly (string | undefined)[];
  readonly paramNames: readonly string[];
  /** For prefix routes: the path before `/*`. */
  readonly prefix: string;
  /** The shape two conflicting routes share, e.g. `/orders/:` or `/api/*`. */
  readonly shape: string;
}

export interface RouteMatch {
  readonly route: Route;
  readonly params: Readonly<Record<string, string>>;
}

export function describeRoute(route: Pick<Route, 'gateway' | 'index' | 'path' | 'methods'>): string {
  return `gateway ${route.gateway} spec.functions.${route.index} (${route.methods?.join('|') ?? 'ANY'} ${route.path})`;
}

export function compileRoutes(gateway: GatewayManifest, namespace: string): Route[] {
  const id = `${namespace}/${gateway.metadata.name}`;
  const routes: Route[] = [];
  for (const [index, entry] of (gateway.spec.functions ?? []).entries()) {
    const path = entry.match?.path;
    if (path === undefined) continue;
    const prefixed = path.endsWith('/*');
    const base = prefixed ? path.slice(0, -2) || '/' : trimSlash(path);
    const parts = base === '/' ? [] : base.slice(1).split('/');
    const segments = parts.map((part) => (part.startsWith(':') ? undefined : part));
    const paramNames = parts.filter((part) => part.startsWith(':')).map((part) => part.slice(1));
    const kind = prefixed ? 'prefix' : paramNames.length > 0 ? 'param' : 'exact';
    if (prefixed && paramNames.length > 0) {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `spec.functions.${index}.match.path: got "${path}", expected either :param segments or a trailing /*, not both`,
        {
          details: {
            field: `spec.functions.${index}.match.path`,
            value: path,
            expected: 'a path without both',
          },
        },
      );
    }
    const shape = `/${parts.map((part) => (part.startsWith(':') ? ':' : part)).join('/')}${prefixed ? '/*' : ''}`;
    routes.push({
      gateway: id,
      index,
      ref: { namespace: entry.namespace ?? namespace, name: entry.name },
      path,
      methods: methodsOf(entry),
      entry,
      timeoutMs: entry.timeout === undefined ? undefined : parseDuration(entry.timeout),
      maxWaitMs: entry.queue?.maxWait === undefined ? undefined : parseDuration(entry.queue.maxWait),
      kind,
      segments,
      paramNames,
      prefix: base,
      shape,
    });
  }
  return routes;
}

function trimSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function overlap(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return true;
  return a.some((method) => b.includes(method));
}

/** The first pair of routes that would serve the same requests, or undefined. */
export function findConflict(routes: readonly Route[]): [Route, Route] | undefined {
  const byShape = new Map<string, Route[]>();
  for (const route of routes) {
    const same = byShape.get(route.shape) ?? [];
    for (const other of same) if (overlap(other.methods, route.methods)) return [other, route];
    same.push(route);
    byShape.set(route.shape, same);
  }
  return undefined;
}

export function conflictError(pair: [Route, Route]): HearthError {
  const [a, b] = pair;
  return new HearthError(
    'HEARTH_E_ROUTE_CONFLICT',
    `${describeRoute(b)} conflicts with ${describeRoute(a)}: both match the same requests; change a path or a method`,
    {
      details: {
        gateway: b.gateway,
        field: `spec.functions.${b.index}.match`,
        value: { path: b.path, method: b.methods ?? 'ANY' },
        expected: `a route that ${a.gateway} does not already serve`,
        conflictsWith: { gateway: a.gateway, index: a.index, path: a.path, method: a.methods ?? 'ANY' },
      },
    },
  );
}

/** Routes indexed for matching; immutable, rebuilt when a gateway changes. */
export class RouteTable {
  private readonly exact = new Map<string, Route[]>();
  private readonly params: Route[];
  private readonly prefixes: Route[];
  readonly size: number;

  constructor(readonly routes: readonly Route[]) {
    for (const route of routes) {
      if (route.kind !== 'exact') continue;
      const list = this.exact.get(route.prefix) ?? [];
      list.push(route);
      this.exact.set(route.prefix, list);
    }
    const literal = (route: Route): number =>
      route.segments.filter((segment) => segment !== undefined).length;
    this.params = routes
      .filter((route) => route.kind === 'param')
      .sort((a, b) => literal(b) - literal(a) || firstParam(b) - firstParam(a));
    this.prefixes = routes
      .filter((route) => route.kind === 'prefix')
      .sort((a, b) => b.prefix.length - a.prefix.length);
    this.size = routes.length;
  }

  /**
   * The route for `method` and `pathname`. `methodMismatch` is true when some route has the path but
   * not the method (405 rather than 404).
   */
  match(method: string, pathname: string): { match?: RouteMatch; methodMismatch: boolean } {
    if (this.size === 0) return { methodMismatch: false };
    const path = trimSlash(pathname);
    let mismatch = false;
    const accept = (route: Route): boolean => {
      if (route.methods === undefined || route.methods.includes(method)) return true;
      if (method === 'HEAD' && route.methods.includes('GET')) return true;
      mismatch = true;
      return false;
    };
    for (const route of this.exact.get(path) ?? [])
      if (accept(route)) return { match: { route, params: {} }, methodMismatch: false };
    if (this.params.length > 0) {
      const parts = path === '/' ? [] : path.slice(1).split('/');
      for (const route of this.params) {
        if (route.segments.length !== parts.length) continue;
        let ok = true;
        for (let i = 0; i < parts.length; i++) {
          const literal = route.segments[i];
          if (literal !== undefined && literal !== parts[i]) {
            ok = false;
            break;
          }
        }
        if (!ok || !accept(route)) continue;
        const params: Record<string, string> = {};
        let n = 0;
        route.segments.forEach((segment, i) => {
          if (segment === undefined) params[route.paramNames[n++] ?? String(i)] = safeDecode(parts[i] ?? '');
        });
        return { match: { route, params }, methodMismatch: false };
      }
    }
    for (const route of this.prefixes) {
      const under = route.prefix === '/' || path === route.prefix || path.startsWith(`${route.prefix}/`);
      if (under && accept(route)) return { match: { route, params: {} }, methodMismatch: false };
    }
    return { methodMismatch: mismatch };
  }
}

/** Among routes with as many literal segments, the one whose first parameter comes later is more specific. */
function firstParam(route: Route): number {
  const index = route.segments.indexOf(undefined);
  return index < 0 ? route.segments.length : index;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
