/**
 * @module Cluster-mode end-to-end support (issue 12), shared by test/e2e/cluster*.test.ts: the services a
 * cluster of Hearth nodes shares (a real PostgreSQL, NATS with JetStream and Redis, started here), the
 * flags or the config block that join a node to them, and the started nodes by id.
 */

import { type Broker, startNats } from './broker-processes.mjs';
import { eventually, type Hearth } from './hearth.js';
import type { TestNetwork } from './netns.js';
import { type RunningPostgres, startPostgres } from './postgres.js';
import { type RunningRedis, startRedis } from './redis.js';

/** Two cores shared by every suite: one node20 stem cell per node, no Python ones. */
export const LEAN = 'stemCells: { node20: 1, python3: 0 }\n';

export interface ClusterServices {
  readonly postgres: RunningPostgres;
  readonly nats: Broker;
  readonly redis: RunningRedis;
  /** `--cluster --postgres … --nats … --redis … --node-id <id>`: a node joined by its flags. */
  flags(nodeId: string): string[];
  /** A config file's `cluster:` block for a node, with `extra` keys beside (e.g. `{ ackWait: '2s' }`). */
  yaml(nodeId: string, extra?: Readonly<Record<string, string>>): string;
  stop(): Promise<void>;
}

/**
 * Starts the three services, on loopback; with a test network, listening on its bridge too and (for
 * PostgreSQL) trusting its addresses, so that nodes in its namespaces reach them.
 */
export async function startClusterServices(network?: TestNetwork): Promise<ClusterServices> {
  const [postgres, nats, redis] = await Promise.all([
    startPostgres(network === undefined ? {} : { host: network.hostAddress, allow: network.cidr }),
    startNats(network === undefined ? {} : { host: network.hostAddress }),
    startRedis(undefined, network?.hostAddress),
  ]);
  return {
    postgres,
    nats,
    redis,
    flags: (nodeId) => [
      '--cluster',
      '--postgres',
      postgres.url,
      '--nats',
      nats.url,
      '--redis',
      redis.url,
      '--node-id',
      nodeId,
    ],
    yaml: (nodeId, extra = {}) =>
      [
        'cluster:',
        `  postgres: ${postgres.url}`,
        `  nats: ${nats.url}`,
        `  redis: ${redis.url}`,
        `  nodeId: ${nodeId}`,
        ...Object.entries(extra).map(([key, value]) => `  ${key}: ${value}`),
        '',
      ].join('\n'),
    stop: async () => {
      await Promise.all([postgres.stop(), nats.stop(), redis.stop()]);
    },
  };
}

/** The nodes a suite started, by id. */
export class ClusterNodes {
  private readonly byId = new Map<string, Hearth>();
  /** Nodes a test killed and deleted: `stopAll` reclaims what they left (mounts, cgroups, data dirs). */
  private readonly dropped: Hearth[] = [];

  set(id: string, node: Hearth): this {
    this.byId.set(id, node);
    return this;
  }

  /** The running node `id`; throws when there is none. */
  get(id: string): Hearth {
    const found = this.byId.get(id);
    if (found === undefined) throw new Error(`node ${id} is not running`);
    return found;
  }

  /** Forgets node `id` (a test killed it); `stopAll` still reclaims what it left. */
  delete(id: string): boolean {
    const node = this.byId.get(id);
    if (node !== undefined) this.dropped.push(node);
    return this.byId.delete(id);
  }

  ids(): string[] {
    return [...this.byId.keys()];
  }

  entries(): [string, Hearth][] {
    return [...this.byId.entries()];
  }

  /**
   * Stops every node (one that does not stop in time is killed, with the end of its log shown: `stop`),
   * then reclaims the dropped ones; every node is seen to even when one fails, then the failures are thrown.
   */
  async stopAll(): Promise<void> {
    const running = this.entries();
    this.byId.clear();
    const stopped = await Promise.allSettled(running.map(([, node]) => node.stop()));
    // After the running ones: a dropped node's data dir may be one a running node was restarted on.
    const reclaimed = await Promise.allSettled(this.dropped.splice(0).map((node) => node.reclaim()));
    const errors = [...stopped, ...reclaimed].flatMap((result) =>
      result.status === 'rejected' ? [result.reason as unknown] : [],
    );
    if (errors.length > 0) throw new AggregateError(errors, `${errors.length} node(s) left something behind`);
  }
}

/** The first admin key a node beyond loopback prints once (the other nodes read it from PostgreSQL). */
export function firstAdminKey(node: Hearth, name = 'the first node'): Promise<string> {
  return eventually(`${name} to print the first admin key`, () =>
    /admin key: (hth_\S+)/.exec(node.stderr())?.at(1),
  );
}
