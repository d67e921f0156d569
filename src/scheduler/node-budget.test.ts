/**
 * @module The node budget's eviction choices, on plain pools and a chosen clock: who goes to make room for a
 * start, in which order, and who never does.
 */

import { describe, expect, it } from 'vitest';
import type { PooledInstance } from './function-pool.js';
import { type BudgetedFunction, type BudgetedPool, NodeBudget } from './node-budget.js';

const MiB = 1024 ** 2;

interface FakeInstance extends PooledInstance {
  readonly name: string;
}

function instance(name: string, idleMs: number, inFlight = 0): FakeInstance {
  return { name, state: 'ready', inFlight, lastUsedAt: Date.now() - idleMs, hasRoom: inFlight === 0 };
}

function fn(
  name: string,
  instances: FakeInstance[],
  options: { desired?: number; min?: number; memoryMiB?: number; isolation?: string } = {},
): BudgetedFunction<FakeInstance> & { active: BudgetedPool<FakeInstance> } {
  return {
    active: {
      instances,
      starting: 0,
      live: instances.length,
      version: {
        ref: { namespace: 'default', name },
        spec: {
          isolation: options.isolation ?? 'sandbox',
          limits: { memoryBytes: (options.memoryMiB ?? 128) * MiB },
          scaling: { min: options.min ?? 0 },
        },
      },
    },
    draining: [],
    scaling: { desired: options.desired ?? 0, decision: { keepIdleMs: 60_000 } },
  };
}

/** A budget over `functions` (expected idle ms by name), recording who it evicts. */
function budget(
  functions: Record<string, ReturnType<typeof fn>>,
  expected: Record<string, number>,
  limits: { maxInstances: number; maxMemoryMiB?: number; overcommit?: number },
): { budget: NodeBudget<FakeInstance, ReturnType<typeof fn>>; evicted: string[] } {
  const evicted: string[] = [];
  return {
    evicted,
    budget: new NodeBudget({
      maxInstances: limits.maxInstances,
      maxMemoryBytes: (limits.maxMemoryMiB ?? 1024 ** 2) * MiB,
      ...(limits.overcommit === undefined ? {} : { memoryOvercommit: limits.overcommit }),
      functions: () => Object.entries(functions).map(([name, f]) => [`default/${name}`, f] as const),
      expectedIdleMs: (key) => expected[key.slice('default/'.length)] ?? Number.POSITIVE_INFINITY,
      evict: (_fn, victim) => evicted.push(victim.name),
    }),
  };
}

