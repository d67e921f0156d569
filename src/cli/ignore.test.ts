/** @module Tests of the `.hearthignore` matcher. */

import { describe, expect, it } from 'vitest';
import { createIgnoreMatcher, parseIgnoreRules } from './ignore.js';

const matcher = (text: string) => createIgnoreMatcher(parseIgnoreRules(text));

describe('.hearthignore matching', () => {
  it('skips comments and blank lines', () => {
    expect(parseIgnoreRules('# a comment\n\n   \n*.log\n')).toHaveLength(1);
  });

  it('matches a slash-less pattern against the name at any depth', () => {
    const ignore = matcher('*.log');
    expect(ignore.ignores('debug.log', false)).toBe(true);
    expect(ignore.ignores('deep/down/trace.log', false)).toBe(true);
    expect(ignore.ignores('log.txt', false)).toBe(false);
  });

  it('applies `dir/` to folders only, and to everything inside them', () => {
    const ignore = matcher('build/');
    expect(ignore.ignores('build', true)).toBe(true);
    expect(ignore.ignores('build', false)).toBe(false);
    expect(ignore.ignores('build/out.js', false)).toBe(true);
    expect(ignore.ignores('src/build/x.js', false)).toBe(true);
  });

  it('anchors patterns that contain a slash to the folder root', () => {
    const ignore = matcher('/secret.txt\ndocs/*.md');
    expect(ignore.ignores('secret.txt', false)).toBe(true);
    expect(ignore.ignores('nested/secret.txt', false)).toBe(false);
    expect(ignore.ignores('docs/readme.md', false)).toBe(true);
    expect(ignore.ignores('docs/deep/readme.md', false)).toBe(false);
  });

  it('supports ** across folders, ? and character classes', () => {
    const ignore = matcher('**/fixtures/**\nfile?.txt\n[ab].js');
    expect(ignore.ignores('test/fixtures/big.bin', false)).toBe(true);
    expect(ignore.ignores('fixtures/a/b/c', false)).toBe(true);
    expect(ignore.ignores('file1.txt', false)).toBe(true);
    expect(ignore.ignores('file10.txt', false)).toBe(false);
    expect(ignore.ignores('a.js', false)).toBe(true);
    expect(ignore.ignores('c.js', false)).toBe(false);
  });

  it('lets a later !negation bring a file back, last match winning', () => {
    const ignore = matcher('*.json\n!keep.json');
    expect(ignore.ignores('data.json', false)).toBe(true);
    expect(ignore.ignores('keep.json', false)).toBe(false);
  });

  it('never brings back a file inside an ignored folder, as in git', () => {
    const ignore = matcher('vendor/\n!vendor/keep.js');
    expect(ignore.ignores('vendor/keep.js', false)).toBe(true);
  });

  it('treats regex characters in patterns literally', () => {
    const ignore = matcher('a+b(1).txt');
    expect(ignore.ignores('a+b(1).txt', false)).toBe(true);
    expect(ignore.ignores('aab1.txt', false)).toBe(false);
  });
});
