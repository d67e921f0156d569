/**
 * @module Everything `observe/` runs for a platform, built from its config in one call: the channel
 * subscribers (telemetry, traces), `/metrics`, the alert evaluator and the Loki shipper. The composition
 * root wires the result; nothing here is on the invocation path.
 */

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { DeployedVersion } from '../domain/deployment.js';
import type { ClientClosedEvent, InvocationEvent } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import { traceIdOf } from '../domain/trace.js';
import type { FunctionLogRecord, FunctionStatus, StemCellPoolStats } from '../scheduler/index.js';
import { AlertEvaluator } from './alerts.js';
import type { Logger } from './logger.js';
import { LokiShipper } from './loki.js';
import { Metrics } from './metrics.js';
import { Telemetry } from './telemetry.js';
import { Tracing } from './tracing.js';

export interface ObservabilityOptions {
  readonly metrics: boolean;
  readonly otlp:
    | {
        readonly endpoint: string;
        readonly protocol: 'http/protobuf' | 'http/json';
        readonly headers: Readonly<Record<string, string>>;
        readonly serviceName: string;
      }
    | undefined;
  readonly loki: { readonly url: string; readonly labels: Readonly<Record<string, string>> } | undefined;
  readonly version: string;
  readonly scheduler: {
    lookup(ref: FunctionRef): DeployedVersion | undefined;
    status(ref: FunctionRef): FunctionStatus | undefined;
    stemCellStats(): StemCellPoolStats[];
  };
  readonly onWarning: (message: string) => void;
  /** The platform's log: failed invocations at warn, every invocation at debug. */
  readonly logger?: Logger;
}

export interface Observability {
  /** Undefined when `metrics: false`. */
  readonly telemetry: Telemetry | undefined;
  readonly metrics: Metrics | undefined;
  readonly alerts: AlertEvaluator | undefined;
  readonly tracing: Tracing | undefined;
  readonly loki: LokiShipper | undefined;
  /** Where function log lines go besides the local store (Loki), or undefined. */
  readonly shipLog: ((record: FunctionLogRecord) => void) | undefined;
  close(): Promise<void>;
}

export function startObservability(options: ObservabilityOptions): Observability {
  const { scheduler } = options;
  let telemetry: Telemetry | undefined;
  let metrics: Metrics | undefined;
  let alerts: AlertEvaluator | undefined;
  if (options.metrics) {
    telemetry = new Telemetry({ runtimeOf: (ref) => scheduler.lookup(ref)?.spec.runtime });
    telemetry.start();
    metrics = new Metrics(telemetry, scheduler);
    const states = metrics;
    alerts = new AlertEvaluator(telemetry, (ref) => {
      const counts = states.instanceStates(ref);
      const live = (counts.busy ?? 0) + (counts.idle ?? 0) + (counts['warm-pool'] ?? 0);
      return { live, min: scheduler.lookup(ref)?.spec.scaling.min ?? 0 };
    });
  }
  const logger = options.logger;
  // Failures are always worth a line; successes only at debug, checked once per event rather than per field.
  const onInvocation = (message: unknown): void => {
    const event = message as InvocationEvent;
    const failed = event.status >= 500;
    if (logger === undefined || (!failed && !logger.isLevelEnabled('debug'))) return;
    const fields = {
      invocationId: event.invocationId,
      namespace: event.ref.namespace,
      function: event.ref.name,
      version: event.version,
      traceId: event.trace?.traceId ?? traceIdOf(event.invocationId),
      trigger: event.trigger ?? 'http',
      status: event.status,
      durationMs: Math.round(event.durationMs * 100) / 100,
      coldStart: event.coldStart,
      ...(event.errorCode === undefined ? {} : { code: event.errorCode }),
    };
    if (failed) logger.warn(fields, 'invocation failed');
    else logger.debug(fields, 'invocation');
  };
  // A client hanging up mid-body is the client's business: a debug line (and a counter), never an error.
  const onClientClosed = (message: unknown): void => {
    const event = message as ClientClosedEvent;
    logger?.debug(
      { method: event.method, path: event.path, receivedBytes: event.receivedBytes },
      'client closed the connection before the request body ended',
    );
  };
  if (logger !== undefined) {
    subscribe('hearth:invocation', onInvocation);
    subscribe('hearth:client-closed', onClientClosed);
  }
  let tracing: Tracing | undefined;
  if (options.otlp !== undefined) {
    tracing = new Tracing({ ...options.otlp, serviceVersion: options.version });
    tracing.start();
  }
  const loki =
    options.loki === undefined
      ? undefined
      : new LokiShipper({ ...options.loki, onError: (message) => options.onWarning(message) });
  return {
    telemetry,
    metrics,
    alerts,
    tracing,
    loki,
    shipLog: loki === undefined ? undefined : (record) => loki.write(record),
    async close() {
      unsubscribe('hearth:invocation', onInvocation);
      unsubscribe('hearth:client-closed', onClientClosed);
      telemetry?.stop();
      await Promise.all([
        tracing?.stop().catch((error: unknown) => options.onWarning(`trace export failed: ${String(error)}`)),
        loki?.close(),
      ]);
    },
  };
}
