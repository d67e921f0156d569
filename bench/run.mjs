// `npm run bench`: every benchmark in one run on this machine, written to bench/RESULTS.md.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { coldBench } from './cold.mjs';
import { footprintBench } from './footprint.mjs';
import { machine, ROOT } from './lib.mjs';
import { warmBench } from './warm.mjs';

const only = process.argv.slice(2);
const want = (name) => only.length === 0 || only.includes(name);
const started = new Date();
const results = { date: started.toISOString(), machine: machine() };
if (want('warm')) results.warm = await warmBench({ seconds: 5, connections: 50, rounds: 5 });
if (want('cold')) results.cold = await coldBench({ count: 24 });
if (want('footprint')) results.footprint = await footprintBench({ count: 10 });
writeFileSync(join(ROOT, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);

const pass = (ok) => (ok ? 'meets the bar' : '**misses the bar**');
const lines = [
  '# Benchmark results',
  '',
  `Measured ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC with \`npm run bench\` on ${results.machine.cores} cores (${results.machine.cpu}), Node ${results.machine.node}.`,
  'Every comparison is made in the same run, servers measured in turn and in alternation, because the machine is shared and noisy: read the ratios, not the absolute figures.',
  '',
];
if (results.warm) {
  const w = results.warm;
  lines.push(
    '## Warm invocation (hello through the gateway)',
    '',
    `${w.tool}, ${w.connections} connections, ${w.seconds}s per measurement after a 2s warm-up, ${w.rounds} rounds alternating the servers; figures are medians over the rounds, ratios the median of per-round ratios (hearth against the raw server measured just before it).`,
    '',
    '| server | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    ...Object.entries(w.summary).map(
      ([name, s]) => `| ${name} | ${s.rps} | ${s.p50} | ${s.p99} | ${s.errors} |`,
    ),
    '',
    `Throughput ratio hearth/raw: **${w.throughputRatio}** (bar ≥ 0.6: ${pass(w.throughputRatio >= 0.6)}); p99 ratio: **${w.p99Ratio}** (bar ≤ 3: ${pass(w.p99Ratio <= 3)}).`,
    '',
  );
}
if (results.cold) {
  const c = results.cold;
  lines.push(
    '## Cold start (first request to a freshly deployed function, sandboxed, time to first byte)',
    '',
    '| runtime | stem cells p50 ms | p95 ms | without the pool p50 ms | p95 ms | gain (p50) |',
    '|---|---:|---:|---:|---:|---:|',
    ...['node20', 'python3'].map((r) => {
      const a = c['stem cells'][r];
      const b = c['no pool'][r];
      return `| ${r} | ${a.p50} | ${a.p95} | ${b.p50} | ${b.p95} | ${(b.p50 / a.p50).toFixed(1)}× |`;
    }),
    '',
    `${c['stem cells'].node20.n} functions per runtime. Bars: node20 p50 ≤ 10 ms (${pass(c['stem cells'].node20.p50 <= 10)}), python3 p50 ≤ 25 ms (${pass(c['stem cells'].python3.p50 <= 25)}). The seed's figures were 450 ms and 680 ms.`,
    '',
  );
}
if (results.footprint) {
  const f = results.footprint;
  lines.push(
    '## Footprint and redeploy',
    '',
    '| measure | value |',
    '|---|---:|',
    `| idle warm node20 instance, RSS / PSS (MiB) | ${f.node20.rssMiB} / ${f.node20.pssMiB} |`,
    `| idle warm python3 instance, RSS / PSS (MiB) | ${f.python3.rssMiB} / ${f.python3.pssMiB} |`,
    `| gateway process RSS (MiB) | ${f.gatewayRssMiB} |`,
    `| first deploy of a function with an npm dependency (ms) | ${f.redeploy.firstDeployMs} |`,
    `| code-only redeploy, median of 5 (ms) | ${f.redeploy.codeOnlyRedeployMs} |`,
    `| dependency layer reused on code-only redeploy | ${f.redeploy.layerReused} |`,
    '',
    'PSS divides shared pages (the interpreter binary, libraries) among the processes that map them: it is what each extra instance really costs.',
    '',
  );
}
// `npm run bench:trace` owns its own section (it takes a quarter of an hour): keep it across this rewrite.
const previous = existsSync(join(ROOT, 'bench', 'RESULTS.md'))
  ? readFileSync(join(ROOT, 'bench', 'RESULTS.md'), 'utf8')
  : '';
const traceSection = previous.match(/<!-- bench:trace -->[\s\S]*?<!-- \/bench:trace -->/)?.[0];
if (traceSection !== undefined) lines.push(traceSection, '');
writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), `${lines.join('\n')}\n`);
