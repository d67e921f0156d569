import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { MAX_YAML_NESTING, yamlNestingProblem } from './yaml-nesting.js';

const manifest = (data: string) =>
  `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: deep }\nspec:\n  runtime: node20\n  env: { DATA: ${data} }\n`;

describe('yamlNestingProblem', () => {
  it('refuses flow collections nested past the limit, naming the line, before the parser would take minutes', () => {
    const text = manifest(`${'{'.repeat(843)}${'}'.repeat(843)}`);
    const started = performance.now();
    expect(yamlNestingProblem(text)).toBe(
      `collections nested deeper than ${MAX_YAML_NESTING} levels (line 6); a resource needs a few`,
    );
    expect(performance.now() - started).toBeLessThan(50);
  });

  it('accepts nesting up to the limit, which the parser reads quickly', () => {
    const text = manifest(`${'{'.repeat(MAX_YAML_NESTING - 1)}${'}'.repeat(MAX_YAML_NESTING - 1)}`);
    expect(yamlNestingProblem(text)).toBeUndefined();
    const started = performance.now();
    parse(text);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('does not count brackets inside quoted scalars or comments', () => {
    const brackets = '['.repeat(200);
    expect(yamlNestingProblem(manifest(`"${brackets}"`))).toBeUndefined();
    expect(yamlNestingProblem(manifest(`'it''s ${brackets}'`))).toBeUndefined();
    expect(yamlNestingProblem(`a: 1 # ${brackets}\nb: [1]\n`)).toBeUndefined();
    expect(yamlNestingProblem(`a: "escaped \\" ${brackets}"\n`)).toBeUndefined();
  });

  it('is not fooled by an apostrophe inside a plain word', () => {
    const text = `description: don't\nspec: ${'['.repeat(100)}${']'.repeat(100)}\n`;
    expect(yamlNestingProblem(text)).toMatch(/line 2/);
  });
});
