// Cold starts in bursts (issue 11), sandboxed, time to first byte, a fresh connection per request:
// - back to back: 24 distinct idle functions per runtime called one after another, no pause;
// - at once: 100 distinct idle functions (half Node, half Python) called at the same moment;
// - sustained: distinct idle functions called by 4 clients in a closed loop, cold starts per second.
// The stem-cell pools are full at the start of each part, never topped up between calls.
// Run alone: `node bench/cold-burst.mjs`; COLD_BURST_RUNTIMES=python3 (one runtime), COLD_BURST_PARTS=backToBack
// (some parts), COLD_BURST_CONFIG='{"stemCells":{"node20":24}}' (the platform's config), HEARTH_ZYGOTE=on
// (Python forked into each sandbox by the fork server, config `forkServer`, rather than booted).
// COLD_BURST_PROCS=1 adds, to the back-to-back and at-once parts, the CPU each kind of process spent during the calls
// (gateway, bench client, guests, and `new` processes: cells booted meanwhile); COLD_BURST_PROCS=each lists
// every process; COLD_BURST_TIMINGS=1 prints each request's start time (epoch ms), time to first byte and
// Server-Timing.

import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, deploy, ROOT, round, scaleToZero, sleep, startHearth, summarise } from './lib.mjs';

const EXAMPLES = { node20: join(ROOT, 'examples', 'hello'), python3: join(ROOT, 'examples', 'hello-py') };
const SHORT = { node20: 'n', python3: 'p' };

/**
 * CPU time (ms) used by this process and everything it starts (the platform, its sandboxes), where cgroup v1's
 * cpuacct can count it: the bench joins a cpuacct group of its own, which the sandboxes never leave (they
 * join cgroups of the cpu, memory and pids controllers only). On a machine shared with other work, CPU per
 * cold start is the figure that does not move with the neighbours' load. Undefined elsewhere.
 */
const CPUACCT = '/sys/fs/cgroup/cpuacct';
let cpuGroup;
function cpuMs() {
  if (cpuGroup === undefined) {
    if (!existsSync(join(CPUACCT, 'cpuacct.usage')) || process.getuid?.() !== 0) return undefined;
    cpuGroup = join(CPUACCT, `hearth-bench-${process.pid}`);
    try {
      mkdirSync(cpuGroup);
      writeFileSync(join(cpuGroup, 'cgroup.procs'), String(process.pid));
      process.once('exit', () => {
        try {
          writeFileSync(join(CPUACCT, 'cgroup.procs'), String(process.pid));
          rmdirSync(cpuGroup);
        } catch {}
      });
    } catch {
      cpuGroup = null;
    }
  }
  return cpuGroup === null ? undefined : Number(readFileSync(join(cpuGroup, 'cpuacct.usage'), 'utf8')) / 1e6;
}
cpuMs();

/** CPU ms used by one process so far (its own threads, not its children), from /proc. */
function processCpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

/**
 * CPU ms so far of each process in the bench's cpuacct group (COLD_BURST_PROCS=1), keyed `pid command`: with
 * `cpuByProcess(before)` the CPU a part spent, by process, to tell the gateway, the guests and refills apart.
 */
function processCpu() {
  if (cpuGroup === undefined || cpuGroup === null) return new Map();
  const pids = readFileSync(join(cpuGroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
  const cpu = new Map();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      // Each thread's time on a CPU in ns (schedstat): /proc's utime ticks are 10 ms, a bind's whole CPU.
      let ns = 0;
      for (const task of readdirSync(`/proc/${pid}/task`))
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
      cpu.set(`${pid} ${comm}`, ns / 1e6);
    } catch {}
  }
  return cpu;
}

/** The CPU ms each process spent since `before` (a `processCpu()`), summed by command, busiest first. */
function cpuByProcess(before, gatewayPid) {
  const byCommand = {};
  for (const [key, ms] of processCpu()) {
    const spent = ms - (before.get(key) ?? 0);
    if (spent <= 0.05) continue;
    const [pid, ...rest] = key.split(' ');
    const command =
      Number(pid) === process.pid ? 'bench client' : Number(pid) === gatewayPid ? 'gateway' : rest.join(' ');
    byCommand[command] ??= { ms: 0, processes: 0, new: 0 };
    const entry = byCommand[command];
    entry.ms = round(entry.ms + spent);
    entry.processes += 1;
    if (process.env.COLD_BURST_PROCS === 'each')
      entry.each = [...(entry.each ?? []), `${pid}:${round(spent)}`];
    if (!before.has(key)) entry.new += 1;
  }
  return Object.fromEntries(Object.entries(byCommand).sort((a, b) => b[1].ms - a[1].ms));
}

/** CPU ms per call between two `cpuMs()` readings, or undefined. */
function cpuPer(before, after, calls) {
  return before === undefined || after === undefined ? undefined : round((after - before) / calls);
}

