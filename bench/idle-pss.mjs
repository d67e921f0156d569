// The idle Node instance's memory, quicker than the density bench (issue 11): deploys N node20 hello functions,
// releases their instances, calls each once (a cold start from a stem cell, as in the density bench), leaves them
// WAIT ms without requests, then reads /proc/<pid>/smaps_rollup of every process of each instance's sandbox.
// Prints, per process name (bwrap, node), the mean Rss, Pss, Private_Dirty, Private_Clean, Anonymous and
// Pss_File (KiB), and each instance's PSS (its sandbox's tree, as the density bench counts it).
// `N=8 WAIT=15000 node bench/idle-pss.mjs`; REQS=k calls each k times; ROWS=1 prints every node process;
// DUMP=ms keeps the platform up that long after, printing one guest's pid (to read its smaps by hand).
// PSS shares file pages out among every process mapping them, so it depends on how many node processes run;
// Anonymous does not.

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, deploy, processTree, ROOT, scaleToZero, sleep, startHearth, timeToFirstByte } from './lib.mjs';

const count = Number(process.env.N ?? 8);
const wait = Number(process.env.WAIT ?? 5000);
const requests = Number(process.env.REQS ?? 1);

function rollup(pid) {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name) => Number(text.match(new RegExp(`^${name}:\\s+(\\d+)`, 'm'))?.[1] ?? 0);
  const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  return {
    pid,
    comm,
    rss: field('Rss'),
    pss: field('Pss'),
    privDirty: field('Private_Dirty'),
    privClean: field('Private_Clean'),
    anon: field('Anonymous'),
    pssAnon: field('Pss_Anon'),
    pssFile: field('Pss_File'),
  };
}

const hearth = await startHearth();
try {
  const root = mkdtempSync(join(tmpdir(), 'pss-src-'));
  const names = [];
  for (let i = 0; i < count; i++) {
    const name = `pss-${i}`;
    const source = join(root, name);
    mkdirSync(source);
    copyFileSync(join(ROOT, 'examples', 'hello', 'index.mjs'), join(source, 'index.mjs'));
    writeFileSync(
      join(source, 'hearth.yaml'),
      `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: { runtime: node20, handler: index, scaling: { idleTimeout: 30m } }\n`,
    );
    await deploy(hearth.url, source, name);
    names.push(name);
  }
  for (const name of names) await scaleToZero(hearth.url, name);
  await sleep(1500);
  const agent = new Agent({ keepAlive: true });
  for (let r = 0; r < requests; r++)
    for (const name of names) {
      const answer = await timeToFirstByte(hearth.url, `/function/${name}`, agent);
      if (answer.status !== 200) throw new Error(`${name}: ${answer.status} ${answer.body}`);
    }
  agent.destroy();
  await sleep(wait);
  const rows = [];
  for (const name of names) {
    const detail = await api(hearth.url, 'GET', `/api/v1/namespaces/default/functions/${name}`);
    const pid = detail.activeInstances[0]?.pid;
    if (pid === undefined) continue;
    for (const id of processTree(pid)) rows.push({ name, ...rollup(id) });
  }
  const byComm = new Map();
  for (const row of rows) {
    const sum = byComm.get(row.comm) ?? {
      n: 0,
      rss: 0,
      pss: 0,
      privDirty: 0,
      privClean: 0,
      anon: 0,
      pssFile: 0,
    };
    sum.n += 1;
    for (const key of ['rss', 'pss', 'privDirty', 'privClean', 'anon', 'pssFile']) sum[key] += row[key];
    byComm.set(row.comm, sum);
  }
  const out = {};
  for (const [comm, sum] of byComm) {
    out[comm] = { n: sum.n };
    for (const key of ['rss', 'pss', 'privDirty', 'privClean', 'anon', 'pssFile'])
      out[comm][key] = Math.round(sum[key] / sum.n);
  }
  const perInstance = {};
  for (const row of rows) perInstance[row.name] = (perInstance[row.name] ?? 0) + row.pss;
  const values = Object.values(perInstance).sort((a, b) => a - b);
  process.stdout.write(
    `${JSON.stringify({ count, wait, perProcessAvgKiB: out, instancePssKiB: values, median: values[values.length >> 1] })}\n`,
  );
  if (process.env.ROWS)
    for (const row of rows) if (row.comm === 'node') process.stdout.write(`${JSON.stringify(row)}\n`);
  if (process.env.DUMP) {
    const detail = await api(hearth.url, 'GET', `/api/v1/namespaces/default/functions/${names[0]}`);
    const pid = processTree(detail.activeInstances[0].pid).at(-1);
    process.stdout.write(`pid ${pid}\n`);
    process.stdout.write(`${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}\n`);
    await sleep(Number(process.env.DUMP));
  }
} finally {
  await hearth.stop();
}
