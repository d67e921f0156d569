/**
 * @module `GET /metrics`: Prometheus text, or OpenMetrics with exemplars (trace ids on the latency
 * histograms) when the scraper asks for it, as Prometheus does. prom-client formats and negotiates; the
 * figures come from `Telemetry` (fed by the diagnostics channels) and, at scrape time, from the
 * scheduler's status and /proc. Nothing here runs per invocation.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  type MetricObjectWithValues,
  type MetricType,
  type MetricValueWithName,
  type OpenMetricsContentType,
  type PrometheusContentType,
  Histogram as PromHistogram,
  Registry,
} from 'prom-client';
import type { DeployedVersion } from '../domain/deployment.js';
import type { FunctionRef } from '../domain/function.js';
import { traceIdOf } from '../domain/trace.js';
import type { FunctionStatus, StemCellPoolStats } from '../scheduler/index.js';
import type { Histogram } from './histogram.js';
import { processTreeUsage } from './proc.js';
import type { FunctionStats, Telemetry } from './telemetry.js';

/** What the metrics read from the scheduler when scraped (the `Scheduler` satisfies it). */
export interface MetricsSources {
  lookup(ref: FunctionRef): DeployedVersion | undefined;
  status(ref: FunctionRef): FunctionStatus | undefined;
  stemCellStats(): StemCellPoolStats[];
}

/** The short window the utilisation gauge and the dashboard use: 15 minutes. */
export const UTILISATION_WINDOW_SLOTS = 180;

type Labels = Record<string, string>;
type AnyRegistry = Registry<PrometheusContentType> | Registry<OpenMetricsContentType>;

/**
 * prom-client's typings declare `type` as a numeric enum its runtime never uses: metric objects carry
 * the exposition's own word, which the registry prints after `# TYPE`.
 */
const HISTOGRAM_TYPE = 'histogram' as unknown as MetricType;
type Sample = MetricValueWithName<string> & {
  exemplar?: { labelSet: Labels; value: number; timestamp: number };
};

/** A histogram whose figures come from one of our own `Histogram`s per label set (see histogram.ts). */
class SnapshotHistogram extends PromHistogram<string> {
  constructor(
    private readonly metricName: string,
    private readonly metricHelp: string,
    labelNames: readonly string[],
    registry: AnyRegistry,
    private readonly read: () => Iterable<readonly [Labels, Histogram]>,
    private readonly exemplars: boolean,
  ) {
    super({ name: metricName, help: metricHelp, labelNames: [...labelNames], registers: [registry] });
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    const values: Sample[] = [];
    const name = this.metricName;
    for (const [labels, histogram] of this.read()) {
      let cumulative = 0;
      for (let i = 0; i <= histogram.bounds.length; i++) {
        cumulative += histogram.counts[i] as number;
        const bound = histogram.bounds[i];
        const sample: Sample = {
          metricName: `${name}_bucket`,
          labels: { ...labels, le: bound === undefined ? '+Inf' : bound },
          value: cumulative,
        };
        const exemplar = this.exemplars ? histogram.exemplars[i] : undefined;
        if (exemplar !== undefined) {
          sample.exemplar = {
            labelSet: { trace_id: exemplar.source.traceId ?? traceIdOf(exemplar.source.invocationId) },
            value: exemplar.value,
            timestamp: exemplar.timestamp,
          };
        }
        values.push(sample);
      }
      values.push({ metricName: `${name}_sum`, labels, value: histogram.sum });
      values.push({ metricName: `${name}_count`, labels, value: histogram.count });
    }
    return {
      name,
      help: this.metricHelp,
      type: HISTOGRAM_TYPE,
      values,
      aggregator: 'sum',
      collect: () => {},
    };
  }

  /** prom-client's registry prefers this to `get`; both give the same figures. */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    return this.get();
  }
}

interface CpuTrack {
  /** CPU seconds of instances that are gone. */
  retired: number;
  readonly live: Map<number, number>;
}

export class Metrics {
  private readonly prometheus = new Registry<PrometheusContentType>();
  private readonly openMetrics = new Registry<OpenMetricsContentType>();
  private readonly cpu = new Map<string, CpuTrack>();
  /** The last scrape's per-function usage, shared by the metrics of one scrape. */
  private usage = new Map<string, { cpuSeconds: number; rssBytes: number }>();

  constructor(
    private readonly telemetry: Telemetry,
    private readonly sources: MetricsSources,
    private readonly now: () => number = Date.now,
  ) {
    this.openMetrics.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    this.define(this.prometheus, false);
    this.define(this.openMetrics, true);
    collectDefaultMetrics({ register: this.prometheus });
    collectDefaultMetrics({ register: this.openMetrics });
  }

