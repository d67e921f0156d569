/** @module Options shared by several commands (server, namespace, output) and how they resolve. */

import { type Command, InvalidArgumentError, Option } from 'commander';
import { metadataSchema } from '../domain/function.js';
import { ApiClient, DEFAULT_URL } from './client.js';
import { CliError } from './errors.js';
import type { CliIo } from './io.js';
import { OUTPUT_FORMATS, type OutputFormat } from './output.js';

export const DEFAULT_NAMESPACE = 'default';

export interface ConnectionOptions {
  readonly url?: string;
  readonly apiKey?: string;
}
export interface NamespaceOptions {
  /** Undefined when not given, so a manifest's own namespace can take precedence. */
  readonly namespace?: string;
}
export interface OutputOptions {
  readonly output: OutputFormat;
}

/** What every command that talks to a running platform needs. */
export interface CommandContext {
  readonly io: CliIo;
  readonly version: string;
  setExitCode(code: number): void;
}

export function addConnectionOptions(command: Command): Command {
  return command
    .option('--url <url>', `Hearth's address (default: $HEARTH_URL or ${DEFAULT_URL})`)
    .option('--api-key <key>', 'API key sent as a bearer token (default: $HEARTH_API_KEY)');
}

export function addNamespaceOption(
  command: Command,
  help = `namespace (default: "${DEFAULT_NAMESPACE}")`,
): Command {
  return command.option('-n, --namespace <namespace>', help, (value: string) =>
    parseLabel('namespace', value),
  );
}

export function addOutputOption(command: Command): Command {
  return command.addOption(
    new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('text'),
  );
}

export function connect(options: ConnectionOptions, io: CliIo, version: string): ApiClient {
  const apiKey = options.apiKey ?? nonEmpty(io.env.HEARTH_API_KEY);
  return new ApiClient(
    options.url ?? nonEmpty(io.env.HEARTH_URL) ?? DEFAULT_URL,
    apiKey,
    `hearth-cli/${version}`,
  );
}

export function namespaceOf(options: NamespaceOptions): string {
  return options.namespace ?? DEFAULT_NAMESPACE;
}

/** The schema's DNS-label rule, for names given on the command line. */
export function isValidLabel(value: string): boolean {
  return metadataSchema.shape.name.safeParse(value).success;
}

export function parseLabel(what: string, value: string): string {
  if (!isValidLabel(value)) {
    throw new InvalidArgumentError(
      `"${value}" is not a valid ${what}: expected a lower-case DNS label (a-z, 0-9, "-"; at most 63 characters)`,
    );
  }
  return value;
}

/** The function name argument of most commands, checked before any request is made. */
export function functionName(value: string): string {
  if (!isValidLabel(value)) {
    throw new CliError(
      `"${value}" is not a valid function name: expected a lower-case DNS label (a-z, 0-9, "-"; at most 63 characters)`,
    );
  }
  return value;
}

/**
 * `NAME`, `function NAME` or `gateway NAME` (kubectl style): the kind of resource a command's arguments
 * name, and the name. A function name is checked here; a gateway's by its command.
 */
export function resourceArguments(
  first: string,
  second: string | undefined,
): { readonly kind: 'function' | 'gateway' | 'trigger'; readonly name: string } {
  if (second === undefined) return { kind: 'function', name: functionName(first) };
  const kind = first.toLowerCase();
  if (['gateway', 'gateways', 'gw', 'eventgateway'].includes(kind)) return { kind: 'gateway', name: second };
  if (['function', 'functions', 'fn'].includes(kind)) return { kind: 'function', name: functionName(second) };
  if (['trigger', 'triggers'].includes(kind)) return { kind: 'trigger', name: second };
  throw new CliError(
    `unknown kind "${first}": expected gateway, trigger or function (or just a function name)`,
  );
}

export function parsePositiveInt(what: string) {
  return (value: string): number => {
    const number = Number(value);
    if (!Number.isInteger(number) || number < 1) {
      throw new InvalidArgumentError(`${what} must be a positive whole number, got "${value}"`);
    }
    return number;
  };
}

export function collect(value: string, previous: readonly string[]): string[] {
  return [...previous, value];
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
