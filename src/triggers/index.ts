/**
 * @module Event sources: one `Trigger` per configured source (a Function's `spec.triggers`, or an
 * EventGateway's kafka/mqtt/nats protocols), one folder per kind. Each turns a message into a CloudEvent
 * invocation through the `TriggerHost` port and acknowledges only after the function succeeded
 * (at-least-once). The manager starts, replaces and stops triggers as resources change.
 */

import type { DeployedVersion, InvocationRequest, InvocationResponse } from '../domain/deployment.js';
import { type FunctionManifest, type FunctionRef, functionKey } from '../domain/function.js';
import type { GatewayFunctionEntry, GatewayManifest } from '../domain/gateway.js';
import {
  type CronSource,
  type KafkaSource,
  type MqttSource,
  type NatsSource,
  type RetryPolicy,
  resolveRetry,
  type TriggerKind,
  type TriggerSpec,
  type TriggerStatus,
  triggerKind,
  triggerNameOf,
  triggerSource,
} from '../domain/triggers.js';
import { parseDuration } from '../domain/units.js';
import type { Queue } from '../queue/index.js';
import { CronTrigger } from './cron/index.js';
import type { EventTarget } from './delivery.js';
import { KafkaTrigger } from './kafka/index.js';
import { MqttTrigger } from './mqtt/index.js';
import { NatsTrigger } from './nats/index.js';

export type { EventTarget } from './delivery.js';

/** What a trigger needs from the platform. */
export interface TriggerHost {
  lookup(ref: FunctionRef): DeployedVersion | undefined;
  invoke(ref: FunctionRef, request: InvocationRequest): Promise<InvocationResponse>;
  /** The durable queue: cron firings go through it; events whose retries ran out are dead-lettered to it. */
  readonly queue: Queue;
  /** Wakes the queue worker after an enqueue. */
  notifyQueue(): void;
  /** Small durable key/value state (a cron trigger's last fire). */
  readonly state: { get(key: string): string | undefined; set(key: string, value: string): void };
  warn(message: string): void;
  info(message: string): void;
  /**
   * Cluster mode (issue 12): a lease on a key (a cron run's time) held by one node at a time, so a
   * schedule every node runs fires once cluster-wide. Absent on a single node, where every key is this
   * node's.
   */
  readonly claims?: TriggerClaims;
  /**
   * Cluster mode: this node's id. A subscription every node makes (MQTT) is then a shared one by default,
   * so the broker delivers each message to one node; absent on a single node.
   */
  readonly nodeId?: string;
  /**
   * Cluster mode: events of a source whose broker ties an unacknowledged event to the node that received
   * it (MQTT: the node's session) are handed to the shared durable queue, and acknowledged to the broker
   * once the enqueue is durable; any node runs them, and a dead node's runs are redelivered. Sources that
   * redeliver to the other nodes by themselves (Kafka's group, NATS JetStream's shared consumer) keep
   * delivering in place, which keeps their ordering. Absent on a single node: deliveries run in place.
   */
  readonly handOff?: boolean;
  /**
   * Cluster mode: nodes that left (stopped heartbeating, or stopped), told to one live node, so it takes
   * over what a broker keeps for the node (an MQTT session's unacknowledged and queued messages).
   */
  readonly lostNodes?: LostNodes;
}

/** Tells one node of the cluster (the live one with the lowest id) of each node that left. */
export interface LostNodes {
  /** Calls `listener` with the id of each node that leaves from now on; returns the unsubscribe. */
  subscribe(listener: (nodeId: string) => void): () => void;
}

/**
 * Cron's claims in a cluster. The holder marks the key done once its run is queued; a node that did not
 * get the key asks again when the holder's lease runs out, and takes it over if it is still not done
 * (the holder died in between). A second enqueue of the same time is idempotent (its dedupe key).
 */
export interface TriggerClaims {
  claim(key: string): ClaimOutcome;
  /**
   * Extends this node's lease on a key it holds (not done), asked every `renewEveryMs` while the run's
   * enqueue takes long, so that no other node takes the time over meanwhile.
   */
  renew(key: string): void;
  readonly renewEveryMs: number;
  done(key: string): void;
}

