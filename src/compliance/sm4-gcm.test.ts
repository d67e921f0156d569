/** @module SM4-GCM against RFC 8998's vectors and an independent implementation; the wire format round trip. */

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { openBody, sealBody, sm4GcmDecrypt, sm4GcmEncrypt } from './sm4-gcm.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s/g, ''), 'hex');

describe('SM4-GCM', () => {
  it('matches RFC 8998 appendix A.1', () => {
    const key = hex('0123456789ABCDEFFEDCBA9876543210');
    const nonce = hex('00001234567800000000ABCD');
    const aad = hex('FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2');
    const plaintext = hex(
      'AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDDEEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA',
    );
    const { ciphertext, tag } = sm4GcmEncrypt(key, nonce, plaintext, aad);
    expect(ciphertext.toString('hex').toUpperCase()).toBe(
      '17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D',
    );
    expect(tag.toString('hex').toUpperCase()).toBe('83DE3541E4C2B58177E065A9BF7B62EC');
    expect(sm4GcmDecrypt(key, nonce, ciphertext, tag, aad)).toEqual(plaintext);
    expect(sm4GcmDecrypt(randomBytes(16), nonce, ciphertext, tag, aad)).toBeUndefined();
  });

  it('agrees with Python cryptography (bundled OpenSSL) on odd lengths', () => {
    const key = randomBytes(16);
    const nonce = randomBytes(12);
    for (const length of [0, 1, 15, 16, 17, 100]) {
      const plaintext = randomBytes(length);
      const aad = randomBytes(length % 7);
      const { ciphertext, tag } = sm4GcmEncrypt(key, nonce, plaintext, aad);
      const script = `import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
k, n, p, a = (bytes.fromhex(x) for x in sys.argv[1:5])
e = Cipher(algorithms.SM4(k), modes.GCM(n)).encryptor()
e.authenticate_additional_data(a)
c = e.update(p) + e.finalize()
print((c + e.tag).hex())`;
      const reference = execFileSync('python3', [
        '-c',
        script,
        key.toString('hex'),
        nonce.toString('hex'),
        plaintext.toString('hex'),
        aad.toString('hex') || '',
      ])
        .toString()
        .trim();
      expect(Buffer.concat([ciphertext, tag]).toString('hex')).toBe(reference);
    }
  });

  it('gives the wire-format vectors in docs/sm4-wire-format.md', () => {
    const key = hex('0123456789abcdeffedcba9876543210');
    const nonce = hex('00001234567800000000abcd');
    expect(sealBody(key, Buffer.from('{"amount":"100.00"}'), nonce).toString('hex')).toBe(
      '0100001234567800000000abcdc67b523749b8113080514513e24f2ef6a33adeeafff9155e76510b561645f29fe5b7c3',
    );
    expect(sealBody(key, Buffer.alloc(0), nonce).toString('hex')).toBe(
      '0100001234567800000000abcdc8a4e7809f7417d900b699cb900b8ac4',
    );
  });

  it('seals and opens the wire format, and names a wrong key', () => {
    const key = randomBytes(16);
    const sealed = sealBody(key, Buffer.from('{"amount":"100.00"}'));
    expect(sealed[0]).toBe(1);
    expect(openBody(key, sealed).toString()).toBe('{"amount":"100.00"}');
    expect(() => openBody(randomBytes(16), sealed)).toThrow(/sealed under another key, or altered/);
    expect(() => openBody(key, Buffer.from('plain'))).toThrow(/not in the hearth-sm4 wire format/);
  });
});
