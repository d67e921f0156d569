/**
 * @module /metrics as Prometheus sees it: counters, histograms with trace-id exemplars, instances by
 * state, CPU and memory, scraped by a real Prometheus that also loads the alert rules; the rules
 * checked and unit-tested by promtool; the Grafana dashboard queries only metrics that exist.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { traceIdOf } from '../../src/domain/trace.js';
import {
  deployFolder,
  eventually,
  FIXTURES,
  type Hearth,
  invoke,
  ROOT,
  startHearth,
} from '../support/hearth.js';
import { freePort } from '../support/redis.js';

const RULES = join(ROOT, 'deploy', 'prometheus', 'alerts.yml');

let hearth: Hearth;

beforeAll(async () => {
  hearth = await startHearth();
  for (const name of ['node-crash', 'py-sync']) {
    const { status, body } = await deployFolder(hearth.url, join(FIXTURES, name), { name });
    expect(status, JSON.stringify(body)).toBe(200);
  }
});

afterAll(async () => {
  await hearth?.stop();
});

async function scrape(openMetrics = false): Promise<{ contentType: string; text: string }> {
  const response = await fetch(`${hearth.url}/metrics`, {
    headers: openMetrics ? { accept: 'application/openmetrics-text; version=1.0.0' } : {},
  });
  expect(response.status).toBe(200);
  return { contentType: response.headers.get('content-type') ?? '', text: await response.text() };
}

/** The value of one sample line, e.g. `hearth_invocations_total{...,status="200"}`. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const labelText = line.slice(name.length + 1, line.indexOf('}'));
    const found = Object.fromEntries(
      [...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1] ?? '', match[2] ?? '']),
    );
    if (Object.entries(labels).every(([key, value]) => found[key] === value))
      return Number(
        line
          .slice(line.indexOf('}') + 1)
          .trim()
          .split(' ')[0],
      );
  }
  return undefined;
}

describe('/metrics', () => {
  it('counts invocations by status and trigger, errors by code, and observes durations', async () => {
    for (let i = 0; i < 3; i++) expect((await invoke(hearth.url, 'node-crash')).status).toBe(200);
    const failed = await invoke(hearth.url, 'node-crash', { path: '?throw=1' });
    expect(failed.status).toBe(500);
    // The platform's JSON log names the failed invocation, its function and its trace.
    const failedId = failed.headers.get('x-hearth-invocation-id') ?? '';
    const line = await eventually('the platform log line', () =>
      hearth.log.find((entry) => entry.msg === 'invocation failed' && entry.invocationId === failedId),
    );
    expect(line).toMatchObject({
      level: 'warn',
      namespace: 'default',
      function: 'node-crash',
      traceId: traceIdOf(failedId),
      status: 500,
      code: 'HEARTH_E_FN_ERROR',
    });
    const { contentType, text } = await scrape();
    expect(contentType).toContain('text/plain; version=0.0.4');
    const fn = { namespace: 'default', function: 'node-crash' };
    expect(sample(text, 'hearth_invocations_total', { ...fn, trigger: 'http', status: '200' })).toBe(3);
    expect(sample(text, 'hearth_invocations_total', { ...fn, trigger: 'http', status: '500' })).toBe(1);
    expect(sample(text, 'hearth_invocation_errors_total', { ...fn, code: 'HEARTH_E_FN_ERROR' })).toBe(1);
    expect(sample(text, 'hearth_invocation_duration_seconds_count', fn)).toBe(4);
    expect(sample(text, 'hearth_invocation_execution_seconds_count', fn)).toBe(3);
    expect(sample(text, 'hearth_invocation_duration_seconds_bucket', { ...fn, le: '+Inf' })).toBe(4);
    expect(sample(text, 'hearth_instances', { ...fn, state: 'warm-pool' })).toBe(1);
    expect(
      sample(text, 'hearth_instances', { state: 'stem-cell', runtime: 'node20' }),
    ).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'hearth_function_memory_bytes', fn)).toBeGreaterThan(1024 * 1024);
    expect(sample(text, 'hearth_function_cpu_seconds_total', fn)).toBeGreaterThan(0);
    expect(sample(text, 'hearth_instance_provisioned_seconds_total', fn)).toBeGreaterThan(0);
    expect(sample(text, 'hearth_queue_depth', fn)).toBe(0);
    // The platform's own process metrics come along.
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
  });

  it('counts cold starts by runtime, with the phases of each start', async () => {
    await fetch(`${hearth.url}/api/v1/namespaces/default/functions/py-sync/instances`, { method: 'DELETE' });
    const response = await invoke(hearth.url, 'py-sync');
    expect(response.headers.get('x-hearth-cold-start')).toBe('1');
    const { text } = await scrape();
    expect(
      sample(text, 'hearth_invocation_cold_starts_total', {
        namespace: 'default',
        function: 'py-sync',
        runtime: 'python3',
      }),
    ).toBe(1);
    for (const phase of ['total', 'code', 'stemcell', 'attach', 'load'])
      expect(
        sample(text, 'hearth_cold_start_seconds_count', { runtime: 'python3', phase }),
        phase,
      ).toBeGreaterThanOrEqual(1);
  });

  it('breaks every response time down in Server-Timing', async () => {
    const response = await invoke(hearth.url, 'node-crash');
    expect(response.headers.get('server-timing')).toMatch(
      /^queue;dur=[\d.]+, exec;dur=[\d.]+, total;dur=[\d.]+$/,
    );
  });

  it('serves OpenMetrics with trace-id exemplars to a scraper that asks for it', async () => {
    const response = await invoke(hearth.url, 'node-crash');
    const id = response.headers.get('x-hearth-invocation-id') ?? '';
    const { contentType, text } = await scrape(true);
    expect(contentType).toContain('application/openmetrics-text');
    expect(text.trimEnd().endsWith('# EOF')).toBe(true);
    expect(text).toContain(`# {trace_id="${traceIdOf(id)}"}`);
  });
});

describe('alert rules', () => {
  it('pass promtool check rules', () => {
    const result = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain('SUCCESS: 9 rules found');
  });

  it('fire on the seed thresholds and stay quiet below them (promtool test rules)', () => {
    const result = spawnSync(
      'promtool',
      ['test', 'rules', join(ROOT, 'deploy', 'prometheus', 'alerts.test.yml')],
      {
        encoding: 'utf8',
      },
    );
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });
});

describe('Grafana dashboard', () => {
  it('queries only metrics that /metrics exports', async () => {
    const dashboard = JSON.parse(await readFile(join(ROOT, 'deploy', 'grafana', 'hearth.json'), 'utf8')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    const { text } = await scrape();
    const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]));
    const queried = new Set<string>();
    for (const panel of dashboard.panels)
      for (const target of panel.targets ?? [])
        for (const match of target.expr.matchAll(/\b(hearth_[a-z_]+)/g)) queried.add(match[1] ?? '');
    expect(queried.size).toBeGreaterThan(10);
    for (const name of queried) {
      const base = name.replace(/_(bucket|sum|count)$/, '');
      expect(exported.has(name) || exported.has(base), `${name} is exported`).toBe(true);
    }
  });
});

describe('a real Prometheus', () => {
  let prometheus: ChildProcess | undefined;
  let dir: string;
  let url: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-prometheus-'));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    await writeFile(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ["${RULES}"]`,
        'scrape_configs:',
        '  - job_name: hearth',
        `    static_configs: [{ targets: ["127.0.0.1:${hearth.port}"] }]`,
        '',
      ].join('\n'),
    );
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--enable-feature=exemplar-storage',
      ],
      { stdio: 'ignore' },
    );
  });

  afterAll(async () => {
    if (prometheus !== undefined && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus?.once('exit', resolve));
      prometheus.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  const query = async <T>(path: string): Promise<T | undefined> => {
    try {
      const response = await fetch(`${url}${path}`);
      if (!response.ok) return undefined;
      return ((await response.json()) as { data: T }).data;
    } catch {
      return undefined;
    }
  };

  it('scrapes our /metrics, loads the three alerts, and keeps the trace-id exemplars', async () => {
    const response = await invoke(hearth.url, 'py-sync');
    const traceId = traceIdOf(response.headers.get('x-hearth-invocation-id') ?? '');
    const expected = sample((await scrape()).text, 'hearth_invocations_total', {
      namespace: 'default',
      function: 'py-sync',
      trigger: 'http',
      status: '200',
    });
    const result = await eventually(
      'Prometheus to scrape hearth_invocations_total',
      async () => {
        const data = await query<{ result: { value: [number, string] }[] }>(
          `/api/v1/query?query=${encodeURIComponent('hearth_invocations_total{function="py-sync",status="200"}')}`,
        );
        const value = data?.result[0]?.value[1];
        return value !== undefined && Number(value) >= (expected ?? 1) ? Number(value) : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(result).toBeGreaterThanOrEqual(1);
    const up = await query<{ result: { value: [number, string] }[] }>(`/api/v1/query?query=up`);
    expect(up?.result[0]?.value[1]).toBe('1');
    const rules = await query<{ groups: { rules: { name: string; type: string }[] }[] }>('/api/v1/rules');
    const alerts = (rules?.groups ?? []).flatMap((group) =>
      group.rules.filter((rule) => rule.type === 'alerting'),
    );
    expect(alerts.map((rule) => rule.name).sort()).toEqual([
      'HearthColdStartRatioHigh',
      'HearthFunctionErrorRateHigh',
      'HearthLowUtilisation',
    ]);
    const exemplars = await eventually(
      'the exemplar to be stored',
      async () => {
        const now = Date.now() / 1000;
        const data = await query<{ exemplars: { labels: { trace_id: string } }[] }[]>(
          `/api/v1/query_exemplars?query=${encodeURIComponent('hearth_invocation_duration_seconds_bucket{function="py-sync"}')}&start=${now - 600}&end=${now + 60}`,
        );
        const ids = (data ?? []).flatMap((series) =>
          series.exemplars.map((exemplar) => exemplar.labels.trace_id),
        );
        return ids.includes(traceId) ? ids : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(exemplars).toContain(traceId);
  });
});
