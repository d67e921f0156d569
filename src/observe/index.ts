/** @module Observability: the platform log, function logs, and (later) metrics and traces fed by the core's diagnostics channels. */

export { createLogger, type Logger } from './logger.js';
export { LogStore, type LogEntry, type LogQuery } from './logs.js';
