/**
 * @module Applying EventGateway resources: validate, refuse route conflicts (naming both routes), bind any
 * extra port, then store and switch the route table, caps and event protocols over. A refused apply
 * changes nothing.
 */

import { HearthError } from '../../domain/errors.js';
import { functionKey } from '../../domain/function.js';
import { type GatewayManifest, methodsOf, parseGatewayManifest } from '../../domain/gateway.js';
import { resolveRateLimit, type TriggerStatus } from '../../domain/triggers.js';
import { formatDuration, parseDuration } from '../../domain/units.js';
import { formatRate, type GatewayListeners, type Traffic } from '../../gateway/index.js';
import type { Scheduler } from '../../scheduler/index.js';
import type { GatewayDetail, GatewaySummary } from '../api/events-types.js';
import type { Store, StoredGateway } from '../store/index.js';

export interface GatewayServiceOptions {
  readonly store: Store;
  readonly traffic: Traffic;
  readonly scheduler: Scheduler;
  readonly listeners: GatewayListeners;
  readonly triggers: {
    syncGateway(namespace: string, name: string, manifest: GatewayManifest | undefined): Promise<void>;
    statusOf(owner: { kind: 'gateway'; namespace: string; name: string }): TriggerStatus[];
  };
  readonly warn: (message: string) => void;
}

/** A validated EventGateway, ready to store and activate. */
export interface PreparedGateway {
  readonly namespace: string;
  readonly name: string;
  readonly manifest: GatewayManifest;
  /** The stored gateway is this one already. */
  readonly unchanged: boolean;
}

