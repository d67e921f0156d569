/**
 * @module Observability: the platform log, function logs (local store, optionally Loki), and the metrics,
 * traces, alerts and dashboard figures fed by the core's diagnostics channels — the core imports no
 * telemetry SDK.
 */

export { ALERT_RULES, AlertEvaluator, type AlertStatus } from './alerts.js';
export { createLogger, type Logger } from './logger.js';
export { type LogEntry, type LogQuery, LogStore } from './logs.js';
export { LokiShipper } from './loki.js';
export { Metrics, type MetricsSources } from './metrics.js';
export { type Observability, type ObservabilityOptions, startObservability } from './setup.js';
export { type FunctionStats, type ScalingNote, type SeriesPoint, Telemetry } from './telemetry.js';
export { Tracing, type TracingOptions } from './tracing.js';
