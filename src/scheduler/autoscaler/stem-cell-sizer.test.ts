/** @module Stem-cell pools grow with bursts of instance starts and shrink back once they are over. */

import { describe, expect, it } from 'vitest';
import type { AutoscalerTiming } from './policy.js';
import { type SizablePool, type StemCellFloorNow, StemCellSizer } from './stem-cell-sizer.js';

const TIMING: AutoscalerTiming = {
  tickMs: 100,
  stableWindowMs: 2_000,
  panicWindowMs: 500,
  panicThreshold: 2,
  maxScaleDownRate: 2,
};

function pool(
  target: number,
  bootMs?: number,
  runtime = 'node20',
): SizablePool & { target: number; misses: number; floor: StemCellFloorNow | undefined } {
  // `target` is what the pool refills to, as a real pool's stats say: its size from starts, or its floor.
  return {
    target,
    misses: 0,
    floor: undefined,
    stats() {
      return {
        runtime,
        isolation: 'sandbox',
        network: 'none',
        target: this.target,
        misses: this.misses,
        ...(bootMs === undefined ? {} : { bootMs }),
      };
    },
    setTarget(next: number, floor?: StemCellFloorNow) {
      this.target = Math.max(next, floor?.cells ?? 0);
      this.floor = floor;
    },
  };
}