export class GatewayService {
  /** Functions capped by a gateway, so a cap that disappears is lifted. */
  private capped = new Set<string>();
  /** What this node serves of each gateway (`namespace/name` → its manifest as JSON), for `follow`. */
  private readonly served = new Map<string, string>();
  private serial: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: GatewayServiceOptions) {}

  /** Re-applies the stored gateways after a restart; one that no longer fits is reported, not fatal. */
  async restore(): Promise<void> {
    for (const stored of this.options.store.listGateways()) {
      try {
        this.options.traffic.setGateway(stored.manifest, stored.namespace);
        await this.options.listeners.ensure(
          id(stored.namespace, stored.name),
          httpPorts(stored.manifest),
          false,
        );
        void this.options.triggers.syncGateway(stored.namespace, stored.name, stored.manifest);
        this.served.set(id(stored.namespace, stored.name), JSON.stringify(stored.manifest));
      } catch (error) {
        this.options.warn(
          `gateway ${stored.namespace}/${stored.name} was not restored: ${(error as Error).message}`,
        );
      }
    }
    this.applyCaps();
  }

  apply(
    namespace: string,
    name: string,
    input: unknown,
  ): Promise<{ unchanged: boolean; gateway: StoredGateway }> {
    return this.exclusive(() => this.applyNow(namespace, name, input));
  }

  delete(namespace: string, name: string): Promise<boolean> {
    const run = this.serial.then(async () => {
      const existed = this.options.store.deleteGateway(namespace, name);
      await this.stopServing(namespace, name);
      return existed;
    });
    this.serial = run.catch(() => undefined);
    return run;
  }

  /**
   * Cluster mode (issue 12): another node created, changed or deleted gateways in the shared store. This
   * node's routes, extra ports, caps and event-protocol listeners follow, without a restart; only what
   * differs from what it serves is touched (it runs at every change notice and every resync).
   */
  follow(): Promise<void> {
    return this.exclusive(async () => {
      const stored = this.options.store.listGateways();
      const storedIds = new Set(stored.map((gateway) => id(gateway.namespace, gateway.name)));
      for (const key of [...this.served.keys()]) {
        if (storedIds.has(key)) continue;
        const [namespace = 'default', name = ''] = key.split('/');
        await this.stopServing(namespace, name);
      }
      const changed = stored.filter(
        (gateway) =>
          this.served.get(id(gateway.namespace, gateway.name)) !== JSON.stringify(gateway.manifest),
      );
      if (changed.length === 0) return;
      await this.activate(
        changed.map(({ namespace, name, manifest }) => ({ namespace, name, manifest, unchanged: false })),
      );
    });
  }

  private async stopServing(namespace: string, name: string): Promise<void> {
    this.served.delete(id(namespace, name));
    this.options.traffic.removeGateway(namespace, name);
    this.applyCaps();
    await this.options.listeners.release(id(namespace, name));
    await this.options.triggers.syncGateway(namespace, name, undefined);
  }

  list(namespace?: string): GatewaySummary[] {
    return this.options.store.listGateways(namespace).map(summary);
  }

  detail(namespace: string, name: string): GatewayDetail {
    const stored = this.options.store.getGateway(namespace, name);
    if (stored === undefined)
      throw new HearthError(
        'HEARTH_E_RESOURCE_NOT_FOUND',
        `gateway ${name} not found in namespace ${namespace}`,
      );
    const manifest = stored.manifest;
    const httpLimit = (manifest.spec.protocols ?? []).flatMap((p) =>
      'http' in p ? [p.http.rateLimit] : [],
    )[0];
    return {
      ...summary(stored),
      manifest,
      routeTable: (manifest.spec.functions ?? []).map((entry, index) => {
        const ref = { namespace: entry.namespace ?? namespace, name: entry.name };
        return {
          index,
          path: entry.match?.path ?? null,
          methods: methodsOf(entry) ?? 'ANY',
          topic: entry.match?.topic ?? null,
          function: entry.name,
          namespace: ref.namespace,
          deployed: this.options.scheduler.lookup(ref) !== undefined,
          concurrency: entry.concurrency ?? null,
          priority: entry.priority ?? null,
          rateLimit: describeLimit(entry.rateLimit),
          timeout: entry.timeout === undefined ? null : formatDuration(parseDuration(entry.timeout) ?? 0),
        };
      }),
      http: {
        rateLimit: describeLimit(httpLimit),
        listeners: this.options.listeners.status(id(namespace, name)),
      },
      triggers: this.options.triggers.statusOf({ kind: 'gateway', namespace, name }),
      createdAt: stored.createdAt,
    };
  }

  /** Runs `work` while no other gateway change can start. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.serial.then(work);
    this.serial = run.catch(() => undefined);
    return run;
  }

  /** Validates a gateway resource for `namespace/name`, changing nothing; route conflicts are checked apart. */
  prepare(namespace: string, name: string, input: unknown): PreparedGateway {
    const parsed = parseGatewayManifest(input, 'resource');
    if (parsed.metadata.name !== name)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `resource: metadata.name: got "${parsed.metadata.name}", expected "${name}" (the name in the URL)`,
        { details: { field: 'metadata.name', value: parsed.metadata.name, expected: name } },
      );
    if (parsed.metadata.namespace !== undefined && parsed.metadata.namespace !== namespace)
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `resource: metadata.namespace: got "${parsed.metadata.namespace}", expected "${namespace}" (the namespace in the URL)`,
        { details: { field: 'metadata.namespace', value: parsed.metadata.namespace, expected: namespace } },
      );
    const manifest: GatewayManifest = { ...parsed, metadata: { ...parsed.metadata, namespace } };
    const current = this.options.store.getGateway(namespace, name);
    const unchanged = current !== undefined && JSON.stringify(current.manifest) === JSON.stringify(manifest);
    return { namespace, name, manifest, unchanged };
  }

  /** Throws HEARTH_E_ROUTE_CONFLICT when these gateways, applied together, would serve the same requests. */
  checkRoutes(gateways: readonly PreparedGateway[]): void {
    this.options.traffic.checkAll(gateways.map(({ manifest, namespace }) => ({ manifest, namespace })));
  }

  /** The store write of a checked gateway; call it inside the store transaction, then `activate`. */
  store(gateway: PreparedGateway): StoredGateway {
    return this.options.store.putGateway(gateway.namespace, gateway.name, gateway.manifest);
  }

  /**
   * Binds every extra `http.port` of these gateways before anything is stored: a port in use refuses the
   * change (HEARTH_E_CONFLICT naming it), "configured" must mean listening (issue 19). The returned undo puts
   * the listeners back as they were, for a change refused later. Only a restart keeps a gateway whose port
   * is taken, with the error in `describe gateway`.
   */
  async bindPorts(gateways: readonly PreparedGateway[]): Promise<() => Promise<void>> {
    const bound: PreparedGateway[] = [];
    const undo = async (): Promise<void> => {
      for (const { namespace, name } of bound) {
        const current = this.options.store.getGateway(namespace, name);
        await this.options.listeners.ensure(
          id(namespace, name),
          current === undefined ? [] : httpPorts(current.manifest),
          false,
        );
      }
    };
    try {
      for (const gateway of gateways) {
        bound.push(gateway);
        await this.options.listeners.ensure(
          id(gateway.namespace, gateway.name),
          httpPorts(gateway.manifest),
          true,
        );
      }
    } catch (error) {
      await undo();
      throw error;
    }
    return undo;
  }

  /** Switches the route table, ports, caps and event protocols over to stored gateways, all at once. */
  async activate(gateways: readonly PreparedGateway[]): Promise<void> {
    // An extra port that is taken does not refuse the gateway: its routes are served on the platform's
    // port regardless, and `describe gateway` shows the port's error.
    for (const { namespace, name, manifest } of gateways) {
      await this.options.listeners.ensure(id(namespace, name), httpPorts(manifest), false);
      for (const listener of this.options.listeners.status(id(namespace, name)))
        if (listener.error !== null)
          this.options.warn(
            `gateway ${namespace}/${name}: not listening on port ${listener.port}: ${listener.error}`,
          );
    }
    this.options.traffic.setGateways(gateways.map(({ manifest, namespace }) => ({ manifest, namespace })));
    this.applyCaps();
    for (const { namespace, name, manifest } of gateways) {
      this.served.set(id(namespace, name), JSON.stringify(manifest));
      void this.options.triggers.syncGateway(namespace, name, manifest);
    }
  }

  private async applyNow(
    namespace: string,
    name: string,
    input: unknown,
  ): Promise<{ unchanged: boolean; gateway: StoredGateway }> {
    const prepared = this.prepare(namespace, name, input);
    const current = this.options.store.getGateway(namespace, name);
    if (prepared.unchanged && current !== undefined) return { unchanged: true, gateway: current };
    // Every check before any change.
    this.checkRoutes([prepared]);
    const undoPorts = await this.bindPorts([prepared]);
    let stored: StoredGateway;
    try {
      stored = this.store(prepared);
    } catch (error) {
      await undoPorts();
      throw error;
    }
    await this.activate([prepared]);
    return { unchanged: false, gateway: stored };
  }

  private applyCaps(): void {
    const caps = this.options.traffic.instanceCaps();
    for (const key of this.capped) {
      if (caps.has(key)) continue;
      const [namespace = 'default', fn = ''] = key.split('/');
      this.options.scheduler.setInstanceCap({ namespace, name: fn }, undefined);
    }
    for (const { ref, cap } of caps.values()) this.options.scheduler.setInstanceCap(ref, cap);
    this.capped = new Set([...caps.values()].map(({ ref }) => functionKey(ref)));
  }
}

function id(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function httpPorts(manifest: GatewayManifest): number[] {
  return (manifest.spec.protocols ?? []).flatMap((p) =>
    'http' in p && p.http.port !== undefined ? [p.http.port] : [],
  );
}

function summary(stored: StoredGateway): GatewaySummary {
  const functions = stored.manifest.spec.functions ?? [];
  return {
    namespace: stored.namespace,
    name: stored.name,
    protocols: (stored.manifest.spec.protocols ?? []).map((p) => Object.keys(p)[0] ?? '?'),
    routes: functions.filter((entry) => entry.match?.path !== undefined).length,
    functions: new Set(functions.map((entry) => `${entry.namespace ?? stored.namespace}/${entry.name}`)).size,
    updatedAt: stored.updatedAt,
  };
}

function describeLimit(input: Parameters<typeof resolveRateLimit>[0]): string | null {
  const limit = resolveRateLimit(input);
  if (limit === undefined) return null;
  const parts: string[] = [];
  if (limit.rate !== undefined) parts.push(`${formatRate(limit.rate)} (burst ${limit.burst})`);
  if (limit.perClient !== undefined)
    parts.push(`${formatRate(limit.perClient)} per client (burst ${limit.clientBurst})`);
  return parts.join(', ');
}
