import { describe, expect, it } from 'vitest';
import { parseBytes, parseCpu, parseDuration } from './units.js';

describe('units', () => {
  it('parses durations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('10s')).toBe(10_000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration(2)).toBe(2000);
    expect(parseDuration('ten seconds')).toBeUndefined();
  });
  it('parses sizes', () => {
    expect(parseBytes('128Mi')).toBe(128 * 1024 ** 2);
    expect(parseBytes('1G')).toBe(1e9);
    expect(parseBytes('lots')).toBeUndefined();
  });
  it('parses cpu', () => {
    expect(parseCpu('500m')).toBe(0.5);
    expect(parseCpu(2)).toBe(2);
    expect(parseCpu('-1')).toBeUndefined();
  });
});
