/** @module `hearth logs NAME`: a function's log lines, filtered, or followed live until Ctrl-C. */

import type { Command } from 'commander';
import type { LogListResponse, LogRecord } from '../../control/api/types.js';
import { parseDuration } from '../../domain/units.js';
import { type ApiClient, ensureOk, isAbort } from '../client.js';
import { CliError } from '../errors.js';
import { type CliIo, interruptSignal } from '../io.js';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  connect,
  functionName,
  type NamespaceOptions,
  namespaceOf,
  type OutputOptions,
  parsePositiveInt,
} from '../options.js';
import { createStyle, type Style } from '../output.js';
import { functionPath } from '../upload.js';

interface LogsOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly follow?: boolean;
  readonly since?: string;
  readonly until?: string;
  readonly invocation?: string;
  readonly grep?: string;
  readonly limit?: number;
}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('logs')
    .description("print a function's logs")
    .argument('<name>', 'function name')
    .option('-f, --follow', 'keep printing new lines until interrupted (Ctrl-C)')
    .option('--since <when>', 'only lines newer than a duration ago (10m, 2h) or an ISO time')
    .option('--until <when>', 'only lines older than a duration ago (5m) or an ISO time')
    .option('--invocation <id>', 'only lines of one invocation')
    .option('--grep <text>', 'only lines containing TEXT')
    .option('--limit <n>', 'at most N lines', parsePositiveInt('--limit'));
  addNamespaceOption(command);
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (name: string, options: LogsOptions) => {
    await logs(functionName(name), options, context);
  });
}

async function logs(name: string, options: LogsOptions, { io, version }: CommandContext): Promise<void> {
  const client = connect(options, io, version);
  const path = `${functionPath({ namespace: namespaceOf(options), name })}/logs`;
  const query = {
    since: options.since === undefined ? undefined : parseSince(options.since),
    until: options.until === undefined ? undefined : parseSince(options.until, Date.now(), '--until'),
    invocation: options.invocation,
    q: options.grep,
    limit: options.limit === undefined ? undefined : String(options.limit),
  };
  const print = recordPrinter(options, io);
  if (options.follow !== true) {
    const response = await client.json<LogListResponse>(path, { query });
    for (const record of response.items) print(record);
    // Cluster mode: a node that did not answer is named, so missing lines are never mistaken for none.
    for (const { node, reason } of response.nodes?.unreachable ?? [])
      io.stderr.write(`warning: node ${node} did not answer (${reason}); its lines are missing\n`);
    return;
  }
  await follow(client, path, { ...query, follow: '1' }, print, io);
}

/** Cluster mode: a line of the followed stream naming a node whose lines are missing. */
interface FollowNotice {
  readonly unreachable: { readonly node: string; readonly reason: string };
}

/** Streams records until the server ends the stream or the user interrupts; both are a clean exit. */
async function follow(
  client: ApiClient,
  path: string,
  query: Readonly<Record<string, string | undefined>>,
  print: (record: LogRecord) => void,
  io: CliIo,
): Promise<void> {
  const interrupt = interruptSignal(io);
  try {
    const response = await client.request(path, {
      query,
      headers: { accept: 'application/x-ndjson' },
      signal: interrupt.signal,
    });
    await ensureOk(response);
    for await (const line of client.ndjson<LogRecord | FollowNotice>(response)) {
      if ('unreachable' in line) {
        const { node, reason } = line.unreachable;
        io.stderr.write(`warning: node ${node} cannot be followed (${reason}); its lines are missing\n`);
      } else print(line);
    }
  } catch (error) {
    if (!(interrupt.signal.aborted && isAbort(error))) throw error;
  } finally {
    interrupt.dispose();
  }
}

/** `10m`, `2h`, `90s` (ago) or an ISO time; sent to the server as an ISO time. */
export function parseSince(value: string, now = Date.now(), option = '--since'): string {
  const ago = /^\d/.test(value) && !value.includes('-') ? parseDuration(value) : undefined;
  if (ago !== undefined) return new Date(now - ago).toISOString();
  const time = Date.parse(value);
  if (Number.isNaN(time)) {
    throw new CliError(
      `${option} "${value}": expected a duration such as 10m or 2h, or an ISO time such as 2026-11-29T03:00:00Z`,
    );
  }
  return new Date(time).toISOString();
}

function recordPrinter(options: OutputOptions, io: CliIo): (record: LogRecord) => void {
  if (options.output === 'json') return (record) => io.stdout.write(`${JSON.stringify(record)}\n`);
  const style = createStyle(io.stdout, io.env);
  return (record) => io.stdout.write(formatRecord(record, style));
}

/** `TIME INVOCATION stream| message`, one output line per line of the message. */
export function formatRecord(record: LogRecord, style: Style): string {
  const invocation = (record.invocationId === null ? '-' : record.invocationId.slice(0, 8)).padEnd(8);
  const marker =
    record.stream === 'stderr'
      ? style.red('stderr|')
      : record.stream === 'system'
        ? style.yellow('system|')
        : style.dim('stdout|');
  const node = record.node === undefined ? '' : ` ${record.node}`;
  const prefix = `${style.dim(record.time)}${node} ${invocation} ${marker} `;
  const lines = record.message.replace(/\r?\n$/, '').split(/\r?\n/);
  return lines.map((line) => `${prefix}${line}\n`).join('');
}
