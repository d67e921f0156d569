/**
 * A hog moved under the top-level idle cgroup, on this machine's real cgroup v1 cpu hierarchy (the kernel's
 * own files, a real process spinning at its quota): where /proc says it is, what moved and what did not.
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cpuCgroupOf } from '../../../test/support/cgroups.js';
import { Cgroups, joiningCgroups } from './cgroups.js';

const stateDir = mkdtempSync(join(tmpdir(), 'hearth-idle-top-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

/** The process's cgroup under a v1 controller, as the kernel names it. */
function cgroupOf(pid: number, controller: string): string | undefined {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  return lines.find((line) => line.split(':')[1]?.split(',').includes(controller))?.split(':')[2];
}

async function until(check: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`not so after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The cpu controller's v1 mount, where this machine has one in a hierarchy without memory and pids. */
function cpuMountV1(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [before, after] = line.split(' - ');
    const options = after?.split(' ')[2]?.split(',') ?? [];
    if (after?.startsWith('cgroup ') && options.includes('cpu') && !options.includes('memory'))
      return before?.split(' ')[4];
  }
  return undefined;
}

const cpuMount = cpuMountV1();

/**
 * A hundredth of a core (1 ms each 100 ms) instead of the sandbox's least quota (a twentieth): on a machine
 * so busy that a spinning process gets less than a twentieth anyway, that one is never throttled.
 */
function holdToOnePercent(dirs: readonly string[]): void {
  const cpu = dirs.find((dir) => existsSync(join(dir, 'cpu.cfs_quota_us')));
  if (cpu === undefined) throw new Error("no cpu cgroup among the sandbox's");
  writeFileSync(join(cpu, 'cpu.cfs_period_us'), '100000');
}

describe.runIf(cpuMount !== undefined)('a hog under the top-level idle cgroup (cgroup v1)', () => {
  it('moves a sandbox that keeps at its CPU quota into an idle top-level cgroup (cpu only, same quota) and back once calm; nothing stays', {
    timeout: 60_000,
  }, async () => {
    const cgroups = new Cgroups(stateDir);
    await cgroups.removeAll();
    // Leave the test's own process where it is.
    cgroups.start(false);
    const dirs = cgroups.create('hog', 64);
    cgroups.apply('hog', { memoryBytes: 64 * 1024 ** 2, cpu: 0.05, pids: 64 });
    holdToOnePercent(dirs);
    // Spins for two seconds (throttled all along), then sleeps.
    const command = joiningCgroups(dirs, process.execPath, [
      '-e',
      "const spin = (ms) => { const end = Date.now() + ms; while (Date.now() < end); }; spin(2000); process.on('SIGUSR2', () => spin(2000)); setInterval(() => {}, 1000);",
    ]);
    const hog = spawn(command.command, command.args, { stdio: 'ignore' });
    const pid = hog.pid ?? 0;
    try {
      // Inside from the shell's first line, before node starts (the cpu one may have moved on already).
      await until(() => /^\/hearth\/[0-9a-f]{12}\/hog$/.test(cgroupOf(pid, 'pids') ?? ''), 5000);
      const home = cgroupOf(pid, 'pids');
      const memory = cgroupOf(pid, 'memory');
      const pids = cgroupOf(pid, 'pids');
      expect(memory).toBe(home);
      await until(() => cpuCgroupOf(pid)?.startsWith('/hearth-idle/') === true, 10_000);
      const twin = join(cpuMount ?? '', cpuCgroupOf(pid) ?? '');
      expect(cpuCgroupOf(pid)).toBe(home?.replace(/^\/hearth\//, '/hearth-idle/'));
      expect(readFileSync(join(cpuMount ?? '', 'hearth-idle', 'cpu.idle'), 'utf8').trim()).toBe('1');
      expect(readFileSync(join(twin, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('1000');
      expect(readFileSync(join(twin, 'cpu.cfs_period_us'), 'utf8').trim()).toBe('100000');
      // Its memory and process walls hold it as before.
      expect(cgroupOf(pid, 'memory')).toBe(memory);
      expect(cgroupOf(pid, 'pids')).toBe(pids);
      // Calm for ten seconds (it kept at its quota): back in its own cgroup, the twin gone.
      await until(() => cpuCgroupOf(pid) === home, 30_000);
      expect(existsSync(twin)).toBe(false);
      // A hog once, it goes back at its next burst.
      hog.kill('SIGUSR2');
      await until(() => cpuCgroupOf(pid)?.startsWith('/hearth-idle/') === true, 10_000);
    } finally {
      hog.kill('SIGKILL');
      await new Promise((resolve) => hog.once('exit', resolve));
      await cgroups.remove('hog');
      await cgroups.close();
    }
  });

  it('a hog still at the top level when its sandbox goes, or left by a killed run, is removed with it', {
    timeout: 60_000,
  }, async () => {
    const cgroups = new Cgroups(stateDir);
    await cgroups.removeAll();
    cgroups.start(false);
    const dirs = cgroups.create('hog', 64);
    cgroups.apply('hog', { memoryBytes: 64 * 1024 ** 2, cpu: 0.05, pids: 64 });
    holdToOnePercent(dirs);
    const command = joiningCgroups(dirs, process.execPath, ['-e', 'for (;;);']);
    const hog = spawn(command.command, command.args, { stdio: 'ignore' });
    const pid = hog.pid ?? 0;
    await until(() => cpuCgroupOf(pid)?.startsWith('/hearth-idle/') === true, 10_000);
    const twin = join(cpuMount ?? '', cpuCgroupOf(pid) ?? '');
    // A platform started again on the same state finds the twin (and kills what is in it).
    const again = new Cgroups(stateDir);
    expect(await again.removeAll()).toBeGreaterThanOrEqual(2);
    expect(existsSync(twin)).toBe(false);
    // Killed (SIGKILL) by the removal, maybe before this line.
    if (hog.exitCode === null && hog.signalCode === null)
      await new Promise((resolve) => hog.once('exit', resolve));
    expect(hog.signalCode).toBe('SIGKILL');
    await cgroups.close();
    expect(existsSync(join(twin, '..'))).toBe(false);
  });
});