describe('StemCellSizer', () => {
  it('keeps as many cells as the largest recent burst of starts, up to max, then returns to the configured size', () => {
    const sizer = new StemCellSizer(TIMING, 8);
    const node = pool(2);
    const pools = new Map([['node20/sandbox/none', node]]);
    expect(sizer.tick(pools)).toEqual([]);
    for (let i = 0; i < 5; i++) sizer.noteStart('node20/sandbox/none');
    const grown = sizer.tick(pools);
    expect(node.target).toBe(5);
    expect(grown[0]).toMatchObject({ runtime: 'node20', from: 2, to: 5 });
    for (let i = 0; i < 30; i++) sizer.noteStart('node20/sandbox/none');
    sizer.tick(pools);
    expect(node.target).toBe(8);
    // Calm for a stable window: back to the configured 2.
    for (let i = 0; i < 25; i++) sizer.tick(pools);
    expect(node.target).toBe(2);
  });

  it('adds a cell for each start that found the pool empty, even without a burst, and gives it back when calm', () => {
    const sizer = new StemCellSizer(TIMING, 8);
    const node = pool(2);
    const pools = new Map([['node20/sandbox/none', node]]);
    sizer.tick(pools);
    // One start per panic window (5 ticks) never makes a burst, but two of them outran the refill.
    for (let i = 0; i < 4; i++) {
      sizer.noteStart('node20/sandbox/none');
      if (i % 2 === 1) node.misses += 1;
      for (let t = 0; t < 5; t++) sizer.tick(pools);
    }
    expect(node.target).toBe(4);
    // Ten stable windows (200 ticks, 4 of them already passed) without a miss take one back, the next ten another.
    for (let i = 0; i < 195; i++) sizer.tick(pools);
    expect(node.target).toBe(4);
    sizer.tick(pools);
    expect(node.target).toBe(3);
    for (let i = 0; i < 200; i++) sizer.tick(pools);
    expect(node.target).toBe(2);
  });

  it('leaves a pool the operator sized to 0 switched off', () => {
    const sizer = new StemCellSizer(TIMING, 8);
    const off = pool(0);
    const pools = new Map([['python3/sandbox/none', off]]);
    sizer.tick(pools);
    for (let i = 0; i < 10; i++) sizer.noteStart('python3/sandbox/none');
    expect(sizer.tick(pools)).toEqual([]);
    expect(off.target).toBe(0);
  });

  it('keeps enough cells for the starts that come while one boots: the rate of starts times the boot time', () => {
    const sizer = new StemCellSizer({ ...TIMING, panicWindowMs: 100 }, 8);
    const fast = pool(1, 20);
    const slow = pool(1, 1_000);
    const pools = new Map([
      ['node20/sandbox/none', fast],
      ['python3/sandbox/none', slow],
    ]);
    // Two starts a second on each, one per panic window: never a burst, never a miss.
    for (let i = 0; i < 100; i++) {
      if (i % 5 === 0) {
        sizer.noteStart('node20/sandbox/none');
        sizer.noteStart('python3/sandbox/none');
      }
      sizer.tick(pools);
    }
    // 0.04 starts during a 20 ms boot: one cell covers it; 2 during a 1 s boot: 2 + 2√2, five cells.
    expect(fast.target).toBe(1);
    expect(slow.target).toBe(5);
  });

  it('boots a cell ahead of an announced pre-warm due within two boot times, and no longer holds it after', () => {
    const sizer = new StemCellSizer(TIMING, 8);
    const node = pool(2, 150);
    const pools = new Map([['node20/sandbox/none', node]]);
    sizer.tick(pools);
    sizer.expectStart('node20/sandbox/none', 2_000);
    sizer.tick(pools);
    expect(node.target).toBe(2);
    sizer.expectStart('node20/sandbox/none', 350);
    sizer.expectStart('node20/sandbox/none', 0);
    const grown = sizer.tick(pools);
    expect(node.target).toBe(4);
    expect(grown[0]?.reason).toContain('2 pre-warms due');
    // Made (no longer announced): back to the configured size.
    sizer.tick(pools);
    expect(node.target).toBe(2);
  });

  describe('the floor sized from memory (issue 11)', () => {
    const MiB = 1024 ** 2;
    const floor = (memoryBytes: number) => ({
      perIdleFunction: 1,
      memoryBytes,
      cellBytes: (runtime: string) => (runtime === 'python3' ? 6 * MiB : 9 * MiB),
    });
    /** A node20 pool of 2 and a python3 pool of `pythonTarget`, by key. */
    const nodeAndPython = (pythonTarget = 2) => {
      const node = pool(2);
      const python = pool(pythonTarget, undefined, 'python3');
      const pools = new Map([
        ['node20/sandbox/none', node],
        ['python3/sandbox/none', python],
      ]);
      return { node, python, pools };
    };
    /** How many deployed functions of each runtime have no instance. */
    const withoutInstance = (node20: number, python3: number) =>
      new Map([
        ['node20/sandbox/none', node20],
        ['python3/sandbox/none', python3],
      ]);

    it('keeps a cell ready per deployed function without an instance, beyond the burst maximum', () => {
      const sizer = new StemCellSizer(TIMING, 8, floor(1024 * MiB));
      const { node, python, pools } = nodeAndPython();
      const changes = sizer.tick(pools, withoutInstance(24, 30));
      expect(node.target).toBe(24);
      expect(python.target).toBe(30);
      expect(changes[0]?.reason).toContain('24 deployed functions without an instance');
    });

    it('shares its memory among the pools in proportion when the idle functions would hold more', () => {
      // 100 node cells (900 MiB) and 100 python cells (600 MiB) want 1500 MiB; 750 MiB is half of that.
      const sizer = new StemCellSizer(TIMING, 8, floor(750 * MiB));
      const { node, python, pools } = nodeAndPython();
      const changes = sizer.tick(pools, withoutInstance(100, 100));
      expect(node.target).toBe(50);
      expect(python.target).toBe(50);
      expect(changes[0]?.reason).toContain('bounded by stemCellFloor.memory');
    });

    it('holds no floor for pools whose cells cost more than a runtime: egress, container images', () => {
      const sizer = new StemCellSizer(TIMING, 8, floor(1024 * MiB));
      const outbound = { ...pool(1), stats: () => ({ ...pool(1).stats(), network: 'outbound' }) };
      const pools = new Map([['node20/sandbox/outbound/128Mi', outbound]]);
      expect(sizer.tick(pools, new Map([['node20/sandbox/outbound/128Mi', 20]]))).toEqual([]);
      expect(outbound.target).toBe(1);
    });

    it('refills to the floor of the functions idle now, holds the cells of a floor that fell for a stable window, and never wakes a pool set to 0', () => {
      const sizer = new StemCellSizer(TIMING, 8, floor(1024 * MiB));
      const { node, python: off, pools } = nodeAndPython(0);
      sizer.tick(pools, withoutInstance(12, 12));
      expect(node.target).toBe(12);
      expect(node.floor).toEqual({ cells: 12, functions: 12, hold: 12 });
      expect(off.target).toBe(0);
      // Each of them now has an instance: nothing to refill for them (their cells were taken by their cold
      // starts), but the cells still ready are held for a stable window (20 ticks), then let go.
      for (let i = 0; i < 19; i++) expect(sizer.tick(pools, new Map())).toEqual([]);
      expect(node.target).toBe(2);
      expect(node.floor).toEqual({ cells: 0, functions: 0, hold: 12 });
      const released = sizer.tick(pools, new Map());
      expect(node.floor).toEqual({ cells: 0, functions: 0, hold: 0 });
      expect(released[0]).toMatchObject({ runtime: 'node20', from: 12, to: 2 });
    });

    it('tells the pool how many functions its floor is for, so that it lowers the floor itself as they start', () => {
      const sizer = new StemCellSizer(TIMING, 8, floor(150 * MiB));
      const node = pool(2);
      const pools = new Map([['node20/sandbox/none', node]]);
      // 24 node cells would take 216 MiB; 150 MiB holds 16 of them, for the 24 functions.
      sizer.tick(pools, new Map([['node20/sandbox/none', 24]]));
      expect(node.floor).toEqual({ cells: 16, functions: 24, hold: 16 });
      // Unchanged on the next tick: the pool is not told again (it keeps lowering its floor between ticks).
      node.floor = undefined;
      sizer.tick(pools, new Map([['node20/sandbox/none', 24]]));
      expect(node.floor).toBeUndefined();
    });
  });
});
