// Warm invocation through the gateway vs a raw node:http hello server (and the same hello parsed by hand on
// node:net, for what HTTP costs without node:http) vs workerd, under the same load, with
// the CPU each server's front process (the one parsing HTTP) and its whole process tree spent per request.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  autocannon,
  deploy,
  ensureWrk,
  processTree,
  ROOT,
  round,
  sleep,
  startHearth,
  timeToFirstByte,
  wrk,
} from './lib.mjs';

export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startNodeServer(script) {
  const child = spawn(process.execPath, [join(ROOT, 'bench', script)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return { url: `http://127.0.0.1:${JSON.parse(line).port}/`, pid: child.pid, stop: () => child.kill() };
}

/** CPU time (user + system, in clock ticks of 10 ms) of a process, and of it with all its descendants. */
function cpuTicks(pid) {
  const own = (id) => {
    try {
      const fields = readFileSync(`/proc/${id}/stat`, 'utf8').split(') ')[1].split(' ');
      return Number(fields[11]) + Number(fields[12]);
    } catch {
      return 0;
    }
  };
  return { front: own(pid), tree: processTree(pid).reduce((sum, id) => sum + own(id), 0) };
}

async function startWorkerd() {
  const binary = join(ROOT, 'node_modules', '@cloudflare', 'workerd-linux-64', 'bin', 'workerd');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'hearth-workerd-'));
  writeFileSync(join(dir, 'hello.js'), readFileSync(join(ROOT, 'bench', 'workerd', 'hello.js')));
  writeFileSync(
    join(dir, 'config.capnp'),
    readFileSync(join(ROOT, 'bench', 'workerd', 'config.capnp.template'), 'utf8').replace(
      'PORT',
      String(port),
    ),
  );
  const child = spawn(binary, ['serve', join(dir, 'config.capnp')], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const pid = child.pid;
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const url = `http://127.0.0.1:${port}/`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url)).ok) {
        const stop = () => {
          child.kill();
          rmSync(dir, { recursive: true, force: true });
        };
        return { url, pid, stop };
      }
    } catch {
      await sleep(100);
    }
  }
  child.kill();
  throw new Error(`workerd did not start: ${stderr}`);
}

export async function warmBench({ seconds = 10, connections = 50, rounds = 2 } = {}) {
  const tool = ensureWrk() ? 'wrk' : 'autocannon';
  const load = (url) =>
    tool === 'wrk' ? wrk(url, { connections, seconds }) : autocannon(url, { connections, seconds });
  const raw = await startNodeServer('raw-server.mjs');
  const rawNet = await startNodeServer('raw-net-server.mjs');
  const hearth = await startHearth();
  await deploy(hearth.url, join(ROOT, 'bench', 'functions', 'bench-hello'), 'bench-hello');
  const check = await timeToFirstByte(hearth.url, '/function/bench-hello', false);
  if (check.body !== '{"hello":"world"}') throw new Error(`unexpected hello body: ${check.body}`);
  let workerd;
  try {
    if (process.env.NO_WORKERD === undefined) workerd = await startWorkerd();
  } catch (error) {
    process.stderr.write(`workerd unavailable: ${error.message}\n`);
  }
  const targets = [
    ['raw node:http', raw.url, raw.pid],
    ['raw node:net, lean HTTP/1.1 parser', rawNet.url, rawNet.pid],
    ['hearth gateway', `${hearth.url}/function/bench-hello`, hearth.pid],
    ...(workerd ? [['workerd', workerd.url, workerd.pid]] : []),
  ];
  const results = Object.fromEntries(targets.map(([name]) => [name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const [name, url, pid] of targets) {
      // A pause between servers lets the previous one's connections drain and its process go idle.
      await sleep(1000);
      await (tool === 'wrk'
        ? wrk(url, { connections, seconds: 2 })
        : autocannon(url, { connections, seconds: 2 }));
      const before = cpuTicks(pid);
      const run = await load(url);
      const after = cpuTicks(pid);
      // Microseconds of CPU per request: a tick is 10 ms.
      const perRequest = (ticks) => (ticks * 10_000) / (run.rps * seconds);
      run.frontCpuUs = perRequest(after.front - before.front);
      run.treeCpuUs = perRequest(after.tree - before.tree);
      results[name].push(run);
    }
  }
  raw.stop();
  rawNet.stop();
  workerd?.stop();
  await hearth.stop();
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const summary = {};
  for (const [name, runs] of Object.entries(results)) {
    summary[name] = {
      rps: round(median(runs.map((r) => r.rps)), 0),
      p50: round(median(runs.map((r) => r.p50))),
      p99: round(median(runs.map((r) => r.p99))),
      errors: runs.reduce((sum, r) => sum + r.errors, 0),
      frontCpuUs: round(median(runs.map((r) => r.frontCpuUs)), 1),
      treeCpuUs: round(median(runs.map((r) => r.treeCpuUs)), 1),
      runs,
    };
  }
  // Ratios are taken round by round (hearth against the raw server measured just before it) and the
  // median of those reported: the machine's speed drifts over a run, and adjacent runs share its state.
  const raws = results['raw node:http'];
  const ours = results['hearth gateway'];
  return {
    tool,
    connections,
    seconds,
    rounds,
    summary,
    throughputRatio: round(median(ours.map((r, i) => r.rps / raws[i].rps))),
    p99Ratio: round(median(ours.map((r, i) => r.p99 / raws[i].p99))),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await warmBench(), null, 2)}\n`);
}
