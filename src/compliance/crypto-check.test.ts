/** @module The start-up check names the algorithms a Node build lacks, in one line. */

import { getCiphers, getHashes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { assertCryptoSupport, missingAlgorithms } from './crypto-check.js';

describe('the SM4/SM3 start-up check', () => {
  it("finds SM4 and SM3 in this Node's OpenSSL", () => {
    expect(missingAlgorithms()).toEqual([]);
    expect(() => assertCryptoSupport()).not.toThrow();
  });

  it('names what a build without the national algorithms lacks, in one line', () => {
    // A FIPS-only or LibreSSL-built Node ships lists like these; the lists are the only input.
    const ciphers = getCiphers().filter((name) => !name.startsWith('sm4'));
    const hashes = getHashes().filter((name) => name !== 'sm3');
    expect(missingAlgorithms(ciphers, hashes)).toEqual(['sm4-cbc', 'sm4-ctr', 'sm3']);
    expect(() => assertCryptoSupport(ciphers, hashes)).toThrow(/lacks sm4-cbc, sm4-ctr, sm3, which/);
    expect(() => assertCryptoSupport(ciphers, hashes)).toThrow(/^[^\n]+$/);
  });
});
