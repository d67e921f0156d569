/**
 * @module MQTT triggers (`mqtt` client, MQTT 5): a persistent session (clean: false) subscribed at QoS 1,
 * optionally as a shared subscription (`$share/<group>/<filter>`, load-balanced across subscribers). A
 * message is acknowledged (PUBACK) only after the function succeeded, or after its retries ran out and it
 * was dead-lettered; the broker redelivers anything unacknowledged when the platform reconnects.
 */

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import type { CloudEventAttributes } from '../../domain/deployment.js';
import type { MqttSource, TriggerStatus } from '../../domain/triggers.js';
import {
  countersStatus,
  deliverWithRetries,
  enqueueDeadLetter,
  newCounters,
  publishDelivery,
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

export class MqttTrigger implements Trigger {
  private client: MqttClient | undefined;
  private readonly counters: TriggerCounters = newCounters();
  private state: TriggerStatus['state'] = 'connecting';
  private readonly abort = new AbortController();
  private readonly deliveries = new Set<Promise<void>>();

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

  async start(): Promise<void> {
    const base = `hearth-${this.config.owner}`;
    // In a cluster every node connects: one client id would have them close each other's session in turn.
    const own = this.source.clientId ?? base;
    const clientId = (
      this.host.nodeId !== undefined
        ? `${own}-${this.host.nodeId}`
        : (this.source.clientId ?? (this.group === undefined ? base : `${base}-${hostname()}`))
    ).slice(0, 128);
    const client = mqtt.connect(this.source.url, {
      clientId,
      protocolVersion: 5,
      clean: false,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      properties: {
        // The broker keeps the session (and queues QoS 1 messages) for a day while the platform is down.
        sessionExpiryInterval: 86_400,
        receiveMaximum: this.source.parallelism ?? 64,
      },
      ...(this.source.username === undefined ? {} : { username: this.source.username }),
      ...(this.source.password === undefined ? {} : { password: this.source.password }),
    });
    this.client = client;
    client.handleMessage = (packet, callback) => {
      if (packet.qos === 0) {
        callback();
        this.track(packet, undefined);
        return;
      }
      this.track(packet, packet.messageId);
      callback(DEFER_ACK);
    };
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
    await Promise.allSettled([...this.deliveries]);
    await this.client?.endAsync().catch(() => undefined);
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

  private track(packet: IPublishPacket, messageId: number | undefined): void {
    const work = this.deliver(packet).then(
      (settled) => {
        if (!settled || messageId === undefined || this.client === undefined || !this.client.connected)
          return;
        (this.client as unknown as PacketSender)._sendPacket({ cmd: 'puback', messageId });
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
