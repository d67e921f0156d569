/**
 * @module The dashboard page: polls `/ui/api/overview` every two seconds and renders the alerts, the
 * functions with their live figures and sparklines, the selected function's charts, recent invocations
 * and logs, and the autoscaler's decisions. Plain DOM, no framework, no build step.
 */

import { lineChart } from '/ui/chart.js';

const REFRESH_MS = 2000;
const COLORS = { rate: '#d9480f', errors: '#c92a2a', p50: '#1971c2', p99: '#7048e8', cold: '#e67700' };
const RULES = [
  { name: 'HearthFunctionErrorRateHigh', title: 'Error rate > 1% for 5 min', action: 'alert' },
  { name: 'HearthColdStartRatioHigh', title: 'Cold-start ratio > 30% (daily)', action: 'daily report' },
  { name: 'HearthLowUtilisation', title: 'Utilisation < 20%', action: 'scale-in suggestion' },
];

let selected = loadSelection();
let selectedInvocation;

function loadSelection() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const name = hash.get('fn');
  return name ? { namespace: hash.get('ns') ?? 'default', name } : undefined;
}

function element(tag, attributes = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, String(value));
  }
  for (const child of children) if (child !== undefined && child !== null) el.append(child);
  return el;
}

const percent = (ratio) =>
  ratio === null || ratio === undefined ? '–' : `${(ratio * 100).toFixed(ratio < 0.1 ? 1 : 0)}%`;
const millis = (ms) =>
  ms === null || ms === undefined ? '–' : ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
const rate = (value) => (value >= 10 ? value.toFixed(0) : value.toFixed(1));
const same = (a, b) => a !== undefined && b !== undefined && a.namespace === b.namespace && a.name === b.name;

// Where auth is on (issue 10) the dashboard asks once for an API key on a 401 and keeps it for this tab only.
const KEY_ITEM = 'hearth.apiKey';
let askingForKey;

function askForKey(message) {
  askingForKey ??= Promise.resolve().then(() => {
    const given = window.prompt(message);
    askingForKey = undefined;
    if (given === null || given.trim() === '') return false;
    sessionStorage.setItem(KEY_ITEM, given.trim());
    return true;
  });
  return askingForKey;
}

async function getJson(path) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const key = sessionStorage.getItem(KEY_ITEM);
    const headers = key === null ? {} : { authorization: `Bearer ${key}` };
    const response = await fetch(path, { cache: 'no-store', headers });
    if (response.status === 401 || (response.status === 403 && attempt === 0 && key !== null)) {
      const body = await response.json().catch(() => ({}));
      const why = body?.error?.message ?? 'an API key is required';
      if (!(await askForKey(`Hearth: ${why}\n\nAPI key (kept for this tab only):`)))
        throw new Error(`${path}: HTTP ${response.status}: ${why}`);
      continue;
    }
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }
  throw new Error(`${path}: the API key was refused`);
}

function renderAlerts(alerts, metricsOn) {
  const container = document.getElementById('alerts');
  if (!metricsOn) {
    container.replaceChildren(
      element('p', { class: 'muted' }, 'Metrics are off (metrics: false): no alerts.'),
    );
    return;
  }
  container.replaceChildren(
    ...RULES.map((rule) => {
      const active = alerts.filter((alert) => alert.alert === rule.name && alert.state !== 'inactive');
      const state = active.some((alert) => alert.state === 'firing')
        ? 'firing'
        : active.length > 0
          ? 'pending'
          : 'inactive';
      const list = element('ul');
      for (const alert of active)
        list.append(
          element(
            'li',
            {},
            `${alert.namespace}/${alert.function}: ${percent(alert.value)} (${alert.state}${alert.since ? ` since ${new Date(alert.since).toLocaleTimeString()}` : ''})`,
          ),
        );
      return element(
        'div',
        { class: `alert ${state}`, 'data-alert': rule.name, 'data-state': state },
        element('span', { class: 'state' }, state === 'inactive' ? 'ok' : state),
        element('strong', {}, rule.title),
        element('div', { class: 'muted' }, `→ ${rule.action}`),
        active.length > 0 ? list : undefined,
      );
    }),
  );
}

