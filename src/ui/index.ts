/**
 * @module The `/ui` dashboard: a few static files (plain ES modules and a hand-written SVG chart, no build
 * step) and three JSON endpoints the page polls — an overview of every function with its recent
 * figures, a function's detail with its last invocations and logs, and one invocation's logs. It reads
 * what `observe/` already keeps; it adds nothing to the invocation path.
 */

import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LogRecord } from '../control/api/types.js';
import type { DeployedVersion } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import type { InvocationEvent } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import { traceIdOf } from '../domain/trace.js';
import { sendError, sendJson } from '../gateway/index.js';
import type {
  AlertStatus,
  FunctionStats,
  LogQuery,
  Metrics,
  ScalingNote,
  Telemetry,
} from '../observe/index.js';
import type { StemCellPoolStats } from '../scheduler/index.js';

export interface UiOptions {
  readonly version: string;
  /** Every deployed function. */
  readonly functions: () => readonly FunctionRef[];
  readonly lookup: (ref: FunctionRef) => DeployedVersion | undefined;
  readonly stemCells: () => StemCellPoolStats[];
  readonly logs: { query(query: LogQuery): LogRecord[] };
  /** Undefined when the platform runs with `metrics: false`: the page then lists functions only. */
  readonly telemetry: Telemetry | undefined;
  readonly metrics: Metrics | undefined;
  readonly alerts: { evaluate(): AlertStatus[] } | undefined;
  /** Each audit sink's lag (issue 13), shown in the page's header line. */
  readonly auditSinks?: () => readonly { name: string; lag: number; lastError: string | null }[];
}

