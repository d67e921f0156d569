// Shared benchmark plumbing: start servers, deploy functions, generate load, summarise latencies.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as tar from 'tar';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = join(ROOT, 'bin', 'hearth.js');

export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

export function summarise(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    min: sorted[0],
    max: sorted.at(-1),
  };
}

export const round = (value, digits = 2) => Number(value.toFixed(digits));

/** Starts `hearth up` with a config file; resolves when it logs "hearth ready". */
export async function startHearth(config = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-bench-'));
  const configFile = join(dataDir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify({ logLevel: 'warn', ...config }));
  const child = spawn(
    process.execPath,
    [BIN, 'up', '--port', '0', '--data-dir', join(dataDir, 'data'), '--no-examples', '--config', configFile],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  // Keep the last of the platform's JSON log for errors; unread, a full pipe would block its event loop.
  let stdout = '';
  child.stdout.on('data', (chunk) => {
    stdout = (stdout + chunk).slice(-20_000);
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hearth did not start:\n${stderr}`)), 60_000);
    child.once('exit', (code) => reject(new Error(`hearth exited ${code}:\n${stderr}`)));
    createInterface({ input: child.stderr }).on('line', (line) => {
      const match = line.match(/listening on (https?:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return {
    url,
    dataDir: join(dataDir, 'data'),
    pid: child.pid,
    log: () => stdout,
    stderr: () => stderr,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function packFolder(folder) {
  const chunks = [];
  for await (const chunk of tar.c({ gzip: true, cwd: folder, portable: true }, readdirSync(folder)))
    chunks.push(chunk);
  return Buffer.concat(chunks);
}

export async function deploy(url, folder, name, { namespace = 'default', verify = true } = {}) {
  const started = performance.now();
  const response = await fetch(
    `${url}/api/v1/namespaces/${namespace}/functions/${name}/deploy${verify ? '' : '?verify=false'}`,
    {
      method: 'POST',
      headers: { 'content-type': 'application/gzip' },
      body: await packFolder(folder),
    },
  );
  const body = await response.json();
  if (!response.ok) throw new Error(`deploy ${name} failed: ${JSON.stringify(body)}`);
  return { ms: performance.now() - started, body };
}

export async function api(url, method, path) {
  const response = await fetch(`${url}${path}`, { method });
  return response.json();
}

/** Time to the response's first byte (headers) on an already-open keep-alive connection. */
export function timeToFirstByte(url, path, agent) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(`${url}${path}`, { agent }, (res) => {
      const ttfb = performance.now() - started;
      const cold = res.headers['x-hearth-cold-start'] === '1';
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ ttfb, status: res.statusCode, cold, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

export function ensureWrk() {
  if (spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined) return true;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) return false;
  process.stderr.write('bench setup: installing wrk (apt-get)\n');
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', 'wrk'], {
      stdio: 'ignore',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    execFileSync('apt-get', ['install', '-y', '-qq', 'wrk'], {
      stdio: 'ignore',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  }
  return spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined;
}

function toMs(value, unit) {
  const n = Number(value);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

/** Closed-loop load with wrk (C, one thread: leaves the most CPU to the servers under test). */
export function wrk(target, { connections, seconds }) {
  const out = execFileSync('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', target], {
    encoding: 'utf8',
  });
  const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1]);
  const latency = (p) => {
    const match = out.match(new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`));
    return match ? toMs(match[1], match[2]) : Number.NaN;
  };
  const errors =
    Number(out.match(/Non-2xx or 3xx responses:\s+(\d+)/)?.[1] ?? 0) +
    Number(out.match(/Socket errors:.*?timeout (\d+)/)?.[1] ?? 0);
  return { rps, p50: latency(50), p99: latency(99), errors };
}

export async function autocannon(target, { connections, seconds }) {
  const { default: run } = await import('autocannon');
  const result = await run({ url: target, connections, duration: seconds });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors,
  };
}