  /** Answers `GET /metrics` (and HEAD). */
  readonly handler = (req: IncomingMessage, res: ServerResponse): void => {
    const accept = req.headers.accept ?? '';
    const registry = accept.includes('application/openmetrics-text') ? this.openMetrics : this.prometheus;
    this.render(registry).then(
      (text) => {
        res.writeHead(200, {
          'content-type': registry.contentType,
          'content-length': Buffer.byteLength(text),
          'cache-control': 'no-store',
        });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (error: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`metrics failed: ${(error as Error).message}\n`);
      },
    );
  };

  /** A gauge another part fills when scraped (`hearth_audit_sink_lag`, issue 13). */
  addGauge(
    name: string,
    help: string,
    labelNames: string[],
    fill: (set: (labels: Labels, value: number) => void) => void,
  ): void {
    for (const registry of [this.prometheus, this.openMetrics]) {
      const metric: Gauge<string> = new Gauge({
        name,
        help,
        labelNames,
        registers: [registry],
        collect: () => {
          metric.reset();
          fill((labels, value) => metric.set(labels, value));
        },
      });
    }
  }

  /** The exposition text, as Prometheus (or, with `openMetrics`, an OpenMetrics scraper) would get it. */
  text(openMetrics = false): Promise<string> {
    return this.render(openMetrics ? this.openMetrics : this.prometheus);
  }

  private async render(registry: AnyRegistry): Promise<string> {
    this.sampleUsage();
    return registry.metrics();
  }

  /** Reads /proc once per scrape for every live instance; CPU counters keep what stopped instances used. */
  private sampleUsage(): void {
    const usage = new Map<string, { cpuSeconds: number; rssBytes: number }>();
    for (const stats of this.telemetry.functions()) {
      const status = this.sources.status(stats.ref);
      let track = this.cpu.get(stats.key);
      if (track === undefined) {
        track = { retired: 0, live: new Map() };
        this.cpu.set(stats.key, track);
      }
      const seen = new Set<number>();
      let rss = 0;
      for (const instance of status?.instances ?? []) {
        if (instance.state === 'stopped' || instance.pid <= 0) continue;
        const tree = processTreeUsage(instance.pid);
        if (tree.processes === 0) continue;
        seen.add(instance.pid);
        track.live.set(instance.pid, Math.max(track.live.get(instance.pid) ?? 0, tree.cpuSeconds));
        rss += tree.rssBytes;
      }
      for (const [pid, seconds] of track.live) {
        if (seen.has(pid)) continue;
        track.retired += seconds;
        track.live.delete(pid);
      }
      let cpu = track.retired;
      for (const seconds of track.live.values()) cpu += seconds;
      usage.set(stats.key, { cpuSeconds: cpu, rssBytes: rss });
    }
    this.usage = usage;
  }

