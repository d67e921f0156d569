/** @module Sealing at rest: both algorithms round-trip, and an altered, moved or foreign value is refused. */

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { masterKey, open, parseMasterKey, SEAL_ALGORITHMS, seal, sealedKeyId } from './sealing.js';

const key = masterKey(randomBytes(32));
const keys = new Map([[key.id, key]]);

describe.each(SEAL_ALGORITHMS)('sealing with %s', (algorithm) => {
  it('opens what it sealed, and the sealed bytes do not hold the value', () => {
    const plain = Buffer.from('the password is hunter2hunter2');
    const sealed = seal(algorithm, key, plain, 'secret:default/db');
    expect(sealed.includes(plain)).toBe(false);
    expect(sealedKeyId(sealed)).toBe(key.id);
    expect(open(keys, sealed, 'secret:default/db').toString()).toBe(plain.toString());
  });

  it('refuses a flipped bit, a value moved to another secret, and a key it does not hold', () => {
    const sealed = seal(algorithm, key, Buffer.from('value'), 'secret:default/db');
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 20] = (flipped[flipped.length - 20] ?? 0) ^ 1;
    expect(() => open(keys, flipped, 'secret:default/db')).toThrow();
    expect(() => open(keys, sealed, 'secret:default/other')).toThrow();
    const other = masterKey(randomBytes(32));
    expect(() => open(new Map([[other.id, other]]), sealed, 'secret:default/db')).toThrow(/not loaded/);
  });
});

describe('master keys', () => {
  it('are read as 64 hex digits or base64 of 32 bytes, and anything else is refused in one line', () => {
    const raw = randomBytes(32);
    expect(parseMasterKey(raw.toString('hex'), 'k')).toEqual(raw);
    expect(parseMasterKey(`${raw.toString('base64')}\n`, 'k')).toEqual(raw);
    expect(() => parseMasterKey('short', '$HEARTH_MASTER_KEY')).toThrow(
      /^\$HEARTH_MASTER_KEY: expected a 256-bit key/,
    );
  });
});
