import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSlotManager, type GuestProcess, type Isolation, type SlotManager } from '../runtime/index.js';
import { GuestProcess as Guest } from '../runtime/ipc/guest-process.js';
import { NodeRuntime } from '../runtime/node/index.js';
import { ProcessIsolation } from '../runtime/process/index.js';
import { type StemCellBurst, StemCellPool } from './stem-cells.js';

/**
 * The process isolation, except that its first `failures` starts are a process that fails the way
 * bubblewrap does when setting up a sandbox's namespaces loses a race: a `bwrap:` line and exit 1.
 */
function flakyIsolation(failures: number, message: string): Isolation & { starts: number } {
  const real = new ProcessIsolation();
  const isolation = {
    name: real.name,
    unavailable: real.unavailable,
    starts: 0,
    guestPathOf: real.guestPathOf.bind(real),
    run: real.run.bind(real),
    start(...args: Parameters<Isolation['start']>): GuestProcess {
      isolation.starts += 1;
      if (isolation.starts > failures) return real.start(args[0], args[1]);
      const child = spawn(
        process.execPath,
        ['-e', `process.stderr.write(${JSON.stringify(`${message}\n`)}); process.exit(1)`],
        { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] },
      );
      return new Guest(child);
    },
  };
  return isolation;
}

let dir: string | undefined;
let slots: SlotManager | undefined;
let pool: StemCellPool | undefined;

