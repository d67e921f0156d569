/** @module Stem-cell pools grow with bursts of instance starts and shrink back once they are over. */

import { describe, expect, it } from 'vitest';
import type { AutoscalerTiming } from './policy.js';
import { type SizablePool, StemCellSizer } from './stem-cell-sizer.js';

const TIMING: AutoscalerTiming = {
  tickMs: 100,
  stableWindowMs: 2_000,
  panicWindowMs: 500,
  panicThreshold: 2,
  maxScaleDownRate: 2,
};

function pool(target: number): SizablePool & { target: number } {
  return {
    target,
    stats() {
      return { runtime: 'node20', isolation: 'sandbox', network: 'none', target: this.target };
    },
    setTarget(next: number) {
      this.target = next;
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

  it('leaves a pool the operator sized to 0 switched off', () => {
    const sizer = new StemCellSizer(TIMING, 8);
    const off = pool(0);
    const pools = new Map([['python3/sandbox/none', off]]);
    sizer.tick(pools);
    for (let i = 0; i < 10; i++) sizer.noteStart('python3/sandbox/none');
    expect(sizer.tick(pools)).toEqual([]);
    expect(off.target).toBe(0);
  });
});
