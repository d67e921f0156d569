import type { ChildProcess } from 'node:child_process';

export interface Broker {
  readonly url: string;
  /** host:port, for Kafka's `brokers`. */
  readonly address: string;
  readonly process: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

export function freePort(): Promise<number>;
/** A single-node Kafka (broker + controller, KRaft) on two free loopback ports; `jit` for benchmarks. */
export function startKafka(options?: { partitions?: number; jit?: boolean }): Promise<Broker>;
/** Mosquitto with shared subscriptions (MQTT 5), anonymous, on a free loopback port. */
export function startMosquitto(): Promise<Broker>;
/** nats-server with JetStream (file storage in a temp dir) on a free port of `host` (default loopback). */
export function startNats(options?: { host?: string }): Promise<Broker>;
