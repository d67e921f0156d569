/**
 * @module MQTT triggers (`mqtt` client, MQTT 5): a persistent session (clean: false) subscribed at QoS 1,
 * optionally as a shared subscription (`$share/<group>/<filter>`, load-balanced across subscribers). A
 * message is acknowledged (PUBACK) only after the function succeeded, or after its retries ran out and it
 * was dead-lettered; the broker redelivers anything unacknowledged when the platform reconnects.
 *
 * Cluster mode (issue 12): the broker keeps an unacknowledged message for the session (the node) that
 * received it, and routes a share of new ones to a node's session even while that node is down. So a
 * message is handed to the shared durable queue (any node runs it, a dead node's runs are redelivered)
 * and acknowledged once the enqueue is durable; and when a node leaves, one live node takes over its
 * session: it connects under that node's client id, hands off what the broker kept there, and ends the
 * session (its share of the subscription goes with it) once nothing more arrives.
 */

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import type { CloudEventAttributes } from '../../domain/deployment.js';
import type { MqttSource, TriggerStatus } from '../../domain/triggers.js';
import {
  countDelivery,
  countersStatus,
  deliverWithRetries,
  deliveryFailure,
  type EventTarget,
  enqueueDeadLetter,
  newCounters,
  publishDelivery,
  reconnectDelay,
  sleep,
  sniffContentType,
  type TriggerCounters,
} from '../delivery.js';
import type { Trigger, TriggerConfig, TriggerHost } from '../index.js';

/**
 * mqtt.js sends a QoS 1 PUBACK as soon as `handleMessage` calls back, and handles the next packet only
 * then, so acknowledging after the function would serialise every delivery. Calling back with this marker
 * skips its PUBACK (an error there only skips the ack; the packet loop goes on), and the PUBACK is sent
 * here once the delivery is settled — deliveries run in parallel, up to the receive maximum.
 */
const DEFER_ACK = new Error('hearth: PUBACK after the function succeeded');

interface PacketSender {
  _sendPacket(packet: { cmd: 'puback'; messageId: number }, callback?: () => void): void;
}

/** A taken-over session is ended once no message has come for this long. */
const ADOPT_QUIET_MS = 2_000;
/** The longest a node spends taking over another's session. */
const ADOPT_MAX_MS = 60_000;

export class MqttTrigger implements Trigger {
  private client: MqttClient | undefined;
  private readonly counters: TriggerCounters = newCounters();
  private state: TriggerStatus['state'] = 'connecting';
  private readonly abort = new AbortController();
  private readonly deliveries = new Set<Promise<void>>();
  private stopLost: (() => void) | undefined;
  /** Sessions of departed nodes being taken over, by node id. */
  private readonly adopting = new Map<string, MqttClient>();

  constructor(
    private readonly source: MqttSource,
    readonly config: TriggerConfig,
    private readonly host: TriggerHost,
  ) {}

  /**
   * The shared-subscription group: the trigger's own, or in a cluster the trigger's owner, so that each
   * message goes to one node rather than to every node (and the nodes do not take one client id from each
   * other, which would have them reconnect in turn).
   */
  private get group(): string | undefined {
    if (this.source.shared !== undefined) return this.source.shared;
    return this.host.nodeId === undefined ? undefined : this.config.owner.replace(/[^A-Za-z0-9._-]/g, '_');
  }

  private get filter(): string {
    const group = this.group;
    return group === undefined ? this.source.topic : `$share/${group}/${this.source.topic}`;
  }

  /** The client id of this trigger's session on `nodeId` (in a cluster), or on this platform. */
  private clientIdOf(nodeId: string | undefined): string {
    const base = `hearth-${this.config.owner}`;
    // In a cluster every node connects: one client id would have them close each other's session in turn.
    const own = this.source.clientId ?? base;
    return (
      nodeId !== undefined
        ? `${own}-${nodeId}`
        : (this.source.clientId ?? (this.group === undefined ? base : `${base}-${hostname()}`))
    ).slice(0, 128);
  }

  /** Connects a client whose QoS 1 messages are acknowledged once their delivery (or hand-off) settled. */
  private connectClient(clientId: string, sessionExpiryInterval: number, reconnectPeriod = 1000): MqttClient {
    const client = mqtt.connect(this.source.url, {
      clientId,
      protocolVersion: 5,
      clean: false,
      reconnectPeriod,
      connectTimeout: 10_000,
      properties: {
        sessionExpiryInterval,
        receiveMaximum: this.source.parallelism ?? 64,
      },
      ...(this.source.username === undefined ? {} : { username: this.source.username }),
      ...(this.source.password === undefined ? {} : { password: this.source.password }),
    });
    client.handleMessage = (packet, callback) => {
      if (packet.qos === 0) {
        callback();
        this.track(client, packet, undefined);
        return;
      }
      this.track(client, packet, packet.messageId);
      callback(DEFER_ACK);
    };
    return client;
  }

