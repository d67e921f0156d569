// `isolation: isolate` (issue 11): what one more idle function costs in a namespace's isolate host, the
// cold start of a function bound into a running host, and warm throughput against raw node:http and the
// same hello sandboxed (node20); beside it, what one more idle worker costs workerd, measured in the same run.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeFrame, T_BIND, T_INVOKE, T_RELAY } from '../dist/runtime/guest-shared/frames.mjs';
import {
  api,
  autocannon,
  deploy,
  ensureWrk,
  ROOT,
  round,
  scaleToZero,
  sleep,
  startHearth,
  summarise,
  timeToFirstByte,
  treeMemory,
  wrk,
} from './lib.mjs';
import { freePort, startNodeServer } from './warm.mjs';

const HELLO = "export default async function handler() {\n  return { hello: 'world' };\n}\n";

function folderFor(name, isolation) {
  const dir = mkdtempSync(join(tmpdir(), `hearth-isolate-bench-${name}-`));
  // A package of its own per function, as in a real namespace: the platform keeps an isolate function's
  // sources by code hash, and 200 copies of one package would measure that cache, not a first bind.
  writeFileSync(join(dir, 'index.mjs'), `// ${name}\n${HELLO}`);
  writeFileSync(
    join(dir, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec:\n  runtime: node20\n  handler: index\n  isolation: ${isolation}\n  scaling: { idleTimeout: 30m }\n`,
  );
  return dir;
}

/** Server-Timing's cold-start phases, in ms. */
function coldPhases(header) {
  const phases = {};
  for (const part of (header ?? '').split(',')) {
    const match = part.trim().match(/^cold-(\w+);dur=([\d.]+)/);
    if (match) phases[match[1]] = Number(match[2]);
  }
  return phases;
}

async function firstCall(url, path) {
  const started = performance.now();
  const response = await fetch(`${url}${path}`);
  const ttfb = performance.now() - started;
  await response.arrayBuffer();
  return {
    ttfb,
    status: response.status,
    cold: response.headers.get('x-hearth-cold-start') === '1',
    phases: coldPhases(response.headers.get('server-timing')),
  };
}

async function hostPid(url, name) {
  const detail = await api(url, 'GET', `/api/v1/namespaces/default/functions/${name}`);
  return detail.activeInstances.find((instance) => instance.state === 'ready')?.pid;
}

/**
 * workerd serving `count` hello workers, one socket each; its PSS once every worker has answered. Ports
 * are picked free, then bound by workerd: on a shared machine another process may take one between, so a
 * start that could not bind is tried again on new ports.
 */
async function workerdPss(count) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await workerdPssOnce(count);
    } catch (error) {
      if (attempt >= 3 || !/Address already in use/.test(error.message)) throw error;
    }
  }
}

async function workerdPssOnce(count) {
  const binary = join(ROOT, 'node_modules', '@cloudflare', 'workerd-linux-64', 'bin', 'workerd');
  const dir = mkdtempSync(join(tmpdir(), 'hearth-workerd-density-'));
  writeFileSync(join(dir, 'hello.js'), readFileSync(join(ROOT, 'bench', 'workerd', 'hello.js')));
  const ports = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  const services = ports.map(
    (_, i) =>
      `(name = "w${i}", worker = (modules = [(name = "worker", esModule = embed "hello.js")], compatibilityDate = "2024-09-23"))`,
  );
  const sockets = ports.map(
    (port, i) => `(name = "s${i}", address = "127.0.0.1:${port}", http = (), service = "w${i}")`,
  );
  writeFileSync(
    join(dir, 'config.capnp'),
    `using Workerd = import "/workerd/workerd.capnp";\nconst config :Workerd.Config = (\n  services = [${services.join(', ')}],\n  sockets = [${sockets.join(', ')}],\n);\n`,
  );
  const child = spawn(binary, ['serve', join(dir, 'config.capnp')], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  try {
    for (const port of ports) {
      let answered = false;
      for (let i = 0; i < 100 && !answered; i++) {
        try {
          answered = (await fetch(`http://127.0.0.1:${port}/`)).ok;
        } catch {
          await sleep(100);
        }
      }
      if (!answered) throw new Error(`workerd did not answer on ${port}: ${stderr}`);
    }
    await sleep(1000);
    return treeMemory(child.pid).pssKiB / 1024;
  } finally {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The isolate host alone, outside the platform and the sandbox, over the same protocol: how long binding
 * one more function takes inside the host (`bindMs` in its Bound frame, and its steps) and over the socket
 * there and back. `burst`: each function's first request follows its bind, and the next bind comes a
 * millisecond after that answer, as in a run of cold starts back to back (the host makes the spare the
 * bind took meanwhile); else the host is left 50 ms between binds.
 */
export async function hostBindTimes(count, { burst = false } = {}) {
  const ivmDir = realpathSync(join(ROOT, 'node_modules', 'isolated-vm'));
  const child = spawn(
    process.execPath,
    // As the platform starts it (runtime/isolate/index.ts, nodeLaunch).
    [
      '--no-node-snapshot',
      '--max-semi-space-size=1',
      join(ROOT, 'dist', 'runtime', 'isolate', 'guest', 'isolate-host.mjs'),
    ],
    { stdio: ['ignore', 'inherit', 'inherit', 'pipe'], env: { ...process.env, HEARTH_ISOLATED_VM: ivmDir } },
  );
  const channel = child.stdio[3];
  let pending = Buffer.alloc(0);
  const waiters = [];
  channel.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
      const length = pending.readUInt32BE(0);
      const frame = pending.subarray(0, 4 + length);
      pending = pending.subarray(4 + length);
      waiters.shift()?.(frame);
    }
  });
  const next = () => new Promise((resolve) => waiters.push(resolve));
  try {
    await next();
    await sleep(500);
    const roundTrip = [];
    const inside = [];
    const steps = { take: [], compile: [], run: [], handler: [] };
    let spares = 0;
    for (let id = 1; id <= count; id++) {
      const started = performance.now();
      channel.write(encodeFrame(T_RELAY, id, { open: { files: { 'index.mjs': HELLO } } }));
      const bind = {
        namespace: 'bench',
        functionName: `f${id}`,
        version: 1,
        handler: 'index',
        codeDir: '/code',
        env: {},
        eventFormat: 'auto',
        memoryMiB: 128,
        timeoutMs: 10_000,
        maxBodyBytes: 6 * 1024 * 1024,
      };
      channel.write(encodeFrame(T_RELAY, id, null, encodeFrame(T_BIND, 0, bind)));
      const bound = await next();
      roundTrip.push(performance.now() - started);
      const meta = JSON.parse(bound.slice(13 + 4 + 13, 13 + 4 + 13 + bound.readUInt32BE(13 + 4 + 9)));
      inside.push(meta.bindMs ?? Number.NaN);
      for (const step of Object.keys(steps)) steps[step].push(meta.bindSteps?.[step] ?? Number.NaN);
      if (meta.bindSteps?.spare === true) spares += 1;
      if (burst) {
        channel.write(
          encodeFrame(
            T_RELAY,
            id,
            null,
            encodeFrame(T_INVOKE, 1, [`i${id}`, 'GET', '/', '', [], Date.now() + 10_000, '127.0.0.1']),
          ),
        );
        await next();
        await sleep(1);
      } else {
        // A spare isolate is made after each take, off the bind's path (with no request to answer, once the
        // host has read nothing for 20 ms): leave it the time to.
        await sleep(50);
      }
    }
    const r = summarise(roundTrip);
    const i = summarise(inside);
    return {
      n: count,
      inside: { p50: round(i.p50, 3), p99: round(i.p99, 3) },
      roundTrip: { p50: round(r.p50), p99: round(r.p99) },
      // Medians of each step of the bind inside the host (ms), and how many binds found a spare.
      steps: Object.fromEntries(
        Object.entries(steps).map(([step, ms]) => [step, round(summarise(ms).p50, 3)]),
      ),
      spares,
    };
  } finally {
    child.kill();
  }
}