const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'static');
const FILES: Record<string, { file: string; type: string }> = {
  '/ui': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/chart.js': { file: 'chart.js', type: 'text/javascript; charset=utf-8' },
  '/ui/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};
/** The charts' span: the last 5 minutes in 5-second points. */
const CHART_SLOTS = 60;
/** The "now" figures: the last minute. */
const RATE_SLOTS = 12;

export function createUiHandler(options: UiOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const cache = new Map<string, Buffer>();
  const read = (file: string): Buffer => {
    let content = cache.get(file);
    if (content === undefined) {
      content = readFileSync(join(STATIC_DIR, file));
      cache.set(file, content);
    }
    return content;
  };
  return (req, res) => {
    const url = new URL(req.url ?? '/ui', 'http://hearth');
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD')
        throw new HearthError(
          'HEARTH_E_METHOD_NOT_ALLOWED',
          `${req.method ?? ''} is not allowed on ${url.pathname}`,
        );
      const asset = FILES[url.pathname];
      if (asset !== undefined) {
        const body = read(asset.file);
        res.writeHead(200, {
          'content-type': asset.type,
          'content-length': body.length,
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
        });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      if (url.pathname === '/ui/api/overview') {
        sendJson(res, 200, overview(options), { 'cache-control': 'no-store' });
        return;
      }
      if (url.pathname === '/ui/api/function') {
        sendJson(res, 200, detail(options, refOf(url)), { 'cache-control': 'no-store' });
        return;
      }
      if (url.pathname === '/ui/api/logs') {
        const ref = refOf(url);
        const invocation = url.searchParams.get('invocation') ?? undefined;
        const items = options.logs.query({
          namespace: ref.namespace,
          function: ref.name,
          limit: 500,
          ...(invocation === undefined || invocation === '' ? {} : { invocationId: invocation }),
        });
        sendJson(res, 200, { items }, { 'cache-control': 'no-store' });
        return;
      }
      throw new HearthError('HEARTH_E_NOT_FOUND', `no dashboard page at ${url.pathname}`);
    } catch (error) {
      sendError(res, error);
    }
  };
}

function refOf(url: URL): FunctionRef {
  const name = url.searchParams.get('name');
  if (name === null || name === '')
    throw new HearthError('HEARTH_E_VALIDATION', 'name: got nothing, expected a function name', {
      details: { field: 'name', value: null, expected: 'a function name' },
    });
  return { namespace: url.searchParams.get('namespace') || 'default', name };
}

interface FunctionOverview {
  readonly namespace: string;
  readonly name: string;
  readonly runtime: string;
  readonly version: number;
  readonly isolation: string;
  readonly totals: { invocations: number; errors: number; coldStarts: number };
  /** The last minute. */
  readonly now: {
    rps: number;
    errorRate: number | null;
    p50: number | null;
    p99: number | null;
    coldRatio: number | null;
    utilisation: number | null;
  };
  readonly instances: Record<string, number>;
  readonly series: ReturnType<FunctionStats['series']>;
}

function overview(options: UiOptions): unknown {
  const now = Date.now();
  const functions: FunctionOverview[] = [];
  for (const ref of options.functions()) {
    const deployed = options.lookup(ref);
    if (deployed === undefined) continue;
    functions.push(summarise(options, ref, deployed, now));
  }
  functions.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  const stemCells = new Map<string, number>();
  for (const pool of options.stemCells())
    stemCells.set(pool.runtime, (stemCells.get(pool.runtime) ?? 0) + pool.ready);
  return {
    version: options.version,
    time: new Date(now).toISOString(),
    metrics: options.telemetry !== undefined,
    functions,
    alerts: options.alerts?.evaluate() ?? [],
    scaling: [...(options.telemetry?.scaling ?? [])].reverse().slice(0, 30).map(scalingView),
    stemCells: Object.fromEntries(stemCells),
    auditSinks: options.auditSinks?.() ?? [],
  };
}

function summarise(
  options: UiOptions,
  ref: FunctionRef,
  deployed: DeployedVersion,
  now: number,
): FunctionOverview {
  const stats = options.telemetry?.get(ref);
  const window = stats?.window(now, RATE_SLOTS);
  const longWindow = stats?.window(now, 180);
  const errors = stats === undefined ? 0 : [...stats.errors.values()].reduce((sum, n) => sum + n, 0);
  return {
    namespace: ref.namespace,
    name: ref.name,
    runtime: deployed.spec.runtime,
    version: deployed.version,
    isolation: deployed.spec.isolation,
    totals: {
      invocations: stats?.invocations ?? 0,
      errors,
      coldStarts: stats?.coldInvocations ?? 0,
    },
    now: {
      rps: window === undefined ? 0 : window.requests / ((RATE_SLOTS * 5000) / 1000),
      errorRate: window === undefined || window.requests === 0 ? null : window.errors / window.requests,
      p50: window?.p50 ?? null,
      p99: window?.p99 ?? null,
      coldRatio: window === undefined || window.requests === 0 ? null : window.cold / window.requests,
      utilisation:
        longWindow === undefined || longWindow.provisionedMs === 0
          ? null
          : Math.min(1, longWindow.busyMs / longWindow.provisionedMs),
    },
    instances: options.metrics?.instanceStates(ref) ?? {},
    series: stats?.series(now, CHART_SLOTS) ?? [],
  };
}

function detail(options: UiOptions, ref: FunctionRef): unknown {
  const deployed = options.lookup(ref);
  if (deployed === undefined)
    throw new HearthError(
      'HEARTH_E_FN_NOT_FOUND',
      `function ${ref.name} not found in namespace ${ref.namespace}`,
    );
  const stats = options.telemetry?.get(ref);
  return {
    ...summarise(options, ref, deployed, Date.now()),
    limits: deployed.spec.limits,
    scaling: deployed.spec.scaling,
    egress: deployed.spec.egress,
    recent: (stats?.recentInvocations() ?? []).map(invocationView),
    logs: options.logs.query({ namespace: ref.namespace, function: ref.name, limit: 100 }),
  };
}

function invocationView(event: InvocationEvent): unknown {
  return {
    id: event.invocationId,
    time: event.startedAt === undefined ? null : new Date(event.startedAt).toISOString(),
    status: event.status,
    durationMs: Math.round(event.durationMs * 100) / 100,
    coldStart: event.coldStart,
    trigger: event.trigger ?? 'http',
    errorCode: event.errorCode ?? null,
    traceId: event.trace?.traceId ?? traceIdOf(event.invocationId),
    version: event.version,
  };
}

function scalingView(note: ScalingNote): unknown {
  return { ...note, at: new Date(note.at).toISOString() };
}