  async start(): Promise<void> {
    // Stopped before it started (the platform stopping while a deploy's triggers were being set up): a
    // client made now would reconnect for ever and keep the stopped process alive.
    if (this.abort.signal.aborted) return;
    // The broker keeps the session (and queues QoS 1 messages) for a day while the platform is down.
    const client = this.connectClient(this.clientIdOf(this.host.nodeId), 86_400);
    this.client = client;
    this.stopLost = this.host.lostNodes?.subscribe((nodeId) => void this.adopt(nodeId));
    client.on('connect', () => {
      client.subscribe(this.filter, { qos: this.source.qos ?? 1 }, (error) => {
        if (error) this.fail(`subscribing to ${this.filter} failed: ${error.message}`);
        else this.state = 'running';
      });
    });
    client.on('reconnect', () => {
      if (this.state === 'running') this.state = 'connecting';
    });
    client.on('error', (error) => this.fail(`MQTT ${this.source.url}: ${error.message}`));
    client.on('offline', () => {
      if (!this.abort.signal.aborted) this.state = 'connecting';
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.state = 'stopped';
    this.stopLost?.();
    await Promise.allSettled([...this.deliveries]);
    const client = this.client;
    if (client !== undefined) {
      // A clean end sends the acks of the deliveries just settled; bounded, as a broker gone quiet must not
      // hold up the stop. Not connected, there is nothing to send: forced, so that a connection still being
      // made is dropped too rather than left open.
      const bound = new AbortController();
      await Promise.race([
        client.endAsync(!client.connected).catch(() => undefined),
        sleep(2000, bound.signal),
      ]);
      bound.abort();
      if (!client.disconnected) client.end(true);
    }
    // A session being taken over is left as it is (kept by the broker): the next taker, or its node, has it.
    await Promise.allSettled([...this.adopting.values()].map((client) => client.endAsync(true)));
  }

  /**
   * Takes over the session a departed node held for this trigger: the broker resends what that node had
   * not acknowledged and delivers what it queued there meanwhile; each is handed to the shared queue. Once
   * nothing comes for a while the session is ended (a DISCONNECT with expiry 0), and with it the node's
   * share of the shared subscription. A node that comes back opens a new session of its own.
   */
  private async adopt(nodeId: string): Promise<void> {
    if (this.abort.signal.aborted || nodeId === this.host.nodeId || this.adopting.has(nodeId)) return;
    const clientId = this.clientIdOf(nodeId);
    // No reconnect: taken back (the node is alive after all) or cut off, the session is left to its node.
    // The session keeps its day of expiry until it is ended on purpose below: a taker that stops or dies
    // meanwhile leaves what it has not acknowledged in the session, not lost with it.
    const client = this.connectClient(clientId, 86_400, 0);
    this.adopting.set(nodeId, client);
    let lastMessageAt = Date.now();
    let connected = false;
    client.on('connect', () => {
      connected = true;
    });
    client.on('message', () => {
      lastMessageAt = Date.now();
    });
    client.on('error', (error) => this.fail(`taking over ${clientId}: ${error.message}`));
    const started = Date.now();
    let ended = false;
    try {
      while (!this.abort.signal.aborted && Date.now() - started < ADOPT_MAX_MS) {
        await sleep(ADOPT_QUIET_MS / 4, this.abort.signal);
        if (connected && !client.connected) break;
        if (client.connected && Date.now() - lastMessageAt >= ADOPT_QUIET_MS) break;
      }
      if (this.abort.signal.aborted) return;
      // Each hand-off acknowledged before the session goes (expiry 0 in the DISCONNECT ends it).
      await Promise.allSettled([...this.deliveries]);
      if (!client.connected) return;
      ended = true;
      await client.endAsync(false, { properties: { sessionExpiryInterval: 0 } });
      this.host.info(`trigger ${this.config.id}: took over the session of node ${nodeId} (${clientId})`);
    } catch (error) {
      this.fail(`taking over ${clientId}: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      this.adopting.delete(nodeId);
      // Stopped, taken back or never connected: the session stays, as the broker keeps it.
      if (!ended) client.end(true);
    }
  }

  status(): TriggerStatus {
    return {
      id: this.config.id,
      name: this.config.name,
      kind: 'mqtt',
      state: this.state,
      lag: null,
      ...countersStatus(this.counters),
      detail: { url: this.source.url, subscription: this.filter, qos: this.source.qos ?? 1 },
    };
  }

  private lastLogged = { message: '', at: 0 };

  private fail(message: string): void {
    if (this.abort.signal.aborted) return;
    this.state = 'error';
    this.counters.lastError = { message, at: new Date().toISOString() };
    // mqtt.js retries every second: the same error is logged once a minute, not each time.
    const now = Date.now();
    if (message === this.lastLogged.message && now - this.lastLogged.at < 60_000) return;
    this.lastLogged = { message, at: now };
    this.host.warn(`trigger ${this.config.id}: ${message}`);
  }

  private track(client: MqttClient, packet: IPublishPacket, messageId: number | undefined): void {
    const work = this.deliver(packet).then(
      (settled) => {
        if (!settled || messageId === undefined || !client.connected) return;
        (client as unknown as PacketSender)._sendPacket({ cmd: 'puback', messageId });
      },
      (error: unknown) =>
        this.fail(`delivery failed: ${error instanceof Error ? error.message : String(error)}`),
    );
    this.deliveries.add(work);
    void work.finally(() => this.deliveries.delete(work));
  }

  /** Resolves true once the message may be acknowledged (delivered or dead-lettered). */
  private async deliver(packet: IPublishPacket): Promise<boolean> {
    const body =
      typeof packet.payload === 'string' ? Buffer.from(packet.payload) : Buffer.from(packet.payload);
    const props = packet.properties;
    const userProps = props?.userProperties ?? {};
    const ceSubject = single(userProps['ce-subject'] ?? userProps.ce_subject);
    const target = this.config.route(packet.topic, ceSubject);
    const event: CloudEventAttributes = {
      specversion: '1.0',
      id: single(userProps['ce-id'] ?? userProps.ce_id) ?? randomUUID(),
      source:
        single(userProps['ce-source'] ?? userProps.ce_source) ??
        `${this.source.url.replace(/\/$/, '')}/${packet.topic}`,
      type: single(userProps['ce-type'] ?? userProps.ce_type) ?? 'dev.hearth.mqtt.message',
      subject: ceSubject ?? packet.topic,
      time: new Date().toISOString(),
      datacontenttype: props?.contentType ?? sniffContentType(body),
      extensions: { topic: packet.topic, qos: packet.qos, retain: packet.retain },
    };
    const kind = { id: this.config.id, kind: 'mqtt' as const };
    if (target !== undefined && this.host.handOff === true) return this.handOff(target, event, body);
    if (target === undefined) {
      await this.deadLetter(
        packet.topic,
        event,
        body,
        0,
        `no function of ${this.config.id} takes topic ${packet.topic}`,
      );
      return true;
    }
    const outcome = await deliverWithRetries(
      this.host,
      kind,
      target,
      event,
      body,
      this.config.retry,
      this.counters,
      this.abort.signal,
    );
    if (outcome.failure === undefined) return true;
    // Stopping mid-retry: no ack, so the broker redelivers it to the next session.
    if (outcome.aborted) return false;
    const { failure, attempts, started } = outcome;
    publishDelivery(kind, target.ref, 'dead-lettered', attempts, started, failure);
    await this.deadLetter(
      packet.topic,
      event,
      body,
      attempts,
      `${failure.code}: ${failure.message}`,
      target.ref,
    );
    return true;
  }

  /**
   * Cluster mode: the event goes to the shared durable queue, with this trigger's retries as the
   * message's; resolves true (acknowledge it) once the enqueue is durable. An enqueue that fails (the
   * queue's services out of reach) is tried again, with growing waits, until the trigger stops; then it
   * resolves false and the broker keeps the message for the session.
   */
  private async handOff(target: EventTarget, event: CloudEventAttributes, body: Buffer): Promise<boolean> {
    const message = {
      ref: target.ref,
      source: `mqtt:${this.config.id}`,
      request: {
        method: 'POST',
        path: '/',
        rawQuery: '',
        headers: ['content-type', event.datacontenttype ?? 'application/json'],
        body,
        event,
        ...(target.priority === undefined ? {} : { priority: target.priority }),
      },
      maxAttempts: this.config.retry.attempts,
      backoffMs: this.config.retry.backoffMs,
      maxBackoffMs: this.config.retry.maxBackoffMs,
    };
    this.counters.inFlight += 1;
    try {
      for (let failures = 0; !this.abort.signal.aborted; ) {
        const started = performance.now();
        try {
          await this.host.queue.enqueue(message);
          this.host.notifyQueue();
          countDelivery(this.counters, undefined);
          return true;
        } catch (error) {
          failures += 1;
          const failure = deliveryFailure(error);
          countDelivery(this.counters, failure);
          publishDelivery(
            { id: this.config.id, kind: 'mqtt' },
            target.ref,
            'retry',
            failures,
            started,
            failure,
          );
          this.fail(`could not queue event ${event.id}: ${failure.message}`);
          await sleep(reconnectDelay(failures), this.abort.signal);
        }
      }
      return false;
    } finally {
      this.counters.inFlight -= 1;
    }
  }

  private async deadLetter(
    topic: string,
    event: CloudEventAttributes,
    body: Buffer,
    attempts: number,
    reason: string,
    ref = this.config.route(topic, undefined)?.ref,
  ): Promise<void> {
    this.host.warn(`trigger ${this.config.id}: event ${event.id} on ${topic} dead-lettered: ${reason}`);
    await enqueueDeadLetter(
      this.host,
      this.config,
      ref,
      { headers: ['content-type', event.datacontenttype ?? 'application/json'], body, event },
      attempts,
      reason,
      this.counters,
    );
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
