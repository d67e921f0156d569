// Cluster mode (issue 12): a dependency layer is built once in the cluster. n1 builds a Python function's
// layer (pip from PyPI) and stores it in PostgreSQL; n2 fetches and unpacks that copy instead of building.
// For each requirements file: n1's build time, the time to store it, and n2's fetch time, from the nodes'
// own log lines (`{ layer, how, ms, archiveBytes }`). One sample per case: a build is minutes of PyPI.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNats } from '../test/support/broker-processes.mjs';
import { startPostgres, startRedis } from './cluster.mjs';
import { deploy, round, sleep, startHearth } from './lib.mjs';

const CASES = [
  { name: 'layer-six', requirements: 'six==1.16.0\n', imports: 'six' },
  { name: 'layer-pandas', requirements: 'numpy==2.2.6\npandas==2.2.3\n', imports: 'numpy, pandas' },
];

/** The node's log entries about dependency layers (what is left of its stdout). */
function layerEvents(node) {
  return node
    .log()
    .split('\n')
    .filter((line) => line.includes('"layer":'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
}

async function eventOn(node, key, how, timeoutMs = 300_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = layerEvents(node).find((event) => event.layer === key && event.how === how);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no "${how}" of layer ${key} logged`);
    await sleep(100);
  }
}

export async function clusterLayersBench({ cases = CASES } = {}) {
  const [postgres, nats, redis] = await Promise.all([startPostgres(), startNats(), startRedis()]);
  const config = (nodeId) => ({
    logLevel: 'info',
    stemCells: { node20: 0, python3: 1 },
    cluster: { postgres: postgres.url, nats: nats.url, redis: redis.url, nodeId },
  });
  const nodes = [];
  const folders = [];
  try {
    nodes.push(await startHearth(config('n1')));
    nodes.push(await startHearth(config('n2')));
    const [n1, n2] = nodes;
    const measured = [];
    for (const item of cases) {
      const folder = mkdtempSync(join(tmpdir(), 'hearth-bench-layer-'));
      folders.push(folder);
      writeFileSync(
        join(folder, 'hearth.yaml'),
        `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${item.name} }\nspec: { runtime: python3 }\n`,
      );
      writeFileSync(join(folder, 'requirements.txt'), item.requirements);
      writeFileSync(
        join(folder, 'main.py'),
        `import ${item.imports}\n\n\ndef handler(event, context):\n    return {"ok": True}\n`,
      );
      await deploy(n1.url, folder, item.name);
      const described = await (
        await fetch(`${n1.url}/api/v1/namespaces/default/functions/${item.name}`)
      ).json();
      const key = described.dependencies.key;
      const built = await eventOn(n1, key, 'built');
      const stored = await eventOn(n1, key, 'published');
      const fetched = await eventOn(n2, key, 'fetched');
      const answer = await fetch(`${n2.url}/function/${item.name}`);
      if (answer.status !== 200) throw new Error(`${item.name} on n2 answered ${answer.status}`);
      measured.push({
        requirements: item.requirements.trim().split('\n').join(' '),
        storedMiB: round(stored.archiveBytes / 1024 ** 2, 2),
        buildS: round(built.ms / 1000, 1),
        storeS: round(stored.ms / 1000, 2),
        fetchS: round(fetched.ms / 1000, 2),
      });
    }
    return { cases: measured };
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all([postgres.stop(), nats.stop(), redis.stop()]);
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  }
}
