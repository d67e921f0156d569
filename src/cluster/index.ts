/**
 * @module Cluster mode (issue 12): several Hearth nodes sharing one PostgreSQL (functions, versions, code
 * packages, keys), one NATS (membership heartbeats, change notices) and one Redis (`ctx.state`). Opt-in
 * with `hearth up --cluster …` or `cluster:` in the config; without it none of this is loaded.
 *
 * The platform opens the cluster before anything else (its store replaces the embedded SQLite one), and
 * joins it once listening: from then on the node heartbeats, and follows every deploy made on any node.
 */

import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { SecretTable } from '../compliance/index.js';
import type { ClusterConfig } from '../config.js';
import { NODE_LOGS_HEADER, type PeerLogs } from '../control/api/context.js';
import type { LogRecord } from '../control/api/types.js';
import type { CodeStore } from '../control/packages/index.js';
import type { StoredVersion } from '../control/store/index.js';
import type { DeployedVersion } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import { type FunctionRef, functionKey } from '../domain/function.js';
import type { Scheduler } from '../scheduler/index.js';
import type { LostNodes } from '../triggers/index.js';
import { type BreakerSettings, Forwarder } from './forward.js';
import { JetStreamQueue } from './js-queue.js';
import { type ClusterNode, Membership, type NodeAnnouncement } from './membership.js';
import { PgLayers } from './pg-layers.js';
import { PostgresStore, type StoreChange } from './pg-store.js';
import { Reconciler } from './reconciler.js';

export type { ClusterConfig } from '../config.js';
export { JetStreamQueue } from './js-queue.js';
export type { ClusterNode, NodeAnnouncement } from './membership.js';
export { PgLayers } from './pg-layers.js';
export { PostgresStore } from './pg-store.js';

export interface ClusterParts {
  /** The event gateway's observed scheduler (limits and triggers follow a switch). */
  readonly scheduler: Pick<Scheduler, 'lookup' | 'activate' | 'deactivate' | 'liveStats'>;
  readonly code: Pick<CodeStore, 'has' | 'adopt'>;
  readonly hasLayer: (key: string) => Promise<boolean>;
  /** Fetches a layer another node built from the shared store (`LayerStore.fetchShared`). */
  readonly fetchLayer: (key: string) => Promise<void>;
  /** Stores the layers this node holds that the cluster lacks (`LayerStore.shareHeld`). */
  readonly shareLayers: (layers: readonly { key: string; namespace: string }[]) => Promise<number>;
  readonly toDeployed: (stored: StoredVersion) => DeployedVersion;
  /** The URL this node listens on. */
  readonly url: string;
  /** The functions the platform restored from the store at start. */
  readonly restored: readonly FunctionRef[];
  readonly info: (message: string) => void;
  readonly warn: (message: string) => void;
  /** Re-reads API keys and namespaces (another node changed them). */
  readonly reloadSecurity: () => void;
  /** Brings this node's EventGateways (routes, ports, event listeners) in line with the store. */
  readonly followGateways: () => Promise<void>;
}

const SUBJECT_PREFIX = 'hearth.cluster';
/** The longest a deploy waits for the other live nodes to switch before it answers anyway. */
const SWITCH_WAIT_MS = 10_000;
/** Switches heard are kept this long: one may arrive before the deploy that caused it starts waiting. */
const SWITCH_MEMORY_MS = 60_000;

interface SwitchNotice {
  readonly node: string;
  /** `namespace/name@version`. */
  readonly switched: string;
}

interface SwitchWaiter {
  readonly pending: Set<string>;
  readonly done: () => void;
}
/** How long a logs request waits for another node's part before naming it unreachable. */
const PEER_LOGS_TIMEOUT_MS = 5_000;
/** A missed change notice is caught up by this timer at the latest. */
const RESYNC_MS = 10_000;

/** The `Deployer` methods that release versions (`deployArchive`, `configure`: one outcome; `releaseAll`: a list). */
const RELEASING: ReadonlySet<string | symbol> = new Set(['deployArchive', 'configure', 'releaseAll']);

