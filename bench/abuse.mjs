// A neighbour's latency while another tenant abuses its sandbox (issue 10): sequential warm invocations of
// the hello function, unloaded and while a loop invokes an abusive function (memory bomb, fork bomb, CPU
// hog on every core, /tmp fill, log flood, escape probes) or a client holds slow-loris connections, in
// alternating rounds on one platform. The bar: the neighbour's p99 under each abuse within 2× unloaded.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { connect } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { deploy, ROOT, round, sleep, startHearth, summarise, timeToFirstByte } from './lib.mjs';

const HELLO = join(ROOT, 'bench', 'functions', 'bench-hello');
const NEIGHBOUR_INTERVAL_MS = 5;
const ABUSER_INTERVAL_MS = 20;

const manifest = (name, spec) =>
  `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: ${spec}\n`;

/** The abusive functions: each answers (or fails) on its own; the loop invokes it again and again. */
const ABUSERS = {
  'memory bomb (4 GiB against 128Mi)': {
    name: 'abuse-memory',
    spec: '{ runtime: node20, limits: { memory: 128Mi } }',
    file: 'index.mjs',
    code: `const held = [];
export default async function handler() {
  for (let i = 0; i < 64; i++) held.push(Buffer.alloc(64 * 1024 * 1024).fill(i + 1));
  return { survived: held.length };
}`,
  },
  'fork bomb (5000 processes against pids 256)': {
    name: 'abuse-fork',
    spec: '{ runtime: python3 }',
    file: 'main.py',
    code: `import os, signal, time
def handler(event, context):
    children, error = [], None
    try:
        for _ in range(5000):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as e:
        error = e.errno
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}
`,
  },
  'CPU hog on every core (limits.cpu 1)': {
    name: 'abuse-cpu',
    spec: '{ runtime: node20, limits: { cpu: 1 } }',
    file: 'index.mjs',
    code: `import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
const spin = 'const end = Date.now() + 2000; while (Date.now() < end) Math.sqrt(Math.random()); require("node:worker_threads").parentPort.postMessage(1);';
export default async function handler() {
  const cores = availableParallelism();
  await Promise.all(Array.from({ length: cores }, () => new Promise((resolve) => new Worker(spin, { eval: true }).once('message', resolve))));
  const end = Date.now() + 2000;
  while (Date.now() < end) Math.sqrt(Math.random());
  return { cores };
}`,
  },
  '/tmp fill (to ENOSPC at 64Mi)': {
    name: 'abuse-tmp',
    spec: '{ runtime: node20 }',
    file: 'index.mjs',
    code: `import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
export default async function handler() {
  const chunk = Buffer.alloc(1024 * 1024, 7);
  const fd = openSync('/tmp/fill', 'w');
  let written = 0, code = null;
  try { for (;;) written += writeSync(fd, chunk); } catch (error) { code = error.code; } finally { closeSync(fd); }
  rmSync('/tmp/fill', { force: true });
  return { written, code };
}`,
  },
  'log flood (stdout at full speed for 2 s)': {
    name: 'abuse-logs',
    spec: '{ runtime: node20 }',
    file: 'index.mjs',
    code: `export default async function handler() {
  const end = Date.now() + 2000;
  let lines = 0;
  while (Date.now() < end) { console.log('flood line ' + lines + ' ' + 'x'.repeat(100)); lines++; }
  return { lines };
}`,
  },
  'escape probes (/proc/1/environ, /sys, /dev, mount, ptrace, raw sockets, host loopback)': {
    name: 'abuse-probes',
    spec: '{ runtime: python3 }',
    file: 'main.py',
    code: `import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def handler(event, context):
    out = {}
    try: out["environ"] = len(open("/proc/1/environ", "rb").read())
    except OSError as e: out["environ"] = e.errno
    out["pids"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    for path in ["/sys/kernel", "/sys/fs/cgroup", "/dev"]:
        try: out[path] = len(os.listdir(path))
        except OSError as e: out[path] = e.errno
    out["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
    out["ptrace"] = libc.ptrace(0, 0, 0, 0)
    try: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); out["raw"] = "ok"
    except OSError as e: out["raw"] = e.errno
    for port in [22, 80, 6379, 8080]:
        s = socket.socket(); s.settimeout(1)
        try: s.connect(("127.0.0.1", port)); out[port] = "connected"
        except OSError as e: out[port] = e.errno
        finally: s.close()
    return out
`,
  },
};

