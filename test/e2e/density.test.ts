/**
 * @module Density on the real platform (issue 11), a smaller version of the bench's: 300 functions (half
 * node20, half python3) deployed by one `hearth apply` that uploads each source folder once, then 60 of
 * them kept warm at once on a node whose budget (4 GiB) could not hold 60 instances at their declared
 * 128 MiB each: the budget reserves limits.memory ÷ memoryOvercommit (4 by default), so none of the 60 is
 * evicted or cold-started again. The list shows all 300. No timings are asserted: evictions and cold
 * starts are counted.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionSummary, ListResponse } from '../../src/control/api/types.js';
import {
  api,
  type Hearth,
  invoke,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { configFile } from '../support/load.js';

const TOTAL = 300;
const WARM = 60;

let hearth: Hearth;
let config: Awaited<ReturnType<typeof configFile>>;
let folder: TempFolder;
let applied: { code: number | null; stdout: string; stderr: string };

function nameOf(index: number): string {
  return `dense-${index}`;
}

function document(index: number): string {
  const node = index % 2 === 0;
  const spec = node
    ? '{ runtime: node20, handler: index, source: ./node, scaling: { idleTimeout: 10m } }'
    : '{ runtime: python3, handler: main.handler, source: ./py, scaling: { idleTimeout: 10m } }';
  return `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${nameOf(index)} }\nspec: ${spec}\n`;
}

/** The evictions the autoscaler has recorded on this node so far (its metric, summed over functions). */
async function evictions(): Promise<number> {
  const text = await (await fetch(`${hearth.url}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n'))
    if (line.startsWith('hearth_scaling_decisions_total{') && line.includes('action="evict"'))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}

beforeAll(async () => {
  config = await configFile({ maxMemory: '4Gi', maxInstances: 200 });
  hearth = await startHearth({ args: ['--config', config.path] });
  folder = await makeFolder({
    'node/index.mjs': "export default async (event) => ({ runtime: 'node', path: event.path });\n",
    'py/main.py': 'def handler(event, context):\n    return {"runtime": "python"}\n',
    'resources.yaml': Array.from({ length: TOTAL }, (_, i) => document(i)).join('---\n'),
  });
  applied = await runCli(['apply', '-f', `${folder.dir}/resources.yaml`], { url: hearth.url });
}, 600_000);

afterAll(async () => {
  await hearth?.stop();
  await config?.cleanup();
  await folder?.cleanup();
});

describe('density', () => {
  it('applies 300 functions in one request, uploading each source folder once', () => {
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout.split('\n').filter((line) => line.includes('configured'))).toHaveLength(TOTAL);
    expect(applied.stderr.match(/uploading/g)).toHaveLength(2);
  });

  it('lists all 300', async () => {
    const answer = await api<ListResponse<FunctionSummary>>(hearth.url, '/api/v1/functions');
    expect(answer.status).toBe(200);
    expect(answer.body.items).toHaveLength(TOTAL);
    const cli = await runCli(['ls', '-A'], { url: hearth.url });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout.split('\n').filter((line) => line.startsWith('dense-'))).toHaveLength(TOTAL);
  });

  it('keeps 60 instances warm at once within a budget their declared memory would overflow', async () => {
    const warm = Array.from({ length: WARM }, (_, i) => nameOf(i));
    for (const name of warm) {
      const answer = await invoke(hearth.url, name);
      expect(answer.status, `${name}: ${answer.text}`).toBe(200);
    }
    const evictedBefore = await evictions();
    let cold = 0;
    for (let round = 0; round < 3; round++)
      for (const name of warm) {
        const answer = await invoke(hearth.url, name);
        expect(answer.status, `${name}: ${answer.text}`).toBe(200);
        if (answer.headers.get('x-hearth-cold-start') === '1') cold += 1;
      }
    expect(cold).toBe(0);
    expect(await evictions()).toBe(evictedBefore);
    const stats = await api<{ node: { instances: number; memoryBytes: number; maxMemoryBytes: number } }>(
      hearth.url,
      '/api/v1/stats',
    );
    expect(stats.body.node.instances).toBeGreaterThanOrEqual(WARM);
    // 60 × 128 MiB declared would not fit 4 GiB; what is reserved does.
    expect(WARM * 128 * 1024 ** 2).toBeGreaterThan(stats.body.node.maxMemoryBytes);
    expect(stats.body.node.memoryBytes).toBeLessThanOrEqual(stats.body.node.maxMemoryBytes);
  });
});
