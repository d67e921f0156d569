/** @module The CLI's one failure type and the rule that turns any failure into exactly one stderr line. */

import { isHearthError } from '../domain/errors.js';

export interface CliErrorOptions {
  /** The server's (or local validation's) error code, e.g. `HEARTH_E_VALIDATION`. */
  readonly code?: string | undefined;
  readonly invocationId?: string | undefined;
  readonly exitCode?: number;
  readonly cause?: unknown;
}

/** A failure meant for the person at the terminal: its message is printed as-is, never its stack. */
export class CliError extends Error {
  readonly code: string | undefined;
  readonly invocationId: string | undefined;
  readonly exitCode: number;

  constructor(message: string, options: CliErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.code = options.code;
    this.invocationId = options.invocationId;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** `error: CODE: message (invocation ID)` on a single line, whatever the failure was. */
export function failureLine(error: unknown): string {
  if (error instanceof CliError) {
    const code = error.code === undefined ? '' : `${error.code}: `;
    const invocation = error.invocationId === undefined ? '' : ` (invocation ${error.invocationId})`;
    return `error: ${oneLine(`${code}${error.message}`)}${invocation}`;
  }
  if (isHearthError(error)) return `error: ${oneLine(`${error.code}: ${error.message}`)}`;
  if (error instanceof Error) return `error: ${oneLine(error.message || error.name)}`;
  return `error: ${oneLine(String(error))}`;
}

export function exitCodeOf(error: unknown): number {
  return error instanceof CliError ? error.exitCode : 1;
}

/** Server messages and YAML errors can span lines; the CLI's contract is one line per failure. */
export function oneLine(text: string): string {
  return text
    .replace(/\s*[\r\n]+\s*/g, ' ')
    .replace(/\s+$/, '')
    .replace(/^\s+/, '');
}
