/**
 * @module Named diagnostics channels the core publishes on. `observe/` subscribes and turns them into
 * metrics, logs and traces, so the hot path imports no telemetry SDK (the undici pattern).
 */

import { channel } from 'node:diagnostics_channel';
import type { FunctionRef } from './function.js';
import type { TraceContext } from './trace.js';

export interface InvocationEvent {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly invocationId: string;
  readonly status: number;
  readonly durationMs: number;
  readonly waitMs: number;
  readonly coldStart: boolean;
  readonly errorCode: string | undefined;
  /** What started it: `http` (the gateway), `invoke` (ctx.invoke), or a trigger's name (`cron`, `kafka`...). */
  readonly trigger?: string;
  /** Epoch milliseconds (fractional) when the platform received it: the start of its spans. */
  readonly startedAt?: number;
  /** Milliseconds from handing it to an instance to its answer (the function's own time plus IPC). */
  readonly execMs?: number;
  /** When it waited for a cold start: where that start's time went. `waitMs` includes it. */
  readonly coldStartPhases?: ColdStartPhases;
  /** The trace it belongs to (W3C trace context); its span ids derive from `invocationId` (domain/trace.ts). */
  readonly trace?: TraceContext;
  /** For HTTP: the method and the path after the function name, for span names and attributes. */
  readonly method?: string;
  readonly path?: string;
  /** The instance that served it, when one did. */
  readonly instanceId?: string;
  /** The request body, for the audit log's payload hash (issue 13); observers must not keep or log it. */
  readonly payload?: Buffer;
  /** The client's address, for the audit log. */
  readonly sourceIp?: string;
}

/** Where a cold start's time went, in milliseconds. */
export interface ColdStartPhases {
  /** Checking the code out of the node-local cache. */
  readonly code: number;
  /** Taking a pre-started runtime from the pool (or starting one when the pool is empty). */
  readonly stemCell: number;
  /** Binding the code and dependency layer into the runtime's slot. */
  readonly attach: number;
  /** The guest importing the handler module. */
  readonly load: number;
}

export interface InstanceEvent {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly instanceId: string;
  readonly runtime: string;
  readonly phase: 'started' | 'stopped' | 'failed';
  readonly reason: string;
  /** For `started`: milliseconds from taking a stem cell to a bound handler. */
  readonly startMs?: number;
  /** For `started`: where the cold start's time went (code checkout, stem cell, attach, handler load). */
  readonly phases?: ColdStartPhases;
  /** For `stopped`: the kernel killed it for passing `limits.memory`. */
  readonly outOfMemory?: boolean;
}

export const invocationChannel = channel('hearth:invocation');
export const instanceChannel = channel('hearth:instance');

/** A token bucket refused a request (429). Only refusals are published: admitted requests cost nothing. */
export interface RateLimitEvent {
  /** Which bucket: the gateway's protocol, a route, the function, or one client (API key, else IP). */
  readonly scope: 'protocol' | 'route' | 'function' | 'client';
  /** The bucket's identity, e.g. `gateway/production-gateway/http` or `client/10.0.0.7`. */
  readonly key: string;
  readonly ref: FunctionRef | undefined;
  /** Requests per second the bucket allows. */
  readonly limit: number;
  readonly retryAfterMs: number;
}

/** A request could not take an instance at once: it was queued, or shed (503) when the queue was full or too slow. */
export interface QueueDecisionEvent {
  readonly ref: FunctionRef;
  readonly decision: 'queued' | 'shed' | 'expired';
  /** For `shed`: `queue-full`, `displaced` (by a higher priority) or `max-wait`; for `expired`: the 504 stage. */
  readonly reason: string | undefined;
  readonly priority: number;
  /** Requests waiting after the decision. */
  readonly depth: number;
  readonly waitMs: number;
}

/** A circuit breaker changed state: an instance isolated after consecutive failures, or the function's circuit. */
export interface BreakerEvent {
  readonly ref: FunctionRef;
  readonly scope: 'instance' | 'function';
  readonly instanceId: string | undefined;
  readonly state: 'open' | 'half-open' | 'closed';
  readonly failures: number;
  readonly reason: string;
}

/** One event delivery by a trigger (Kafka, MQTT, NATS, cron) or the async queue, and how it ended. */
export interface DeliveryEvent {
  /** `<namespace>/<function>/<trigger>`, `gateway/<name>/<protocol>` or `async`. */
  readonly source: string;
  readonly kind: 'kafka' | 'mqtt' | 'nats' | 'cron' | 'async';
  readonly ref: FunctionRef;
  readonly outcome: 'delivered' | 'retry' | 'dead-lettered';
  readonly attempt: number;
  readonly durationMs: number;
  readonly error: string | undefined;
}

/** A client closed its connection before its request body ended (the client's doing: debug log, counted). */
export interface ClientClosedEvent {
  readonly method: string;
  /** The request path without its query. */
  readonly path: string;
  /** Body bytes that had arrived, when known. */
  readonly receivedBytes: number | undefined;
}

export const clientClosedChannel = channel('hearth:client-closed');
export const rateLimitChannel = channel('hearth:ratelimit');
export const queueChannel = channel('hearth:queue');
export const breakerChannel = channel('hearth:breaker');
export const deliveryChannel = channel('hearth:delivery');

/**
 * A scaling decision the scheduler acted on (`kind: 'function'`: instances started or stopped, a mode change,
 * an eviction, a start refused by the node budget), or a stem-cell pool resized (`kind: 'stem-cells'`).
 */
export type ScalingEvent =
  | {
      readonly kind: 'function';
      readonly ref: FunctionRef;
      readonly version: number;
      /** scale-up, scale-down, prewarm, scale-to-zero, evict, blocked, panic, stable. */
      readonly action: string;
      /** Instances (ready + starting) before and after. */
      readonly from: number;
      readonly to: number;
      /** What the policy wanted. */
      readonly desired: number;
      readonly mode: 'stable' | 'panic';
      readonly policy: string;
      /** Why, with the figure it came from ("panic: 212 in flight over 6s ÷ 9 per instance"). */
      readonly reason: string;
      readonly figures: Readonly<Record<string, number>>;
    }
  | {
      readonly kind: 'stem-cells';
      readonly runtime: string;
      readonly isolation: string;
      readonly network: string;
      readonly from: number;
      readonly to: number;
      readonly reason: string;
    };

export const scalingChannel = channel('hearth:scaling');
