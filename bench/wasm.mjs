// WebAssembly functions (issue 14): cold start to first byte of distinct idle wasm functions (a fresh
// connection each), for both ABIs, in the namespace's wasm host (isolation: isolate, the host up, the function
// without an instance) and in a sandboxed process per instance (the stem-cell pool full, as in the cold
// section), beside node20's in the same platform; then warm throughput of the Rust hello (WASI command) and
// the compute example (exported function), both ways, against the Node hello and a raw node:http hello, under
// the same load in the same run. `node bench/wasm.mjs --cold` prints the cold starts alone.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeFrame,
  T_BIND,
  T_ERROR,
  T_INVOKE,
  T_RELAY,
  T_RESULT,
} from '../dist/runtime/guest-shared/frames.mjs';
import { buildWasmModules } from '../test/support/wasm/build.mjs';
import {
  alternatingRuns,
  api,
  deploy,
  loadGenerator,
  median,
  medianRun,
  ROOT,
  round,
  scaleToZero,
  sleep,
  startHearth,
  summarise,
  timeToFirstByte,
} from './lib.mjs';
import { startNodeServer } from './warm.mjs';

async function poolReady(url, runtime, isolation = 'sandbox') {
  for (let i = 0; i < 400; i++) {
    const health = await api(url, 'GET', '/healthz');
    const pool = health.stemCells.find(
      (p) => p.runtime === runtime && p.isolation === isolation && p.network === 'none',
    );
    if (pool === undefined || pool.target === 0 || (pool.ready >= pool.target && pool.starting === 0)) return;
    await sleep(25);
  }
}

/**
 * A function folder for `module`. `isolation: isolate` runs it in the namespace's wasm host; `distinct`
 * appends a custom section naming the function, so its bytes (and content hash) are its own and its first
 * bind compiles it, where identical bytes share the host's compiled module.
 */
