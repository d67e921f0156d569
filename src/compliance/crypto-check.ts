/** @module The start-up check that the national algorithms the compliance features rest on exist in Node's OpenSSL. */

import { getCiphers, getHashes } from 'node:crypto';
import { HearthError } from '../domain/errors.js';

/** SM4 (secrets at rest, the transaction path) and SM3 (the audit chain, HMACs) — issue 13. */
export const REQUIRED_CIPHERS = ['sm4-cbc', 'sm4-ctr'] as const;
export const REQUIRED_HASHES = ['sm3'] as const;

/** The required algorithms missing from the given lists (Node's own when none are given). */
export function missingAlgorithms(
  ciphers: readonly string[] = getCiphers(),
  hashes: readonly string[] = getHashes(),
): string[] {
  const cipherSet = new Set(ciphers.map((name) => name.toLowerCase()));
  const hashSet = new Set(hashes.map((name) => name.toLowerCase()));
  return [
    ...REQUIRED_CIPHERS.filter((name) => !cipherSet.has(name)),
    ...REQUIRED_HASHES.filter((name) => !hashSet.has(name)),
  ];
}

/** Throws one line naming what is missing; `hearth up` prints it and exits non-zero. */
export function assertCryptoSupport(ciphers?: readonly string[], hashes?: readonly string[]): void {
  const missing = missingAlgorithms(ciphers, hashes);
  if (missing.length === 0) return;
  throw new HearthError(
    'HEARTH_E_UNSUPPORTED',
    `Node's OpenSSL (${process.versions.openssl}) lacks ${missing.join(', ')}, which secrets, the audit chain and SM4 invocations need; run Hearth on a Node whose OpenSSL has SM4 and SM3 (Node 20's bundled OpenSSL 3 does)`,
  );
}