/**
 * The neighbour's own traffic for `ms`: one invocation every NEIGHBOUR_INTERVAL_MS on one keep-alive
 * connection (a steady 200/s, as a service answering its users), each sample the full round trip. A
 * closed loop as fast as it can go would instead make the neighbour a load generator that takes both
 * cores, and its p99 would measure the share of CPU left to it, not the latency the abuse adds.
 */
async function invocations(url, agent, ms) {
  const samples = [];
  const until = performance.now() + ms;
  let next = performance.now();
  while (performance.now() < until) {
    const started = performance.now();
    const { status } = await timeToFirstByte(url, '/function/bench-hello', agent);
    if (status !== 200) throw new Error(`the neighbour answered ${status}`);
    samples.push(performance.now() - started);
    next += NEIGHBOUR_INTERVAL_MS;
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
    else next = performance.now();
  }
  return samples;
}

/**
 * Invokes the abuser again and again until `running()` is false, at most one call in flight and one
 * started every ABUSER_INTERVAL_MS; what each call answered. What is measured is what the abusive function
 * does inside its walls: a client flooding the gateway with requests (a fast-failing abuser whose breaker
 * answers 503 at once would be called thousands of times a second from this machine's own two cores) is
 * bounded by the namespace's `requestsPerSecond` quota and measured under "Traffic control".
 */
async function abuse(url, name, running) {
  const answers = [];
  while (running()) {
    const started = performance.now();
    const response = await fetch(`${url}/function/${name}`);
    const text = await response.text();
    let code = String(response.status);
    try {
      const body = JSON.parse(text);
      if (body.error?.code !== undefined) code = `${response.status} ${body.error.code}`;
    } catch {
      // not JSON
    }
    answers.push(code);
    const wait = ABUSER_INTERVAL_MS - (performance.now() - started);
    if (wait > 0) await sleep(wait);
  }
  return answers;
}

/**
 * Slow-loris: `count` connections that each send a request head one byte every 500 ms, never finishing
 * it, until `running()` is false. Returns how many the platform had closed by then.
 */
async function slowLoris(port, running, count = 400) {
  const head = 'GET /function/bench-hello HTTP/1.1\r\nHost: x\r\nX-Slow: ';
  let closed = 0;
  const sockets = Array.from({ length: count }, () => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.on('close', () => closed++);
    return socket;
  });
  let sent = 0;
  while (running()) {
    for (const socket of sockets) if (!socket.destroyed) socket.write(head[sent % head.length] ?? 'a');
    sent++;
    await sleep(500);
  }
  for (const socket of sockets) socket.destroy();
  return [`${closed} of ${count} connections closed by the platform`];
}

/**
 * The abusive client runs in a worker thread: its own event loop, so its requests never delay the
 * neighbour's measuring loop's callbacks (only the machine's CPU is shared, as with any other client).
 */
function startAbuser(job) {
  const worker = new Worker(new URL(import.meta.url), { workerData: job });
  const answers = new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return {
    async stop() {
      worker.postMessage('stop');
      const result = await answers;
      await worker.terminate();
      return result;
    },
  };
}

if (!isMainThread) {
  let running = true;
  parentPort.once('message', () => {
    running = false;
  });
  const job = workerData;
  const answers =
    job.kind === 'loris'
      ? await slowLoris(job.port, () => running)
      : await abuse(job.url, job.name, () => running);
  parentPort.postMessage(answers);
}

/**
 * Where the neighbour's client runs, with `ABUSE_CLIENT=platform`: its thread joins the platform's own cpu
 * cgroup. By default it stays in the bench's own (the root one here), as a client on the same machine
 * outside Hearth would be: there it competes with Hearth's whole cgroup tree at the top level, which is the
 * placement a hog must not delay (a hog at its quota moves under the top-level idle cgroup for that; see
 * src/runtime/sandbox/cgroups.ts). Inside the platform's cgroup the client instead shares that cgroup's CPU
 * with the platform. The abusers and their callers are untouched. Returns how to move back, or undefined
 * where the platform has no cgroup of its own (not root, no cpu controller, or `platformCpuCgroup: false`).
 */
function joinPlatformCpuCgroup(platformPid) {
  const cpuLine = (pid) => {
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
    return (
      lines.find((line) => line.split(':')[1]?.split(',').includes('cpu')) ??
      lines.find((line) => line.startsWith('0::'))
    );
  };
  try {
    const platform = cpuLine(platformPid);
    const own = cpuLine(process.pid);
    if (platform === undefined || own === undefined || !/\/platform-\d+$/.test(platform)) return undefined;
    const v1 = platform.split(':')[1] !== '';
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
    const mount = mounts
      .map((line) => line.split(' - '))
      .find(([, after]) =>
        v1 ? /^cgroup \S+ (\S+,)?cpu(,|$)/.test(after ?? '') : after?.startsWith('cgroup2 '),
      )?.[0]
      ?.split(' ')[4];
    if (mount === undefined) return undefined;
    const path = (line) => join(mount, line.split(':').slice(2).join(':'));
    // cgroup v1 moves one thread (the main one, whose id is the pid); v2 moves the whole process.
    const file = v1 ? 'tasks' : 'cgroup.procs';
    writeFileSync(join(path(platform), file), String(process.pid));
    return {
      cgroup: platform.split(':').slice(2).join(':'),
      leave: () => writeFileSync(join(path(own), file), String(process.pid)),
    };
  } catch {
    return undefined;
  }
}