function wasmFolder(module, name, handler, { isolation = 'sandbox', distinct = false } = {}) {
  const folder = mkdtempSync(join(tmpdir(), `hearth-bench-wasm-${name}-`));
  if (distinct) {
    const tag = Buffer.from(`hearth-bench-${name}`);
    const custom = Buffer.concat([Buffer.from([0, tag.length + 1, tag.length]), tag]);
    writeFileSync(join(folder, 'main.wasm'), Buffer.concat([readFileSync(module), custom]));
  } else copyFileSync(module, join(folder, 'main.wasm'));
  writeFileSync(
    join(folder, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: { runtime: wasm, handler: ${handler}, isolation: ${isolation} }\n`,
  );
  return folder;
}

/** Time to first byte on an open keep-alive connection, and the platform's Server-Timing phases (ms). */
function firstByte(url, agent) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(url, { agent }, (res) => {
      const ttfb = performance.now() - started;
      const phases = {};
      for (const part of String(res.headers['server-timing'] ?? '').split(',')) {
        const match = part.trim().match(/^([\w-]+);dur=([\d.]+)/);
        if (match) phases[match[1]] = Number(match[2]);
      }
      res.resume();
      res.on('end', () =>
        resolve({ ttfb, status: res.statusCode, cold: res.headers['x-hearth-cold-start'] === '1', phases }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** Cold start of `count` distinct functions made by `make(i)`, one at a time, each on a fresh connection. */
/**
 * Cold starts of the rows' distinct functions (`make(i)` each), one at a time, each on a fresh connection;
 * the rows take turns (sample i of every row, then i + 1), so a machine whose load drifts weighs on all alike.
 */
async function coldRows(hearth, rows) {
  const samples = rows.map(() => []);
  const phases = rows.map(() => []);
  const most = Math.max(...rows.map((row) => row.count));
  for (let i = 0; i < most; i++) {
    for (const [index, row] of rows.entries()) {
      if (i >= row.count) continue;
      const { folder, name, path } = row.make(i);
      await deploy(hearth.url, folder, name, { verify: false });
      rmSync(folder, { recursive: true, force: true });
      await scaleToZero(hearth.url, name);
      await poolReady(hearth.url, row.runtime, row.isolation ?? 'sandbox');
      // A fresh connection per cold start, opened before the clock starts (as the cold section does).
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      await timeToFirstByte(hearth.url, '/healthz', agent);
      const result = await firstByte(`${hearth.url}/function/${name}${path}`, agent);
      agent.destroy();
      if (result.status !== 200 || !result.cold)
        throw new Error(`${name}: expected a cold 200, got ${result.status} cold=${result.cold}`);
      samples[index].push(result.ttfb);
      phases[index].push(result.phases);
    }
  }
  const health = await api(hearth.url, 'GET', '/healthz');
  const out = {};
  for (const [index, row] of rows.entries()) {
    const pool = health.stemCells.find(
      (p) =>
        p.runtime === row.runtime && p.isolation === (row.isolation ?? 'sandbox') && p.network === 'none',
    );
    const summary = summarise(samples[index]);
    const medianOf = (key) => round(summarise(phases[index].map((p) => p[key] ?? 0)).p50, 3);
    out[row.label] = {
      n: summary.n,
      p50: round(summary.p50, 3),
      p95: round(summary.p95, 3),
      p99: round(summary.p99, 3),
      min: round(summary.min, 3),
      poolMisses: pool?.misses ?? 0,
      // Medians of the platform's own Server-Timing phases: where a cold start's time goes.
      phasesP50: Object.fromEntries(
        ['cold-code', 'cold-stemcell', 'cold-attach', 'cold-load', 'exec'].map((key) => [key, medianOf(key)]),
      ),
    };
  }
  return out;
}

/**
 * The wasm host alone, outside the platform and the sandbox, over the same protocol (as bench/isolate.mjs
 * measures the isolate host): a new member's open, Bind and first Invoke written at once, to its Result.
 * What the host itself adds to a cold start, without the platform's phases and the machine's HTTP.
 */
export async function hostAloneColdStarts(modules, count) {
  const child = spawn(
    process.execPath,
    [
      '--no-warnings',
      '--wasm-lazy-compilation',
      '--wasm-lazy-validation',
      join(ROOT, 'dist', 'runtime', 'wasm', 'guest', 'wasm-host.mjs'),
    ],
    { stdio: ['ignore', 'inherit', 'inherit', 'pipe'] },
  );
  const channel = child.stdio[3];
  let pending = Buffer.alloc(0);
  const frames = [];
  let wake;
  channel.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
      const length = pending.readUInt32BE(0);
      frames.push(pending.subarray(0, 4 + length));
      pending = pending.subarray(4 + length);
    }
    wake?.();
  });
  const next = async () => {
    while (frames.length === 0) await new Promise((resolve) => (wake = resolve));
    return frames.shift();
  };
  // A member's Result or Error (type 18 or 19 inside a Relay frame whose meta is null).
  const answer = async () => {
    for (;;) {
      const frame = await next();
      if (frame[4] !== 25 || frame.readUInt32BE(9) !== 4) continue;
      const inner = frame.subarray(17);
      if (inner[4] === T_RESULT || inner[4] === T_ERROR) return inner[4];
    }
  };
  try {
    await next();
    await sleep(500);
    const out = {};
    let member = 0;
    for (const [label, file, handler, body] of [
      ['WASI command (Rust hello)', modules.helloRust, 'main', undefined],
      ['exported function (Rust compute)', modules.computeRust, 'main.handle', Buffer.from('hello')],
    ]) {
      const bytes = readFileSync(file);
      const hash = createHash('sha256').update(bytes).digest('hex');
      const times = [];
      // The first member of a module pays its compilation (the "bytes of its own" row): not counted.
      for (let i = 0; i <= count; i++) {
        member += 1;
        const bind = {
          namespace: 'bench',
          functionName: `f${member}`,
          version: 1,
          handler,
          codeDir: '/code',
          env: {},
          eventFormat: 'auto',
          memoryMiB: 128,
          timeoutMs: 10_000,
          maxBodyBytes: 6 * 1024 * 1024,
        };
        const wire = ['bench', 'GET', '/', '', ['host', 'bench'], Date.now() + 10_000, '127.0.0.1'];
        const started = performance.now();
        channel.write(
          Buffer.concat([
            encodeFrame(
              T_RELAY,
              member,
              { open: { wasm: { hash, file: 'main.wasm' } } },
              i === 0 ? bytes : undefined,
            ),
            encodeFrame(
              T_RELAY,
              member,
              null,
              Buffer.concat([encodeFrame(T_BIND, 0, bind), encodeFrame(T_INVOKE, 1, wire, body)]),
            ),
          ]),
        );
        if ((await answer()) !== 18) throw new Error(`wasm host alone: ${label} did not answer a Result`);
        if (i > 0) times.push(performance.now() - started);
        await sleep(20);
      }
      const summary = summarise(times);
      out[label] = { n: summary.n, p50: round(summary.p50, 3), p99: round(summary.p99, 3) };
    }
    return out;
  } finally {
    child.kill();
  }
}

export async function wasmBench({
  count = 24,
  seconds = 5,
  connections = 50,
  rounds = 3,
  coldOnly = false,
} = {}) {
  const modules = buildWasmModules();
  const results = { cold: {}, warm: {}, hostAlone: await hostAloneColdStarts(modules, count * 2) };
  const hearth = await startHearth();
  try {
    // The wasm host's first function boots the namespace's host, which is then up for the measured ones:
    // a cold start there is "the function has no instance".
    const hosted = { isolation: 'isolate' };
    await coldRows(hearth, [
      {
        label: 'boot',
        runtime: 'wasm',
        isolation: 'isolate',
        count: 1,
        make: () => ({
          folder: wasmFolder(modules.helloRust, 'wasm-host-boot', 'main', hosted),
          name: 'wasm-host-boot',
          path: '',
        }),
      },
    ]);
    const row = (label, module, prefix, handler, count, options = {}) => ({
      label,
      runtime: 'wasm',
      isolation: options.isolation ?? 'sandbox',
      count,
      make: (i) => ({
        folder: wasmFolder(module, `${prefix}-${i}`, handler, options),
        name: `${prefix}-${i}`,
        path: '',
      }),
    });
    results.cold = await coldRows(hearth, [
      row('wasm host, WASI command (Rust hello)', modules.helloRust, 'wasm-host-cmd', 'main', count, hosted),
      row('wasm, WASI command (Rust hello)', modules.helloRust, 'wasm-cmd', 'main', count),
      row(
        'wasm host, exported function (Rust compute)',
        modules.computeRust,
        'wasm-host-export',
        'main.handle',
        count,
        hosted,
      ),
      row('wasm, exported function (Rust compute)', modules.computeRust, 'wasm-export', 'main.handle', count),
      row(
        'wasm host, WASI command (Rust hello), bytes of its own: compiled at its first bind',
        modules.helloRust,
        'wasm-host-own',
        'main',
        count,
        { ...hosted, distinct: true },
      ),
      row(
        'wasm host, WASI command (Go hello)',
        modules.helloGo,
        'wasm-host-go',
        'main',
        Math.min(count, 8),
        hosted,
      ),
      row('wasm, WASI command (Go hello)', modules.helloGo, 'wasm-go', 'main', Math.min(count, 8)),
      {
        label: 'node20 (Node hello), same run',
        runtime: 'node20',
        count,
        make: (i) => {
          const folder = mkdtempSync(join(tmpdir(), 'hearth-bench-node-'));
          copyFileSync(join(ROOT, 'examples', 'hello', 'index.mjs'), join(folder, 'index.mjs'));
          writeFileSync(
            join(folder, 'hearth.yaml'),
            `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: node-cold-${i} }\nspec: { runtime: node20, handler: index }\n`,
          );
          return { folder, name: `node-cold-${i}`, path: '' };
        },
      },
    ]);
    if (coldOnly) return results;

    const { tool, load } = loadGenerator();
    const helloFolder = wasmFolder(modules.helloRust, 'wasm-hello', 'main');
    const computeFolder = wasmFolder(modules.computeRust, 'wasm-compute', 'main.handle');
    const hostedHelloFolder = wasmFolder(modules.helloRust, 'wasm-host-hello', 'main', hosted);
    const hostedComputeFolder = wasmFolder(modules.computeRust, 'wasm-host-compute', 'main.handle', hosted);
    await deploy(hearth.url, helloFolder, 'wasm-hello');
    await deploy(hearth.url, computeFolder, 'wasm-compute');
    await deploy(hearth.url, hostedHelloFolder, 'wasm-host-hello');
    await deploy(hearth.url, hostedComputeFolder, 'wasm-host-compute');
    rmSync(hostedHelloFolder, { recursive: true, force: true });
    rmSync(hostedComputeFolder, { recursive: true, force: true });
    await deploy(hearth.url, join(ROOT, 'bench', 'functions', 'bench-hello'), 'bench-hello');
    rmSync(helloFolder, { recursive: true, force: true });
    rmSync(computeFolder, { recursive: true, force: true });
    const raw = await startNodeServer('raw-server.mjs');
    const targets = [
      ['raw node:http', raw.url],
      ['hearth, node20 hello', `${hearth.url}/function/bench-hello`],
      ['hearth, wasm WASI command (Rust hello)', `${hearth.url}/function/wasm-hello`],
      ['hearth, wasm exported function (Rust compute)', `${hearth.url}/function/wasm-compute`],
      ['hearth, wasm host, WASI command (Rust hello)', `${hearth.url}/function/wasm-host-hello`],
      ['hearth, wasm host, exported function (Rust compute)', `${hearth.url}/function/wasm-host-compute`],
    ];
    // Rounds alternate the servers (the machine is shared and drifts); medians over the rounds, and each
    // ratio the median of per-round ratios against the raw server and the Node hello of the same round.
    let runs;
    try {
      runs = await alternatingRuns(
        targets,
        { rounds, seconds, connections, pauseMs: 1000, warmupSeconds: 2 },
        load,
      );
    } finally {
      raw.stop();
    }
    const rawRuns = runs['raw node:http'];
    const nodeRuns = runs['hearth, node20 hello'];
    for (const [name, list] of Object.entries(runs)) {
      results.warm[name] = {
        ...medianRun(list),
        vsRaw: round(median(list.map((r, i) => r.rps / rawRuns[i].rps))),
        vsNodeHello: round(median(list.map((r, i) => r.rps / nodeRuns[i].rps))),
      };
    }
    results.rounds = rounds;
    results.tool = tool;
    results.connections = connections;
    results.seconds = seconds;
  } finally {
    await hearth.stop();
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const coldOnly = process.argv.includes('--cold');
  process.stdout.write(`${JSON.stringify(await wasmBench({ coldOnly }), null, 2)}\n`);
}
