/**
 * @module End-to-end: the Python fork server (issue 11). A sandboxed Python function is forked from a booted
 * guest into its own sandbox rather than booting Python there, and keeps every wall a booted one has: its
 * uid, no capabilities, no new privileges, the seccomp filter, its own pid, mount, network and uts
 * namespaces, and nothing that names the host's paths. Off by default (config `forkServer`); the test turns it on with `HEARTH_ZYGOTE=on`.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childrenNamed, cpuCgroupOf } from '../support/cgroups.js';
import {
  api,
  deployFolder,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

/** Reports what the function can see of its walls. */
const PROBE = `
import ctypes, os, socket, sys, traceback


def status():
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def read(path):
    with open(path, "rb") as handle:
        return handle.read().replace(b"\\0", b" ").decode(errors="replace")


def handler(event, context):
    fields = status()
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=1).close()
        network = "reached"
    except OSError as error:
        network = type(error).__name__
    try:
        raise ValueError("where")
    except ValueError:
        trace = traceback.format_exc()
    return {
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "caps": [fields[key] for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
        "noNewPrivs": fields["NoNewPrivs"], "seccomp": fields["Seccomp"], "parent": int(fields["PPid"]),
        "pids": sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit()),
        "hostname": socket.gethostname(), "cwd": os.getcwd(), "root": sorted(os.listdir("/")),
        "unshareUser": libc.unshare(0x10000000), "network": network,
        "seen": read("/proc/self/environ") + read("/proc/self/cmdline") + read("/proc/self/mountinfo")
        + trace + " ".join(sys.path) + " ".join(str(getattr(m, "__file__", "")) for m in list(sys.modules.values())),
        "env": sorted(os.environ),
    }
`;

const platforms: Hearth[] = [];
const folders: TempFolder[] = [];

async function probe(hearth: Hearth, name: string): Promise<Record<string, unknown>> {
  const folder = await makeFolder({
    'hearth.yaml': manifest(name, '{ runtime: python3, env: { GREETING: hi } }'),
    'main.py': PROBE,
  });
  folders.push(folder);
  const deployed = await deployFolder(hearth.url, folder.dir, { name });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  const response = await invoke(hearth.url, name);
  expect(response.status, response.text).toBe(200);
  return response.json() as Record<string, unknown>;
}

/** Ends its process with status 7 in the middle of an invocation. */
const EXIT = `
import os


def handler(event, context):
    os._exit(7)
`;

async function exitAnswer(hearth: Hearth, name: string): Promise<{ status: number; error: unknown }> {
  const folder = await makeFolder({ 'hearth.yaml': manifest(name, '{ runtime: python3 }'), 'main.py': EXIT });
  folders.push(folder);
  const deployed = await deployFolder(hearth.url, folder.dir, { name, query: '?verify=false' });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  const response = await invoke(hearth.url, name);
  const error = (response.json() as { error?: { code?: unknown; message?: unknown } }).error;
  return { status: response.status, error: { code: error?.code, message: error?.message } };
}

let forked: Record<string, unknown>;
let booted: Record<string, unknown>;
let forkedHearth: Hearth;

beforeAll(async () => {
  forkedHearth = await startHearth({ env: { HEARTH_ZYGOTE: 'on' } });
  platforms.push(forkedHearth);
  const bootedHearth = await startHearth();
  platforms.push(bootedHearth);
  forked = await probe(forkedHearth, 'walls-forked');
  booted = await probe(bootedHearth, 'walls-booted');
});