export async function abuseBench({ seconds = 4, rounds = 3, only = [] } = {}) {
  // The machine's load average before and after: on a machine shared with other work, the neighbour's
  // unloaded p99 and every ratio are only as good as that work was quiet.
  const loadBefore = loadavg()[0];
  const hearth = await startHearth({ logRecords: 100_000 });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const dirs = [];
  // ABUSE_CLIENT=platform moves the client into the platform's cpu cgroup (to tell the platform's part from the
  // placement's); by default (or `own`) it stays where the bench runs.
  const client = process.env.ABUSE_CLIENT === 'platform' ? joinPlatformCpuCgroup(hearth.pid) : undefined;
  try {
    await deploy(hearth.url, HELLO, 'bench-hello');
    for (const abuser of Object.values(ABUSERS)) {
      const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-abuse-'));
      dirs.push(dir);
      writeFileSync(join(dir, 'hearth.yaml'), manifest(abuser.name, abuser.spec));
      writeFileSync(join(dir, abuser.file), abuser.code);
      await deploy(hearth.url, dir, abuser.name, { verify: false });
    }
    const port = Number(new URL(hearth.url).port);
    await invocations(hearth.url, agent, 1000);
    const cases = [
      ...Object.entries(ABUSERS).map(([label, abuser]) => [
        label,
        { kind: 'invoke', url: hearth.url, name: abuser.name },
      ]),
      ['slow-loris client (400 connections, a byte every 500 ms)', { kind: 'loris', port }],
    ].filter(([label]) => only.length === 0 || only.some((word) => label.includes(word)));
    const unloaded = [];
    const results = Object.fromEntries(cases.map(([label]) => [label, { samples: [], answers: [] }]));
    for (let round = 0; round < rounds; round++) {
      for (const [label, job] of cases) {
        unloaded.push(...(await invocations(hearth.url, agent, seconds * 1000)));
        const abuser = startAbuser(job);
        await sleep(200);
        results[label].samples.push(...(await invocations(hearth.url, agent, seconds * 1000)));
        results[label].answers.push(...(await abuser.stop()));
        // Let the abuser's instance be replaced and the node settle before the next unloaded window.
        await sleep(500);
      }
    }
    const base = summarise(unloaded);
    const health = await (await fetch(`${hearth.url}/healthz`)).json();
    const logsWork = await (
      await fetch(`${hearth.url}/api/v1/namespaces/default/functions/abuse-logs/logs?limit=1`)
    ).json();
    return {
      seconds,
      rounds,
      clientCgroup: client?.cgroup ?? 'the bench process’s own',
      loadAverage: [round(loadBefore), round(loadavg()[0])],
      unloaded: { n: base.n, p50: round(base.p50), p99: round(base.p99) },
      cases: Object.fromEntries(
        Object.entries(results).map(([label, { samples, answers }]) => {
          const s = summarise(samples);
          const counts = {};
          for (const answer of answers) counts[answer] = (counts[answer] ?? 0) + 1;
          return [
            label,
            {
              n: s.n,
              p50: round(s.p50),
              p99: round(s.p99),
              p99Ratio: round(s.p99 / base.p99),
              answers: counts,
            },
          ];
        }),
      ),
      platformAfter: health.status,
      logStoreAfter: Array.isArray(logsWork.items) ? 'answers' : JSON.stringify(logsWork).slice(0, 200),
    };
  } finally {
    agent.destroy();
    // Out before the platform stops: it removes its cgroups, killing what is still in them.
    client?.leave();
    await hearth.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

if (isMainThread && import.meta.url === `file://${process.argv[1]}`) {
  // `node bench/abuse.mjs [WORD…]`: only the cases whose label holds one of the words (`CPU`, `log`).
  const rounds = Number(process.env.ABUSE_ROUNDS ?? 3);
  process.stdout.write(
    `${JSON.stringify(await abuseBench({ rounds, only: process.argv.slice(2) }), null, 2)}\n`,
  );
}
