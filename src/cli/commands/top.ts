/**
 * @module `hearth top`: every function's live figures (instances, in-flight, rps, p99, cold starts), redrawn
 * in place on a terminal until Ctrl-C; one snapshot when piped, with `--once`, or with `-o json`.
 */

import type { Command } from 'commander';
import type { StatsResponse } from '../../control/api/types.js';
import { parseDuration } from '../../domain/units.js';
import { API_PREFIX, isAbort } from '../client.js';
import { CliError, failureLine } from '../errors.js';
import { type CliIo, interruptSignal, isTty, type OutputStream } from '../io.js';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  connect,
  type NamespaceOptions,
  type OutputOptions,
} from '../options.js';
import { createStyle, renderTable, type Style, writeJson } from '../output.js';

interface TopOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly interval: string;
  readonly once?: boolean;
}

const MIN_INTERVAL_MS = 100;
/** Enter the alternate screen and hide the cursor, as top(1) does; and back. */
const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('top')
    .description("show every function's live instances, in-flight requests, rps, p99 and cold starts")
    .option('--interval <duration>', 'time between refreshes, e.g. 2s or 500ms', '2s')
    .option('--once', 'print one snapshot and exit (the default when the output is not a terminal)');
  addNamespaceOption(command, 'only functions of this namespace (default: all)');
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (options: TopOptions) => {
    await top(options, context);
  });
}

async function top(options: TopOptions, { io, version }: CommandContext): Promise<void> {
  const intervalMs = parseInterval(options.interval);
  const client = connect(options, io, version);
  const fetchStats = (signal?: AbortSignal): Promise<StatsResponse> =>
    client.json<StatsResponse>(`${API_PREFIX}/stats`, { query: { namespace: options.namespace }, signal });
  // The first answer comes before anything is drawn: a wrong URL fails with its one line, as elsewhere.
  const first = await fetchStats();
  if (options.output === 'json') {
    writeJson(io.stdout, first);
    return;
  }
  const style = createStyle(io.stdout, io.env);
  const view = (stats: StatsResponse, problem?: string): string =>
    renderTop(stats, {
      url: client.baseUrl,
      intervalMs,
      style,
      width: io.stdout.columns ?? 120,
      height: rowsOf(io.stdout),
      ...(problem === undefined ? {} : { problem }),
    });
  if (options.once === true || !isTty(io.stdout)) {
    io.stdout.write(
      renderTop(first, { url: client.baseUrl, intervalMs, style, width: Number.POSITIVE_INFINITY }),
    );
    return;
  }
  await watch(io, first, fetchStats, view, intervalMs);
}

async function watch(
  io: CliIo,
  first: StatsResponse,
  fetchStats: (signal?: AbortSignal) => Promise<StatsResponse>,
  view: (stats: StatsResponse, problem?: string) => string,
  intervalMs: number,
): Promise<void> {
  const interrupt = interruptSignal(io);
  const { signal } = interrupt;
  io.stdout.write(ENTER);
  try {
    let stats = first;
    let problem: string | undefined;
    while (!signal.aborted) {
      io.stdout.write(frame(view(stats, problem)));
      await pause(intervalMs, signal);
      if (signal.aborted) break;
      try {
        stats = await fetchStats(signal);
        problem = undefined;
      } catch (error) {
        if (signal.aborted && isAbort(error)) break;
        // Keep the last figures on screen and say why they are stale; the next refresh tries again.
        problem = failureLine(error).replace(/^error: /, '');
      }
    }
  } finally {
    io.stdout.write(LEAVE);
    interrupt.dispose();
  }
}

export interface TopRenderOptions {
  readonly url: string;
  readonly intervalMs: number;
  readonly style: Style;
  /** Terminal columns; lines are cut to fit (Infinity when piped). */
  readonly width: number;
  /** Terminal rows; functions that do not fit are counted, not drawn. */
  readonly height?: number;
  /** Why the figures shown are stale, if they are. */
  readonly problem?: string;
}

