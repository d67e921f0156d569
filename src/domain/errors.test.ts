import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeValue, ERROR_CATALOGUE, errorBody, HearthError, invalidField } from './errors.js';

describe('error catalogue', () => {
  it('lists exactly the codes docs/errors.md documents, with the same HTTP status', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = new Map<string, number>();
    for (const match of doc.matchAll(/^\|\s*`(HEARTH_E_[A-Z_]+)`\s*\|\s*(\d{3})\s*\|/gm))
      documented.set(match[1] ?? '', Number(match[2]));
    const inCode = new Map(Object.entries(ERROR_CATALOGUE).map(([code, entry]) => [code, entry.status]));
    expect([...documented.keys()].sort()).toEqual([...inCode.keys()].sort());
    for (const [code, status] of inCode) expect(documented.get(code), code).toBe(status);
  });
});

describe('echoing a caller value', () => {
  const deep = (levels: number): unknown => {
    let value: unknown = 1;
    for (let i = 0; i < levels; i++) value = [value];
    return value;
  };

  it('describes a value nested 100,000 deep, or a cyclic one, in at most 80 characters', () => {
    expect(describeValue(deep(100_000))).toMatch(/^\[{77}\.\.\.$/);
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    const text = describeValue(cyclic);
    expect(text.startsWith('{"name":"loop","self":{"name":"loop"')).toBe(true);
    expect(text.length).toBe(80);
  });

  it('describes short values as JSON, and undefined as nothing', () => {
    expect(describeValue({ a: [1, 'x', null, undefined], b: undefined })).toBe('{"a":[1,"x",null,null]}');
    expect(describeValue('x'.repeat(100))).toBe(`"${'x'.repeat(76)}...`);
    expect(describeValue(undefined)).toBe('nothing');
  });

  it('keeps details.value when short, and a 200-character preview of a long or deep one', () => {
    expect(invalidField('a', { x: [1, 2] }, 'y').details?.value).toEqual({ x: [1, 2] });
    const long = invalidField('a', 'x'.repeat(1_000_000), 'y').details?.value;
    expect(long).toBe(`${'x'.repeat(197)}...`);
    const nested = new HearthError('HEARTH_E_VALIDATION', 'm', { details: { value: deep(100_000) } });
    expect(nested.details?.value).toBe(`${'['.repeat(197)}...`);
    expect(JSON.stringify(errorBody(nested)).length).toBeLessThan(300);
  });
});