function instanceBadges(instances) {
  const cell = element('span');
  for (const state of ['busy', 'idle', 'warm-pool', 'starting', 'draining']) {
    const count = instances[state] ?? 0;
    if (count > 0)
      cell.append(element('span', { class: `badge ${state}`, title: state }, `${count} ${state}`));
  }
  if (cell.childElementCount === 0) cell.append(element('span', { class: 'muted' }, '0'));
  return cell;
}

function renderFunctions(functions) {
  const body = document.getElementById('functions');
  document.getElementById('empty').hidden = functions.length > 0;
  body.replaceChildren(
    ...functions.map((fn) => {
      const spark = element('div', { class: 'spark' });
      lineChart(
        spark,
        fn.series.map((point) => point.t),
        [{ name: 'req/s', color: COLORS.rate, values: fn.series.map((point) => point.rps) }],
        { compact: true, width: 120, height: 24, label: `${fn.name} request rate` },
      );
      const id = `${fn.namespace}/${fn.name}`;
      return element(
        'tr',
        {
          class: `fn${same(selected, fn) ? ' selected' : ''}`,
          'data-testid': `fn-${fn.name}`,
          onclick: () => select(fn),
        },
        element(
          'td',
          {},
          element('strong', {}, fn.name),
          fn.namespace === 'default' ? undefined : element('span', { class: 'muted' }, ` .${fn.namespace}`),
          element('span', { class: 'muted' }, ` v${fn.version}`),
        ),
        element('td', {}, fn.runtime),
        element(
          'td',
          { class: 'num', 'data-testid': `invocations-${fn.name}`, title: id },
          String(fn.totals.invocations),
        ),
        element('td', { class: 'num' }, rate(fn.now.rps)),
        element('td', { class: 'num' }, percent(fn.now.errorRate)),
        element('td', { class: 'num' }, millis(fn.now.p50)),
        element('td', { class: 'num' }, millis(fn.now.p99)),
        element('td', { class: 'num' }, percent(fn.now.coldRatio)),
        element('td', {}, instanceBadges(fn.instances)),
        element('td', { class: 'num' }, percent(fn.now.utilisation)),
        element('td', {}, spark),
      );
    }),
  );
}

function renderScaling(scaling) {
  const list = document.getElementById('scaling');
  if (scaling.length === 0) {
    list.replaceChildren(element('li', { class: 'muted' }, 'No scaling decisions yet.'));
    return;
  }
  list.replaceChildren(
    ...scaling.map((note) =>
      element(
        'li',
        {},
        element('span', { class: 'muted' }, `${new Date(note.at).toLocaleTimeString()} `),
        element('strong', {}, note.function || 'node'),
        ` ${note.action}${note.from !== undefined && note.to !== undefined ? ` ${note.from} → ${note.to}` : ''}`,
        note.reason ? element('span', { class: 'muted' }, ` — ${note.reason}`) : undefined,
      ),
    ),
  );
}

function select(fn) {
  selected = { namespace: fn.namespace, name: fn.name };
  selectedInvocation = undefined;
  history.replaceState(null, '', `#ns=${encodeURIComponent(fn.namespace)}&fn=${encodeURIComponent(fn.name)}`);
  void refresh();
}

