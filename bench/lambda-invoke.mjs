// `node bench/lambda-invoke.mjs`: sequential warm invocations on one keep-alive connection, `/function/` against the
// Lambda Invoke API (issue 18), alternating; standalone (not a section of run.mjs), prints p50/p99.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deploy, startHearth } from './lib.mjs';

const hearth = await startHearth();
const dir = mkdtempSync(join(tmpdir(), 'lambda-measure-'));
writeFileSync(
  join(dir, 'hearth.yaml'),
  'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: add }\nspec: { runtime: node20, handler: index.handler, eventFormat: lambda-direct }\n',
);
writeFileSync(join(dir, 'index.js'), 'exports.handler = async (e) => ({ sum: e.a + e.b });\n');
await deploy(hearth.url, dir, 'add');
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const body = '{"a":1,"b":2}';
function once(path) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = request(
      `${hearth.url}${path}`,
      { method: 'POST', agent, headers: { 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(Number(process.hrtime.bigint() - started) / 1000));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
const paths = { '/function/': '/function/add', 'Invoke API': '/2015-03-31/functions/add/invocations' };
const samples = { '/function/': [], 'Invoke API': [] };
for (let round = 0; round < 5; round++)
  for (const [label, path] of Object.entries(paths)) {
    for (let i = 0; i < 200; i++) await once(path);
    for (let i = 0; i < 2000; i++) samples[label].push(await once(path));
  }
for (const [label, list] of Object.entries(samples)) {
  list.sort((a, b) => a - b);
  console.log(
    `${label}: p50 ${list[Math.floor(list.length / 2)].toFixed(0)} µs, p99 ${list[Math.floor(list.length * 0.99)].toFixed(0)} µs (${list.length} sequential requests, 5 alternating rounds)`,
  );
}
agent.destroy();
await hearth.stop();
rmSync(dir, { recursive: true, force: true });