/** What the releasing methods resolve with, as far as waiting for the cluster needs it. */
interface DeployedOutcome {
  readonly unchanged: boolean;
  readonly version: {
    readonly namespace: string;
    readonly name: string;
    readonly version: number;
  };
}

interface ChangeNotice {
  readonly origin: string;
  readonly change: StoreChange;
  /** A secret's notice: the other nodes answer on `secret-seen` with it once their copy holds the row. */
  readonly id?: string;
}

interface SecretSeen {
  readonly node: string;
  readonly id: string;
}

export class Cluster {
  private membership: Membership | undefined;
  private reconciler: Reconciler | undefined;
  private changes: Subscription | undefined;
  private resync: NodeJS.Timeout | undefined;
  private readonly startedAt = new Date().toISOString();
  private switchedSub: Subscription | undefined;
  /** `fn@version` → the nodes heard to have switched to it, and when it was first heard. */
  private readonly switches = new Map<string, { nodes: Set<string>; at: number }>();
  private readonly switchWaiters = new Map<string, Set<SwitchWaiter>>();
  /** Handed to the gateway before the node listens; it forwards nothing until the first heartbeat. */
  readonly forwarder: Forwarder;
  private readonly lostListeners = new Set<(nodeId: string) => void>();
  private secretSeenSub: Subscription | undefined;
  /** Secret notices this node sent → the live nodes whose copy has not taken them yet. */
  private readonly secretNotices = new Map<string, Set<string>>();
  /** Told whenever a secret notice's set of nodes shrinks. */
  private readonly secretWaiters = new Set<() => void>();
  /**
   * The nodes that leave, told on one live node only (the lowest id, this one included): it takes over
   * what a broker keeps for a node that is gone (its MQTT sessions). Every node reaches the same choice
   * from its own view; two nodes that disagree for a moment both take over, which at-least-once allows.
   */
  readonly lostNodes: LostNodes = {
    subscribe: (listener) => {
      this.lostListeners.add(listener);
      return () => this.lostListeners.delete(listener);
    },
  };

  private constructor(
    readonly config: ClusterConfig,
    readonly nodeId: string,
    private readonly nats: NatsConnection,
    readonly store: PostgresStore,
    /** Async invocations, trigger events and dead letters, shared by every node (NATS JetStream). */
    readonly queue: JetStreamQueue,
    /** Dependency layers, built once in the cluster and fetched by the other nodes (PostgreSQL). */
    readonly layers: PgLayers,
    breaker: BreakerSettings,
    private readonly warn: (message: string) => void,
  ) {
    this.forwarder = new Forwarder(nodeId, breaker, (peer, reason) =>
      warn(`cluster: forwarding to node ${peer} failed: ${reason}`),
    );
  }

