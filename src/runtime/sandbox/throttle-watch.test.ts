/**
 * The CPU throttle watch's reads against a directory standing in for cgroupfs (as cgroups.test.ts does),
 * with a sandbox's `cpu.stat` a named pipe: a read of it waits until the test writes, as a cgroupfs read
 * waits behind a busy cgroup lock. The watch must keep the gateway's thread free meanwhile, and mark the
 * sandbox from what the read answers. Its marking rules are tested through `Cgroups` in cgroups.test.ts.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cgroups } from './cgroups.js';

const dirs: string[] = [];
const children: ChildProcess[] = [];
const pipes: string[] = [];

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  // A look may still wait on a pipe: a writer that opens and closes it ends that read (empty: dropped).
  for (const pipe of pipes.splice(0)) for (let attempt = 0; attempt < 3; attempt++) writeToPipe(pipe, '');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Writes to a named pipe whose reader is waiting now; false when none is (ENXIO). */
function writeToPipe(pipe: string, text: string): boolean {
  let fd: number;
  try {
    fd = openSync(pipe, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    if (text !== '') writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return true;
}

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('the CPU throttle watch', () => {
  it('keeps the gateway thread free while a cpu.stat read waits, and marks the sandbox from its answer', async () => {
    const mount = mkdtempSync(join(tmpdir(), 'hearth-cgroupfs-'));
    dirs.push(mount);
    writeFileSync(join(mount, 'cgroup.controllers'), 'cpu');
    writeFileSync(join(mount, 'cgroup.subtree_control'), '');
    const cgroups = new Cgroups(
      '/data/run/sandbox',
      `40 30 0:40 / ${mount} rw,nosuid - cgroup2 cgroup2 rw`,
      () => '0::/\n',
    );
    try {
      const [cell = ''] = cgroups.create('cell1', 256);
      writeFileSync(join(cell, 'cpu.idle'), '0');
      const stat = join(cell, 'cpu.stat');
      rmSync(stat, { force: true });
      execFileSync('mkfifo', [stat]);
      pipes.push(stat);
      // Were the read to block the thread, this writer (another process) would end it after 5 s with a
      // calm sandbox's figures: the test's own write below would then find no reader waiting.
      children.push(spawn('sh', ['-c', `sleep 5; printf 'nr_periods 1\\nnr_throttled 0\\n' > '${stat}'`]));
      cgroups.start();
      cgroups.apply('cell1', { memoryBytes: 128 * 1024 ** 2, cpu: 0.5, pids: 64 });
      // The watch looks within 25 ms; its read of the pipe waits meanwhile, and timers still fire.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(writeToPipe(stat, 'usage_usec 1000\nnr_periods 20\nnr_throttled 5\n'), 'a read waiting').toBe(
        true,
      );
      await until(() => readFileSync(join(cell, 'cpu.idle'), 'utf8') === '1');
    } finally {
      // The fake tree's folders are not empty (a kernel's would be): only the watch's stop matters here.
      await cgroups.close().catch(() => undefined);
    }
  }, 30_000);
});
