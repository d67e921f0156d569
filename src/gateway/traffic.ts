/**
 * @module The gateway's traffic configuration, as applied: the route table of every EventGateway, the
 * token buckets (per protocol, route, function), and per-function instance caps. Swapped whole on each
 * change, so a request sees one consistent table; the `/function/` path consults it only when a
 * function has a limit (one boolean test otherwise).
 */

import { type FunctionRef, functionKey } from '../domain/function.js';
import type { GatewayManifest } from '../domain/gateway.js';
import { type RateLimitInput, resolveRateLimit } from '../domain/triggers.js';
import { LimitRule } from './rate-limit.js';
import { compileRoutes, conflictError, findConflict, type Route, RouteTable } from './routes.js';

interface AppliedGateway {
  readonly namespace: string;
  readonly manifest: GatewayManifest;
  readonly routes: readonly Route[];
  readonly protocolRule: LimitRule | undefined;
  readonly routeRules: ReadonlyMap<number, LimitRule>;
}

const CLIENT_SWEEP_MS = 60_000;

export class Traffic {
  private readonly gateways = new Map<string, AppliedGateway>();
  private readonly functionRules = new Map<string, LimitRule>();
  private table = new RouteTable([]);
  /** True when any function has its own limit: the `/function/` path checks this first. */
  functionLimited = false;
  private readonly sweeper: NodeJS.Timeout;

  constructor() {
    this.sweeper = setInterval(() => this.sweepClients(), CLIENT_SWEEP_MS);
    this.sweeper.unref();
  }

  get routes(): RouteTable {
    return this.table;
  }

  /** Throws HEARTH_E_ROUTE_CONFLICT (or a validation error) if the gateway cannot be applied as it is. */
  check(manifest: GatewayManifest, namespace: string): readonly Route[] {
    const own = compileRoutes(manifest, namespace);
    const key = `${namespace}/${manifest.metadata.name}`;
    const others = [...this.gateways.entries()].filter(([id]) => id !== key).flatMap(([, g]) => g.routes);
    const conflict = findConflict([...others, ...own]);
    if (conflict !== undefined) throw conflictError(conflict);
    return own;
  }

  /**
   * Like `check`, for several gateways applied together: each is checked against the others as well as
   * against the gateways already applied (those it replaces aside).
   */
  checkAll(gateways: readonly { manifest: GatewayManifest; namespace: string }[]): void {
    const own = gateways.map(({ manifest, namespace }) => compileRoutes(manifest, namespace));
    const replaced = new Set(
      gateways.map(({ manifest, namespace }) => `${namespace}/${manifest.metadata.name}`),
    );
    const others = [...this.gateways.entries()]
      .filter(([id]) => !replaced.has(id))
      .flatMap(([, g]) => g.routes);
    const conflict = findConflict([...others, ...own.flat()]);
    if (conflict !== undefined) throw conflictError(conflict);
  }

  /** Applies (or replaces) a gateway; call `check` first. */
  setGateway(manifest: GatewayManifest, namespace: string): void {
    this.setGateways([{ manifest, namespace }]);
  }

  /**
   * Applies several gateways as one change (routes may move between them), checked together first: the
   * table never holds some of them and not the others.
   */
  setGateways(gateways: readonly { manifest: GatewayManifest; namespace: string }[]): void {
    this.checkAll(gateways);
    for (const { manifest, namespace } of gateways) {
      const routes = compileRoutes(manifest, namespace);
      const id = `${namespace}/${manifest.metadata.name}`;
      let protocolRule: LimitRule | undefined;
      for (const protocol of manifest.spec.protocols ?? []) {
        if (!('http' in protocol)) continue;
        const limit = resolveRateLimit(protocol.http.rateLimit);
        if (limit !== undefined)
          protocolRule = new LimitRule('protocol', `gateway/${id}/http`, limit, undefined);
      }
      const routeRules = new Map<number, LimitRule>();
      for (const route of routes) {
        const limit = resolveRateLimit(route.entry.rateLimit);
        if (limit !== undefined)
          routeRules.set(
            route.index,
            new LimitRule('route', `gateway/${id}/route/${route.index}`, limit, route.ref),
          );
      }
      this.gateways.set(id, { namespace, manifest, routes, protocolRule, routeRules });
    }
    this.rebuild();
  }

  removeGateway(namespace: string, name: string): boolean {
    const removed = this.gateways.delete(`${namespace}/${name}`);
    if (removed) this.rebuild();
    return removed;
  }

  gateway(namespace: string, name: string): AppliedGateway | undefined {
    return this.gateways.get(`${namespace}/${name}`);
  }

  setFunctionLimit(ref: FunctionRef, input: RateLimitInput | undefined): void {
    const key = functionKey(ref);
    const limit = resolveRateLimit(input);
    const current = this.functionRules.get(key);
    if (limit === undefined) this.functionRules.delete(key);
    else if (current === undefined || JSON.stringify(current.limit) !== JSON.stringify(limit))
      this.functionRules.set(key, new LimitRule('function', `function/${key}`, limit, ref));
    this.functionLimited = this.functionRules.size > 0;
  }

  functionRule(ref: FunctionRef): LimitRule | undefined {
    return this.functionRules.get(functionKey(ref));
  }

  /** The buckets a request through `route` takes a token from: its gateway's protocol, the route, the function. */
  rulesFor(route: Route): LimitRule[] {
    const applied = this.gateways.get(route.gateway);
    const rules: LimitRule[] = [];
    if (applied?.protocolRule !== undefined) rules.push(applied.protocolRule);
    const routeRule = applied?.routeRules.get(route.index);
    if (routeRule !== undefined) rules.push(routeRule);
    const fnRule = this.functionRules.get(functionKey(route.ref));
    if (fnRule !== undefined) rules.push(fnRule);
    return rules;
  }

  /** Max instances per function from gateway `concurrency` entries (the smallest when several name it). */
  instanceCaps(): Map<string, { ref: FunctionRef; cap: number }> {
    const caps = new Map<string, { ref: FunctionRef; cap: number }>();
    for (const gateway of this.gateways.values()) {
      for (const entry of gateway.manifest.spec.functions ?? []) {
        if (entry.concurrency === undefined) continue;
        const ref = { namespace: entry.namespace ?? gateway.namespace, name: entry.name };
        const key = functionKey(ref);
        const current = caps.get(key);
        if (current === undefined || entry.concurrency < current.cap)
          caps.set(key, { ref, cap: entry.concurrency });
      }
    }
    return caps;
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private rebuild(): void {
    this.table = new RouteTable([...this.gateways.values()].flatMap((gateway) => gateway.routes));
  }

  private sweepClients(): void {
    const now = performance.now();
    for (const gateway of this.gateways.values()) {
      gateway.protocolRule?.sweep(now);
      for (const rule of gateway.routeRules.values()) rule.sweep(now);
    }
    for (const rule of this.functionRules.values()) rule.sweep(now);
  }
}