/** Held by this node now; else when to ask again (absent: the holder has queued the run). */
export type ClaimOutcome = { readonly held: true } | { readonly held: false; readonly recheckInMs?: number };

/** Chooses the function an event goes to (a gateway routes by topic; a function's trigger has one target). */
export type EventRouter = (topic: string, subject: string | undefined) => EventTarget | undefined;

export interface TriggerConfig {
  readonly id: string;
  readonly name: string;
  readonly kind: TriggerKind;
  /** The owner, for defaults such as the Kafka group: `<ns>.<fn>` or `gateway.<ns>.<gw>`. */
  readonly owner: string;
  readonly retry: RetryPolicy;
  readonly route: EventRouter;
}

/** One running event source. */
export interface Trigger {
  readonly config: TriggerConfig;
  /** Connects and starts delivering; connection problems show in `status()` and are retried, not thrown. */
  start(): Promise<void>;
  /** Stops taking events and waits for deliveries in flight (their acks included). */
  stop(): Promise<void>;
  status(): TriggerStatus;
}

export function createTrigger(spec: TriggerSpec, config: TriggerConfig, host: TriggerHost): Trigger {
  if ('kafka' in spec) return new KafkaTrigger(spec.kafka, config, host);
  if ('mqtt' in spec) return new MqttTrigger(spec.mqtt, config, host);
  if ('nats' in spec) return new NatsTrigger(spec.nats, config, host);
  return new CronTrigger(spec.cron, config, host);
}

interface Running {
  readonly trigger: Trigger;
  /** The spec and routing it was built from; a change means a restart. */
  readonly fingerprint: string;
}

export class TriggerManager {
  private readonly running = new Map<string, Running>();
  /** Trigger ids per owner (`fn:<ns>/<name>` or `gw:<ns>/<name>`). */
  private readonly owners = new Map<string, string[]>();
  private closed = false;

  constructor(private readonly host: TriggerHost) {}

  /** Makes a function's triggers match its active manifest (undefined: the function was removed). */
  syncFunction(ref: FunctionRef, manifest: FunctionManifest | undefined): Promise<void> {
    const target: EventTarget = { ref };
    const desired = (manifest?.spec.triggers ?? []).map((spec, index) => {
      const name = triggerNameOf(spec, index);
      const source = triggerSource(spec);
      return {
        spec,
        config: {
          id: `${functionKey(ref)}/${name}`,
          name,
          kind: triggerKind(spec),
          owner: `${ref.namespace}.${ref.name}.${name}`,
          retry: resolveRetry(source.retry),
          route: () => target,
        } satisfies TriggerConfig,
      };
    });
    return this.sync(`fn:${functionKey(ref)}`, desired);
  }

  /** Makes a gateway's event protocols match its manifest (undefined: the gateway was deleted). */
  syncGateway(namespace: string, name: string, manifest: GatewayManifest | undefined): Promise<void> {
    const entries = manifest?.spec.functions ?? [];
    const desired = (manifest?.spec.protocols ?? []).flatMap((protocol, index) => {
      if ('http' in protocol) return [];
      const spec = protocol as TriggerSpec;
      const kind = triggerKind(spec);
      const source = triggerSource(spec);
      const triggerName = source.name ?? `${kind}-${index}`;
      return [
        {
          spec,
          config: {
            id: `gateway/${namespace}/${name}/${triggerName}`,
            name: triggerName,
            kind,
            owner: `gateway.${namespace}.${name}.${triggerName}`,
            retry: resolveRetry(source.retry),
            route: gatewayRouter(kind, namespace, entries),
          } satisfies TriggerConfig,
          routing: entries,
        },
      ];
    });
    return this.sync(`gw:${namespace}/${name}`, desired);
  }

  statusOf(owner: { kind: 'function' | 'gateway'; namespace: string; name: string }): TriggerStatus[] {
    const key = `${owner.kind === 'function' ? 'fn' : 'gw'}:${owner.namespace}/${owner.name}`;
    return (this.owners.get(key) ?? []).flatMap((id) => {
      const running = this.running.get(id);
      return running === undefined ? [] : [running.trigger.status()];
    });
  }