afterAll(async () => {
  for (const platform of platforms) await platform.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('the Python fork server', () => {
  it('forks the guest into its sandbox: its parent is outside the sandbox, where a booted one has the sandbox init', () => {
    expect(forked.parent).toBe(0);
    expect(booted.parent).toBe(1);
  });

  it('runs the fork server in the helpers cgroup at one sandbox weight, never in the platform one', () => {
    const servers = [
      ...childrenNamed(forkedHearth.process.pid ?? 0, 'python3'),
      ...childrenNamed(forkedHearth.process.pid ?? 0, 'python3.11'),
    ];
    expect(servers.length).toBeGreaterThan(0);
    for (const pid of servers) expect(cpuCgroupOf(pid)).toMatch(/^\/hearth\/[0-9a-f]{12}\/helpers$/);
  });

  it('keeps every wall a booted guest has', () => {
    for (const result of [forked, booted]) {
      expect(result.uid).toBe(65534);
      expect(result.gid).toBe(65534);
      expect(result.groups).toEqual([]);
      expect(result.caps).toEqual(Array(5).fill('0000000000000000'));
      expect(result.noNewPrivs).toBe('1');
      expect(result.seccomp).toBe('2');
      expect(result.hostname).toBe('hearth');
      expect(result.unshareUser).toBe(-1);
      expect(result.network).not.toBe('reached');
      expect(result.root).toEqual(booted.root);
      expect(result.env).toEqual(booted.env);
      // Its own pid namespace: the sandbox's few processes, never the platform's or the fork server.
      expect((result.pids as number[]).every((pid) => pid < 10)).toBe(true);
    }
    expect(forked.cwd).toBe(booted.cwd);
  });

  it('reports a guest that exits as a booted one is reported: the same status, code and message', async () => {
    const [bootedHearth] = platforms.slice(1);
    if (bootedHearth === undefined) throw new Error('no platform');
    const fromForked = await exitAnswer(forkedHearth, 'exits-forked');
    const fromBooted = await exitAnswer(bootedHearth, 'exits-booted');
    expect(fromForked).toEqual(fromBooted);
    expect(String((fromForked.error as { message?: unknown }).message)).toContain('7');
  });

  it('names no host path: not in its environment, command line, mounts, tracebacks or modules', () => {
    for (const [platform, result] of [
      [forkedHearth, forked],
      [platforms[1], booted],
    ] as const) {
      const seen = String(result.seen);
      expect(seen).toContain('/hearth/guest/');
      expect(seen).not.toContain(platform?.dataDir ?? '/nowhere');
      expect(seen).not.toContain(process.cwd());
    }
  });
});

/** The platform's fork server: its child running the Python guest's bootstrap (its forks are its children). */
function forkServerOf(platformPid: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (parent === platformPid && cmdline.includes('/hearth/guest/bootstrap.py')) return Number(entry);
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined;
}

describe('a fork server that hangs', () => {
  it('is replaced; the cold start waiting on it boots its guest in its sandbox instead, and says so', async () => {
    // No Python stem cells kept ready: every cold start below forks (or boots) a guest of its own.
    const config = await makeFolder({ 'config.yaml': 'stemCells: { python3: 0 }\n' });
    folders.push(config);
    const hearth = await startHearth({
      env: { HEARTH_ZYGOTE: 'on' },
      args: ['--config', join(config.dir, 'config.yaml')],
    });
    platforms.push(hearth);
    expect((await probe(hearth, 'hang-probe')).parent).toBe(0);
    const hung = forkServerOf(hearth.process.pid as number);
    if (hung === undefined) throw new Error('no fork server');
    process.kill(hung, 'SIGSTOP');
    const coldStart = async (): Promise<Record<string, unknown>> => {
      await api(hearth.url, '/api/v1/namespaces/default/functions/hang-probe/instances', {
        method: 'DELETE',
      });
      const response = await invoke(hearth.url, 'hang-probe');
      expect(response.status, response.text).toBe(200);
      return response.json() as Record<string, unknown>;
    };
    // Booted by its sandbox: its parent is the sandbox's init, as without a fork server.
    expect((await coldStart()).parent).toBe(1);
    expect(hearth.stderr()).toContain('the fork server did not answer a fork within');
    expect(hearth.stderr()).toContain('the guest boots in its sandbox instead');
    // The next cold start is forked again, by a fresh server.
    expect((await coldStart()).parent).toBe(0);
    expect(hearth.stderr()).toContain('starting the fork server again');
    expect(forkServerOf(hearth.process.pid as number)).not.toBe(hung);
  });
});
