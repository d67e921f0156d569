/** @module Sliding windows and rolling counters: the arithmetic the autoscaler's figures rest on. */

import { describe, expect, it } from 'vitest';
import { RollingCounter, SlidingWindow } from './window.js';

describe('SlidingWindow', () => {
  it('averages what it has seen until full, then only the newest samples', () => {
    const window = new SlidingWindow(4);
    expect(window.mean()).toBe(0);
    window.push(2);
    window.push(4);
    expect(window.mean()).toBe(3);
    for (const value of [10, 10, 10, 10]) window.push(value);
    expect(window.mean()).toBe(10);
    expect(window.meanOfLast(2)).toBe(10);
    window.push(0);
    expect(window.meanOfLast(1)).toBe(0);
    expect(window.sum()).toBe(30);
    expect(window.max()).toBe(10);
  });

  it('does not drift over millions of pushes', () => {
    const window = new SlidingWindow(120);
    for (let i = 0; i < 1_000_000; i++) window.push(0.1 + (i % 7) * 0.3);
    for (let i = 0; i < 120; i++) window.push(0);
    expect(window.sum()).toBe(0);
  });
});

describe('RollingCounter', () => {
  it('sums what happened within its span and forgets older buckets', () => {
    const counter = new RollingCounter(1000, 10, 2);
    counter.add(100, [5, 1]);
    counter.add(5_500, [3, 0]);
    expect(counter.total(0, 6_000)).toBe(8);
    expect(counter.total(1, 6_000)).toBe(1);
    expect(counter.total(0, 10_900)).toBe(3);
    expect(counter.total(0, 30_000)).toBe(0);
    // A bucket reused a lap later starts from zero.
    counter.add(10_200, [1, 0]);
    expect(counter.total(0, 10_500)).toBe(4);
  });
});