afterEach(async () => {
  await pool?.close();
  await slots?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function poolWith(
  isolation: Isolation,
  warnings: string[],
  target = 0,
  burst?: StemCellBurst,
): Promise<StemCellPool> {
  dir = await mkdtemp(join(tmpdir(), 'hearth-stem-'));
  slots = await createSlotManager(join(dir, 'slots'), { allowMount: false });
  pool = new StemCellPool(
    new NodeRuntime(),
    isolation,
    'host',
    slots,
    target,
    (message) => warnings.push(message),
    undefined,
    burst,
  );
  return pool;
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('stem cells', () => {
  it('try again when the sandbox setup itself failed, and say so', async () => {
    const isolation = flakyIsolation(2, 'bwrap: loopback: Failed RTM_NEWADDR: No child processes');
    const warnings: string[] = [];
    const cell = await (await poolWith(isolation, warnings)).take();
    expect(cell.guest.exited).toBe(false);
    expect(isolation.starts).toBe(3);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain('sandbox setup failed, trying again');
    expect(warnings[0]).toContain('RTM_NEWADDR');
    cell.guest.kill();
  });

  it('do not retry a runtime that fails on its own, and name the cause', async () => {
    const isolation = flakyIsolation(1, 'SyntaxError: the runtime itself is broken');
    const warnings: string[] = [];
    await expect((await poolWith(isolation, warnings)).take()).rejects.toMatchObject({
      code: 'HEARTH_E_START_FAILED',
      message: expect.stringMatching(
        /node20 runtime process .*could not be started.*the runtime itself is broken/,
      ),
    });
    expect(isolation.starts).toBe(1);
    expect(warnings).toEqual([]);
  });

  it('serve a burst of takes on an empty pool as boots finish, booting a few at a time', async () => {
    const warnings: string[] = [];
    const empty = await poolWith(new ProcessIsolation(), warnings);
    const takes = Array.from({ length: 12 }, () => empty.take());
    // Not a burst's worth of runtimes booting at once: at most four per core.
    expect(empty.stats().starting).toBeLessThanOrEqual(Math.min(12, 4 * availableParallelism()));
    expect(empty.stats().starting).toBeGreaterThan(0);
    const cells = await Promise.all(takes);
    expect(new Set(cells.map((cell) => cell.guest.pid)).size).toBe(12);
    expect(cells.every((cell) => !cell.guest.exited)).toBe(true);
    expect(empty.stats()).toMatchObject({ taken: 12, misses: 12, ready: 0 });
    for (const cell of cells) await empty.discard(cell);
    expect(warnings).toEqual([]);
  });

  it('give up after three failed sandbox setups with the cause, not an internal error', async () => {
    const isolation = flakyIsolation(5, 'bwrap: loopback: Failed RTM_NEWADDR: No child processes');
    const warnings: string[] = [];
    await expect((await poolWith(isolation, warnings)).take()).rejects.toMatchObject({
      code: 'HEARTH_E_START_FAILED',
      message: expect.stringContaining('bwrap: loopback: Failed RTM_NEWADDR'),
    });
    expect(isolation.starts).toBe(3);
    expect(warnings).toHaveLength(2);
  });

  it('keep more cells ready while takes come in a burst, and let them go once it is over', async () => {
    const warnings: string[] = [];
    const burst = { limit: 4, windowMs: 60_000, calmMs: 1500 };
    const small = await poolWith(new ProcessIsolation(), warnings, 1, burst);
    await small.warm();
    expect(small.stats()).toMatchObject({ ready: 1, target: 1, burst: 0 });
    const taken = [];
    for (let i = 0; i < 3; i++) taken.push(await small.take());
    // Three takes within the window: three cells wanted ready, not the target's one.
    expect(small.stats()).toMatchObject({ target: 1, burst: 2 });
    await until(() => small.stats().ready === 3);
    // More takes than the burst limit keep it at the limit.
    for (let i = 0; i < 3; i++) taken.push(await small.take());
    expect(small.stats().burst).toBe(3);
    await until(() => small.stats().ready === 4);
    // No take for `calmMs`: back to the target.
    await until(() => small.stats().burst === 0 && small.stats().ready === 1);
    for (const cell of taken) await small.discard(cell);
    expect(warnings).toEqual([]);
  });

  it('boot nothing while the idle functions they hold a cell for start back to back, and refill once the burst is over', async () => {
    const warnings: string[] = [];
    // A burst window as long as the test: without the floor, six takes would want four cells more ready.
    const floored = await poolWith(new ProcessIsolation(), warnings, 1, {
      limit: 4,
      windowMs: 60_000,
      calmMs: 60_000,
    });
    // The sizer's tick: six deployed functions without an instance, a cell ready for each.
    floored.setTarget(1, { cells: 6, functions: 6, hold: 6 });
    await until(() => floored.stats().ready === 6 && floored.stats().starting === 0);
    const bootsBefore = floored.stats().boots;
    const taken = [];
    for (let i = 0; i < 6; i++) {
      // The scheduler announces a start of a function with no instance, then its cold start takes a cell.
      floored.noteIdleStart();
      taken.push(await floored.take());
      // A tick in the middle of the burst has seen its starts: the sizer wants 4 cells kept from now on, which
      // the pool boots once the burst is over (every idle function still has its cell).
      if (i === 2) floored.setTarget(4, { cells: 3, functions: 3, hold: 6 });
      expect(floored.stats()).toMatchObject({ ready: 5 - i, floor: 5 - i, starting: 0, misses: 0, burst: 0 });
      // The next call of the burst comes after this one's cold start, a few milliseconds later.
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(floored.stats()).toMatchObject({ starting: 0, boots: bootsBefore });
    }
    // Over: the pool refills to its size from starts, the floor being empty now.
    await until(() => floored.stats().ready === 4 && floored.stats().starting === 0);
    expect(floored.stats()).toMatchObject({ target: 4, floor: 0, boots: bootsBefore + 4, misses: 0 });
    for (const cell of taken) await floored.discard(cell);
    expect(warnings).toEqual([]);
  });

  it('refill at once a cell a function with instances took from under the idle ones', async () => {
    const warnings: string[] = [];
    const floored = await poolWith(new ProcessIsolation(), warnings, 1);
    floored.setTarget(1, { cells: 3, functions: 3, hold: 3 });
    await until(() => floored.stats().ready === 3 && floored.stats().starting === 0);
    // A scale-up of a busy function (no `noteIdleStart`): the three idle functions have two cells left.
    const cell = await floored.take();
    expect(floored.stats()).toMatchObject({ ready: 2, floor: 3 });
    await until(() => floored.stats().ready === 3);
    await floored.discard(cell);
    expect(warnings).toEqual([]);
  });

  it('keep the cell a start is on its way to take when the target falls before it takes (a pre-warm)', async () => {
    const warnings: string[] = [];
    const prewarmed = await poolWith(new ProcessIsolation(), warnings, 1);
    await prewarmed.warm();
    // A pre-warm due: the sizer's tick boots a spare for it, so that it does not take the pool's last cell.
    prewarmed.setTarget(2);
    await until(() => prewarmed.stats().ready === 2 && prewarmed.stats().starting === 0);
    const bootsBefore = prewarmed.stats().boots;
    // The tick that starts the pre-warm: its cold start reserves a cell, then the sizer, the start seen, lowers
    // the target before the cold start (its code checked out) takes.
    const unreserve = prewarmed.reserve();
    prewarmed.setTarget(1);
    expect(prewarmed.stats()).toMatchObject({ ready: 2, target: 1 });
    unreserve();
    const cell = await prewarmed.take();
    // The next cold start still finds a cell, and nothing was booted to make up for one let go.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(prewarmed.stats()).toMatchObject({ ready: 1, starting: 0, boots: bootsBefore, misses: 0 });
    // A reservation given up (the start failed before its take) holds nothing at the next trim.
    prewarmed.setTarget(2);
    await until(() => prewarmed.stats().ready === 2 && prewarmed.stats().starting === 0);
    prewarmed.reserve()();
    prewarmed.setTarget(1);
    expect(prewarmed.stats().ready).toBe(1);
    await prewarmed.discard(cell);
    expect(warnings).toEqual([]);
  });

  it('serve the takes waiting on a pool that is retired (an evicted image pool), then keep nothing', async () => {
    const warnings: string[] = [];
    const evicted = await poolWith(new ProcessIsolation(), warnings, 2);
    const takes = [evicted.take(), evicted.take(), evicted.take()];
    const retired = evicted.retire();
    const cells = await Promise.all(takes);
    expect(cells.every((cell) => !cell.guest.exited)).toBe(true);
    await retired;
    // No refill once retired: its target's cells are never started.
    expect(evicted.stats()).toMatchObject({ ready: 0, starting: 0, target: 0 });
    for (const cell of cells) await evicted.discard(cell);
    expect(warnings).toEqual([]);
  });

  it('stay off during a burst when the operator turned the pool off (target 0)', async () => {
    const warnings: string[] = [];
    const off = await poolWith(new ProcessIsolation(), warnings, 0, {
      limit: 4,
      windowMs: 60_000,
      calmMs: 60_000,
    });
    const cells = [await off.take(), await off.take()];
    expect(off.stats()).toMatchObject({ target: 0, burst: 0, misses: 2 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(off.stats()).toMatchObject({ ready: 0, starting: 0 });
    for (const cell of cells) await off.discard(cell);
  });
});
