/** @module The platform's own structured JSON log (pino), one line per event. */

import { type Logger as PinoLogger, pino, destination as pinoDestination, stdTimeFunctions } from 'pino';

export type Logger = PinoLogger;

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'hearth' },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pinoDestination({ dest: 1, sync: false }),
  );
}