/** The middle value (the upper of the two middle ones for an even count). */
export function median(values) {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

/** wrk where it can be had, else autocannon: the tool's name and a `load(url, { connections, seconds })`. */
export function loadGenerator() {
  const tool = ensureWrk() ? 'wrk' : 'autocannon';
  return { tool, load: (url, options) => (tool === 'wrk' ? wrk(url, options) : autocannon(url, options)) };
}

/**
 * Warm load on several targets (`[name, url]` pairs), in rounds that alternate them (a shared machine
 * drifts): each run after a pause and a short warm-up run. The runs of each target, by name.
 */
export async function alternatingRuns(
  targets,
  { rounds, seconds, connections, pauseMs, warmupSeconds },
  load = loadGenerator().load,
) {
  const runs = Object.fromEntries(targets.map(([name]) => [name, []]));
  for (let turn = 0; turn < rounds; turn++)
    for (const [name, url] of targets) {
      await sleep(pauseMs);
      await load(url, { connections, seconds: warmupSeconds });
      runs[name].push(await load(url, { connections, seconds }));
    }
  return runs;
}

/** Runs of one target as medians (requests per second, p50, p99), their errors summed. */
export function medianRun(runs) {
  return {
    rps: round(median(runs.map((run) => run.rps)), 0),
    p50: round(median(runs.map((run) => run.p50))),
    p99: round(median(runs.map((run) => run.p99))),
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
  };
}

/** A process and all its descendants, parents first; processes that have gone are left out. */
export function processTree(pid) {
  const pids = [];
  const visit = (id) => {
    try {
      const tasks = readdirSync(`/proc/${id}/task`);
      pids.push(Number(id));
      for (const task of tasks) {
        for (const child of readFileSync(`/proc/${id}/task/${task}/children`, 'utf8').trim().split(/\s+/))
          if (child) visit(child);
      }
    } catch {
      // the process went away
    }
  };
  visit(pid);
  return pids;
}

/** Resident, proportional and anonymous memory (KiB) of a process and all its descendants. */
export function treeMemory(pid) {
  let rss = 0;
  let pss = 0;
  let anonymous = 0;
  for (const id of processTree(pid)) {
    try {
      const rollup = readFileSync(`/proc/${id}/smaps_rollup`, 'utf8');
      rss += Number(rollup.match(/^Rss:\s+(\d+)/m)?.[1] ?? 0);
      pss += Number(rollup.match(/^Pss:\s+(\d+)/m)?.[1] ?? 0);
      anonymous += Number(rollup.match(/^Anonymous:\s+(\d+)/m)?.[1] ?? 0);
    } catch {
      // the process went away
    }
  }
  // Anonymous: the process's own memory (heap, stacks), the part PSS does not share out with other processes.
  return { rssKiB: rss, pssKiB: pss, anonymousKiB: anonymous };
}

export function machine() {
  const cpus = readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.+)/)?.[1] ?? 'unknown';
  const cores = readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm)?.length ?? 0;
  return { cpu: cpus, cores, node: process.version };
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes bench/RESULTS.md aligned the way `npm run lint` expects (Biome formats Markdown tables too). */
export function writeResults(text) {
  const file = join(ROOT, 'bench', 'RESULTS.md');
  writeFileSync(file, text.endsWith('\n') ? text : `${text}\n`);
  spawnSync(join(ROOT, 'node_modules', '.bin', 'biome'), ['format', '--write', file], { stdio: 'ignore' });
}

/**
 * Releases a function's instances and parks it at zero until its next request. A fresh deploy starts (or
 * pre-warms) one instance, like Knative's initial scale of 1; cold-start benchmarks need none.
 */
export async function scaleToZero(url, name, namespace = 'default') {
  const response = await fetch(`${url}/api/v1/namespaces/${namespace}/functions/${name}/instances`, {
    method: 'DELETE',
  });
  if (!response.ok) throw new Error(`scale ${name} to zero: ${response.status} ${await response.text()}`);
  await response.arrayBuffer();
}
