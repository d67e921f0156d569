/**
 * @module OpenTelemetry traces, exported over OTLP/HTTP when `otlp.endpoint` is set. Spans are built
 * after the fact from each `hearth:invocation` event — a request span, and under it the queue wait, the
 * cold start with one span per phase, and the function's execution — so the hot path never touches the
 * SDK. Their ids are the ones the gateway already gave the function (`domain/trace.ts`), so a span the
 * function starts from `ctx.traceparent`, and a `ctx.invoke` callee, hang under the execution span.
 *
 * Batching, OTLP encoding (protobuf or JSON) and retries are the SDK's BatchSpanProcessor and exporter.
 * A rate limit on recorded traces (default 100/s) keeps tracing from costing the gateway its throughput
 * under load, like Jaeger's rate-limiting sampler.
 */

import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { hostname } from 'node:os';
import { type Attributes, type HrTime, type SpanContext, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { InvocationEvent } from '../domain/events.js';
import { executionSpanIdOf, requestSpanIdOf, traceIdOf } from '../domain/trace.js';

export interface TracingOptions {
  /** OTLP/HTTP base URL (`http://collector:4318`), or the full `/v1/traces` URL. */
  readonly endpoint: string;
  readonly protocol: 'http/protobuf' | 'http/json';
  readonly headers: Readonly<Record<string, string>>;
  readonly serviceName: string;
  readonly serviceVersion: string;
  /** Traces recorded per second at most (default 100); more are dropped whole and counted. */
  readonly maxTracesPerSecond?: number;
  /** How long spans wait to be batched, ms (default 1000). */
  readonly flushIntervalMs?: number;
}

const SCOPE = { name: 'hearth', version: undefined, schemaUrl: undefined };

export class Tracing {
  private readonly processor: BatchSpanProcessor;
  private readonly resource: Resource;
  private readonly maxPerSecond: number;
  private second = 0;
  private usedThisSecond = 0;
  /** Traces not recorded because of the rate limit. */
  dropped = 0;
  recorded = 0;
  private readonly onInvocation = (message: unknown): void => this.record(message as InvocationEvent);

  constructor(options: TracingOptions) {
    const url = /\/v1\/traces\/?$/.test(options.endpoint)
      ? options.endpoint
      : `${options.endpoint.replace(/\/+$/, '')}/v1/traces`;
    const config = { url, headers: { ...options.headers } };
    const exporter: SpanExporter =
      options.protocol === 'http/json' ? new JsonExporter(config) : new ProtobufExporter(config);
    this.processor = new BatchSpanProcessor(exporter, {
      scheduledDelayMillis: options.flushIntervalMs ?? 1000,
      maxQueueSize: 8192,
      maxExportBatchSize: 512,
    });
    this.resource = resourceFromAttributes({
      'service.name': options.serviceName,
      'service.version': options.serviceVersion,
      'host.name': hostname(),
    });
    this.maxPerSecond = options.maxTracesPerSecond ?? 100;
  }

  start(): void {
    subscribe('hearth:invocation', this.onInvocation);
  }

  /** Exports what is buffered; used at shutdown and by tests. */
  flush(): Promise<void> {
    return this.processor.forceFlush();
  }

  async stop(): Promise<void> {
    unsubscribe('hearth:invocation', this.onInvocation);
    await this.processor.shutdown();
  }

  private admit(): boolean {
    const second = Math.floor(Date.now() / 1000);
    if (second !== this.second) {
      this.second = second;
      this.usedThisSecond = 0;
    }
    if (this.usedThisSecond >= this.maxPerSecond) {
      this.dropped += 1;
      return false;
    }
    this.usedThisSecond += 1;
    this.recorded += 1;
    return true;
  }

  private record(event: InvocationEvent): void {
    // A client that sent `sampled=0` asked not to be traced; its trace context still reaches the function.
    if (event.trace !== undefined && (event.trace.flags & 1) === 0) return;
    if (event.startedAt === undefined || !this.admit()) return;
    const traceId = event.trace?.traceId ?? traceIdOf(event.invocationId);
    const requestId = requestSpanIdOf(event.invocationId);
    const start = event.startedAt;
    const end = start + event.durationMs;
    const fn = `${event.ref.namespace}/${event.ref.name}`;
    const trigger = event.trigger ?? 'http';
    const common: Attributes = {
      'faas.name': event.ref.name,
      'faas.version': String(event.version),
      'faas.invocation_id': event.invocationId,
      'hearth.namespace': event.ref.namespace,
    };
    const failed = event.status >= 500;
    const request = span({
      traceId,
      spanId: requestId,
      parentSpanId: event.trace?.parentSpanId,
      traceState: event.trace?.traceState,
      name: trigger === 'http' ? `${event.method ?? 'GET'} /function/${event.ref.name}` : `${trigger} ${fn}`,
      kind: SpanKind.SERVER,
      start,
      end,
      attributes: {
        ...common,
        'faas.trigger':
          trigger === 'http' || trigger === 'invoke' ? 'http' : trigger === 'cron' ? 'timer' : 'pubsub',
        'hearth.trigger': trigger,
        'faas.coldstart': event.coldStart,
        'http.request.method': event.method ?? 'POST',
        'url.path': `/function/${event.ref.name}${event.path === '/' || event.path === undefined ? '' : event.path}`,
        'http.response.status_code': event.status,
        ...(event.errorCode === undefined ? {} : { 'error.type': event.errorCode }),
      },
      error: failed ? (event.errorCode ?? `HTTP ${event.status}`) : undefined,
      resource: this.resource,
    });
    const spans: ReadableSpan[] = [request];
    if (event.execMs !== undefined) {
      const execStart = end - event.execMs;
      const phases = event.coldStartPhases;
      const coldMs = phases === undefined ? 0 : phases.code + phases.stemCell + phases.attach + phases.load;
      const queueMs = Math.max(0, event.waitMs - coldMs);
      const waitStart = execStart - event.waitMs;
      if (queueMs > 0)
        spans.push(
          span({
            traceId,
            spanId: newSpanId(),
            parentSpanId: requestId,
            name: 'queue wait',
            kind: SpanKind.INTERNAL,
            start: waitStart,
            end: waitStart + queueMs,
            attributes: { ...common },
            resource: this.resource,
          }),
        );
      if (phases !== undefined) {
        const coldId = newSpanId();
        const coldStart = execStart - coldMs;
        spans.push(
          span({
            traceId,
            spanId: coldId,
            parentSpanId: requestId,
            name: 'cold start',
            kind: SpanKind.INTERNAL,
            start: coldStart,
            end: execStart,
            attributes: { ...common, 'faas.coldstart': true },
            resource: this.resource,
          }),
        );
        let at = coldStart;
        for (const [name, ms] of [
          ['code checkout', phases.code],
          ['stem cell', phases.stemCell],
          ['attach code and dependency layer', phases.attach],
          ['load handler', phases.load],
        ] as const) {
          spans.push(
            span({
              traceId,
              spanId: newSpanId(),
              parentSpanId: coldId,
              name,
              kind: SpanKind.INTERNAL,
              start: at,
              end: at + ms,
              attributes: { ...common },
              resource: this.resource,
            }),
          );
          at += ms;
        }
      }
      spans.push(
        span({
          traceId,
          spanId: executionSpanIdOf(event.invocationId),
          parentSpanId: requestId,
          name: `execute ${fn}`,
          kind: SpanKind.INTERNAL,
          start: execStart,
          end,
          attributes: {
            ...common,
            ...(event.instanceId === undefined ? {} : { 'hearth.instance_id': event.instanceId }),
          },
          error: failed ? (event.errorCode ?? `HTTP ${event.status}`) : undefined,
          resource: this.resource,
        }),
      );
    }
    for (const finished of spans) this.processor.onEnd(finished);
  }
}

function newSpanId(): string {
  return randomBytes(8).toString('hex');
}

function hrTime(epochMs: number): HrTime {
  const seconds = Math.floor(epochMs / 1000);
  return [seconds, Math.round((epochMs - seconds * 1000) * 1e6)];
}

interface SpanInput {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly traceState?: string | undefined;
  readonly name: string;
  readonly kind: SpanKind;
  readonly start: number;
  readonly end: number;
  readonly attributes: Attributes;
  readonly error?: string | undefined;
  readonly resource: Resource;
}

/** A finished span as the SDK's processors and exporters take it (its `ReadableSpan` interface). */
function span(input: SpanInput): ReadableSpan {
  const context: SpanContext = {
    traceId: input.traceId,
    spanId: input.spanId,
    traceFlags: 1,
    isRemote: false,
  };
  const parent: SpanContext | undefined =
    input.parentSpanId === undefined
      ? undefined
      : { traceId: input.traceId, spanId: input.parentSpanId, traceFlags: 1, isRemote: true };
  const end = Math.max(input.start, input.end);
  return {
    name: input.name,
    kind: input.kind,
    spanContext: () => context,
    ...(parent === undefined ? {} : { parentSpanContext: parent }),
    startTime: hrTime(input.start),
    endTime: hrTime(end),
    duration: hrTime(end - input.start),
    status:
      input.error === undefined
        ? { code: SpanStatusCode.UNSET }
        : { code: SpanStatusCode.ERROR, message: input.error },
    attributes: input.attributes,
    links: [],
    events: [],
    ended: true,
    resource: input.resource,
    instrumentationScope: SCOPE,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}
