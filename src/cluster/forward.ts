/**
 * @module Any node's gateway serves any function: it runs an invocation here while this node has room or
 * a warm instance of it, and otherwise sends it one hop to a node that announced one (else to the node
 * with the most room). The forwarded request carries its remaining deadline (`X-Hearth-Timeout`) and
 * `X-Hearth-Forwarded`, which makes the next node run it whatever its own load: never a second hop.
 *
 * The decision reads a snapshot taken at each heartbeat (the node's load, its warm functions, its peers'),
 * so a warm request on a node with room costs one boolean test. A per-node circuit breaker stops sending
 * to a node after consecutive failures, for a cool-down, then lets one request probe it.
 */

import { Agent, request as httpRequest } from 'node:http';
import type { DeployedVersion } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import { functionKey } from '../domain/function.js';
import { HOP_BY_HOP, type ResponseWriter, sendError } from '../gateway/http.js';
import type { ForwardedRequest, InvocationForwarder } from '../gateway/index.js';
import type { ClusterNode, NodeAnnouncement } from './membership.js';

export const FORWARDED_HEADER = 'x-hearth-forwarded';
/** On a forwarded answer: the node that ran it. */
export const NODE_HEADER = 'x-hearth-node';

export interface BreakerSettings {
  readonly failures: number;
  readonly coolDownMs: number;
}

interface Breaker {
  consecutive: number;
  openUntil: number;
}

/** What this node knows at the last heartbeat. */
interface Snapshot {
  /** No instance can start here without evicting one: at its instance or memory budget. */
  readonly full: boolean;
  /** `namespace/name` → idle instances here. */
  readonly idle: ReadonlyMap<string, number>;
  readonly peers: readonly NodeAnnouncement[];
}

export class Forwarder implements InvocationForwarder {
  private snapshot: Snapshot = { full: false, idle: new Map(), peers: [] };
  private readonly breakers = new Map<string, Breaker>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });

  constructor(
    private readonly selfId: string,
    private readonly breaker: BreakerSettings,
    private readonly onForwardFailed: (peer: string, reason: string) => void,
  ) {}

  /** Called at each heartbeat with this node's own announcement and the live peers. */
  update(self: NodeAnnouncement, nodes: readonly ClusterNode[]): void {
    this.snapshot = {
      full: self.instances >= self.maxInstances || self.memoryBytes >= self.maxMemoryBytes,
      idle: new Map(self.warm.map((fn) => [fn.function, fn.idle])),
      peers: nodes.filter((node) => !node.self),
    };
  }

  forward(
    deployed: DeployedVersion,
    request: ForwardedRequest,
    res: ResponseWriter,
    local: () => void,
  ): boolean {
    const snapshot = this.snapshot;
    if (!snapshot.full) return false;
    const key = functionKey(deployed.ref);
    if ((snapshot.idle.get(key) ?? 0) > 0) return false;
    if (isForwarded(request.rawHeaders)) return false;
    const peer = this.choose(key, deployed.version, snapshot.peers);
    if (peer === undefined) return false;
    this.send(peer, request, res, local);
    return true;
  }

  close(): void {
    this.agent.destroy();
  }

  /** A node with an idle instance of this version, else the one with the most room; never an open breaker. */
  private choose(
    key: string,
    version: number,
    peers: readonly NodeAnnouncement[],
  ): NodeAnnouncement | undefined {
    const now = Date.now();
    let best: NodeAnnouncement | undefined;
    let bestScore = -Infinity;
    for (const peer of peers) {
      const breaker = this.breakers.get(peer.id);
      if (breaker !== undefined && breaker.openUntil > now) continue;
      const warm = peer.warm.find((fn) => fn.function === key && fn.version === version);
      const room = peer.maxInstances - peer.instances;
      if ((warm?.idle ?? 0) === 0 && room <= 0) continue;
      // Idle instances first, then free room, then the fewest requests in flight.
      const score = (warm?.idle ?? 0) * 1_000_000 + room * 1000 - peer.inFlight;
      if (score > bestScore) {
        best = peer;
        bestScore = score;
      }
    }
    return best;
  }

  private send(
    peer: NodeAnnouncement,
    request: ForwardedRequest,
    res: ResponseWriter,
    local: () => void,
  ): void {
    const remainingMs = Math.max(1, request.deadline - Date.now());
    const headers: string[] = [];
    for (let i = 0; i < request.rawHeaders.length; i += 2) {
      const name = (request.rawHeaders[i] as string).toLowerCase();
      if (HOP_BY_HOP.has(name) || name === 'host' || name === 'x-hearth-timeout' || name === FORWARDED_HEADER)
        continue;
      headers.push(request.rawHeaders[i] as string, request.rawHeaders[i + 1] as string);
    }
    // Headers as a list: node adds no Host of its own then.
    const target = new URL(request.url, peer.url);
    headers.push(
      'host',
      target.host,
      FORWARDED_HEADER,
      this.selfId,
      'x-hearth-timeout',
      String(remainingMs),
      'content-length',
      String(request.body.length),
    );
    let settled = false;
    const outgoing = httpRequest(target, {
      method: request.method,
      headers,
      agent: this.agent,
      // The function's own deadline, and a little for the hop back.
      timeout: remainingMs + 1000,
    });
    const failed = (error: HearthError, retryHere: boolean): void => {
      if (settled) return;
      settled = true;
      this.failure(peer.id, error.message);
      if (retryHere) local();
      else sendError(res, error);
    };
    outgoing.on('timeout', () => {
      outgoing.destroy();
      failed(
        new HearthError('HEARTH_E_TIMEOUT', `node ${peer.id} did not answer within the invocation's timeout`),
        false,
      );
    });
    outgoing.on('error', (error: NodeJS.ErrnoException) => {
      // Refused: the request never reached the node, so running it here cannot run it twice.
      failed(
        new HearthError(
          'HEARTH_E_SATURATED',
          `node ${peer.id}, which this one forwarded to, failed: ${error.message}`,
        ),
        error.code === 'ECONNREFUSED',
      );
    });
    outgoing.on('response', (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('error', (error) =>
        failed(
          new HearthError('HEARTH_E_SATURATED', `node ${peer.id} broke off its answer: ${error.message}`),
          false,
        ),
      );
      answer.on('end', () => {
        if (settled) return;
        settled = true;
        this.success(peer.id);
        const body = Buffer.concat(chunks);
        const out: string[] = [];
        const raw = answer.rawHeaders;
        for (let i = 0; i < raw.length; i += 2)
          if (!HOP_BY_HOP.has((raw[i] as string).toLowerCase()))
            out.push(raw[i] as string, raw[i + 1] as string);
        out.push('content-length', String(body.length), NODE_HEADER, peer.id);
        res.writeHead(answer.statusCode ?? 502, out);
        res.end(body);
      });
    });
    outgoing.end(request.body);
  }

  private success(peer: string): void {
    this.breakers.delete(peer);
  }

  private failure(peer: string, reason: string): void {
    const breaker = this.breakers.get(peer) ?? { consecutive: 0, openUntil: 0 };
    breaker.consecutive += 1;
    if (breaker.consecutive >= this.breaker.failures) {
      breaker.openUntil = Date.now() + this.breaker.coolDownMs;
      this.onForwardFailed(peer, `${reason}; not forwarding to it for ${this.breaker.coolDownMs} ms`);
    }
    this.breakers.set(peer, breaker);
  }
}

function isForwarded(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === FORWARDED_HEADER.length && name.toLowerCase() === FORWARDED_HEADER) return true;
  }
  return false;
}
