/**
 * The cgroup layouts this machine does not have (pure v2, a missing controller) as directories standing in
 * for cgroupfs: the files a kernel would create are written by hand; what Hearth writes is read back. The
 * v1/hybrid layout runs for real in test/e2e/walls.test.ts.
 */

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cgroups, joiningCgroups } from './cgroups.js';

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
    // Reclaim throttles the function itself before the hard limit kills it.
    expect(read('memory.high')).toBe(String(112 * 1024 ** 2));
    expect(read('cpu.max')).toBe('10000 20000');
    expect(read('pids.max')).toBe('64');
    writeFileSync(join(cell ?? '', 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
    expect(cgroups.oomKills('cell1')).toBe(1);
  });

  it("writes a new sandbox's memory wall ahead, and at bind only a function's that differs (issue 11)", () => {
    const mount = fakeMount('cpu memory pids');
    const cgroups = new Cgroups('/data/run/sandbox', mountinfoLine(mount, 'cgroup2', 'rw'));
    const [cell = ''] = cgroups.create('cell1', 256, false, 128 * 1024 ** 2);
    const read = (file: string): string => readFileSync(join(cell, file), 'utf8');
    expect(read('memory.max')).toBe(String(128 * 1024 ** 2));
    expect(read('memory.high')).toBe(String(112 * 1024 ** 2));
    // The bind's own value is not written again: a stand-in for the kernel's file shows whether it was.
    writeFileSync(join(cell, 'memory.max'), 'untouched');
    cgroups.apply('cell1', LIMITS);
    expect(read('memory.max')).toBe('untouched');
    const [other = ''] = cgroups.create('cell2', 256, false, 128 * 1024 ** 2);
    cgroups.apply('cell2', { ...LIMITS, memoryBytes: 256 * 1024 ** 2 });
    expect(readFileSync(join(other, 'memory.max'), 'utf8')).toBe(String(256 * 1024 ** 2));
  });

  it('a sandbox booted in the background has the least CPU weight until it is hastened or bound (issue 11)', () => {
    const mount = fakeMount('cpu memory pids');
    const cgroups = new Cgroups('/data/run/sandbox', mountinfoLine(mount, 'cgroup2', 'rw'));
    const [root] = cgroups.roots;
    cgroups.create('refill', 256, true);
    const weight = (id: string): string => readFileSync(join(root ?? '', id, 'cpu.weight'), 'utf8');
    expect(weight('refill')).toBe('1');
    cgroups.foreground('refill');
    expect(weight('refill')).toBe('100');
    cgroups.create('refill2', 256, true);
    cgroups.apply('refill2', LIMITS);
    expect(weight('refill2')).toBe('100');
  });

  it('turns swap off and sets pids.max when a sandbox is created, so the bind writes them only if the function changes them (issue 11)', () => {
    const memory = fakeMount('');
    const pids = fakeMount('');
    const cgroups = new Cgroups(
      '/data/run/sandbox',
      [mountinfoLine(memory, 'cgroup', 'rw,memory'), mountinfoLine(pids, 'cgroup', 'rw,pids')].join('\n'),
    );
    cgroups.create('cell1', 256);
    const memoryCell = join(cgroups.roots[0] ?? '', 'cell1');
    const pidsCell = join(cgroups.roots[1] ?? '', 'cell1');
    // No swap accounting here: swappiness 0 from the start, the stem cell's boot included.
    expect(readFileSync(join(memoryCell, 'memory.swappiness'), 'utf8')).toBe('0');
    expect(readFileSync(join(pidsCell, 'pids.max'), 'utf8')).toBe('256');
    // Marks telling whether the bind wrote again what the cell has already.
    writeFileSync(join(memoryCell, 'memory.swappiness'), 'untouched');
    writeFileSync(join(pidsCell, 'pids.max'), 'untouched');
    cgroups.apply('cell1', { ...LIMITS, pids: 256 });
    expect(readFileSync(join(memoryCell, 'memory.limit_in_bytes'), 'utf8')).toBe(String(128 * 1024 ** 2));
    expect(readFileSync(join(memoryCell, 'memory.swappiness'), 'utf8')).toBe('untouched');
    expect(readFileSync(join(pidsCell, 'pids.max'), 'utf8')).toBe('untouched');
    // A function with a pids limit of its own gets it.
    cgroups.create('cell2', 256);
    cgroups.apply('cell2', { ...LIMITS, pids: 32 });
    expect(readFileSync(join(cgroups.roots[1] ?? '', 'cell2', 'pids.max'), 'utf8')).toBe('32');
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

  it('puts the platform in a cgroup of its own weighted above its sandboxes, and marks a sandbox at its CPU quota idle until it is calm', {
    timeout: 30_000,
  }, async () => {
    const cpu = fakeMount('');
    const cgroups = new Cgroups(
      '/data/run/sandbox',
      mountinfoLine(cpu, 'cgroup', 'rw,cpu'),
      () => '1:cpu:/\n',
    );
    const [root = ''] = cgroups.roots;
    expect(cgroups.start()).toContain('the platform moved from cpu cgroup / into');
    const platform = join(root, `platform-${process.pid}`);
    expect(readFileSync(join(platform, 'cpu.shares'), 'utf8')).toBe('10240');
    expect(readFileSync(join(platform, 'cgroup.procs'), 'utf8')).toBe(String(process.pid));
    const [cell = ''] = cgroups.create('cell1', 256, true);
    const shares = (): string => readFileSync(join(cell, 'cpu.shares'), 'utf8');
    const idle = (): string => readFileSync(join(cell, 'cpu.idle'), 'utf8');
    // A refill boots as background work; bound, it competes at the default weight.
    expect(shares()).toBe('2');
    cgroups.apply('cell1', LIMITS);
    expect(shares()).toBe('1024');
    writeFileSync(join(cell, 'cpu.idle'), '0');
    writeFileSync(join(cell, 'cpu.stat'), 'nr_periods 10\nnr_throttled 0\nthrottled_time 0\n');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(idle()).toBe('0');
    // It reached its quota once (a new instance loading its code): idle, and a second later full weight.
    writeFileSync(join(cell, 'cpu.stat'), 'nr_periods 20\nnr_throttled 5\nthrottled_time 9000000\n');
    await until(() => idle() === '1');
    const blip = Date.now();
    await until(() => idle() === '0');
    expect(Date.now() - blip).toBeLessThan(5000);
    // It keeps reaching it (a hog): idle, and only after ten calm seconds full weight again.
    for (let throttled = 6; throttled < 12; throttled++) {
      writeFileSync(
        join(cell, 'cpu.stat'),
        `nr_periods 40\nnr_throttled ${throttled}\nthrottled_time 9000000\n`,
      );
      await new Promise((resolve) => setTimeout(resolve, 120));
    }
    expect(idle()).toBe('1');
    const hog = Date.now();
    await until(() => idle() === '0', 20_000);
    expect(Date.now() - hog).toBeGreaterThan(8000);
  });

  it('marks a sandbox idle when its CPU time nears all its quota allows, throttled or not (cgroup v2 usage_usec)', async () => {
    const mount = fakeMount('cpu');
    const cgroups = new Cgroups('/data/run/sandbox', mountinfoLine(mount, 'cgroup2', 'rw'), () => '0::/\n');
    cgroups.start();
    const [cell = ''] = cgroups.create('cell1', 256);
    cgroups.apply('cell1', { ...LIMITS, cpu: 64 });
    const idle = (): string => readFileSync(join(cell, 'cpu.idle'), 'utf8');
    writeFileSync(join(cell, 'cpu.idle'), '0');
    writeFileSync(join(cell, 'cpu.stat'), 'usage_usec 1000\nnr_periods 0\nnr_throttled 0\n');
    await new Promise((resolve) => setTimeout(resolve, 300));
    // A little CPU: a neighbour answering its requests keeps its full weight.
    writeFileSync(join(cell, 'cpu.stat'), 'usage_usec 2000\nnr_periods 0\nnr_throttled 0\n');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(idle()).toBe('0');
    // Every core flat out (its quota of 64 is more than this machine has, so it is never throttled).
    writeFileSync(join(cell, 'cpu.stat'), `usage_usec ${2000 + 3600e6}\nnr_periods 0\nnr_throttled 0\n`);
    await until(() => idle() === '1');
  });

  it("stays in a service manager's cgroup unless the config moves it, and says so", () => {
    const cpu = fakeMount('');
    const info = mountinfoLine(cpu, 'cgroup', 'rw,cpu');
    const unit = (): string => '1:cpu:/system.slice/hearth.service\n';
    const stays = new Cgroups('/data/run/sandbox', info, unit);
    const said = stays.start();
    expect(said).toContain('stays in its cpu cgroup /system.slice/hearth.service');
    expect(said).toContain('platformCpuCgroup: true');
    expect(existsSync(join(stays.roots[0] ?? '', `platform-${process.pid}`))).toBe(false);
    const moves = new Cgroups('/data/run/sandbox', info, unit);
    expect(moves.start(true)).toContain('limits set on its former cgroup no longer hold it');
    expect(existsSync(join(moves.roots[0] ?? '', `platform-${process.pid}`))).toBe(true);
    const never = new Cgroups('/data/run/sandbox', info, () => '1:cpu:/\n');
    expect(never.start(false)).toContain('stays in its cpu cgroup /');
  });

  it("starts a sandbox's helpers in its cpu cgroup and shared helpers in one of a sandbox's weight", () => {
    const cpu = fakeMount('');
    const memory = fakeMount('');
    const cgroups = new Cgroups(
      '/data/run/sandbox',
      [mountinfoLine(memory, 'cgroup', 'rw,memory'), mountinfoLine(cpu, 'cgroup', 'rw,cpu')].join('\n'),
    );
    const cpuRoot = cgroups.roots[1] ?? '';
    cgroups.create('cell1', 256);
    // Under the cpu controller only: its memory and processes stay out of the function's walls.
    expect(cgroups.helperCgroups('cell1')).toEqual([join(cpuRoot, 'cell1')]);
    expect(cgroups.helperCgroups()).toEqual([join(cpuRoot, 'helpers')]);
    expect(existsSync(join(cpuRoot, 'helpers'))).toBe(true);
    expect(joiningCgroups([], '/bin/echo', ['hi'])).toEqual({ command: '/bin/echo', args: ['hi'] });
    const joined = joiningCgroups([join(cpuRoot, 'cell1')], '/bin/echo', ['hi']);
    expect(joined.command).toBe('/bin/sh');
    expect(joined.args.slice(-4)).toEqual([join(cpuRoot, 'cell1'), '--', '/bin/echo', 'hi']);
  });
});

async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`still not so: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