/** One screen: a header with the node's budget, then a row per function, busiest first. */
export function renderTop(stats: StatsResponse, options: TopRenderOptions): string {
  const { node } = stats;
  const { style } = options;
  const time = stats.time.slice(11, 19);
  const pools = node.stemCells
    .filter((pool) => pool.target > 0 || pool.ready > 0)
    .map((pool) => {
      const where =
        pool.isolation === 'sandbox' && pool.network === 'none' ? '' : `(${pool.isolation}/${pool.network})`;
      // Pools sized for the default 128Mi are the usual ones; others are named by their memory.
      const memory = pool.memoryMiB === undefined || pool.memoryMiB === 128 ? '' : ` ${pool.memoryMiB}Mi`;
      return `${pool.runtime}${where}${memory} ${pool.ready}/${pool.target}`;
    });
  const header = [
    style.bold(`hearth top — ${options.url} — ${time} — every ${formatInterval(options.intervalMs)}`),
    `node: ${node.instances}/${node.maxInstances} instances, ${gib(node.memoryBytes)}/${gib(node.maxMemoryBytes)} GiB reserved, policy ${stats.policy}, stem cells ${pools.length === 0 ? 'none' : pools.join(', ')}`,
  ];
  if (options.problem !== undefined) header.push(style.red(`stale: ${options.problem}`));
  const namespaces = new Set(stats.functions.map((fn) => fn.namespace));
  const qualified = namespaces.size > 1 || (namespaces.size === 1 && !namespaces.has('default'));
  const rows = stats.functions.map((fn) => [
    qualified ? `${fn.name}.${fn.namespace}` : fn.name,
    `v${fn.version}`,
    `${fn.instances.ready}/${fn.instances.desired}`,
    String(fn.instances.busy),
    String(fn.instances.starting),
    String(fn.inFlight),
    String(fn.queued),
    formatRate(fn.rps),
    fn.p99Ms === null ? '-' : formatLatency(fn.p99Ms),
    fn.coldStartRatio === null ? '-' : `${(fn.coldStartRatio * 100).toFixed(1)}%`,
    fn.mode,
  ]);
  const room = options.height === undefined ? rows.length : Math.max(1, options.height - header.length - 3);
  const shown = rows.slice(0, room);
  const lines = [...header, ''];
  if (stats.functions.length === 0) lines.push('No functions loaded on this node.');
  else {
    const table = renderTable(
      [
        'NAME',
        'VERSION',
        'READY/DESIRED',
        'BUSY',
        'STARTING',
        'IN-FLIGHT',
        'QUEUED',
        'RPS',
        'P99',
        'COLD%',
        'MODE',
      ],
      shown,
    ).trimEnd();
    lines.push(...table.split('\n').map((line, index) => (index === 0 ? style.dim(line) : line)));
    if (shown.length < rows.length) lines.push(style.dim(`… ${rows.length - shown.length} more`));
  }
  return `${lines.map((line) => fitWidth(line, options.width)).join('\n')}\n`;
}

/** Home, the frame with each line's rest erased, then the rest of the screen erased: no flicker. */
function frame(text: string): string {
  return `\x1b[H${text.replace(/\n/g, '\x1b[K\n')}\x1b[J`;
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function parseInterval(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms < MIN_INTERVAL_MS)
    throw new CliError(
      `--interval "${value}": expected a duration such as 2s or 500ms, at least ${MIN_INTERVAL_MS}ms`,
    );
  return ms;
}

function rowsOf(stream: OutputStream): number | undefined {
  const rows: unknown = (stream as { rows?: unknown }).rows;
  return typeof rows === 'number' && rows > 0 ? rows : undefined;
}

/** Cuts a line to the terminal's width, ignoring colour codes when counting. */
function fitWidth(line: string, width: number): string {
  if (!Number.isFinite(width)) return line;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: colour codes are what is being skipped.
  const visible = line.replace(/\x1b\[[0-9;]*m/g, '');
  if (visible.length <= width) return line;
  return `${visible.slice(0, Math.max(1, width - 1))}…`;
}

function formatRate(rps: number): string {
  if (rps === 0) return '0';
  return rps < 10 ? rps.toFixed(1) : String(Math.round(rps));
}

function formatLatency(ms: number): string {
  if (ms < 10) return `${ms.toFixed(1)}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return `${(ms / 1000).toFixed(1)}s`;
}

function formatInterval(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function gib(bytes: number): string {
  return (bytes / 1024 ** 3).toFixed(1);
}
