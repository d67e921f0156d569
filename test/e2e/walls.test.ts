/**
 * @module End-to-end resource walls (issue 10): a memory bomb, a fork bomb and a /tmp fill each stay inside
 * their function's limits with a clear error while the platform and a neighbour keep answering; the seccomp
 * filter refuses what no function needs; and nothing of a sandbox (processes, mounts, cgroups, network
 * namespaces and the nftables rules in them) outlives its instance (crashed, killed, timed out) or the
 * platform, whether it is stopped (SIGTERM, SIGINT) or killed (SIGKILL, then started again).
 */

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import { cpuCgroupOf } from '../support/cgroups.js';
import {
  deployFolder,
  eventually,
  getFunction,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  reclaimDataDir,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
const folders: TempFolder[] = [];

async function deployFiles(name: string, files: Record<string, string>): Promise<void> {
  const folder = await makeFolder(files);
  folders.push(folder);
  const deployed = await deployFolder(hearth.url, folder.dir, { name });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
}

/** The cgroup directories `hearth up` says its walls use (from its `sandbox walls in force` line). */
function cgroupRoots(platform: Hearth): string[] {
  const line = platform.log.find(
    (entry) => typeof entry.msg === 'string' && entry.msg.startsWith('sandbox walls in force:'),
  );
  return [...String(line?.msg ?? '').matchAll(/(\/sys\/fs\/cgroup\/[^\s),]+)/g)].map(
    (match) => match[1] ?? '',
  );
}

/** Live bubblewrap processes whose command line names this data dir (each sandbox binds its slot from it). */
function sandboxesOf(dataDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('bwrap') && cmdline.includes(dataDir)) pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Mount points inside the data dir (the slots and sandbox tmpfs mounts, layers) still mounted. */
function mountsUnder(dataDir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point.startsWith(`${dataDir}/`));
}

/**
 * Where a hog's twin goes on cgroup v1 (`hearth-idle/<platform>` beside `hearth/<platform>` under the cpu
 * controller's mount), or undefined where the platform keeps hogs in place (cgroup v2).
 */
function idleTwinRoot(roots: readonly string[]): string | undefined {
  const cpu = roots.find((root) => existsSync(join(root, 'cpu.cfs_quota_us')));
  return cpu === undefined ? undefined : join(cpu, '..', '..', 'hearth-idle', basename(cpu));
}

/** Sandbox cgroups (one directory per sandbox) under the platform's roots. */
function cellCgroups(roots: readonly string[]): string[] {
  return roots.flatMap((root) =>
    existsSync(root)
      ? readdirSync(root, { withFileTypes: true })
          .filter((entry) => entry.isDirectory())
          .map((entry) => join(root, entry.name))
      : [],
  );
}

const HOST_NET = readlinkSync('/proc/self/ns/net');

function readLink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/** The network namespaces (`net:[inode]`) of the live sandboxes of this data dir: bubblewrap's children. */
function sandboxNetworks(dataDir: string): string[] {
  const found = new Set<string>();
  for (const pid of sandboxesOf(dataDir)) {
    let children: string[] = [];
    try {
      children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/);
    } catch {
      continue;
    }
    for (const child of children) {
      const net = readLink(`/proc/${child}/ns/net`);
      if (net !== undefined && net !== HOST_NET) found.add(net);
    }
  }
  return [...found];
}

/** Now, in clock ticks (USER_HZ, 100 on Linux) since boot: the unit of a process's start time. */
function ticksSinceBoot(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 100);
}

/** When a process started, in clock ticks since boot (field 22 of /proc/PID/stat). */
function startTicks(pid: string): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/**
 * Processes that keep network namespace `net` alive: living in it, or holding it open (slirp4netns does).
 * None means the kernel has freed it, and the nftables rules that lived only in it with it. `bornBy`: only
 * processes started by then (ticks since boot) count. The kernel gives a new namespace the lowest free
 * number, often a freed one's, so a sandbox started later (a replacement, or another suite's) can show
 * the same `net:[N]` without being in the namespace that was recorded.
 */
