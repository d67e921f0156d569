// Cold start: time to first byte of the first request to a freshly deployed function (no instance yet,
// sandboxed), with the stem-cell pool and without it.

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  api,
  deploy,
  ROOT,
  round,
  scaleToZero,
  sleep,
  startHearth,
  summarise,
  timeToFirstByte,
} from './lib.mjs';

const EXAMPLES = { node20: join(ROOT, 'examples', 'hello'), python3: join(ROOT, 'examples', 'hello-py') };

async function poolReady(url, runtime) {
  for (let i = 0; i < 200; i++) {
    const health = await api(url, 'GET', '/healthz');
    const pool = health.stemCells.find(
      (p) => p.runtime === runtime && p.isolation === 'sandbox' && p.network === 'none',
    );
    if (pool === undefined || pool.target === 0 || (pool.ready >= pool.target && pool.starting === 0)) return;
    await sleep(25);
  }
}

async function measure(hearth, runtime, count) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const folder = mkdtempSync(join(tmpdir(), `hearth-cold-${runtime}-`));
  const samples = [];
  const misses = [];
  for (let i = 0; i < count; i++) {
    const name = `cold-${runtime.replace(/\d/g, '')}-${i}`;
    cpSync(EXAMPLES[runtime], folder, { recursive: true });
    const manifest = readFileSync(join(EXAMPLES[runtime], 'hearth.yaml'), 'utf8').replace(
      /name: .*/,
      `name: ${name}`,
    );
    writeFileSync(join(folder, 'hearth.yaml'), manifest);
    await deploy(hearth.url, folder, name, { verify: false });
    await scaleToZero(hearth.url, name);
    await poolReady(hearth.url, runtime);
    await timeToFirstByte(hearth.url, '/healthz', agent);
    const result = await timeToFirstByte(hearth.url, `/function/${name}`, agent);
    if (result.status !== 200 || !result.cold)
      throw new Error(`${name}: expected a cold 200, got ${result.status} cold=${result.cold}`);
    samples.push(result.ttfb);
  }
  const health = await api(hearth.url, 'GET', '/healthz');
  for (const pool of health.stemCells) if (pool.runtime === runtime) misses.push(pool.misses);
  agent.destroy();
  rmSync(folder, { recursive: true, force: true });
  const summary = summarise(samples);
  return {
    n: summary.n,
    p50: round(summary.p50),
    p95: round(summary.p95),
    min: round(summary.min),
    max: round(summary.max),
    poolMisses: misses[0] ?? 0,
  };
}

export async function coldBench({ count = 24 } = {}) {
  const results = {};
  for (const mode of ['stem cells', 'no pool']) {
    const hearth = await startHearth(mode === 'no pool' ? { stemCells: { node20: 0, python3: 0 } } : {});
    results[mode] = {};
    try {
      for (const runtime of ['node20', 'python3'])
        results[mode][runtime] = await measure(hearth, runtime, count);
    } finally {
      await hearth.stop();
    }
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await coldBench(), null, 2)}\n`);
}
