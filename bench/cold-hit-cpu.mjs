// Where a cold start's CPU goes when its stem cell is ready (issue 11): the platform's process, the guests
// (every sandboxed process, by /proc), and the rest (this client, the kernel's share in other tasks), per call.
// `node bench/cold-hit-cpu.mjs [count]`: count distinct idle functions per runtime, called one after another.
import { readdirSync, readFileSync } from 'node:fs';
import { coldBurstPrepare, freshGet } from './cold-burst.mjs';
import { startHearth } from './lib.mjs';

/** CPU ms of a process's main thread to the nanosecond (schedstat), where /proc/<pid>/stat counts in 10 ms ticks. */
function cpuOf(pid) {
  try {
    let ns = 0;
    for (const task of readdirSync(`/proc/${pid}/task`))
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    return ns / 1e6;
  } catch {
    return undefined;
  }
}

/** CPU ms of every process whose command line is a guest's (`/hearth/guest/`), by pid. */
function guests() {
  const found = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmdline.includes('/hearth/guest/')) continue;
    const ms = cpuOf(name);
    if (ms !== undefined) found.set(name, { ms, cmdline: cmdline.split('\0').join(' ') });
  }
  return found;
}

const count = Number(process.argv[2] ?? 20);
const hearth = await startHearth({ serverTiming: true });
try {
  for (const runtime of ['node20', 'python3']) {
    const names = await coldBurstPrepare(hearth.url, runtime, count, 'cpu');
    const before = guests();
    const gateway = cpuOf(hearth.pid);
    const self = process.cpuUsage();
    for (const name of names) await freshGet(hearth.url, `/function/${name}`);
    const gatewayMs = (cpuOf(hearth.pid) - gateway) / count;
    const selfUsage = process.cpuUsage(self);
    const after = guests();
    let bound = 0;
    let boundMs = 0;
    const each = [];
    for (const [pid, { ms }] of after) {
      const was = before.get(pid);
      if (was === undefined) continue;
      const used = ms - was.ms;
      if (used >= 0.05) {
        bound += 1;
        boundMs += used;
        each.push(used);
      }
    }
    if (process.env.EACH === '1')
      console.log(
        runtime,
        each
          .sort((a, b) => a - b)
          .map((ms) => ms.toFixed(1))
          .join(' '),
      );
    console.log(
      JSON.stringify({
        runtime,
        calls: count,
        gatewayMsPerCall: gatewayMs,
        clientMsPerCall: (selfUsage.user + selfUsage.system) / 1000 / count,
        guestsThatRan: bound,
        guestMsPerCall: boundMs / count,
      }),
    );
  }
} finally {
  await hearth.stop();
}