/** GET on a connection of its own (no keep-alive): time to the response head, and where the time went. */
export function freshGet(url, path) {
  return new Promise((resolve) => {
    const started = performance.now();
    const at = performance.timeOrigin + started;
    const req = request(`${url}${path}`, { agent: false }, (res) => {
      const ttfb = performance.now() - started;
      res.resume();
      res.on('end', () =>
        resolve({
          ttfb,
          at,
          status: res.statusCode,
          cold: res.headers['x-hearth-cold-start'] === '1',
          timing: String(res.headers['server-timing'] ?? ''),
        }),
      );
    });
    req.on('error', (error) =>
      resolve({ ttfb: performance.now() - started, status: 0, error: error.message }),
    );
    req.end();
  });
}

async function pools(url) {
  return (await api(url, 'GET', '/healthz')).stemCells.filter(
    (p) => p.isolation === 'sandbox' && p.network === 'none',
  );
}

/**
 * Waits until every default pool holds its target (at most 2 minutes); first two autoscaler ticks, so that the
 * targets include the floor for the functions just deployed (config `stemCellFloor`). Returns the cells ready.
 */
async function poolsFull(url) {
  await sleep(1000);
  for (let i = 0; i < 4800; i++) {
    const all = await pools(url);
    if (all.every((p) => p.target === 0 || (p.ready >= p.target && p.starting === 0)))
      return Object.fromEntries(all.map((p) => [p.runtime, p.ready]));
    await sleep(25);
  }
  return Object.fromEntries((await pools(url)).map((p) => [p.runtime, p.ready]));
}

async function missesOf(url) {
  const all = await pools(url);
  return Object.fromEntries(all.map((p) => [p.runtime, p.misses]));
}

