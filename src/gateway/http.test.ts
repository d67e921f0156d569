import { describe, expect, it } from 'vitest';
import { HearthError } from '../domain/errors.js';
import { firstInvalidUtf8, MAX_JSON_DEPTH, parseJsonBody, tooDeepAt } from './http.js';

function refusal(body: Buffer): HearthError {
  try {
    parseJsonBody(body);
  } catch (error) {
    if (error instanceof HearthError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('JSON bodies of the control API', () => {
  it('finds the first byte that starts no well-formed UTF-8 character', () => {
    const at = (...bytes: number[]) => firstInvalidUtf8(Buffer.from([0x61, 0x62, ...bytes, 0x63]));
    expect(at(0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80)).toBe(-1); // € and an emoji
    expect(at(0xff)).toBe(2);
    expect(at(0x80)).toBe(2); // a continuation byte alone
    expect(at(0xc0, 0xaf)).toBe(2); // overlong "/"
    expect(at(0xe0, 0x80, 0xaf)).toBe(2); // overlong, three bytes
    expect(at(0xed, 0xa0, 0x80)).toBe(2); // a UTF-16 surrogate
    expect(at(0xf4, 0x90, 0x80, 0x80)).toBe(2); // past U+10FFFF
    expect(at(0xc3, 0xa9, 0xe2, 0x82)).toBe(4); // "é", then a sequence cut short
    expect(firstInvalidUtf8(Buffer.from([0xe2, 0x82]))).toBe(0); // cut short by the end
  });

  it('refuses invalid UTF-8 naming the offset instead of storing U+FFFD', () => {
    const error = refusal(Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xfe]), Buffer.from('"}')]));
    expect(error.code).toBe('HEARTH_E_BAD_REQUEST');
    expect(error.message).toContain('byte 6 (0xfe)');
    expect(error.details).toMatchObject({ offset: 6 });
  });

  it('measures nesting outside strings only, without recursion', () => {
    const nested = (levels: number) => Buffer.from(`${'['.repeat(levels)}${']'.repeat(levels)}`);
    expect(tooDeepAt(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(-1);
    expect(tooDeepAt(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(MAX_JSON_DEPTH);
    expect(tooDeepAt(nested(1_000_000), MAX_JSON_DEPTH)).toBe(MAX_JSON_DEPTH);
    expect(tooDeepAt(Buffer.from(`{"a":"${'['.repeat(500)}\\"${'{'.repeat(500)}"}`), 3)).toBe(-1);
    const error = refusal(nested(100_000));
    expect(error.message).toContain(`more than ${MAX_JSON_DEPTH} levels`);
    expect(parseJsonBody(nested(MAX_JSON_DEPTH))).toBeInstanceOf(Array);
  });
});