  /** Connects to NATS and PostgreSQL (migrating it); a service out of reach stops the start, named. */
  static async open(
    config: ClusterConfig,
    dataDir: string,
    breaker: BreakerSettings,
    warn: (message: string) => void,
    queueConcurrency: number,
  ): Promise<Cluster> {
    const nodeId = config.nodeId ?? persistentNodeId(dataDir);
    const nats = await connect({
      servers: config.natsUrl,
      name: `hearth node ${nodeId}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    }).catch((error: unknown) => {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `cluster: cannot reach NATS at ${config.natsUrl}: ${(error as Error).message}`,
      );
    });
    let cluster: Cluster | undefined;
    let store: PostgresStore;
    try {
      store = PostgresStore.open({
        url: config.postgresUrl,
        packagesDir: join(dataDir, 'packages'),
        onCommitted: (change) => cluster?.announce(change),
      });
    } catch (error) {
      await nats.close();
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `cluster: cannot use PostgreSQL at ${redactUrl(config.postgresUrl)}: ${(error as Error).message}`,
      );
    }
    let queue: JetStreamQueue;
    try {
      queue = await JetStreamQueue.open({
        natsUrl: config.natsUrl,
        postgresUrl: config.postgresUrl,
        nodeId,
        ackWaitMs: config.ackWaitMs,
        concurrency: queueConcurrency,
        warn,
      });
    } catch (error) {
      store.close();
      await nats.close();
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `cluster: cannot open the JetStream queue at ${config.natsUrl} (is JetStream enabled: nats-server -js?): ${(error as Error).message}`,
      );
    }
    const layers = new PgLayers({ url: config.postgresUrl, nodeId, warn });
    cluster = new Cluster(config, nodeId, nats, store, queue, layers, breaker, warn);
    return cluster;
  }

  /**
   * Once the node listens: heartbeats, and following the deploys made on other nodes. Resolves after the
   * first pass, so the node is ready only once it holds the code of every function it serves.
   */
  async join(parts: ClusterParts): Promise<void> {
    const url = this.config.advertiseUrl ?? parts.url;
    const reconciler = new Reconciler({
      store: this.store,
      code: parts.code,
      scheduler: parts.scheduler,
      toDeployed: parts.toDeployed,
      hasLayer: parts.hasLayer,
      fetchLayer: parts.fetchLayer,
      info: parts.info,
      warn: parts.warn,
      onSwitched: (ref, version) => this.publishSwitch(`${functionKey(ref)}@${version}`),
    });
    this.switchedSub = this.nats.subscribe(`${SUBJECT_PREFIX}.switched`, {
      callback: (error, message) => {
        if (error !== null) return;
        try {
          const notice = message.json<SwitchNotice>();
          this.heardSwitch(notice.node, notice.switched);
        } catch {
          // Not ours.
        }
      },
    });
    this.secretSeenSub = this.nats.subscribe(`${SUBJECT_PREFIX}.secret-seen`, {
      callback: (error, message) => {
        if (error !== null) return;
        try {
          const seen = message.json<SecretSeen>();
          this.secretSeenBy(seen.id, seen.node);
        } catch {
          // Not ours.
        }
      },
    });
    reconciler.adopt(parts.restored);
    this.reconciler = reconciler;
    this.changes = this.nats.subscribe(`${SUBJECT_PREFIX}.changes`, {
      callback: (error, message) => {
        if (error !== null) return;
        let notice: ChangeNotice;
        try {
          notice = message.json<ChangeNotice>();
        } catch {
          return;
        }
        if (notice.origin === this.nodeId) return;
        if (notice.change.kind === 'security') {
          try {
            parts.reloadSecurity();
          } catch (error) {
            parts.warn(`cluster: cannot re-read keys and namespaces: ${(error as Error).message}`);
          }
          return;
        }
        if (notice.change.kind === 'gateway') {
          this.followGateways(parts);
          return;
        }
        if (notice.change.kind === 'secret') {
          this.takeSecret(notice.change, notice.id, parts.warn);
          return;
        }
        void reconciler.sync();
      },
    });
    // Secrets changed between the store's start (which filled the copy) and this subscription.
    this.reloadSecrets(parts.warn);
    this.resync = setInterval(() => {
      void reconciler.sync();
      this.followGateways(parts);
      this.reloadSecrets(parts.warn);
      try {
        parts.reloadSecurity();
      } catch (error) {
        parts.warn(`cluster: cannot re-read keys and namespaces: ${(error as Error).message}`);
      }
    }, RESYNC_MS);
    this.resync.unref();
    this.membership = new Membership({
      connection: this.nats,
      subject: `${SUBJECT_PREFIX}.heartbeat`,
      intervalMs: this.config.heartbeatMs,
      deadAfterMs: this.config.deadAfterMs,
      announce: () => announcement(this.nodeId, url, this.startedAt, parts.scheduler.liveStats()),
      onJoin: (node) => parts.info(`cluster: node ${node.id} joined (${node.url})`),
      onLeave: (node, reason) => {
        parts.warn(`cluster: node ${node.id} left (${reason})`);
        // After the membership's own bookkeeping (this runs inside its view of the nodes).
        setImmediate(() => this.tellLost(node.id, parts.warn));
        // A node that left is not waited for.
        for (const waiters of this.switchWaiters.values())
          for (const waiter of waiters) {
            waiter.pending.delete(node.id);
            if (waiter.pending.size === 0) waiter.done();
          }
        for (const id of [...this.secretNotices.keys()]) this.secretSeenBy(id, node.id);
      },
      onView: (self, nodes) => this.forwarder.update(self, nodes),
    });
    this.membership.start();
    parts.info(`cluster: node ${this.nodeId} joined as ${url}`);
    // Code of functions deployed before this node joined, and deploys made while it was starting.
    await reconciler.sync();
    // Layers of active versions built here before the cluster shared layers: stored for the other nodes
    // (who take those versions at their next resync). In the background: the node is ready without it.
    const active = this.store
      .listFunctions()
      .flatMap((fn) =>
        fn.active.depsKey === null ? [] : [{ key: fn.active.depsKey, namespace: fn.namespace }],
      );
    void parts
      .shareLayers(active)
      .then((count) => {
        if (count > 0)
          parts.info(`cluster: stored ${count} dependency layer(s) built here for the other nodes`);
      })
      .catch((error: unknown) =>
        parts.warn(`cluster: cannot store this node's dependency layers: ${(error as Error).message}`),
      );
    // Only now may this node take queued work: it serves what the cluster has deployed.
    this.queue.start(
      (ref) => parts.scheduler.lookup(ref) !== undefined || this.store.getFunction(ref) === undefined,
    );
  }

  /**
   * Resolves once every other live node serves `version` of `ref` (or after SWITCH_WAIT_MS), with the
   * nodes that had not switched by then. The deploy API answers after it: once a deploy has returned,
   * every live node answers with the new version.
   */
  async awaitSwitched(ref: FunctionRef, version: number): Promise<string[]> {
    const key = `${functionKey(ref)}@${version}`;
    const heard = this.switches.get(key)?.nodes ?? new Set<string>();
    const pending = new Set(
      this.nodes()
        .filter((node) => !node.self && !heard.has(node.id))
        .map((node) => node.id),
    );
    if (pending.size === 0) return [];
    await new Promise<void>((resolve) => {
      const waiters = this.switchWaiters.get(key) ?? new Set<SwitchWaiter>();
      this.switchWaiters.set(key, waiters);
      const timer = setTimeout(() => waiter.done(), SWITCH_WAIT_MS);
      const waiter: SwitchWaiter = {
        pending,
        done: () => {
          clearTimeout(timer);
          waiters.delete(waiter);
          if (waiters.size === 0) this.switchWaiters.delete(key);
          resolve();
        },
      };
      waiters.add(waiter);
    });
    return [...pending];
  }

  /**
   * The deployer as the API should use it: a deploy, a configuration change or an apply answers once every
   * live node serves what it released.
   */
  followDeploys<T extends object>(deployer: T, warn: (message: string) => void): T {
    const settle = async (outcome: DeployedOutcome | undefined): Promise<void> => {
      if (outcome === undefined || outcome.unchanged) return;
      const { namespace, name, version } = outcome.version;
      const laggards = await this.awaitSwitched({ namespace, name }, version);
      if (laggards.length > 0)
        warn(
          `cluster: ${namespace}/${name} v${version} released, but node(s) ${laggards.join(', ')} had not switched within ${SWITCH_WAIT_MS / 1000}s`,
        );
    };
    return new Proxy(deployer, {
      get: (target, property, receiver) => {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function' || !RELEASING.has(property)) return value;
        return async (...args: unknown[]) => {
          const result = (await (value as (...inner: unknown[]) => Promise<unknown>).apply(target, args)) as
            | DeployedOutcome
            | readonly (DeployedOutcome | undefined)[];
          await Promise.all((Array.isArray(result) ? result : [result]).map(settle));
          return result;
        };
      },
    });
  }

  /**
   * The secrets table a node's `SecretStore` uses: this node's copy (pg-secrets.ts), and `settled`, which
   * the API awaits after a write so that it answers once every live node's copy holds the change.
   */
  secretTable(): SecretTable {
    return { ...this.store.secretTable(), settled: () => this.awaitSecretsSeen() };
  }

  /**
   * Resolves once every live node has taken the secret notices this node has sent so far (or after
   * SWITCH_WAIT_MS), with the nodes that had not, who are named in a warning.
   */
  async awaitSecretsSeen(): Promise<string[]> {
    const ids = [...this.secretNotices.keys()];
    const laggards = (): string[] => [
      ...new Set(ids.flatMap((id) => [...(this.secretNotices.get(id) ?? [])])),
    ];
    if (laggards().length > 0)
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.secretWaiters.delete(check);
          resolve();
        };
        const check = (): void => {
          if (laggards().length === 0) done();
        };
        const timer = setTimeout(done, SWITCH_WAIT_MS);
        this.secretWaiters.add(check);
      });
    const left = laggards();
    for (const id of ids) this.secretNotices.delete(id);
    if (left.length > 0)
      this.warn(
        `cluster: a secret changed here, but node(s) ${left.join(', ')} had not taken it within ${SWITCH_WAIT_MS / 1000}s (they start instances with the old value until their next resync)`,
      );
    return left;
  }

  /** `node` has taken notice `id` (or left): a notice every node has taken is forgotten. */
  private secretSeenBy(id: string, node: string): void {
    const pending = this.secretNotices.get(id);
    if (pending === undefined) return;
    pending.delete(node);
    if (pending.size === 0) this.secretNotices.delete(id);
    for (const waiter of this.secretWaiters) waiter();
  }

  /** Another node changed a secret: this node's copy re-reads it, then says so to the writer. */
  private takeSecret(
    change: { readonly namespace: string; readonly name: string },
    id: string | undefined,
    warn: (message: string) => void,
  ): void {
    this.store.secrets
      .refresh(change.namespace, change.name)
      .then(() => {
        if (id !== undefined)
          this.nats.publish(
            `${SUBJECT_PREFIX}.secret-seen`,
            JSON.stringify({ node: this.nodeId, id } satisfies SecretSeen),
          );
      })
      .catch((error: unknown) =>
        warn(
          `cluster: cannot re-read secret ${change.namespace}/${change.name} changed elsewhere: ${(error as Error).message}`,
        ),
      );
  }

  private reloadSecrets(warn: (message: string) => void): void {
    this.store.secrets
      .reload()
      .catch((error: unknown) =>
        warn(`cluster: cannot re-read the cluster's secrets: ${(error as Error).message}`),
      );
  }

  private followGateways(parts: ClusterParts): void {
    parts
      .followGateways()
      .catch((error: unknown) =>
        parts.warn(`cluster: cannot follow the EventGateways changed elsewhere: ${(error as Error).message}`),
      );
  }

  /** Tells the lost-node listeners of `lost`, on the node that is to take over from it. */
  private tellLost(lost: string, warn: (message: string) => void): void {
    if (this.membership === undefined) return;
    const adopter = this.nodes()
      .map((live) => live.id)
      .filter((id) => id !== lost)
      .sort()[0];
    if (adopter !== this.nodeId) return;
    for (const listener of this.lostListeners) {
      try {
        listener(lost);
      } catch (error) {
        warn(`cluster: taking over from node ${lost} failed: ${(error as Error).message}`);
      }
    }
  }

  /**
   * A function's logs request (path and query) asked of every other live node, for its own records
   * (`NODE_LOGS_HEADER`), with the caller's credentials (keys are shared). A node that does not answer in
   * PEER_LOGS_TIMEOUT_MS, or answers with an error, is reported by name rather than left out silently.
   */
  async fetchPeerLogs(pathAndQuery: string, authorization: string | undefined): Promise<PeerLogs[]> {
    const peers = this.nodes().filter((node) => !node.self);
    return Promise.all(
      peers.map(async (peer): Promise<PeerLogs> => {
        try {
          const response = await fetch(`${peer.url.replace(/\/$/, '')}${pathAndQuery}`, {
            headers: {
              [NODE_LOGS_HEADER]: '1',
              ...(authorization === undefined ? {} : { authorization }),
            },
            signal: AbortSignal.timeout(PEER_LOGS_TIMEOUT_MS),
          });
          const text = await response.text();
          if (!response.ok)
            return { node: peer.id, error: `answered ${response.status}: ${text.slice(0, 200)}` };
          const body = JSON.parse(text) as { items?: unknown };
          if (!Array.isArray(body.items)) return { node: peer.id, error: 'answered without items' };
          return { node: peer.id, items: body.items as LogRecord[] };
        } catch (error) {
          const failure = error as Error;
          return {
            node: peer.id,
            error:
              failure.name === 'TimeoutError'
                ? `no answer within ${PEER_LOGS_TIMEOUT_MS / 1000}s`
                : `${failure.message}${failure.cause instanceof Error ? ` (${failure.cause.message})` : ''}`,
          };
        }
      }),
    );
  }

  /**
   * Follows a logs request on every other live node (`follow=1`, NDJSON): each record to `onRecord`, and
   * each node whose stream cannot start within PEER_LOGS_TIMEOUT_MS, fails or ends to `onLost`, once.
   */
  followPeerLogs(
    pathAndQuery: string,
    authorization: string | undefined,
    onRecord: (node: string, record: LogRecord) => void,
    onLost: (node: string, reason: string) => void,
  ): () => void {
    const stopped = new AbortController();
    for (const peer of this.nodes().filter((node) => !node.self)) {
      const own = new AbortController();
      const abort = (): void => own.abort();
      stopped.signal.addEventListener('abort', abort, { once: true });
      const slow = setTimeout(
        () => own.abort(new Error(`no answer within ${PEER_LOGS_TIMEOUT_MS / 1000}s`)),
        PEER_LOGS_TIMEOUT_MS,
      );
      void (async () => {
        try {
          const response = await fetch(`${peer.url.replace(/\/$/, '')}${pathAndQuery}`, {
            headers: { [NODE_LOGS_HEADER]: '1', ...(authorization === undefined ? {} : { authorization }) },
            signal: own.signal,
          });
          clearTimeout(slow);
          if (!response.ok || response.body === null) {
            onLost(peer.id, `answered ${response.status}: ${(await response.text()).slice(0, 200)}`);
            return;
          }
          const decoder = new TextDecoder();
          let buffered = '';
          for await (const chunk of response.body) {
            buffered += decoder.decode(chunk as Uint8Array, { stream: true });
            for (let newline = buffered.indexOf('\n'); newline >= 0; newline = buffered.indexOf('\n')) {
              const line = buffered.slice(0, newline).trim();
              buffered = buffered.slice(newline + 1);
              if (line === '') continue;
              try {
                onRecord(peer.id, JSON.parse(line) as LogRecord);
              } catch {
                // A torn line from a node stopping: the stream's end says so.
              }
            }
          }
          if (!stopped.signal.aborted) onLost(peer.id, 'its stream ended (the node stopped or restarted)');
        } catch (error) {
          clearTimeout(slow);
          if (stopped.signal.aborted) return;
          const reason = own.signal.reason instanceof Error ? own.signal.reason : (error as Error);
          onLost(
            peer.id,
            `${reason.message}${reason.cause instanceof Error ? ` (${reason.cause.message})` : ''}`,
          );
        } finally {
          stopped.signal.removeEventListener('abort', abort);
        }
      })();
    }
    return () => stopped.abort();
  }

  /** Every live node, this one included. */
  nodes(): ClusterNode[] {
    return this.membership?.nodes() ?? [];
  }

  /** `GET /cluster/nodes`: the membership as this node sees it. */
  readonly handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/cluster/nodes' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      const status = path === '/cluster/nodes' ? 405 : 404;
      const body = {
        error: {
          code: status === 405 ? 'HEARTH_E_METHOD_NOT_ALLOWED' : 'HEARTH_E_RESOURCE_NOT_FOUND',
          message:
            status === 405 ? `${req.method} is not allowed on /cluster/nodes (GET)` : `no route ${path}`,
        },
      };
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      return;
    }
    const body = { self: this.nodeId, items: this.nodes() };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

  /** Brings this node up to date with the store now (tests and `join` use it). */
  sync(): Promise<void> {
    return this.reconciler?.sync() ?? Promise.resolve();
  }

  /** Says goodbye and stops following; the store stays open (the platform closes it last). */
  async leave(): Promise<void> {
    if (this.resync !== undefined) clearInterval(this.resync);
    this.changes?.unsubscribe();
    this.switchedSub?.unsubscribe();
    this.secretSeenSub?.unsubscribe();
    for (const waiters of this.switchWaiters.values()) for (const waiter of waiters) waiter.done();
    this.secretNotices.clear();
    for (const waiter of this.secretWaiters) waiter();
    this.lostListeners.clear();
    this.membership?.close();
    await this.reconciler?.idle();
    await this.nats.flush().catch(() => undefined);
    await this.nats.close().catch(() => undefined);
    this.forwarder.close();
  }

  private publishSwitch(switched: string): void {
    try {
      this.nats.publish(
        `${SUBJECT_PREFIX}.switched`,
        JSON.stringify({ node: this.nodeId, switched } satisfies SwitchNotice),
      );
    } catch {
      // NATS away: the deploying node stops waiting after SWITCH_WAIT_MS.
    }
  }

  private heardSwitch(node: string, switched: string): void {
    const now = Date.now();
    for (const [key, entry] of this.switches)
      if (now - entry.at > SWITCH_MEMORY_MS) this.switches.delete(key);
    const entry = this.switches.get(switched) ?? { nodes: new Set<string>(), at: now };
    entry.nodes.add(node);
    this.switches.set(switched, entry);
    for (const waiter of this.switchWaiters.get(switched) ?? []) {
      waiter.pending.delete(node);
      if (waiter.pending.size === 0) waiter.done();
    }
  }

  private announce(change: StoreChange): void {
    // A function this node deployed: its own deployer switched it; the reconciler must still know of it,
    // to drop it when another node removes it.
    if (change.kind === 'function') this.reconciler?.track(change.ref);
    let id: string | undefined;
    if (change.kind === 'secret') {
      const peers = this.nodes().filter((node) => !node.self);
      if (peers.length > 0) {
        id = randomBytes(8).toString('hex');
        this.secretNotices.set(id, new Set(peers.map((node) => node.id)));
      }
    }
    try {
      this.nats.publish(
        `${SUBJECT_PREFIX}.changes`,
        JSON.stringify({
          origin: this.nodeId,
          change,
          ...(id === undefined ? {} : { id }),
        } satisfies ChangeNotice),
      );
    } catch {
      // NATS away: the other nodes catch up at their next resync.
    }
  }
}

function announcement(
  id: string,
  url: string,
  startedAt: string,
  stats: ReturnType<Scheduler['liveStats']>,
): NodeAnnouncement {
  return {
    id,
    url,
    startedAt,
    instances: stats.instances,
    maxInstances: stats.maxInstances,
    memoryBytes: stats.memoryBytes,
    maxMemoryBytes: stats.maxMemoryBytes,
    inFlight: stats.functions.reduce((sum, fn) => sum + fn.inFlight, 0),
    warm: stats.functions
      .filter((fn) => fn.ready > 0)
      .map((fn) => ({ function: functionKey(fn.ref), version: fn.version, ready: fn.ready, idle: fn.idle })),
  };
}

/** Made once and kept, so a restarted node is the same member (and its peers see a restart, not a stranger). */
function persistentNodeId(dataDir: string): string {
  const file = join(dataDir, 'cluster-node-id');
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (/^[\w.-]{1,64}$/.test(kept)) return kept;
  } catch {
    // First start in this data dir.
  }
  const id = `node-${randomBytes(4).toString('hex')}`;
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}

/** A URL for messages: the password, if any, left out. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}