function holdersOf(net: string, bornBy = Number.POSITIVE_INFINITY): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (startTicks(entry) > bornBy) continue;
    if (readLink(`/proc/${entry}/ns/net`) === net) {
      pids.push(Number(entry));
      continue;
    }
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    if (fds.some((fd) => readLink(`/proc/${entry}/fd/${fd}`) === net)) pids.push(Number(entry));
  }
  return pids;
}

/** A process's command line, for a failure message. */
function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '(gone)';
  }
}

/** The nftables tables inside the namespace of `pid`. */
function nftTablesOf(pid: number): string {
  return execFileSync('nsenter', ['-t', String(pid), '-n', 'nft', 'list', 'tables'], { encoding: 'utf8' });
}

/** Nothing of these namespaces is left: no process in them or holding them, so no rule in them either. */
async function expectNetworksGone(networks: readonly string[], bornBy: number): Promise<void> {
  try {
    // Generous: after a SIGKILL the next start ends the old sandboxes and their slirp4netns exit on their
    // own; on a loaded CI machine that has taken longer than 10 s.
    await eventually(
      'the network namespaces to be freed',
      () => (networks.every((net) => holdersOf(net, bornBy).length === 0) ? true : undefined),
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (error) {
    const holders = networks.flatMap((net) =>
      holdersOf(net, bornBy).map((pid) => `${net}: pid ${pid} ${readCmdline(pid)}`),
    );
    throw new Error(`${(error as Error).message}; still held by: ${holders.join('; ') || 'nobody now'}`);
  }
  // The platform adds no rule to the host's own namespace, ever.
  expect(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' })).not.toMatch(/\bhearth\b/);
}

/** An allow-listed function (its own namespace, slirp4netns, nftables rules) that names its namespace. */
const NODE_NET_PROBE = `
import { readlinkSync } from 'node:fs';
export default async function handler(event) {
  if (event.query.crash === '1') process.exit(3);
  if (event.query.hang === '1') for (;;);
  return { net: readlinkSync('/proc/self/ns/net') };
}
`;

async function deployNetProbe(url: string, name: string, egress = '["192.0.2.10:443"]'): Promise<void> {
  const folder = await makeFolder({
    'hearth.yaml': manifest(
      name,
      `{ runtime: node20, egress: ${egress}, limits: { timeout: 1s }, scaling: { max: 1 } }`,
    ),
    'index.mjs': NODE_NET_PROBE,
  });
  folders.push(folder);
  const deployed = await deployFolder(url, folder.dir, { name });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
}

async function probeNetwork(url: string, name: string): Promise<string> {
  const answer = await invoke(url, name);
  expect(answer.status, answer.text).toBe(200);
  return (answer.json() as { net: string }).net;
}

const NODE_BOMB = `
const held = [];
export default async function handler(event) {
  if (event.query.bomb !== '1') return { ok: true };
  // 64 MiB at a time, each page written so it is really used, up to 4 GiB.
  for (let i = 0; i < 64; i++) held.push(Buffer.alloc(64 * 1024 * 1024).fill(i + 1));
  return { survived: held.length };
}
`;

const PY_BOMB = `
held = []

def handler(event, context):
    for i in range(64):
        held.append(bytearray(64 * 1024 * 1024))
        held[-1][::4096] = b"x" * (64 * 1024 * 1024 // 4096)
    return {"survived": len(held)}
`;

const NODE_NEIGHBOUR = `
import { networkInterfaces } from 'node:os';
import { spawnSync } from 'node:child_process';
export default async function handler() {
  return { ok: true, interfaces: Object.keys(networkInterfaces()).length, child: spawnSync('/bin/true').status };
}
`;

const PY_FORK_BOMB = `
import os, signal, time

def handler(event, context):
    children, error = [], None
    try:
        for _ in range(2000):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
    except OSError as e:
        error = f"{type(e).__name__}: errno {e.errno}"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}
`;

const NODE_TMP_FILL = `
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
export default async function handler() {
  const chunk = Buffer.alloc(1024 * 1024, 7);
  const fd = openSync('/tmp/fill', 'w');
  let written = 0;
  let code = null;
  try {
    while (written < 96 * 1024 * 1024) written += writeSync(fd, chunk);
  } catch (error) {
    code = error.code;
  } finally {
    closeSync(fd);
  }
  rmSync('/tmp/fill', { force: true });
  return { written, code };
}
`;

const NODE_CPU_HOG = `
export default async function handler() {
  const start = Date.now();
  const before = process.cpuUsage();
  while (Date.now() - start < 1500) Math.sqrt(Math.random());
  const used = process.cpuUsage(before);
  return { cpuSeconds: (used.user + used.system) / 1e6, wallSeconds: (Date.now() - start) / 1000 };
}
`;

/** Each call as a raw system call through libc, so the answer is the kernel's (or the filter's) errno. */
const PY_SECCOMP = `
import ctypes, errno, socket

libc = ctypes.CDLL(None, use_errno=True)

def attempt(number, *args):
    ctypes.set_errno(0)
    result = libc.syscall(number, *args)
    return "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

def raw(family, kind, proto):
    try:
        socket.socket(family, kind, proto).close()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def handler(event, context):
    tmp = ctypes.c_char_p(b"/tmp")
    return {
        # x86-64 numbers: ptrace(PTRACE_TRACEME), keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL),
        # add_key, mount, bpf(BPF_MAP_CREATE), perf_event_open, userfaultfd, setns.
        "ptrace": attempt(101, 0, 0, 0, 0),
        "keyctl": attempt(250, 1, 0),
        "add_key": attempt(248, ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), ctypes.c_char_p(b"v"), 1, -2),
        "mount": attempt(165, ctypes.c_char_p(b"none"), tmp, ctypes.c_char_p(b"tmpfs"), 0, 0),
        "bpf": attempt(321, 0, 0, 0),
        "userfaultfd": attempt(323, 0),
        "raw_inet": raw(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "packet": raw(socket.AF_PACKET, socket.SOCK_RAW, 0),
        # What ordinary code does must still work.
        "tcp": raw(socket.AF_INET, socket.SOCK_STREAM, 0),
        "netlink": raw(socket.AF_NETLINK, socket.SOCK_RAW, 0),
    }
`;

beforeAll(async () => {
  hearth = await startHearth();
  await deployFiles('mem-bomb', {
    'hearth.yaml': manifest('mem-bomb', '{ runtime: node20, limits: { memory: 128Mi } }'),
    'index.mjs': NODE_BOMB,
  });
  await deployFiles('py-bomb', {
    'hearth.yaml': manifest('py-bomb', '{ runtime: python3, limits: { memory: 64Mi } }'),
    'main.py': PY_BOMB,
  });
  // Above the 128Mi its stem cell's wall was made with ahead of the bind (cgroups.ts `create`).
  await deployFiles('py-roomy', {
    'hearth.yaml': manifest('py-roomy', '{ runtime: python3, limits: { memory: 256Mi } }'),
    'main.py': `def handler(event, context):
    held = b"x" * (180 * 1024 * 1024)
    return {"held": len(held) // (1024 * 1024)}
`,
  });
  await deployFiles('neighbour', {
    'hearth.yaml': manifest('neighbour', '{ runtime: node20 }'),
    'index.mjs': NODE_NEIGHBOUR,
  });
  await deployFiles('fork-bomb', {
    'hearth.yaml': manifest('fork-bomb', '{ runtime: python3, limits: { pids: 64 } }'),
    'main.py': PY_FORK_BOMB,
  });
  await deployFiles('tmp-fill', {
    'hearth.yaml': manifest('tmp-fill', '{ runtime: node20, limits: { tmp: 8Mi } }'),
    'index.mjs': NODE_TMP_FILL,
  });
  await deployFiles('cpu-hog', {
    'hearth.yaml': manifest('cpu-hog', '{ runtime: node20, limits: { cpu: "0.2" } }'),
    'index.mjs': NODE_CPU_HOG,
  });
  await deployFiles('py-seccomp', {
    'hearth.yaml': manifest('py-seccomp', '{ runtime: python3 }'),
    'main.py': PY_SECCOMP,
  });
}, 60_000);

afterAll(async () => {
  if (hearth?.process.exitCode === null && hearth.process.signalCode === null) await hearth.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('resource walls', () => {
  it('hearth up names the walls in force, and describe shows them with the function figures', async () => {
    expect(cgroupRoots(hearth).length).toBe(3);
    const detail = (await getFunction(hearth.url, 'fork-bomb')) as FunctionDetail;
    expect(detail.spec.limits).toMatchObject({ pids: 64, tmp: '64Mi', memory: '128Mi' });
    expect(detail.walls?.filter((wall) => wall.inForce).map((wall) => wall.wall)).toEqual([
      'memory',
      'cpu',
      'pids',
      'tmp',
      'seccomp',
    ]);
  });

  it('a memory bomb gets 502 HEARTH_E_FN_OOM naming the limit; a neighbour answers meanwhile; the function answers again', async () => {
    expect((await invoke(hearth.url, 'mem-bomb')).status).toBe(200);
    const [bomb, neighbour] = await Promise.all([
      invoke(hearth.url, 'mem-bomb', { path: '?bomb=1' }),
      invoke(hearth.url, 'neighbour'),
    ]);
    expect(bomb.status, bomb.text).toBe(502);
    const error = (bomb.json() as { error: { code: string; message: string } }).error;
    expect(error.code).toBe('HEARTH_E_FN_OOM');
    expect(error.message).toContain('limits.memory is 128Mi');
    expect(neighbour.status, neighbour.text).toBe(200);
    expect(neighbour.json()).toMatchObject({ ok: true, child: 0 });
    // Killed for memory, it gets no replacement booted ahead of demand (a pre-warm came a tick or two after
    // the kill, only to be the next one killed): the next call starts one.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const afterKill = (await getFunction(hearth.url, 'mem-bomb')) as FunctionDetail;
    expect(afterKill.activeInstances.length + afterKill.startingInstances).toBe(0);

    const again = await invoke(hearth.url, 'mem-bomb');
    expect(again.status, again.text).toBe(200);
    // Logged with the figure, and counted.
    await eventually('the OOM warning', () =>
      hearth.log.some((entry) => /out of memory.*128Mi/.test(String(entry.msg))) ? true : undefined,
    );
    const metrics = await (await fetch(`${hearth.url}/metrics`)).text();
    expect(metrics).toMatch(/hearth_instance_oom_kills_total\{namespace="default",function="mem-bomb"\} 1/);
  }, 30_000);

  it('a Python memory bomb gets the same answer with its own limit', async () => {
    const bomb = await invoke(hearth.url, 'py-bomb');
    expect(bomb.status, bomb.text).toBe(502);
    expect(bomb.json()).toMatchObject({
      error: {
        code: 'HEARTH_E_FN_OOM',
        message: 'the function ran out of memory: limits.memory is 64Mi',
        details: { limit: '64Mi' },
      },
    });
  }, 30_000);

  it('a function whose memory wall is above the one its stem cell was made with holds what its own allows', async () => {
    const response = await invoke(hearth.url, 'py-roomy');
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ held: 180 });
  }, 30_000);

  it('a fork bomb stops at limits.pids with the function seeing its own error', async () => {
    const response = await invoke(hearth.url, 'fork-bomb');
    expect(response.status, response.text).toBe(200);
    const answer = response.json() as { forked: number; error: string | null };
    expect(answer.error).toBe('BlockingIOError: errno 11');
    expect(answer.forked).toBeLessThan(64);
    expect((await invoke(hearth.url, 'neighbour')).status).toBe(200);
  }, 30_000);

  it('filling /tmp past limits.tmp is ENOSPC inside the function', async () => {
    const response = await invoke(hearth.url, 'tmp-fill');
    expect(response.status, response.text).toBe(200);
    const answer = response.json() as { written: number; code: string | null };
    expect(answer.code).toBe('ENOSPC');
    expect(answer.written).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect(answer.written).toBeGreaterThan(4 * 1024 * 1024);
  });

  it('a CPU hog gets limits.cpu and no more, while a neighbour answers', async () => {
    const [hog, neighbour] = await Promise.all([
      invoke(hearth.url, 'cpu-hog'),
      new Promise((resolve) => setTimeout(resolve, 300)).then(() => invoke(hearth.url, 'neighbour')),
    ]);
    expect(hog.status, hog.text).toBe(200);
    const answer = hog.json() as { cpuSeconds: number; wallSeconds: number };
    // 0.2 of a core as a CFS quota; unthrottled it would be close to 1.
    expect(answer.cpuSeconds / answer.wallSeconds).toBeLessThan(0.4);
    expect(neighbour.status, neighbour.text).toBe(200);
    const throttled = cellCgroups(cgroupRoots(hearth))
      .filter((dir) => existsSync(join(dir, 'cpu.stat')))
      .map((dir) => Number(/nr_throttled (\d+)/.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'))?.[1] ?? 0))
      .reduce((sum, count) => sum + count, 0);
    expect(throttled).toBeGreaterThan(0);
    // Started in the root cgroup, the platform's own process has a CPU cgroup of its own beside its
    // sandboxes' (weighted above them); started in another (a service manager's), it stays there. It says which.
    const own = cgroupRoots(hearth)
      .map((root) => join(root, `platform-${hearth.process.pid}`))
      .filter((dir) => existsSync(dir));
    const said = String(
      hearth.log.find((entry) => String(entry.msg).startsWith('sharing the CPU:'))?.msg ?? 'nothing said',
    );
    const home = cpuCgroupOf(process.pid);
    if (home === '/') {
      expect(said).toContain('the platform moved from cpu cgroup / into');
      expect(own.length).toBe(1);
      expect(readFileSync(join(own[0] ?? '', 'cgroup.procs'), 'utf8').split('\n')).toContain(
        String(hearth.process.pid),
      );
    } else {
      expect(said).toContain(`the platform stays in its cpu cgroup ${home}`);
      expect(own).toEqual([]);
    }
  }, 30_000);

  it.runIf(process.arch === 'x64')(
    'the seccomp filter refuses ptrace, keyrings, mounts, bpf and raw sockets; ordinary sockets work',
    async () => {
      const response = await invoke(hearth.url, 'py-seccomp');
      expect(response.status, response.text).toBe(200);
      expect(response.json()).toEqual({
        ptrace: 'EPERM',
        keyctl: 'EPERM',
        add_key: 'EPERM',
        mount: 'EPERM',
        bpf: 'EPERM',
        userfaultfd: 'EPERM',
        raw_inet: 'EPERM',
        packet: 'EPERM',
        tcp: 'ok',
        netlink: 'ok',
      });
    },
  );

  it('an instance that crashed, was killed or timed out leaves no network namespace, so none of its nftables rules', async () => {
    await deployNetProbe(hearth.url, 'net-probe');
    for (const end of ['crash', 'kill', 'timeout'] as const) {
      const net = await probeNetwork(hearth.url, 'net-probe');
      const recordedAt = ticksSinceBoot();
      expect(net).not.toBe(HOST_NET);
      // While it lives, the namespace holds the allow-list's rules: that is what must go with it.
      const inside = holdersOf(net, recordedAt);
      expect(inside.length).toBeGreaterThan(0);
      expect(nftTablesOf(inside[0] ?? 0)).toContain('table inet hearth');
      if (end === 'crash')
        expect((await invoke(hearth.url, 'net-probe', { path: '?crash=1' })).status).toBe(502);
      else if (end === 'timeout')
        expect((await invoke(hearth.url, 'net-probe', { path: '?hang=1' })).status).toBe(504);
      else
        for (const pid of inside) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch (error) {
            // A short-lived process of the sandbox (nft, say) may be gone already.
            if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
          }
        }
      await expectNetworksGone([net], recordedAt);
      // The function is served again (the kernel may give a new namespace a freed one's number).
      await eventually('the function to answer again', async () =>
        (await invoke(hearth.url, 'net-probe')).status === 200 ? true : undefined,
      );
    }
  }, 60_000);

  it('an egress: allow instance that crashed leaves no network namespace, nor a slirp4netns holding one', async () => {
    await deployNetProbe(hearth.url, 'net-open', 'allow');
    const net = await probeNetwork(hearth.url, 'net-open');
    const recordedAt = ticksSinceBoot();
    // A namespace of its own, not the host's.
    expect(net).not.toBe(HOST_NET);
    expect(holdersOf(net, recordedAt).length).toBeGreaterThan(0);
    expect((await invoke(hearth.url, 'net-open', { path: '?crash=1' })).status).toBe(502);
    await expectNetworksGone([net], recordedAt);
  }, 60_000);

  it('a sandbox that ended (killed for memory, crashed) leaves no cgroup; after SIGTERM nothing remains', async () => {
    const roots = cgroupRoots(hearth);
    const twinRoot = idleTwinRoot(roots);
    expect(cellCgroups(roots).length).toBeGreaterThan(0);
    // Every cgroup left belongs to a live sandbox: the OOM-killed instance's went with it. A stem cell's is
    // made just before its sandbox joins it, so only one still empty a second later is left behind.
    const empty = (dir: string): boolean => {
      try {
        return readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() === '';
      } catch {
        return false; // removed meanwhile
      }
    };
    await eventually('no empty sandbox cgroup', async () => {
      const seen = cellCgroups(roots).filter(empty);
      if (seen.length === 0) return true;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      return seen.some(empty) ? undefined : true;
    });
    expect(sandboxesOf(hearth.dataDir).length).toBeGreaterThan(0);
    const dataDir = hearth.dataDir;
    await probeNetwork(hearth.url, 'net-probe');
    const networks = sandboxNetworks(dataDir);
    const recordedAt = ticksSinceBoot();
    expect(networks.length).toBeGreaterThan(0);
    // The container runtime keeps cgroups of its own, named after its state dir (run/containers).
    const containerRoots = roots.map((root) =>
      join(
        dirname(root),
        createHash('sha256')
          .update(join(dataDir, 'run', 'containers'))
          .digest('hex')
          .slice(0, 12),
      ),
    );
    expect(containerRoots.some((root) => existsSync(root))).toBe(true);
    await hearth.stop('SIGTERM');
    // The platform removed all of it itself: the harness's stop found nothing left to reclaim.
    expect(hearth.leftBehind()).toEqual([]);
    expect(sandboxesOf(dataDir)).toEqual([]);
    await expectNetworksGone(networks, recordedAt);
    for (const root of [...roots, ...containerRoots]) expect(existsSync(root), root).toBe(false);
    if (twinRoot !== undefined) expect(existsSync(twinRoot), twinRoot).toBe(false);
    expect(mountsUnder(dataDir)).toEqual([]);
  }, 30_000);
});

describe('after SIGKILL', () => {
  it('the next start removes what the killed run left; SIGINT then leaves nothing', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'hearth-e2e-walls-'));
    const platforms: Hearth[] = [];
    try {
      const first = await startHearth({ dataDir });
      platforms.push(first);
      const roots = cgroupRoots(first);
      expect(roots.length).toBe(3);
      // The stem cells are started just after `hearth ready`.
      const left = await eventually('sandbox cgroups', () => {
        const dirs = cellCgroups(roots);
        return dirs.length > 0 ? dirs : undefined;
      });
      await deployNetProbe(first.url, 'net-probe');
      await probeNetwork(first.url, 'net-probe');
      const firstNetworks = sandboxNetworks(dataDir);
      const firstRecordedAt = ticksSinceBoot();
      expect(firstNetworks.length).toBeGreaterThan(0);
      await first.stop('SIGKILL');

      const second = await startHearth({ dataDir });
      platforms.push(second);
      for (const dir of left) expect(existsSync(dir), dir).toBe(false);
      await expectNetworksGone(firstNetworks, firstRecordedAt);
      await probeNetwork(second.url, 'net-probe');
      const secondNetworks = sandboxNetworks(dataDir);
      const secondRecordedAt = ticksSinceBoot();
      await second.stop('SIGINT');
      expect(sandboxesOf(dataDir)).toEqual([]);
      await expectNetworksGone(secondNetworks, secondRecordedAt);
      for (const root of roots) expect(existsSync(root), root).toBe(false);
      expect(mountsUnder(dataDir)).toEqual([]);
    } finally {
      // A failed assertion must not leave a platform running.
      for (const platform of platforms)
        if (platform.process.exitCode === null && platform.process.signalCode === null)
          await platform.stop('SIGTERM');
      await reclaimDataDir(dataDir, { remove: true });
    }
  }, 60_000);
});