export async function isolateBench({ functions = 200, seconds = 5, rounds = 3 } = {}) {
  const hearth = await startHearth({ maxInstances: functions + 50 });
  const folders = [];
  const raw = await startNodeServer('raw-server.mjs');
  try {
    // One function first: its host boots (the namespace's first isolate function pays a Node start).
    const names = [];
    for (let i = 0; i < functions; i++) {
      const name = `iso-${i}`;
      const folder = folderFor(name, 'isolate');
      folders.push(folder);
      await deploy(hearth.url, folder, name, { verify: false });
      await scaleToZero(hearth.url, name);
      names.push(name);
    }
    const sandboxFolder = folderFor('sandboxed-hello', 'sandbox');
    folders.push(sandboxFolder);
    await deploy(hearth.url, sandboxFolder, 'sandboxed-hello');
    // The host boots with the first call; the rest bind into it.
    const first = await firstCall(hearth.url, `/function/${names[0]}`);
    if (first.status !== 200) throw new Error(`first isolate call: ${first.status}`);
    const pid = await hostPid(hearth.url, names[0]);
    await sleep(500);
    const base = treeMemory(pid).pssKiB / 1024;
    const ttfb = [];
    const bind = [];
    const server = [];
    for (const name of names.slice(1)) {
      const answer = await firstCall(hearth.url, `/function/${name}`);
      if (answer.status !== 200 || !answer.cold)
        throw new Error(`${name}: ${answer.status} cold=${answer.cold}`);
      ttfb.push(answer.ttfb);
      bind.push(answer.phases.load ?? Number.NaN);
      server.push(
        (answer.phases.code ?? 0) +
          (answer.phases.stemcell ?? 0) +
          (answer.phases.attach ?? 0) +
          (answer.phases.load ?? 0),
      );
    }
    await sleep(1000);
    const all = treeMemory(pid).pssKiB / 1024;
    const perFunctionMiB = (all - base) / (names.length - 1);
    const sameHost = (await hostPid(hearth.url, names.at(-1))) === pid;

    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    await timeToFirstByte(hearth.url, `/function/${names[0]}`, agent);
    agent.destroy();
    const tool = ensureWrk() ? 'wrk' : 'autocannon';
    const load = (url, s) =>
      tool === 'wrk'
        ? wrk(url, { connections: 50, seconds: s })
        : autocannon(url, { connections: 50, seconds: s });
    const targets = [
      ['raw node:http', raw.url],
      ['hearth, isolation: sandbox', `${hearth.url}/function/sandboxed-hello`],
      ['hearth, isolation: isolate', `${hearth.url}/function/${names[0]}`],
    ];
    const warm = Object.fromEntries(targets.map(([name]) => [name, []]));
    for (let r = 0; r < rounds; r++)
      for (const [name, url] of targets) {
        await sleep(500);
        await load(url, 1);
        warm[name].push(await load(url, seconds));
      }
    const median = (values) => {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)];
    };
    const warmSummary = Object.fromEntries(
      Object.entries(warm).map(([name, runs]) => [
        name,
        {
          rps: Math.round(median(runs.map((run) => run.rps))),
          p50: round(median(runs.map((run) => run.p50))),
          p99: round(median(runs.map((run) => run.p99))),
          errors: runs.reduce((sum, run) => sum + run.errors, 0),
        },
      ]),
    );

    const hostBind = await hostBindTimes(100);
    const hostBindBurst = await hostBindTimes(100, { burst: true });
    let workerd;
    try {
      const one = await workerdPss(1);
      const many = await workerdPss(51);
      workerd = { baseMiB: round(one, 1), perWorkerMiB: round((many - one) / 50, 2) };
    } catch (error) {
      workerd = { unavailable: error.message.split('\n')[0] };
    }
    const ttfbSummary = summarise(ttfb);
    const serverSummary = summarise(server);
    const bindSummary = summarise(bind);
    return {
      functions,
      sameHost,
      hostBaseMiB: round(base, 1),
      hostAllMiB: round(all, 1),
      perFunctionMiB: round(perFunctionMiB, 2),
      coldTtfb: { n: ttfbSummary.n, p50: round(ttfbSummary.p50), p99: round(ttfbSummary.p99) },
      coldServer: { p50: round(serverSummary.p50), p99: round(serverSummary.p99) },
      coldBind: { p50: round(bindSummary.p50), p99: round(bindSummary.p99) },
      hostBind,
      hostBindBurst,
      warm: warmSummary,
      workerd,
      tool,
    };
  } finally {
    raw.stop();
    await hearth.stop();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  mkdirSync(join(ROOT, 'bench', '.work'), { recursive: true });
  process.stdout.write(`${JSON.stringify(await isolateBench(), null, 2)}\n`);
}
