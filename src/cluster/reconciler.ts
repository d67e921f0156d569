/**
 * @module Keeps this node serving what PostgreSQL says is active. Run when another node announces a
 * change on NATS, and on a slow timer in case a notice was missed (NATS core is at-most-once).
 *
 * Atomic redeploy across the cluster: the switch is one row (`functions.active_version`) changed in the
 * transaction that stores the version and its code. A node keeps routing every request to the version
 * it has until it holds the new one whole (code fetched and unpacked), then switches in one step
 * (`scheduler.activate`); a request is served by one version from start to end, and once a node has
 * switched it never serves the older one again.
 */

import type { CodeStore } from '../control/packages/index.js';
import type { StoredVersion } from '../control/store/index.js';
import type { DeployedVersion } from '../domain/deployment.js';
import { type FunctionRef, functionKey } from '../domain/function.js';
import type { Scheduler } from '../scheduler/index.js';
import type { PostgresStore } from './pg-store.js';

export interface ReconcilerOptions {
  readonly store: PostgresStore;
  readonly code: Pick<CodeStore, 'has' | 'adopt'>;
  /** The event gateway's view of the scheduler, so limits and triggers follow the switch too. */
  readonly scheduler: Pick<Scheduler, 'lookup' | 'activate' | 'deactivate'>;
  readonly toDeployed: (stored: StoredVersion) => DeployedVersion;
  /** Whether this node holds a dependency layer. */
  readonly hasLayer: (key: string) => Promise<boolean>;
  /** Fetches a layer another node built from the cluster's shared store; throws when it cannot. */
  readonly fetchLayer: (key: string) => Promise<void>;
  readonly info: (message: string) => void;
  readonly warn: (message: string) => void;
  /** Told after each switch, so the node that deployed can tell its client every node has it. */
  readonly onSwitched?: (ref: FunctionRef, version: number) => void;
}

export class Reconciler {
  /** The functions this node serves, by key, as the last sync left them. */
  private readonly serving = new Map<string, FunctionRef>();
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly options: ReconcilerOptions) {}

  /** What the platform restored at start, so a function deleted elsewhere since is also dropped here. */
  adopt(refs: readonly FunctionRef[]): void {
    for (const ref of refs) this.track(ref);
  }

  /** A function this node serves by other means (its own deploys): dropped too once the store lacks it. */
  track(ref: FunctionRef): void {
    this.serving.set(functionKey(ref), ref);
  }

  /** Brings this node in line with the store; concurrent calls fold into one more pass. */
  sync(): Promise<void> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Resolves once no pass is running (a pass that fails is logged, never thrown). */
  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  private async pass(): Promise<void> {
    let wanted: ReturnType<PostgresStore['listFunctions']>;
    try {
      wanted = this.options.store.listFunctions();
    } catch (error) {
      this.options.warn(`cluster: cannot read the functions from PostgreSQL: ${(error as Error).message}`);
      return;
    }
    const seen = new Set<string>();
    for (const fn of wanted) {
      const ref = { namespace: fn.namespace, name: fn.name };
      const key = functionKey(ref);
      seen.add(key);
      this.serving.set(key, ref);
      const local = this.options.scheduler.lookup(ref);
      const current =
        local !== undefined && local.version === fn.active.version && local.createdAt === fn.active.createdAt;
      // Restored at start from the store, the version may be active here without its code or layer (a node
      // that joins later, or one whose package was collected): fetched then, no switch needed.
      const depsKey = fn.active.depsKey;
      if (
        current &&
        this.options.code.has(fn.active.codeHash) &&
        (depsKey === null || (await this.options.hasLayer(depsKey)))
      )
        continue;
      try {
        // Built once in the cluster (by the node that deployed it): fetched, never built again here.
        if (depsKey !== null) await this.options.fetchLayer(depsKey);
        await this.fetchCode(fn.active.codeHash);
      } catch (error) {
        // Keeps serving what it has: a half-present version is never switched to.
        this.options.warn(`cluster: ${key} v${fn.active.version} not taken yet: ${(error as Error).message}`);
        continue;
      }
      if (current) continue;
      // The store may have moved on while the code came: the next pass takes the newer version.
      this.options.scheduler.activate(this.options.toDeployed(fn.active));
      this.options.info(`cluster: now serving ${key} v${fn.active.version}`);
      this.options.onSwitched?.(ref, fn.active.version);
    }
    for (const [key, ref] of this.serving) {
      if (seen.has(key)) continue;
      this.serving.delete(key);
      if (this.options.scheduler.lookup(ref) === undefined) continue;
      await this.options.scheduler.deactivate(ref);
      this.options.info(`cluster: ${key} was removed; no longer serving it`);
    }
  }

  private async fetchCode(hash: string): Promise<void> {
    if (this.options.code.has(hash)) return;
    const archive = this.options.store.codePackage(hash);
    if (archive === undefined) throw new Error(`code package ${hash.slice(0, 12)} is not in PostgreSQL`);
    await this.options.code.adopt(hash, archive);
  }
}
