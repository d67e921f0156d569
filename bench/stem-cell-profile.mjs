// Where a stem cell's start goes (issue 11): each link of the sandbox chain measured alone, serially,
// wall time per start and CPU time: of waited-for children (/proc/self/stat) for plain processes, of the
// sandbox's live processes at ready for stem cells (a sandbox reaps its own, so their CPU never reaches us).
// `node bench/stem-cell-profile.mjs [count]` (root: the privileged sandbox path).

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeRuntime } from '../dist/runtime/node/index.js';
import { PythonRuntime } from '../dist/runtime/python/index.js';
import { SandboxIsolation } from '../dist/runtime/sandbox/index.js';
import { createSlotManager } from '../dist/runtime/slots.js';

const COUNT = Number(process.argv[2] ?? 20);
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

function childCpuMs() {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  // cutime, cstime are fields 16 and 17 (1-based) of stat; after the ") " split, index 13 and 14.
  return (Number(fields[13]) + Number(fields[14])) * TICK_MS;
}

function runOnce(command, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}`))));
  });
}

async function measure(label, start, showCpu = true) {
  const cpu0 = childCpuMs();
  const wall0 = performance.now();
  for (let i = 0; i < COUNT; i++) await start();
  const wall = (performance.now() - wall0) / COUNT;
  const cpu = (childCpuMs() - cpu0) / COUNT;
  const cpuText = showCpu ? `  cpu ${cpu.toFixed(1).padStart(6)} ms` : '';
  process.stdout.write(`${label.padEnd(58)} wall ${wall.toFixed(1).padStart(6)} ms${cpuText}\n`);
}

const state = mkdtempSync(join(tmpdir(), 'hearth-profile-'));
const sandbox = new SandboxIsolation({ stateDir: join(state, 'sandbox') });
await sandbox.init();
const slots = await createSlotManager(join(state, 'slots'), { allowMount: true });
const node = new NodeRuntime();
const python = new PythonRuntime();

await measure('sh -c exit', () => runOnce('/bin/sh', ['-c', 'exit 0']));
await measure('nice true', () => runOnce('nice', ['-n', '5', '/bin/true']));
await measure('node -e 0 (no sandbox)', () => runOnce(process.execPath, ['-e', '0']));
await measure('python3 -I -S -c pass (no sandbox)', () =>
  runOnce(python.launchSpec().command, ['-I', '-S', '-c', 'pass']),
);

/** A guest started with its channel on fd 3 (a socket, as in a sandbox), until its first frame (Ready). */
function bootOnce(launch) {
  return new Promise((resolve, reject) => {
    const args = launch.args.map((arg) => arg.replace('{guest}', launch.guestDir));
    const child = spawn(launch.command, args, { stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
    child.stdio[3].once('data', () => {
      child.kill('SIGKILL');
    });
    child.once('exit', (_, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error('no Ready'))));
  });
}

// The guest's own boot, outside any sandbox: the CPU a stem cell costs beyond the sandbox chain. The Python
// guest here compiles its code as it starts unless dist/ holds its bytecode (the sandbox prepares a copy).
for (const runtime of [node, python])
  await measure(`${runtime.name} guest boot to Ready (no sandbox)`, () => bootOnce(runtime.launchSpec()));

for (const [label, launch] of [
  [
    'true',
    { command: '/bin/true', args: [], env: {}, guestDir: node.launchSpec().guestDir, readOnlyPaths: [] },
  ],
  ['node -e 0', { ...node.launchSpec(), args: ['-e', '0'] }],
  ['python3 -c pass', { ...python.launchSpec(), args: ['-I', '-S', '-c', 'pass'] }],
]) {
  await measure(
    `full sandbox chain + ${label}`,
    async () => {
      const slot = await slots.create();
      const guest = sandbox.start(launch, slot, 'none');
      await guest.waitForExit();
      await slots.release(slot);
    },
    false,
  );
}

/** CPU ms of `pid` and its descendants (utime + stime of each live process in the tree). */
function treeCpuMs(pid) {
  let total = 0;
  const stack = [pid];
  while (stack.length > 0) {
    const next = stack.pop();
    try {
      const fields = readFileSync(`/proc/${next}/stat`, 'utf8').split(') ')[1].split(' ');
      total += (Number(fields[11]) + Number(fields[12])) * TICK_MS;
      for (const task of readdirSync(`/proc/${next}/task`))
        for (const child of readFileSync(`/proc/${next}/task/${task}/children`, 'utf8').trim().split(/\s+/))
          if (child !== '') stack.push(Number(child));
    } catch {
      // Gone meanwhile.
    }
  }
  return total;
}

let treeCpu = 0;
let treeCount = 0;
for (const runtime of [node, python]) {
  treeCpu = 0;
  treeCount = 0;
  await measure(
    `stem cell ${runtime.name} until ready, then killed`,
    async () => {
      const slot = await slots.create();
      const guest = sandbox.start(runtime.launchSpec(), slot, 'none');
      await guest.ready;
      treeCpu += treeCpuMs(guest.pid);
      treeCount += 1;
      guest.kill('SIGKILL');
      await guest.waitForExit();
      await slots.release(slot);
    },
    false,
  );
  process.stdout.write(
    `  CPU of the sandbox's processes at ready (bwrap, its init, the runtime): ${(treeCpu / treeCount).toFixed(1)} ms\n`,
  );
}

await sandbox.closeWalls();
sandbox.close();
await slots.close();
rmSync(state, { recursive: true, force: true });
