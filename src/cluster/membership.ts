/**
 * @module Who is in the cluster: every node publishes a heartbeat on NATS (its id, address, load and warm
 * functions) and keeps the last one it heard from each. A node silent for `deadAfterMs` is dead to the
 * others; a node that stops cleanly says so at once. Plain NATS subjects, not JetStream: a heartbeat is
 * worth nothing once the next one is due, so nothing is kept.
 */

import type { NatsConnection, Subscription } from '@nats-io/transport-node';

export interface WarmFunction {
  /** `namespace/name`. */
  readonly function: string;
  readonly version: number;
  readonly ready: number;
  readonly idle: number;
}

/** What a node says about itself in each heartbeat. */
export interface NodeAnnouncement {
  readonly id: string;
  /** Where its gateway answers (`http://host:port`). */
  readonly url: string;
  readonly startedAt: string;
  readonly instances: number;
  readonly maxInstances: number;
  readonly memoryBytes: number;
  readonly maxMemoryBytes: number;
  readonly inFlight: number;
  readonly warm: readonly WarmFunction[];
}

export interface ClusterNode extends NodeAnnouncement {
  readonly self: boolean;
  /** Milliseconds since its last heartbeat (0 for this node). */
  readonly silentMs: number;
}

export interface MembershipOptions {
  readonly connection: NatsConnection;
  readonly subject: string;
  readonly announce: () => NodeAnnouncement;
  readonly intervalMs: number;
  readonly deadAfterMs: number;
  readonly onJoin?: (node: NodeAnnouncement) => void;
  readonly onLeave?: (node: NodeAnnouncement, reason: string) => void;
  /** After each heartbeat (and each listing): this node's announcement and every live node. */
  readonly onView?: (self: NodeAnnouncement, nodes: readonly ClusterNode[]) => void;
}

interface Heard {
  announcement: NodeAnnouncement;
  at: number;
}

type HeartbeatMessage =
  | { readonly kind: 'alive'; readonly node: NodeAnnouncement }
  | { readonly kind: 'leaving'; readonly id: string };

export class Membership {
  private readonly peers = new Map<string, Heard>();
  private subscription: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly selfId: string;

  constructor(private readonly options: MembershipOptions) {
    this.selfId = options.announce().id;
  }

  start(): void {
    this.subscription = this.options.connection.subscribe(this.options.subject, {
      callback: (error, message) => {
        if (error !== null) return;
        let parsed: HeartbeatMessage;
        try {
          parsed = message.json<HeartbeatMessage>();
        } catch {
          return;
        }
        this.heard(parsed);
      },
    });
    this.beat();
    this.timer = setInterval(() => this.beat(), this.options.intervalMs);
    this.timer.unref();
  }

  /** This node and every peer heard from within `deadAfterMs`, by id. */
  nodes(): ClusterNode[] {
    return this.view(this.options.announce());
  }

  private view(announcement: NodeAnnouncement): ClusterNode[] {
    this.expire();
    const now = Date.now();
    const self = { ...announcement, self: true, silentMs: 0 };
    const peers = [...this.peers.values()].map((heard) => ({
      ...heard.announcement,
      self: false,
      silentMs: now - heard.at,
    }));
    const nodes = [self, ...peers].sort((a, b) => a.id.localeCompare(b.id));
    this.options.onView?.(announcement, nodes);
    return nodes;
  }

  /** Says goodbye, so the others drop this node now rather than after `deadAfterMs`. */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.subscription?.unsubscribe();
    this.publish({ kind: 'leaving', id: this.selfId });
  }

  private beat(): void {
    const announcement = this.options.announce();
    this.publish({ kind: 'alive', node: announcement });
    this.view(announcement);
  }

  private publish(message: HeartbeatMessage): void {
    try {
      this.options.connection.publish(this.options.subject, JSON.stringify(message));
    } catch {
      // Closed or reconnecting: the next beat tries again, and peers judge by silence anyway.
    }
  }

  private heard(message: HeartbeatMessage): void {
    if (message.kind === 'leaving') {
      const heard = this.peers.get(message.id);
      if (heard === undefined) return;
      this.peers.delete(message.id);
      this.options.onLeave?.(heard.announcement, 'stopped');
      return;
    }
    if (message.node.id === this.selfId) return;
    const known = this.peers.has(message.node.id);
    this.peers.set(message.node.id, { announcement: message.node, at: Date.now() });
    if (known) return;
    this.options.onJoin?.(message.node);
    // A newcomer missed every heartbeat sent before it subscribed: answered at once, it knows this node
    // within a round trip rather than a heartbeat later. Nodes started together (a fleet's restart) would
    // otherwise be ready before they know each other, and a deploy right then would not wait for the
    // nodes its deployer had not heard yet (they answered 404 for a function the deploy had returned).
    this.beat();
  }

  private expire(): void {
    const now = Date.now();
    for (const [id, heard] of this.peers) {
      if (now - heard.at <= this.options.deadAfterMs) continue;
      this.peers.delete(id);
      this.options.onLeave?.(heard.announcement, `no heartbeat for ${Math.round((now - heard.at) / 1000)}s`);
    }
  }
}
