/**
 * @module Sealing values at rest under the master key (issue 13). Node's OpenSSL 3.0 has no SM4-GCM, so
 * the default is SM4-CBC encrypt-then-MAC with HMAC-SM3, built only from OpenSSL's primitives; SM4-GCM
 * (Hearth's own construction, sm4-gcm.ts) and AES-256-GCM are selectable (`secrets.algorithm`). Both bind the value to what it is (the AAD, e.g.
 * `secret:default/db`), so a sealed row copied onto another one does not open.
 *
 * Sealed layout: `version (1) | algorithm (1) | key id (8) | iv (16, or 12 for GCM) | ciphertext | tag
 * (32 for HMAC-SM3, 16 for GCM)`.
 */

import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { HearthError } from '../domain/errors.js';
import { sm4GcmDecrypt, sm4GcmEncrypt } from './sm4-gcm.js';

export const SEAL_ALGORITHMS = ['sm4-cbc-hmac-sm3', 'sm4-gcm', 'aes-256-gcm'] as const;
export type SealAlgorithm = (typeof SEAL_ALGORITHMS)[number];

const FORMAT_VERSION = 1;
const ALGORITHM_BYTE: Record<SealAlgorithm, number> = {
  'sm4-cbc-hmac-sm3': 1,
  'aes-256-gcm': 2,
  'sm4-gcm': 3,
};
const KEY_ID_BYTES = 8;
export const MASTER_KEY_BYTES = 32;

/** A master key and what is derived from it once. */
export interface MasterKey {
  /** Hex of the first 8 bytes of SM3("hearth-master-key" ‖ key): names the key without revealing it. */
  readonly id: string;
  readonly sm4: Buffer;
  readonly sm4Gcm: Buffer;
  readonly macKey: Buffer;
  readonly aes: Buffer;
}

export function masterKey(raw: Buffer): MasterKey {
  if (raw.length !== MASTER_KEY_BYTES)
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `master key: got ${raw.length} bytes, expected ${MASTER_KEY_BYTES} (64 hex digits or base64)`,
    );
  const id = createHash('sm3')
    .update('hearth-master-key')
    .update(raw)
    .digest()
    .subarray(0, KEY_ID_BYTES)
    .toString('hex');
  // Separate keys per use, derived with HKDF-SM3, so the cipher and the MAC never share a key.
  const derive = (info: string, length: number): Buffer =>
    Buffer.from(hkdfSync('sm3', raw, Buffer.alloc(0), info, length));
  return {
    id,
    sm4: derive('hearth sm4-cbc', 16),
    sm4Gcm: derive('hearth sm4-gcm', 16),
    macKey: derive('hearth hmac-sm3', 32),
    aes: derive('hearth aes-256-gcm', 32),
  };
}

/** Parses a key as written in a key file or `$HEARTH_MASTER_KEY`: 64 hex digits, or base64 of 32 bytes. */
export function parseMasterKey(text: string, origin: string): Buffer {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return Buffer.from(trimmed, 'hex');
  const decoded = /^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : undefined;
  if (decoded?.length === MASTER_KEY_BYTES) return decoded;
  throw new HearthError(
    'HEARTH_E_VALIDATION',
    `${origin}: expected a 256-bit key as 64 hex digits or base64 (create one with: openssl rand -hex 32)`,
  );
}

export function seal(algorithm: SealAlgorithm, key: MasterKey, plain: Buffer, aad: string): Buffer {
  const header = Buffer.alloc(2 + KEY_ID_BYTES);
  header[0] = FORMAT_VERSION;
  header[1] = ALGORITHM_BYTE[algorithm];
  header.write(key.id, 2, 'hex');
  if (algorithm === 'aes-256-gcm') {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key.aes, iv);
    cipher.setAAD(Buffer.concat([header, Buffer.from(aad)]));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([header, iv, body, cipher.getAuthTag()]);
  }
  if (algorithm === 'sm4-gcm') {
    const nonce = randomBytes(12);
    const { ciphertext, tag } = sm4GcmEncrypt(
      key.sm4Gcm,
      nonce,
      plain,
      Buffer.concat([header, Buffer.from(aad)]),
    );
    return Buffer.concat([header, nonce, ciphertext, tag]);
  }
  const iv = randomBytes(16);
  const cipher = createCipheriv('sm4-cbc', key.sm4, iv);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  const tag = macOf(key, header, aad, iv, body);
  return Buffer.concat([header, iv, body, tag]);
}

/** The id of the key a sealed value was sealed under. */
export function sealedKeyId(sealed: Buffer): string {
  return sealed.subarray(2, 2 + KEY_ID_BYTES).toString('hex');
}

/** Opens a sealed value with whichever of `keys` sealed it; throws when none did or it was altered. */
export function open(keys: ReadonlyMap<string, MasterKey>, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < 2 + KEY_ID_BYTES || sealed[0] !== FORMAT_VERSION)
    throw new Error(`sealed value for ${aad}: unknown format`);
  const key = keys.get(sealedKeyId(sealed));
  if (key === undefined)
    throw new Error(
      `sealed value for ${aad}: sealed under master key ${sealedKeyId(sealed)}, which is not loaded`,
    );
  const header = sealed.subarray(0, 2 + KEY_ID_BYTES);
  const rest = sealed.subarray(2 + KEY_ID_BYTES);
  if (sealed[1] === ALGORITHM_BYTE['aes-256-gcm']) {
    const iv = rest.subarray(0, 12);
    const tag = rest.subarray(rest.length - 16);
    const decipher = createDecipheriv('aes-256-gcm', key.aes, iv);
    decipher.setAAD(Buffer.concat([header, Buffer.from(aad)]));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(rest.subarray(12, rest.length - 16)), decipher.final()]);
  }
  if (sealed[1] === ALGORITHM_BYTE['sm4-gcm']) {
    const plain = sm4GcmDecrypt(
      key.sm4Gcm,
      rest.subarray(0, 12),
      rest.subarray(12, rest.length - 16),
      rest.subarray(rest.length - 16),
      Buffer.concat([header, Buffer.from(aad)]),
    );
    if (plain === undefined)
      throw new Error(`sealed value for ${aad}: the SM4-GCM tag does not match (altered, or another key)`);
    return plain;
  }
  if (sealed[1] !== ALGORITHM_BYTE['sm4-cbc-hmac-sm3'] || rest.length < 16 + 16 + 32)
    throw new Error(`sealed value for ${aad}: unknown algorithm`);
  const iv = rest.subarray(0, 16);
  const body = rest.subarray(16, rest.length - 32);
  const tag = rest.subarray(rest.length - 32);
  // MAC first (encrypt-then-MAC): an altered value is refused before the cipher sees it.
  if (!timingSafeEqual(tag, macOf(key, header, aad, iv, body)))
    throw new Error(`sealed value for ${aad}: the HMAC-SM3 tag does not match (altered, or another key)`);
  const decipher = createDecipheriv('sm4-cbc', key.sm4, iv);
  return Buffer.concat([decipher.update(body), decipher.final()]);
}

function macOf(key: MasterKey, header: Buffer, aad: string, iv: Buffer, body: Buffer): Buffer {
  const aadBytes = Buffer.from(aad);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(aadBytes.length);
  return createHmac('sm3', key.macKey)
    .update(header)
    .update(length)
    .update(aadBytes)
    .update(iv)
    .update(body)
    .digest();
}
