/**
 * @module Composition of the event gateway (issue 3), kept out of platform.ts: the traffic table, the
 * durable queue and its worker, the async route, triggers, EventGateway apply, and the platform-log lines
 * for traffic decisions. platform.ts builds it, mounts what it returns, and closes it first.
 */

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { EventsConfig } from './config.js';
import type { EventsApi } from './control/events/index.js';
import { GatewayService } from './control/events/index.js';
import type { Store } from './control/store/index.js';
import type { DeployedVersion, InvocationRequest } from './domain/deployment.js';
import type { BreakerEvent, DeliveryEvent, QueueDecisionEvent, RateLimitEvent } from './domain/events.js';
import { type FunctionRef, functionKey } from './domain/function.js';
import { executionSpanIdOf, formatTraceparent, traceIdOf } from './domain/trace.js';
import { Broker } from './eventing/index.js';
import { createEventCalls, SqliteEventLog } from './eventlog/index.js';
import {
  type AsyncRoute,
  createAsyncRoute,
  createEventsIngress,
  GatewayListeners,
  type Handler,
  LAMBDA_QUEUE_SOURCE,
  type TlsReloader,
  Traffic,
} from './gateway/index.js';
import { CallbackPolicy, type Queue, QueueWorker, type SharedQueue, SqliteQueue } from './queue/index.js';
import type { HostCallHandler, Scheduler } from './scheduler/index.js';
import { type LostNodes, type TriggerClaims, TriggerManager } from './triggers/index.js';

export interface EventGatewayOptions {
  readonly config: EventsConfig;
  readonly dataDir: string;
  readonly host: string;
  readonly store: Store;
  readonly scheduler: Scheduler;
  readonly logger: Logger;
  readonly onInternal: (error: unknown) => void;
  /** Gateway listeners serve HTTPS with the platform's certificate when it has one. */
  readonly tls?: TlsReloader | undefined;
  /** Cluster mode (issue 12): leases on keys (a cron run's time), one node at a time, cluster-wide. */
  readonly claims?: TriggerClaims | undefined;
  /** Cluster mode: this node's id (subscriptions every node makes become shared ones). */
  readonly nodeId?: string | undefined;
  /** Cluster mode: the nodes that left, told to this node when it is to take over their trigger sessions. */
  readonly lostNodes?: LostNodes | undefined;
  /** Cluster mode (issue 12): the queue every node shares (JetStream), instead of the embedded one. */
  readonly sharedQueue?: SharedQueue | undefined;
}

export interface EventGateway {
  readonly traffic: Traffic;
  readonly queue: Queue;
  readonly asyncRoute: AsyncRoute;
  /** `POST /events`: CloudEvents delivered to the function their subject names, or queued. */
  readonly eventsRoute: Handler;
  readonly api: EventsApi;
  /** The scheduler the deployer should use: activations and removals also update limits and triggers. */
  readonly observedScheduler: Scheduler;
  /** Answers `ctx.events.*` (event-sourced streams) and `ctx.emit` from inside functions (issue 20). */
  readonly hostCalls: HostCallHandler;
  /** The ports EventGateway listeners hold now (besides the platform's). */
  listenerPorts(): number[];
  /** After the platform listens: restores gateways, function limits and triggers, starts the worker. */
  start(platformPort: number): Promise<void>;
  close(): Promise<void>;
}

/** A decision is logged at once, then at most every LOG_EVERY_MS per key with a count of the ones between. */
const LOG_EVERY_MS = 10_000;