describe('node budget', () => {
  it('counts instances and their reserved memory', () => {
    const { budget: b } = budget(
      { a: fn('a', [instance('a1', 0), instance('a2', 0)], { memoryMiB: 256 }) },
      {},
      {
        maxInstances: 10,
      },
    );
    expect(b.use()).toEqual({ instances: 2, memory: 512 * MiB });
  });

  it('reserves limits.memory divided by the overcommit ratio, and an isolate its fixed figure', () => {
    const { budget: b } = budget(
      {
        a: fn('a', [instance('a1', 0), instance('a2', 0)], { memoryMiB: 128 }),
        i: fn('i', [instance('i1', 0)], { memoryMiB: 128, isolation: 'isolate' }),
      },
      {},
      { maxInstances: 10, overcommit: 4 },
    );
    expect(b.use()).toEqual({ instances: 3, memory: 2 * 32 * MiB + 4 * MiB });
  });

  it('fits 200 idle instances of 128 MiB in an 18 GiB budget at overcommit 4, without evicting', () => {
    const many = Object.fromEntries(
      Array.from({ length: 200 }, (_, i) => [`f${i}`, fn(`f${i}`, [instance(`f${i}-1`, 60_000)])]),
    );
    const newcomer = fn('new', []);
    const { budget: b, evicted } = budget(
      { ...many, new: newcomer },
      {},
      { maxInstances: 1000, maxMemoryMiB: 18 * 1024, overcommit: 4 },
    );
    expect(b.makeRoom(newcomer.active, true)).toBe(true);
    expect(evicted).toEqual([]);
  });

  it('evicts nothing while there is room', () => {
    const newcomer = fn('new', []);
    const { budget: b, evicted } = budget(
      { old: fn('old', [instance('old1', 10_000)]), new: newcomer },
      {},
      {
        maxInstances: 2,
      },
    );
    expect(b.makeRoom(newcomer.active, true)).toBe(true);
    expect(evicted).toEqual([]);
  });

  it('evicts above-desired first, then the function expected unused longest, then the longest idle', () => {
    const newcomer = fn('new', []);
    const functions = {
      // Above its desired count: nobody misses it, though its function comes back soon.
      busyish: fn('busyish', [instance('busyish-extra', 1_000)], { desired: 0 }),
      soon: fn('soon', [instance('soon1', 90_000)], { desired: 1 }),
      later: fn('later', [instance('later1', 5_000)], { desired: 1 }),
      new: newcomer,
    };
    const { budget: b, evicted } = budget(
      functions,
      { busyish: 1_000, soon: 10_000, later: 600_000 },
      {
        maxInstances: 1,
      },
    );
    expect(b.makeRoom(newcomer.active, true)).toBe(true);
    expect(evicted).toEqual(['busyish-extra', 'later1', 'soon1']);
  });

  it('never evicts a busy instance or one below min, and evicts nothing when not enough can go', () => {
    const newcomer = fn('new', []);
    const functions = {
      busy: fn('busy', [instance('busy1', 0, 1)], { desired: 1 }),
      pinned: fn('pinned', [instance('pinned1', 100_000)], { min: 1 }),
      idle: fn('idle', [instance('idle1', 100_000)]),
      new: newcomer,
    };
    const { budget: b, evicted } = budget(functions, { busy: 0 }, { maxInstances: 2 });
    // Three live, room for two: one more needs two to go, and only `idle1` may.
    expect(b.makeRoom(newcomer.active, true)).toBe(false);
    expect(evicted).toEqual([]);
  });

  it('counts a function with a request in flight as in use now, whatever its history expects', () => {
    const newcomer = fn('new', []);
    const functions = {
      // Three instances under a closed-loop load, two of them between requests a few hundred ms apart; its
      // desired count lags the ramp, and the policy's history (updated at ticks) expects it idle a while.
      busy: fn('busy', [instance('busy1', 0, 1), instance('busy2', 300), instance('busy3', 300)], {
        desired: 2,
      }),
      new: newcomer,
    };
    const { budget: b, evicted } = budget(functions, { busy: 1_000 }, { maxInstances: 3 });
    expect(b.makeRoom(newcomer.active, true)).toBe(false);
    expect(evicted).toEqual([]);
  });

  it('a speculative start takes only what is above desired; a request that waits may take more', () => {
    const newcomer = fn('new', []);
    const functions = { other: fn('other', [instance('other1', 100_000)], { desired: 1 }), new: newcomer };
    const first = budget(functions, { other: 60_000 }, { maxInstances: 1 });
    expect(first.budget.makeRoom(newcomer.active, false)).toBe(false);
    expect(first.evicted).toEqual([]);
    expect(first.budget.makeRoom(newcomer.active, true)).toBe(true);
    expect(first.evicted).toEqual(['other1']);
  });

  it('refuses a start larger than the whole memory budget, and trims a node that is over', () => {
    const big = fn('big', [], { memoryMiB: 2048 });
    const over = fn('over', [instance('over1', 50_000), instance('over2', 40_000)], { memoryMiB: 512 });
    const { budget: b, evicted } = budget({ big, over }, {}, { maxInstances: 10, maxMemoryMiB: 600 });
    expect(b.makeRoom(big.active, true)).toBe(false);
    b.enforce();
    expect(evicted).toEqual(['over1']);
  });
});
