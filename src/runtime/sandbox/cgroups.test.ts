/**
 * The cgroup layouts this machine does not have (pure v2, a missing controller) as directories standing in
 * for cgroupfs: the files a kernel would create are written by hand; what Hearth writes is read back. The
 * v1/hybrid layout runs for real in test/e2e/walls.test.ts.
 */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cgroups } from './cgroups.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function fakeMount(controllers: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-cgroupfs-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'cgroup.controllers'), controllers);
  writeFileSync(join(dir, 'cgroup.subtree_control'), '');
  return dir;
}

function mountinfoLine(path: string, type: 'cgroup' | 'cgroup2', options: string): string {
  return `40 30 0:40 / ${path} rw,nosuid - ${type} ${type} ${options}`;
}

const LIMITS = { memoryBytes: 128 * 1024 ** 2, cpu: 0.5, pids: 64 };

describe('cgroups', () => {
  it('on cgroup v2 enables the controllers down to the sandbox and writes memory.max, swap 0, cpu.max, pids.max', () => {
    const mount = fakeMount('cpuset cpu io memory pids');
    const cgroups = new Cgroups('/data/run/sandbox', mountinfoLine(mount, 'cgroup2', 'rw'));
    expect(cgroups.status.map((status) => [status.wall, status.inForce])).toEqual([
      ['memory', true],
      ['cpu', true],
      ['pids', true],
    ]);
    // Written at every level (a stand-in file keeps only the last "+controller" a kernel would add).
    expect(readFileSync(join(mount, 'hearth', 'cgroup.subtree_control'), 'utf8')).toMatch(/^\+/);
    const [root] = cgroups.roots;
    const [cell] = cgroups.create('cell1', 256);
    expect(cell).toBe(join(root ?? '', 'cell1'));
    writeFileSync(join(cell ?? '', 'memory.swap.max'), 'max');
    cgroups.apply('cell1', LIMITS);
    const read = (file: string): string => readFileSync(join(cell ?? '', file), 'utf8');
    expect(read('memory.max')).toBe(String(128 * 1024 ** 2));
    expect(read('memory.swap.max')).toBe('0');
    expect(read('cpu.max')).toBe('10000 20000');
    expect(read('pids.max')).toBe('64');
    writeFileSync(join(cell ?? '', 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
    expect(cgroups.oomKills('cell1')).toBe(1);
  });

  it('prefers a v1 hierarchy to v2 and says which wall no controller holds', () => {
    const v2 = fakeMount('memory');
    const memory = fakeMount('');
    const cpu = fakeMount('');
    const cgroups = new Cgroups(
      '/data/run/sandbox',
      [
        mountinfoLine(memory, 'cgroup', 'rw,memory'),
        mountinfoLine(cpu, 'cgroup', 'rw,cpu'),
        mountinfoLine(v2, 'cgroup2', 'rw'),
      ].join('\n'),
    );
    expect(cgroups.status.find((status) => status.wall === 'memory')?.detail).toContain(
      `cgroup v1 at ${memory}`,
    );
    expect(cgroups.status.find((status) => status.wall === 'pids')).toEqual({
      wall: 'pids',
      inForce: false,
      detail: 'no cgroup pids controller is mounted (neither a v1 hierarchy nor enabled in cgroup v2)',
    });
    cgroups.create('cell1', 256);
    cgroups.apply('cell1', { ...LIMITS, cpu: 0.001 });
    const cell = join(cgroups.roots[0] ?? '', 'cell1');
    expect(readFileSync(join(cell, 'memory.limit_in_bytes'), 'utf8')).toBe(String(128 * 1024 ** 2));
    // No swap accounting here: swappiness 0 keeps the function out of swap instead.
    expect(readFileSync(join(cell, 'memory.swappiness'), 'utf8')).toBe('0');
    // The kernel's smallest quota, not a tenth of it.
    expect(readFileSync(join(cgroups.roots[1] ?? '', 'cell1', 'cpu.cfs_quota_us'), 'utf8')).toBe('1000');
  });

  it('two platforms on one machine get cgroups of their own; a restart finds its own again', () => {
    const mount = fakeMount('');
    const info = mountinfoLine(mount, 'cgroup', 'rw,pids');
    const first = new Cgroups('/a/run/sandbox', info);
    const second = new Cgroups('/b/run/sandbox', info);
    expect(first.roots[0]).not.toBe(second.roots[0]);
    expect(first.roots[0]?.startsWith(join(mount, 'hearth'))).toBe(true);
    expect(new Cgroups('/a/run/sandbox', info).roots[0]).toBe(first.roots[0]);
  });

  it('puts the platform in a cgroup of its own weighted above its sandboxes, and marks a sandbox at its CPU quota idle until it is calm', async () => {
    const cpu = fakeMount('');
    const cgroups = new Cgroups('/data/run/sandbox', mountinfoLine(cpu, 'cgroup', 'rw,cpu'));
    const [root = ''] = cgroups.roots;
    cgroups.start();
    const platform = join(root, `platform-${process.pid}`);
    expect(readFileSync(join(platform, 'cpu.shares'), 'utf8')).toBe('10240');
    expect(readFileSync(join(platform, 'cgroup.procs'), 'utf8')).toBe(String(process.pid));
    const [cell = ''] = cgroups.create('cell1', 256);
    cgroups.apply('cell1', LIMITS);
    const idle = (): string | undefined => {
      try {
        return readFileSync(join(cell, 'cpu.idle'), 'utf8');
      } catch {
        return undefined;
      }
    };
    writeFileSync(join(cell, 'cpu.stat'), 'nr_periods 10\nnr_throttled 0\nthrottled_time 0\n');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(idle()).toBeUndefined();
    // It reached its quota: idle (any other sandbox or the platform waking preempts it at once).
    writeFileSync(join(cell, 'cpu.stat'), 'nr_periods 20\nnr_throttled 5\nthrottled_time 9000000\n');
    await until(() => idle() === '1');
    // A second without reaching it: full weight again.
    await until(() => idle() === '0');
  });
});

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`still not so: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
