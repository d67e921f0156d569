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
  ['python3 -c pass', { ...python.launchSpec(), args: ['-I', '-S', '-c', 'pass'], forkServer: undefined }],
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

/** The Python fork server this process started (sandbox/zygote.ts), found by its command line. */
function zygotePid() {
  for (const task of readdirSync('/proc/self/task'))
    for (const child of readFileSync(`/proc/self/task/${task}/children`, 'utf8').trim().split(/\s+/)) {
      if (child === '') continue;
      const cmdline = readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0');
      if (cmdline.includes('-') && cmdline.includes('/hearth/guest/bootstrap.py')) return Number(child);
    }
  return undefined;
}

/** CPU ms of one process alone. */
function ownCpuMs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

// Python twice: booted in each sandbox (HEARTH_ZYGOTE=off), and forked into it by the fork server. A
// forked guest is the server's child, not bubblewrap's: its CPU, and the server's own for the fork, are
// added to the sandbox tree's.
for (const [runtime, forked] of [
  [node, false],
  [python, false],
  [python, true],
]) {
  process.env.HEARTH_ZYGOTE = forked ? 'on' : 'off';
  let treeCpu = 0;
  let treeCount = 0;
  if (forked) {
    // Started (and its guest imported) once, outside the measurement, as the platform does at its first cell.
    const slot = await slots.create();
    const guest = sandbox.start(runtime.launchSpec(), slot, 'none');
    await guest.ready;
    guest.kill('SIGKILL');
    await guest.waitForExit();
    await slots.release(slot);
  }
  const server = forked ? zygotePid() : undefined;
  await measure(
    `stem cell ${runtime.name}${forked ? ' forked by the zygote' : ''} until ready, then killed`,
    async () => {
      const slot = await slots.create();
      const serverBefore = server === undefined ? 0 : ownCpuMs(server);
      const guest = sandbox.start(runtime.launchSpec(), slot, 'none');
      await guest.ready;
      treeCpu += treeCpuMs(guest.pid);
      if (server !== undefined) {
        treeCpu += ownCpuMs(server) - serverBefore;
        for (const child of readFileSync(`/proc/${server}/task/${server}/children`, 'utf8')
          .trim()
          .split(/\s+/))
          if (child !== '') treeCpu += ownCpuMs(Number(child));
      }
      treeCount += 1;
      guest.kill('SIGKILL');
      await guest.waitForExit();
      await slots.release(slot);
    },
    false,
  );
  process.stdout.write(
    `  CPU of the sandbox's processes at ready (bwrap, its init, the runtime${forked ? ', the fork' : ''}): ${(treeCpu / treeCount).toFixed(1)} ms\n`,
  );
}

await sandbox.closeWalls();
sandbox.close();
await slots.close();
rmSync(state, { recursive: true, force: true });