/** Deploys `count` copies of a runtime's hello (no verify), parked at zero; returns their names. */
async function deployMany(url, runtime, count, prefix) {
  const folder = mkdtempSync(join(tmpdir(), `hearth-burst-${runtime}-`));
  cpSync(EXAMPLES[runtime], folder, { recursive: true });
  const template = readFileSync(join(EXAMPLES[runtime], 'hearth.yaml'), 'utf8');
  const names = [];
  try {
    for (let i = 0; i < count; i++) {
      const name = `${prefix}-${SHORT[runtime]}-${i}`;
      writeFileSync(join(folder, 'hearth.yaml'), template.replace(/name: .*/, `name: ${name}`));
      await deploy(url, folder, name, { verify: false });
      names.push(name);
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
  for (const name of names) await scaleToZero(url, name);
  return names;
}

function stemCellMs(timing) {
  const match = timing.match(/cold-stemcell;dur=([\d.]+)/);
  return match === null ? 0 : Number(match[1]);
}

function check(results, what) {
  const bad = results.filter((r) => r.status !== 200);
  if (bad.length > 0)
    throw new Error(`${what}: ${bad.length} answers were not 200 (${JSON.stringify(bad[0])})`);
}

/** Deploys `count` idle functions of `runtime` and waits until the pools hold their targets; their names. */
export async function coldBurstPrepare(url, runtime, count, prefix) {
  const names = await deployMany(url, runtime, count, prefix);
  await poolsFull(url);
  return names;
}

async function backToBack(url, runtime, count, pid) {
  const names = await deployMany(url, runtime, count, 'b2b');
  const ready = await poolsFull(url);
  const before = await missesOf(url);
  const results = [];
  const byProcess = process.env.COLD_BURST_PROCS ? processCpu() : undefined;
  const cpuBefore = cpuMs();
  for (const name of names) results.push(await freshGet(url, `/function/${name}`));
  const cpuPerCall = cpuPer(cpuBefore, cpuMs(), names.length);
  const cpuByCommand = byProcess === undefined ? undefined : cpuByProcess(byProcess, pid);
  check(results, `back to back ${runtime}`);
  const after = await missesOf(url);
  const summary = summarise(results.map((r) => r.ttfb));
  return {
    n: summary.n,
    p50: round(summary.p50),
    p95: round(summary.p95),
    max: round(summary.max),
    cold: results.filter((r) => r.cold).length,
    poolMisses: (after[runtime] ?? 0) - (before[runtime] ?? 0),
    cellsReady: ready[runtime],
    cpuPerCall,
    ...(cpuByCommand === undefined ? {} : { cpuByCommand }),
    // The requests whose stem cell was ready: what a hit costs while the pool refills behind it.
    hitP50: round(summarise(results.filter((r) => stemCellMs(r.timing) < 2).map((r) => r.ttfb)).p50),
    slowestStemCellMs: round(Math.max(...results.map((r) => stemCellMs(r.timing)))),
    ...(process.env.COLD_BURST_TIMINGS === '1'
      ? { timings: results.map((r) => `${r.at.toFixed(1)} ${round(r.ttfb)} ${r.timing}`) }
      : {}),
  };
}

async function atOnce(url, count, runtimes, pid) {
  const names = [];
  for (const runtime of runtimes)
    names.push(...(await deployMany(url, runtime, count / runtimes.length, 'once')));
  const ready = await poolsFull(url);
  const before = await missesOf(url);
  const byProcess = process.env.COLD_BURST_PROCS ? processCpu() : undefined;
  const cpuBefore = cpuMs();
  const gatewayBefore = processCpuMs(pid);
  const results = await Promise.all(names.map((name) => freshGet(url, `/function/${name}`)));
  const cpuPerCall = cpuPer(cpuBefore, cpuMs(), names.length);
  const gatewayCpuPerCall = cpuPer(gatewayBefore, processCpuMs(pid), names.length);
  const cpuByCommand = byProcess === undefined ? undefined : cpuByProcess(byProcess, pid);
  const after = await missesOf(url);
  const summary = summarise(results.map((r) => r.ttfb));
  return {
    n: summary.n,
    ok: results.filter((r) => r.status === 200).length,
    p50: round(summary.p50),
    p99: round(summary.p99),
    max: round(summary.max),
    poolMisses: Object.keys(after).reduce((sum, k) => sum + after[k] - (before[k] ?? 0), 0),
    cellsReady: ready,
    cpuPerCall,
    gatewayCpuPerCall,
    ...(cpuByCommand === undefined ? {} : { cpuByCommand }),
    ...(process.env.COLD_BURST_TIMINGS === '1'
      ? { timings: results.map((r, i) => `${names[i]} ${round(r.ttfb)} ${r.timing}`) }
      : {}),
  };
}

async function sustained(url, count, clients, runtimes) {
  const share = count / runtimes.length;
  const names = [];
  for (const runtime of runtimes) names.push(...(await deployMany(url, runtime, share, 'sus')));
  // Interleave the runtimes, as a mixed node's traffic would.
  const order = names.map((_, i) => names[(i % runtimes.length) * share + Math.floor(i / runtimes.length)]);
  const ready = await poolsFull(url);
  const before = await missesOf(url);
  let next = 0;
  const results = [];
  const started = performance.now();
  const cpuBefore = cpuMs();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < order.length) {
        const name = order[next++];
        results.push(await freshGet(url, `/function/${name}`));
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpuPerCall = cpuPer(cpuBefore, cpuMs(), results.length);
  const summary = summarise(results.map((r) => r.ttfb));
  const after = await missesOf(url);
  return {
    cellsReady: ready,
    poolMisses: Object.keys(after).reduce((sum, k) => sum + after[k] - (before[k] ?? 0), 0),
    cpuPerCall,
    n: results.length,
    ok: results.filter((r) => r.status === 200).length,
    cold: results.filter((r) => r.cold).length,
    clients,
    seconds: round(seconds),
    coldPerSecond: round(results.filter((r) => r.cold && r.status === 200).length / seconds, 1),
    p50: round(summary.p50),
    p99: round(summary.p99),
  };
}

export async function coldBurstBench({
  backToBackCount = 24,
  atOnceCount = 100,
  sustainedCount = 300,
  parts = ['backToBack', 'atOnce', 'sustained'],
  // One runtime alone shows what its own cold path sustains.
  runtimes = ['node20', 'python3'],
  config = {},
} = {}) {
  const results = {};
  const hearth = await startHearth({ serverTiming: true, ...config });
  try {
    if (parts.includes('backToBack')) {
      results.backToBack = {};
      for (const runtime of runtimes)
        results.backToBack[runtime] = await backToBack(hearth.url, runtime, backToBackCount, hearth.pid);
    }
    if (parts.includes('atOnce'))
      results.atOnce = await atOnce(hearth.url, atOnceCount, runtimes, hearth.pid);
  } finally {
    await hearth.stop();
  }
  if (!parts.includes('sustained')) return results;
  // A platform of its own: the instances the parts above left are not the budget this one starts with.
  const fresh = await startHearth({ serverTiming: true, ...config });
  try {
    results.sustained = await sustained(fresh.url, sustainedCount, 4, runtimes);
  } finally {
    await fresh.stop();
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const runtimes = process.env.COLD_BURST_RUNTIMES?.split(',');
  const parts = process.env.COLD_BURST_PARTS?.split(',');
  const config = process.env.COLD_BURST_CONFIG === undefined ? {} : JSON.parse(process.env.COLD_BURST_CONFIG);
  process.stdout.write(
    `${JSON.stringify(await coldBurstBench({ ...(runtimes && { runtimes }), ...(parts && { parts }), config }), null, 2)}\n`,
  );
}
