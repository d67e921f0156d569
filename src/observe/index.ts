/** @module Observability: the platform log, function logs, and (later) metrics and traces fed by the core's diagnostics channels. */

export { createLogger, type Logger } from './logger.js';
export { type LogEntry, type LogQuery, LogStore } from './logs.js';