  private define(registry: AnyRegistry, exemplars: boolean): void {
    const fnLabels = ['namespace', 'function'];
    const functions = (): FunctionStats[] => this.telemetry.functions();
    const labelsOf = (stats: FunctionStats): Labels => ({
      namespace: stats.ref.namespace,
      function: stats.ref.name,
    });
    const counter = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (set: (labels: Labels, value: number) => void) => void,
    ): void => {
      const metric: Counter<string> = new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect: () => {
          metric.reset();
          fill((labels, value) => metric.inc(labels, value));
        },
      });
    };
    const gauge = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (set: (labels: Labels, value: number) => void) => void,
    ): void => {
      const metric: Gauge<string> = new Gauge({
        name,
        help,
        labelNames,
        registers: [registry],
        collect: () => {
          metric.reset();
          fill((labels, value) => metric.set(labels, value));
        },
      });
    };
    // Telemetry keeps two-label breakdowns as `a|b` keys in one Map per function (no nested Maps per event).
    const pairCounter = (
      name: string,
      help: string,
      [first, second]: readonly [string, string],
      pick: (stats: FunctionStats) => ReadonlyMap<string, number>,
    ): void =>
      counter(name, help, [...fnLabels, first, second], (set) => {
        for (const stats of functions())
          for (const [key, count] of pick(stats)) {
            const [a = '', b = ''] = key.split('|');
            set({ ...labelsOf(stats), [first]: a, [second]: b }, count);
          }
      });

    counter(
      'hearth_invocations_total',
      'Invocations answered, by function, trigger (http, invoke, cron, kafka...) and HTTP status.',
      [...fnLabels, 'trigger', 'status'],
      (set) => {
        for (const stats of functions())
          for (const [trigger, byStatus] of stats.outcomes)
            for (const [status, count] of byStatus)
              set({ ...labelsOf(stats), trigger, status: String(status) }, count);
      },
    );
    counter(
      'hearth_invocation_errors_total',
      'Failed invocations by Hearth error code (HEARTH_E_FN_ERROR, HEARTH_E_TIMEOUT...).',
      [...fnLabels, 'code'],
      (set) => {
        for (const stats of functions())
          for (const [code, count] of stats.errors) set({ ...labelsOf(stats), code }, count);
      },
    );
    counter(
      'hearth_invocation_cold_starts_total',
      'Invocations that waited for an instance started for them (cold starts), by runtime.',
      [...fnLabels, 'runtime'],
      (set) => {
        for (const stats of functions())
          set({ ...labelsOf(stats), runtime: stats.runtime }, stats.coldInvocations);
      },
    );
    const histogram = (
      name: string,
      help: string,
      labelNames: readonly string[],
      read: () => Iterable<readonly [Labels, Histogram]>,
      withExemplars: boolean,
    ): void => {
      new SnapshotHistogram(name, help, labelNames, registry, read, exemplars && withExemplars);
    };
    histogram(
      'hearth_invocation_duration_seconds',
      'Time from the gateway receiving an invocation to its answer; exemplars carry the trace id.',
      fnLabels,
      () => functions().map((stats) => [labelsOf(stats), stats.duration] as const),
      true,
    );
    histogram(
      'hearth_invocation_queue_wait_seconds',
      'Time an invocation waited for a free instance, not counting a cold start it waited for.',
      fnLabels,
      () => functions().map((stats) => [labelsOf(stats), stats.queueWait] as const),
      false,
    );
    histogram(
      'hearth_invocation_execution_seconds',
      "Time from handing an invocation to an instance to its answer (the function's own time).",
      fnLabels,
      () => functions().map((stats) => [labelsOf(stats), stats.execution] as const),
      true,
    );
    histogram(
      'hearth_cold_start_seconds',
      'Cold starts by runtime and phase: code (checkout), stemcell (take a pre-started runtime), attach (bind code and dependency layer), load (import the handler), total.',
      ['runtime', 'phase'],
      () => {
        const rows: (readonly [Labels, Histogram])[] = [];
        for (const [runtime, cold] of this.telemetry.coldStarts) {
          rows.push([{ runtime, phase: 'total' }, cold.total]);
          rows.push([{ runtime, phase: 'code' }, cold.code]);
          rows.push([{ runtime, phase: 'stemcell' }, cold.stemCell]);
          rows.push([{ runtime, phase: 'attach' }, cold.attach]);
          rows.push([{ runtime, phase: 'load' }, cold.load]);
        }
        return rows;
      },
      false,
    );
    counter(
      'hearth_instance_starts_total',
      'Instances started (or failed to start), by function and runtime.',
      [...fnLabels, 'runtime', 'outcome'],
      (set) => {
        for (const stats of functions()) {
          set({ ...labelsOf(stats), runtime: stats.runtime, outcome: 'started' }, stats.instanceStarts);
          set({ ...labelsOf(stats), runtime: stats.runtime, outcome: 'failed' }, stats.instanceFailures);
        }
      },
    );
    counter(
      'hearth_instance_oom_kills_total',
      'Instances the kernel killed for passing limits.memory (each is replaced; callers got HEARTH_E_FN_OOM).',
      fnLabels,
      (set) => {
        for (const stats of functions()) set(labelsOf(stats), stats.oomKills);
      },
    );
    gauge(
      'hearth_instances',
      'Instances by state: starting, busy, idle, warm-pool (idle capacity kept by warmPoolRatio), draining; and stem-cell (pre-started runtimes, per runtime).',
      [...fnLabels, 'runtime', 'state'],
      (set) => {
        for (const stats of functions()) {
          const counts = this.instanceStates(stats.ref);
          for (const [state, count] of Object.entries(counts))
            set({ ...labelsOf(stats), runtime: stats.runtime, state }, count);
        }
        const cells = new Map<string, number>();
        for (const pool of this.sources.stemCellStats())
          cells.set(pool.runtime, (cells.get(pool.runtime) ?? 0) + pool.ready);
        for (const [runtime, ready] of cells)
          set({ namespace: '', function: '', runtime, state: 'stem-cell' }, ready);
      },
    );
    gauge('hearth_queue_depth', 'Requests waiting for an instance of the function.', fnLabels, (set) => {
      for (const stats of functions()) set(labelsOf(stats), this.sources.status(stats.ref)?.queued ?? 0);
    });
    pairCounter(
      'hearth_queue_decisions_total',
      'Requests that could not take an instance at once: queued, shed (503) or expired (504), with the reason.',
      ['decision', 'reason'],
      (stats) => stats.queueDecisions,
    );
    counter(
      'hearth_scaling_decisions_total',
      "The autoscaler's decisions by action (scale-up, scale-down, scale-to-zero, prewarm, evict, blocked, panic, stable); why is in the logs and `hearth describe`.",
      [...fnLabels, 'action'],
      (set) => {
        for (const stats of functions())
          for (const [action, count] of stats.scalingDecisions) set({ ...labelsOf(stats), action }, count);
      },
    );
    counter(
      'hearth_rate_limited_total',
      'Requests refused by a rate limit (429), by the bucket scope (protocol, route, function, client).',
      ['scope'],
      (set) => {
        for (const [scope, count] of this.telemetry.rateLimitedByScope) set({ scope }, count);
      },
    );
    counter(
      'hearth_client_closed_total',
      'Requests whose client closed the connection before sending the whole body, by surface (api, function, async, route).',
      ['surface'],
      (set) => {
        for (const [surface, count] of this.telemetry.clientClosedBySurface) set({ surface }, count);
      },
    );
    counter(
      'hearth_function_rate_limited_total',
      'Requests to a function refused by a rate limit (429).',
      fnLabels,
      (set) => {
        for (const stats of functions()) if (stats.rateLimited > 0) set(labelsOf(stats), stats.rateLimited);
      },
    );
    pairCounter(
      'hearth_breaker_transitions_total',
      'Circuit breaker state changes, by scope (instance, function) and the state entered.',
      ['scope', 'state'],
      (stats) => stats.breakerTransitions,
    );
    gauge('hearth_breakers_open', 'Circuit breakers open or half-open now.', fnLabels, (set) => {
      for (const stats of functions()) set(labelsOf(stats), stats.openBreakers.size);
    });
    pairCounter(
      'hearth_deliveries_total',
      'Event deliveries by triggers and the async queue, by kind and outcome (delivered, retry, dead-lettered).',
      ['kind', 'outcome'],
      (stats) => stats.deliveries,
    );
    counter(
      'hearth_function_cpu_seconds_total',
      "CPU time (user + system) of the function's instances, from /proc.",
      fnLabels,
      (set) => {
        for (const stats of functions()) set(labelsOf(stats), this.usage.get(stats.key)?.cpuSeconds ?? 0);
      },
    );
    gauge(
      'hearth_function_memory_bytes',
      "Resident memory of the function's live instances, from /proc.",
      fnLabels,
      (set) => {
        for (const stats of functions()) set(labelsOf(stats), this.usage.get(stats.key)?.rssBytes ?? 0);
      },
    );
    counter(
      'hearth_instance_busy_seconds_total',
      'Time instances spent with at least one invocation in flight.',
      fnLabels,
      (set) => {
        for (const stats of functions()) set(labelsOf(stats), stats.busyMs / 1000);
      },
    );
    counter(
      'hearth_instance_provisioned_seconds_total',
      'Time instances were alive (started and not yet stopped).',
      fnLabels,
      (set) => {
        const now = this.now();
        for (const stats of functions()) set(labelsOf(stats), stats.provisionedMs(now) / 1000);
      },
    );
    gauge(
      'hearth_function_utilisation_ratio',
      'Busy time / provisioned time of the function instances over the last 15 minutes (absent without instances).',
      fnLabels,
      (set) => {
        const now = this.now();
        for (const stats of functions()) {
          const window = stats.window(now, UTILISATION_WINDOW_SLOTS);
          if (window.provisionedMs > 0)
            set(labelsOf(stats), Math.min(1, window.busyMs / window.provisionedMs));
        }
      },
    );
  }

  /** Instances of a function by the dashboard's and the gauge's states. */
  instanceStates(ref: FunctionRef): Record<string, number> {
    const counts: Record<string, number> = { starting: 0, busy: 0, idle: 0, 'warm-pool': 0, draining: 0 };
    const status = this.sources.status(ref);
    if (status === undefined) return counts;
    counts.starting = status.starting;
    let idle = 0;
    let live = 0;
    for (const instance of status.instances) {
      if (instance.state === 'ready') {
        live += 1;
        if (instance.inFlight > 0) counts.busy = (counts.busy ?? 0) + 1;
        else idle += 1;
      } else if (instance.state === 'draining') counts.draining = (counts.draining ?? 0) + 1;
    }
    const ratio = this.sources.lookup(ref)?.spec.scaling.warmPoolRatio ?? 0;
    const warm = Math.min(idle, Math.ceil(live * ratio));
    counts['warm-pool'] = warm;
    counts.idle = idle - warm;
    return counts;
  }
}
