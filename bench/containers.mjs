// Container functions (issue 17, run half): cold start of a cached image to first byte, a fresh connection
// each; warm throughput of the static Go image against the Node source hello and raw node:http; idle
// memory (PSS) of a container instance next to a sandboxed node20 one. Images are the test images
// (test/support/container-images.mjs), built once and cached under ~/.cache/hearth-test-images.
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { goHttpImage, nodeLambdaImage, pythonLambdaImage } from '../test/support/container-images.mjs';
import {
  api,
  autocannon,
  deploy,
  ensureWrk,
  medianRun,
  ROOT,
  round,
  scaleToZero,
  sleep,
  startHearth,
  summarise,
  treeMemory,
  wrk,
} from './lib.mjs';

/** Time to the first byte of the answer on a connection opened for this request alone. */
function freshTimeToFirstByte(url) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(url, { agent: false }, (res) => {
      const ttfb = performance.now() - started;
      res.resume();
      res.on('end', () =>
        resolve({ ttfb, status: res.statusCode, cold: res.headers['x-hearth-cold-start'] === '1' }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

function imageFolder(name, spec) {
  const folder = mkdtempSync(join(tmpdir(), `hearth-bench-${name}-`));
  writeFileSync(
    join(folder, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: ${spec}\n`,
  );
  return folder;
}

/** Waits until the pool of `runtime/isolation` has its target of ready cells. */
async function poolReady(url, runtime, isolation) {
  for (let i = 0; i < 400; i++) {
    const health = await api(url, 'GET', '/healthz');
    const pool = health.stemCells.find((p) => p.runtime === runtime && p.isolation === isolation);
    if (pool !== undefined && pool.ready >= Math.max(1, pool.target) && pool.starting === 0) return;
    await sleep(25);
  }
}

async function coldStarts(hearth, { count, spec, runtime, isolation, prefix }) {
  const samples = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${i}`;
    const folder = imageFolder(name, spec);
    await deploy(hearth.url, folder, name, { verify: i === 0 });
    rmSync(folder, { recursive: true, force: true });
    await scaleToZero(hearth.url, name);
    await poolReady(hearth.url, runtime, isolation);
    await sleep(50);
    const result = await freshTimeToFirstByte(`${hearth.url}/function/${name}`);
    if (result.status < 200 || result.status > 299 || !result.cold)
      throw new Error(`${name}: expected a cold 2xx, got ${result.status} cold=${result.cold}`);
    samples.push(result.ttfb);
  }
  const summary = summarise(samples);
  return { n: summary.n, p50: round(summary.p50), p95: round(summary.p95), min: round(summary.min) };
}

async function startRawServer() {
  const child = spawn(process.execPath, [join(ROOT, 'bench', 'raw-server.mjs')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return { url: `http://127.0.0.1:${JSON.parse(line).port}/`, stop: () => child.kill() };
}

async function load(target, options) {
  return ensureWrk() ? wrk(target, options) : autocannon(target, options);
}

async function instanceMemory(hearth, name) {
  await sleep(1500);
  const detail = await api(hearth.url, 'GET', `/api/v1/namespaces/default/functions/${name}`);
  const memory = detail.activeInstances.map((instance) => treeMemory(instance.pid));
  const mean = (values) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  return {
    rssMiB: round(mean(memory.map((m) => m.rssKiB)) / 1024, 1),
    pssMiB: round(mean(memory.map((m) => m.pssKiB)) / 1024, 1),
  };
}

export async function containersBench({ count = 20, seconds = 5, connections = 50, rounds = 3 } = {}) {
  const goImage = goHttpImage();
  const nodeImage = nodeLambdaImage();
  const pythonImage = pythonLambdaImage();
  const hearth = await startHearth({ images: { localDirs: true } });
  const raw = await startRawServer();
  try {
    const cold = {
      goHttp: await coldStarts(hearth, {
        count,
        spec: `{ runtime: image, image: "dir:${goImage}" }`,
        runtime: 'image',
        isolation: 'container',
        prefix: 'cold-go',
      }),
      nodeLambdaRic: await coldStarts(hearth, {
        count: Math.min(count, 10),
        spec: `{ runtime: image, protocol: lambda, image: "dir:${nodeImage}" }`,
        runtime: 'image',
        isolation: 'container',
        prefix: 'cold-ric',
      }),
      pythonLambdaRic: await coldStarts(hearth, {
        count: Math.min(count, 10),
        spec: `{ runtime: image, protocol: lambda, image: "dir:${pythonImage}" }`,
        runtime: 'image',
        isolation: 'container',
        prefix: 'cold-pyric',
      }),
    };
    // Warm: one of each, kept warm.
    const helloFolder = mkdtempSync(join(tmpdir(), 'hearth-bench-hello-'));
    cpSync(join(ROOT, 'examples', 'hello'), helloFolder, { recursive: true });
    writeFileSync(
      join(helloFolder, 'hearth.yaml'),
      readFileSync(join(ROOT, 'examples', 'hello', 'hearth.yaml'), 'utf8').replace(/name: .*/, 'name: hello'),
    );
    await deploy(hearth.url, helloFolder, 'hello');
    rmSync(helloFolder, { recursive: true, force: true });
    const goFolder = imageFolder('go-warm', `{ runtime: image, image: "dir:${goImage}" }`);
    await deploy(hearth.url, goFolder, 'go-warm');
    rmSync(goFolder, { recursive: true, force: true });
    const targets = {
      'container (Go image)': `${hearth.url}/function/go-warm`,
      'node20 source hello': `${hearth.url}/function/hello`,
      'raw node:http': raw.url,
    };
    const warm = Object.fromEntries(Object.keys(targets).map((name) => [name, []]));
    for (const target of Object.values(targets)) await load(target, { connections, seconds: 1 });
    for (let round_ = 0; round_ < rounds; round_++)
      for (const [name, target] of Object.entries(targets))
        warm[name].push(await load(target, { connections, seconds }));
    const warmSummary = Object.fromEntries(
      Object.entries(warm).map(([name, runs]) => [name, medianRun(runs)]),
    );
    const memory = {
      container: await instanceMemory(hearth, 'go-warm'),
      sandboxNode20: await instanceMemory(hearth, 'hello'),
    };
    return { cold, warm: warmSummary, memory, connections, seconds, rounds };
  } finally {
    raw.stop();
    await hearth.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await containersBench(), null, 2)}\n`);
}
