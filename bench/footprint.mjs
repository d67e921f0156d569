// Idle memory per warm instance, and the time of a code-only redeploy (dependency layer reused).
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, deploy, ROOT, round, sleep, startHearth, timeToFirstByte, treeMemory } from './lib.mjs';

const EXAMPLES = { node20: join(ROOT, 'examples', 'hello'), python3: join(ROOT, 'examples', 'hello-py') };

async function instanceMemory(hearth, runtime, count) {
  const folder = mkdtempSync(join(tmpdir(), 'hearth-mem-'));
  const rss = [];
  const pss = [];
  for (let i = 0; i < count; i++) {
    const name = `mem-${runtime.replace(/\d/g, '')}-${i}`;
    cpSync(EXAMPLES[runtime], folder, { recursive: true });
    writeFileSync(
      join(folder, 'hearth.yaml'),
      readFileSync(join(EXAMPLES[runtime], 'hearth.yaml'), 'utf8').replace(/name: .*/, `name: ${name}`),
    );
    await deploy(hearth.url, folder, name);
    await timeToFirstByte(hearth.url, `/function/${name}`);
  }
  await sleep(2000);
  for (let i = 0; i < count; i++) {
    const detail = await api(
      hearth.url,
      'GET',
      `/api/v1/namespaces/default/functions/mem-${runtime.replace(/\d/g, '')}-${i}`,
    );
    for (const instance of detail.activeInstances) {
      const memory = treeMemory(instance.pid);
      rss.push(memory.rssKiB);
      pss.push(memory.pssKiB);
    }
  }
  rmSync(folder, { recursive: true, force: true });
  const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
  return { instances: rss.length, rssMiB: round(mean(rss) / 1024, 1), pssMiB: round(mean(pss) / 1024, 1) };
}

async function redeploy(hearth) {
  const folder = mkdtempSync(join(tmpdir(), 'hearth-redeploy-'));
  cpSync(join(ROOT, 'test', 'fixtures', 'functions', 'node-deps'), folder, { recursive: true });
  const first = await deploy(hearth.url, folder, 'node-deps');
  const codeOnly = [];
  for (let i = 0; i < 5; i++) {
    appendFileSync(join(folder, 'index.mjs'), `\n// revision ${i}\n`);
    codeOnly.push((await deploy(hearth.url, folder, 'node-deps')).ms);
  }
  const layerReused =
    first.body.function.dependencies.key ===
    (await api(hearth.url, 'GET', '/api/v1/namespaces/default/functions/node-deps')).dependencies.key;
  rmSync(folder, { recursive: true, force: true });
  codeOnly.sort((a, b) => a - b);
  return { firstDeployMs: round(first.ms, 0), codeOnlyRedeployMs: round(codeOnly[2], 0), layerReused };
}

export async function footprintBench({ count = 10 } = {}) {
  const hearth = await startHearth();
  try {
    const gateway = readFileSync(`/proc/${hearth.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? '0';
    return {
      node20: await instanceMemory(hearth, 'node20', count),
      python3: await instanceMemory(hearth, 'python3', count),
      gatewayRssMiB: round(Number(gateway) / 1024, 1),
      redeploy: await redeploy(hearth),
    };
  } finally {
    await hearth.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await footprintBench(), null, 2)}\n`);
}