export function createEventGateway(options: EventGatewayOptions): EventGateway {
  const { config, store, scheduler, logger } = options;
  const traffic = new Traffic();
  const queue: Queue = options.sharedQueue ?? new SqliteQueue(join(options.dataDir, 'queue.db'));
  let platformPort = 0;
  const callbacks = new CallbackPolicy(config.async.callback.allow);
  // Event-sourced streams and Trigger resources (issue 20): the log is its own file, as the queue is.
  const eventLog = new SqliteEventLog(join(options.dataDir, 'events.db'));
  let notifyWorker = (): void => undefined;
  const broker = new Broker({
    dataDir: options.dataDir,
    log: eventLog,
    queue,
    scheduler,
    notifyQueue: () => notifyWorker(),
    retry: config.async.retry,
    warn: (message) => logger.warn(message),
    info: (message) => logger.info(message),
  });
  const eventCalls = createEventCalls(eventLog, {
    appended: () => broker.appended(),
    sharedStreams: (ref) => scheduler.lookup(ref)?.manifest.spec.streams?.shared,
  });
  const worker = new QueueWorker({
    queue,
    invoke: (message) => broker.invokeQueued(message, queuedRequest(scheduler, message)),
    onSettled: (message, outcome, error) => broker.settled(message, outcome, error),
    concurrency: config.async.concurrency,
    // Longer than any function may run (15m): an expired lease means the delivery died with its platform.
    leaseMs: 16 * 60_000,
    retentionMs: config.async.retentionMs,
    callback: config.async.callback,
    callbacks,
    onWarning: (message) => logger.warn(message),
  });
  const triggers = new TriggerManager({
    lookup: (ref) => scheduler.lookup(ref),
    // Kafka, MQTT, NATS deliveries too: a reply that is a CloudEvent is routed on (issue 20).
    invoke: (ref, request) => broker.invokeEvent(ref, request),
    queue,
    notifyQueue: () => worker.notify(),
    state: {
      get: (key) => store.getTriggerState(key),
      set: (key, value) => store.setTriggerState(key, value),
    },
    warn: (message) => logger.warn(message),
    info: (message) => logger.info(message),
    ...(options.claims === undefined ? {} : { claims: options.claims }),
    ...(options.nodeId === undefined ? {} : { nodeId: options.nodeId }),
    // Cluster mode: trigger events that their broker would keep for this node alone go through the queue.
    ...(options.sharedQueue === undefined ? {} : { handOff: true }),
    ...(options.lostNodes === undefined ? {} : { lostNodes: options.lostNodes }),
  });
  notifyWorker = () => worker.notify();
  options.sharedQueue?.onAvailable(() => worker.notify());
  const eventsRoute = createEventsIngress({
    scheduler,
    triggers: broker,
    queue,
    traffic,
    retry: config.async.retry,
    onAccepted: () => worker.notify(),
    onInternal: options.onInternal,
  });
  const listeners = new GatewayListeners({
    host: options.host,
    platformPort: () => platformPort,
    scheduler,
    traffic,
    onInternal: options.onInternal,
    events: eventsRoute,
    tls: options.tls,
  });
  const gateways = new GatewayService({
    store,
    traffic,
    scheduler,
    listeners,
    triggers,
    warn: (message) => logger.warn(message),
  });
  const asyncRoute = createAsyncRoute({
    scheduler,
    queue,
    traffic,
    retry: config.async.retry,
    vetCallback: (value) => callbacks.vet(value),
    onAccepted: () => worker.notify(),
    onInternal: options.onInternal,
  });

  const activated = (version: DeployedVersion): void => {
    traffic.setFunctionLimit(version.ref, version.manifest.spec.rateLimit);
    void triggers.syncFunction(version.ref, version.manifest);
  };
  const removed = (ref: FunctionRef): void => {
    traffic.setFunctionLimit(ref, undefined);
    void triggers.syncFunction(ref, undefined);
  };
  // The deployer reaches the scheduler through this view, so a deploy, a config change or a removal also
  // updates the function's rate limit and triggers. Everything else goes straight to the scheduler.
  const observedScheduler = new Proxy(scheduler, {
    get(target, property) {
      if (property === 'activate')
        return (version: DeployedVersion, prepared?: Parameters<Scheduler['activate']>[1]) => {
          target.activate(version, prepared);
          activated(version);
        };
      if (property === 'deactivate')
        return async (ref: FunctionRef) => {
          await target.deactivate(ref);
          removed(ref);
        };
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });

  const decisions = decisionLog(logger);
  const channels: [string, (message: unknown) => void][] = [
    [
      'hearth:ratelimit',
      (message) => {
        const event = message as RateLimitEvent;
        decisions(
          `ratelimit ${event.key}`,
          { decision: 'rate-limited', ...event, ref: fn(event.ref) },
          'rate limited',
        );
      },
    ],
    [
      'hearth:queue',
      (message) => {
        const event = message as QueueDecisionEvent;
        if (event.decision === 'queued') return;
        decisions(
          `queue ${functionKey(event.ref)} ${event.decision} ${event.reason ?? ''}`,
          { ...event, ref: fn(event.ref) },
          `request ${event.decision}`,
        );
      },
    ],
    [
      'hearth:breaker',
      (message) => {
        const event = message as BreakerEvent;
        logger.warn({ ...event, ref: fn(event.ref) }, `circuit breaker (${event.scope}) ${event.state}`);
      },
    ],
    [
      'hearth:delivery',
      (message) => {
        const event = message as DeliveryEvent;
        if (event.outcome === 'delivered') return;
        decisions(
          `delivery ${event.source} ${event.outcome}`,
          { ...event, ref: fn(event.ref) },
          `event ${event.outcome}`,
        );
      },
    ],
  ];

  return {
    traffic,
    queue,
    asyncRoute,
    eventsRoute,
    observedScheduler,
    hostCalls: (context, method, args) => {
      if (method === 'emit') return broker.emit(context, args);
      const traceparent =
        context.invocationId === undefined
          ? undefined
          : formatTraceparent(
              context.trace?.traceId ?? traceIdOf(context.invocationId),
              context.trace?.spanId ?? executionSpanIdOf(context.invocationId),
              context.trace?.flags ?? 1,
            );
      return eventCalls(context.ref, method, args, traceparent);
    },
    listenerPorts: () => listeners.ports(),
    api: {
      gateways,
      queue,
      triggers,
      eventing: broker,
      notifyQueue: () => worker.notify(),
    },
    async start(port) {
      platformPort = port;
      broker.start();
      for (const [name, handler] of channels) subscribe(name, handler);
      for (const fn of store.listFunctions()) {
        const version = scheduler.lookup(fn);
        if (version !== undefined) activated(version);
      }
      await gateways.restore();
      worker.start();
    },
    async close() {
      await triggers.close();
      await broker.close();
      await worker.close();
      await listeners.close();
      traffic.close();
      await queue.close();
      await eventLog.close();
      for (const [name, handler] of channels) unsubscribe(name, handler);
    },
  };
}

/** The request a queued message becomes: its deadline starts now, from the function's own timeout. */
function queuedRequest(
  scheduler: Scheduler,
  message: Parameters<ConstructorParameters<typeof QueueWorker>[0]['invoke']>[0],
): InvocationRequest {
  const timeoutMs = scheduler.lookup(message.ref)?.spec.limits.timeoutMs ?? 30_000;
  const { request } = message;
  return {
    invocationId: message.id,
    method: request.method,
    path: request.path,
    rawQuery: request.rawQuery,
    rawHeaders: [...request.headers, 'x-hearth-async', '1', 'x-hearth-attempt', String(message.attempts)],
    body: request.body,
    sourceIp: '',
    deadline: Date.now() + timeoutMs,
    timeoutMs,
    timeoutSource: 'limits.timeout',
    ...(request.event === undefined ? {} : { event: request.event }),
    ...(request.priority === undefined ? {} : { priority: request.priority }),
    ...(request.auth === undefined ? {} : { auth: request.auth }),
    // The Lambda Invoke API's `Event` invocations: the payload is the event, whatever the eventFormat.
    ...(message.source === LAMBDA_QUEUE_SOURCE ? { direct: true } : {}),
  };
}

function fn(ref: FunctionRef | undefined): string | undefined {
  return ref === undefined ? undefined : functionKey(ref);
}

/** Logs a repeated decision once per LOG_EVERY_MS per key, saying how many were folded into it. */
function decisionLog(
  logger: Logger,
): (key: string, fields: Record<string, unknown>, message: string) => void {
  const seen = new Map<string, { at: number; folded: number }>();
  return (key, fields, message) => {
    const now = Date.now();
    const entry = seen.get(key);
    if (entry !== undefined && now - entry.at < LOG_EVERY_MS) {
      entry.folded += 1;
      return;
    }
    logger.warn({ ...fields, ...(entry === undefined ? {} : { since: entry.folded }) }, message);
    seen.set(key, { at: now, folded: 0 });
    if (seen.size > 10_000) seen.clear();
  };
}