  all(): TriggerStatus[] {
    return [...this.running.values()].map((running) => running.trigger.status());
  }

  async close(): Promise<void> {
    this.closed = true;
    const stopping = [...this.running.values()].map((running) => running.trigger.stop());
    this.running.clear();
    this.owners.clear();
    await Promise.allSettled(stopping);
  }

  private async sync(
    owner: string,
    desired: readonly { spec: TriggerSpec; config: TriggerConfig; routing?: unknown }[],
  ): Promise<void> {
    if (this.closed) return;
    const keep = new Set<string>();
    const starts: Promise<void>[] = [];
    const stops: Promise<void>[] = [];
    for (const { spec, config, routing } of desired) {
      keep.add(config.id);
      const fingerprint = JSON.stringify([spec, routing ?? null]);
      const current = this.running.get(config.id);
      if (current !== undefined && current.fingerprint === fingerprint) continue;
      if (current !== undefined) stops.push(current.trigger.stop());
      const trigger = createTrigger(spec, config, this.host);
      this.running.set(config.id, { trigger, fingerprint });
      this.host.info(
        `trigger ${config.id} (${config.kind}) ${current === undefined ? 'starting' : 'restarting with a new configuration'}`,
      );
      // A replaced trigger hands over once the old one has let go (its consumer group, its subscription).
      // Not once the manager has closed meanwhile: close() has stopped this trigger already.
      starts.push(Promise.allSettled(stops).then(() => (this.closed ? undefined : trigger.start())));
    }
    for (const id of this.owners.get(owner) ?? []) {
      if (keep.has(id)) continue;
      const current = this.running.get(id);
      this.running.delete(id);
      if (current !== undefined) {
        this.host.info(`trigger ${id} stopping`);
        stops.push(current.trigger.stop());
      }
    }
    if (keep.size === 0) this.owners.delete(owner);
    else this.owners.set(owner, [...keep]);
    await Promise.allSettled([...stops, ...starts]);
  }
}

/**
 * Which of a gateway's functions an event goes to: the one named by the event's CloudEvents `subject`
 * (the seed's "the function name is the event subject"), else the first whose `match.topic` matches,
 * else the gateway's only function. No match: the event is dead-lettered with the reason.
 */
export function gatewayRouter(
  kind: TriggerKind,
  namespace: string,
  entries: readonly GatewayFunctionEntry[],
): EventRouter {
  const target = (entry: GatewayFunctionEntry): EventTarget => ({
    ref: { namespace: entry.namespace ?? namespace, name: entry.name },
    ...(entry.priority === undefined ? {} : { priority: entry.priority }),
    ...(entry.timeout === undefined ? {} : { timeoutMs: parseDuration(entry.timeout) }),
  });
  return (topic, subject) => {
    if (subject !== undefined) {
      const named = entries.find((entry) => entry.name === subject);
      if (named !== undefined) return target(named);
    }
    const matched = entries.find(
      (entry) => entry.match?.topic !== undefined && topicMatches(kind, entry.match.topic, topic),
    );
    if (matched !== undefined) return target(matched);
    const only = entries.length === 1 ? entries[0] : undefined;
    return only === undefined ? undefined : target(only);
  };
}

/** Kafka: exact name or `*` glob; MQTT: `+`/`#` filters; NATS: `*`/`>` subject wildcards. */
export function topicMatches(kind: TriggerKind, pattern: string, topic: string): boolean {
  if (kind === 'kafka' || kind === 'cron') {
    if (!pattern.includes('*')) return pattern === topic;
    const regex = new RegExp(`^${pattern.split('*').map(escapeRegex).join('.*')}$`);
    return regex.test(topic);
  }
  const [single, multi, sep] = kind === 'mqtt' ? ['+', '#', '/'] : ['*', '>', '.'];
  const want = pattern.split(sep);
  const got = topic.split(sep);
  for (let i = 0; i < want.length; i++) {
    const part = want[i];
    if (part === multi) return got.length > i;
    if (i >= got.length) return false;
    if (part !== single && part !== got[i]) return false;
  }
  return want.length === got.length;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export type { CronSource, KafkaSource, MqttSource, NatsSource };