async function renderDetail() {
  const panel = document.getElementById('detail');
  if (selected === undefined) {
    panel.hidden = true;
    return;
  }
  const query = `namespace=${encodeURIComponent(selected.namespace)}&name=${encodeURIComponent(selected.name)}`;
  let fn;
  try {
    fn = await getJson(`/ui/api/function?${query}`);
  } catch {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  document.getElementById('detail-title').textContent =
    `${fn.namespace}/${fn.name} — version ${fn.version}, ${fn.runtime}, ${fn.isolation}`;
  const times = fn.series.map((point) => point.t);
  lineChart(document.getElementById('chart-rate'), times, [
    { name: 'req/s', color: COLORS.rate, values: fn.series.map((point) => point.rps) },
  ]);
  lineChart(document.getElementById('chart-errors'), times, [
    { name: 'errors', color: COLORS.errors, values: fn.series.map((point) => point.errors) },
  ]);
  lineChart(document.getElementById('chart-latency'), times, [
    { name: 'p50', color: COLORS.p50, values: fn.series.map((point) => point.p50) },
    { name: 'p99', color: COLORS.p99, values: fn.series.map((point) => point.p99) },
  ]);
  lineChart(document.getElementById('chart-cold'), times, [
    { name: 'cold starts', color: COLORS.cold, values: fn.series.map((point) => point.cold) },
  ]);
  document.getElementById('invocations').replaceChildren(
    ...fn.recent.map((invocation) =>
      element(
        'tr',
        {
          'data-invocation': invocation.id,
          onclick: () => {
            selectedInvocation = invocation.id;
            void renderLogs(fn);
          },
        },
        element('td', {}, invocation.time ? new Date(invocation.time).toLocaleTimeString() : '–'),
        element('td', { class: `status-${String(invocation.status)[0]}` }, String(invocation.status)),
        element('td', { class: 'num' }, millis(invocation.durationMs)),
        element('td', {}, invocation.coldStart ? 'cold' : ''),
        element('td', {}, invocation.trigger),
        element('td', {}, element('code', { title: invocation.traceId }, invocation.traceId.slice(0, 12))),
      ),
    ),
  );
  await renderLogs(fn);
}

async function renderLogs(fn) {
  const title = document.getElementById('logs-title');
  const out = document.getElementById('logs');
  let records = fn.logs;
  if (selectedInvocation !== undefined) {
    const query = `namespace=${encodeURIComponent(fn.namespace)}&name=${encodeURIComponent(fn.name)}&invocation=${encodeURIComponent(selectedInvocation)}`;
    records = (await getJson(`/ui/api/logs?${query}`)).items;
    title.textContent = `Logs of invocation ${selectedInvocation.slice(0, 8)}`;
  } else title.textContent = 'Logs (latest)';
  out.textContent =
    records.length === 0
      ? 'No output.'
      : records
          .map(
            (record) =>
              `${record.time.slice(11, 23)} ${(record.invocationId ?? '-').slice(0, 8)} ${record.stream.padEnd(6)} ${record.message.replace(/\n$/, '')}`,
          )
          .join('\n');
}

async function refresh() {
  try {
    const overview = await getJson('/ui/api/overview');
    const cells = Object.entries(overview.stemCells)
      .map(([runtime, ready]) => `${runtime} ${ready}`)
      .join(', ');
    // Audit sinks (issue 13): records not yet delivered to each receiver, and why when it is failing.
    const sinks = (overview.auditSinks ?? [])
      .map((sink) => `${sink.name} lag ${sink.lag}${sink.lastError ? ` (${sink.lastError})` : ''}`)
      .join(', ');
    document.getElementById('meta').textContent =
      `v${overview.version} · ${overview.functions.length} functions · stem cells ready: ${cells || 'none'}${sinks ? ` · audit sinks: ${sinks}` : ''} · updated ${new Date(overview.time).toLocaleTimeString()}`;
    renderAlerts(overview.alerts, overview.metrics);
    renderFunctions(overview.functions);
    renderScaling(overview.scaling);
    await renderDetail();
  } catch (error) {
    document.getElementById('meta').textContent = `cannot reach the platform: ${error.message}`;
  }
}

await refresh();
setInterval(() => void refresh(), REFRESH_MS);
