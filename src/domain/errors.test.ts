import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from './errors.js';

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
