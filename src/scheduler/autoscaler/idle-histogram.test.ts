/** @module The idle-time histogram's percentiles, decay and out-of-bounds share. */

import { describe, expect, it } from 'vitest';
import { HISTOGRAM_RANGE_MS, IdleHistogram } from './idle-histogram.js';

describe('IdleHistogram', () => {
  it('brackets a periodic gap between its lower and upper percentiles within one bin (15%)', () => {
    const histogram = new IdleHistogram();
    for (let i = 0; i < 20; i++) histogram.record(300_000);
    const low = histogram.lowerQuantile(0.05);
    const high = histogram.upperQuantile(0.99);
    expect(low).toBeLessThanOrEqual(300_000);
    expect(high).toBeGreaterThanOrEqual(300_000);
    expect(high / low).toBeLessThanOrEqual(1.15 + 1e-9);
  });

  it('reads the pre-warm point at the shortest period in its bin, not at the bin edge up to 15% before it', () => {
    const timer = new IdleHistogram();
    // A 15-minute timer whose trigger jitters by a second.
    for (let i = 0; i < 20; i++) timer.record(900_000 + (i % 2) * 1_000);
    expect(timer.lowerQuantile(0.05)).toBe(900_000);
    // Spread-out gaps (1 to 40 minutes, the short ones newest): the 5th percentile is 2 minutes, read there.
    const spread = new IdleHistogram();
    for (let i = 40; i >= 1; i--) spread.record(i * 60_000);
    const low = spread.lowerQuantile(0.05);
    expect(low).toBeGreaterThanOrEqual(60_000);
    expect(low).toBeLessThanOrEqual(120_000);
  });

  it('follows a change of rhythm: old idle periods decay', () => {
    const histogram = new IdleHistogram();
    for (let i = 0; i < 50; i++) histogram.record(10_000);
    for (let i = 0; i < 200; i++) histogram.record(600_000);
    expect(histogram.lowerQuantile(0.05)).toBeGreaterThan(400_000);
  });

  it('counts idle periods beyond its range apart, and answers Infinity for percentiles inside them', () => {
    const histogram = new IdleHistogram();
    histogram.record(1_000);
    for (let i = 0; i < 9; i++) histogram.record(HISTOGRAM_RANGE_MS * 2);
    expect(histogram.outOfBoundsShare).toBeGreaterThan(0.8);
    expect(histogram.upperQuantile(0.99)).toBe(Number.POSITIVE_INFINITY);
    expect(histogram.lowerQuantile(0.05)).toBeLessThanOrEqual(1_000);
  });

  it('expects the rest of the typical gap after part of it has passed, and Infinity once overdue', () => {
    const histogram = new IdleHistogram();
    for (let i = 0; i < 20; i++) histogram.record(60_000);
    const remaining = histogram.expectedRemainingMs(30_000);
    expect(remaining).toBeGreaterThan(20_000);
    expect(remaining).toBeLessThan(40_000);
    expect(histogram.expectedRemainingMs(200_000)).toBe(Number.POSITIVE_INFINITY);
    expect(new IdleHistogram().expectedRemainingMs(0)).toBe(Number.POSITIVE_INFINITY);
  });

  it('ignores nonsense', () => {
    const histogram = new IdleHistogram();
    histogram.record(Number.NaN);
    histogram.record(-5);
    expect(histogram.samples).toBe(0);
  });

  it('says how many of the idle periods that reach a point end within a window after it', () => {
    const histogram = new IdleHistogram();
    for (let i = 0; i < 6; i++) histogram.record(60_000);
    for (let i = 0; i < 4; i++) histogram.record(3_600_000);
    // Of all ten, the six one-minute gaps end within ten minutes…
    expect(histogram.shareEndingWithin(0, 600_000)).toBeCloseTo(0.6, 1);
    // …but of those that lasted five minutes, none does: only the hour-long ones reach that far.
    expect(histogram.shareEndingWithin(300_000, 600_000)).toBe(0);
    expect(histogram.shareEndingWithin(300_000, 4_000_000)).toBe(1);
    expect(new IdleHistogram().shareEndingWithin(0, 600_000)).toBe(0);
  });

  it('says how much idle time a held instance costs per request it serves warm: the mean gap for random arrivals', () => {
    const random = new IdleHistogram();
    // The quantiles of an exponential with a 20-minute mean.
    for (let i = 0; i < 40; i++) random.record(-Math.log(1 - (i + 0.5) / 40) * 1_200_000);
    const perWarm = random.heldPerWarmRequestMs(0, 600_000);
    expect(perWarm).toBeGreaterThan(0.7 * 1_200_000);
    expect(perWarm).toBeLessThan(1.3 * 1_200_000);
    const timer = new IdleHistogram();
    for (let i = 0; i < 20; i++) timer.record(300_000);
    // Held from 4.5 minutes, a five-minute timer costs about half a minute per warm call.
    expect(timer.heldPerWarmRequestMs(270_000, 360_000)).toBeLessThan(60_000);
    expect(timer.heldPerWarmRequestMs(400_000, 500_000)).toBe(Number.POSITIVE_INFINITY);
  });
});
