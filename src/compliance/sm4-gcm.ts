/**
 * @module SM4-GCM (GB/T 36624, RFC 8998) and Hearth's encrypted-invocation wire format (issue 13).
 * Node's OpenSSL 3.0 has SM4 but no SM4-GCM, so this is GCM built by hand from its two halves: the
 * counter mode is OpenSSL's `sm4-ctr` (and `sm4-ecb` for H and the tag mask), GHASH is written here
 * (NIST SP 800-38D §6.4, bit by bit over BigInt) and checked against RFC 8998's vectors and against an
 * independent SM4-GCM (Python `cryptography` with its bundled OpenSSL) in the tests.
 *
 * Wire format (`application/hearth-sm4`): `0x01 | nonce (12) | ciphertext | tag (16)`, the version
 * byte as associated data. The guests (runtime/node/guest, runtime/python/guest) carry their own copy.
 */

import { createCipheriv, randomBytes, timingSafeEqual } from 'node:crypto';

export const SM4_CONTENT_TYPE = 'application/hearth-sm4';
/** The plaintext's own content type travels in this header, beside the ciphertext. */
export const PLAIN_TYPE_HEADER = 'x-hearth-plain-content-type';
export const WIRE_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

const R = 0xe1n << 120n;
const MASK = (1n << 128n) - 1n;

function toBig(block: Buffer): bigint {
  return BigInt(`0x${block.toString('hex').padEnd(32, '0') || '0'}`);
}

function gmul(x: bigint, y: bigint): bigint {
  let z = 0n;
  let v = y;
  for (let i = 127n; i >= 0n; i--) {
    if ((x >> i) & 1n) z ^= v;
    v = v & 1n ? (v >> 1n) ^ R : v >> 1n;
  }
  return z & MASK;
}

function ghash(h: bigint, aad: Buffer, ciphertext: Buffer): bigint {
  let y = 0n;
  const absorb = (data: Buffer): void => {
    for (let offset = 0; offset < data.length; offset += 16)
      y = gmul(y ^ toBig(data.subarray(offset, offset + 16)), h);
  };
  absorb(aad);
  absorb(ciphertext);
  const lengths = Buffer.alloc(16);
  lengths.writeBigUInt64BE(BigInt(aad.length) * 8n, 0);
  lengths.writeBigUInt64BE(BigInt(ciphertext.length) * 8n, 8);
  return gmul(y ^ toBig(lengths), h);
}

function ecb(key: Buffer, block: Buffer): Buffer {
  const cipher = createCipheriv('sm4-ecb', key, null);
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(block), cipher.final()]);
}

function ctr(key: Buffer, counter: Buffer, data: Buffer): Buffer {
  const cipher = createCipheriv('sm4-ctr', key, counter);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

function counterBlock(nonce: Buffer, value: number): Buffer {
  const block = Buffer.alloc(16);
  nonce.copy(block, 0);
  block.writeUInt32BE(value, 12);
  return block;
}

function tagOf(key: Buffer, nonce: Buffer, aad: Buffer, ciphertext: Buffer): Buffer {
  const h = toBig(ecb(key, Buffer.alloc(16)));
  const s = ghash(h, aad, ciphertext);
  const mask = toBig(ecb(key, counterBlock(nonce, 1)));
  return Buffer.from((s ^ mask).toString(16).padStart(32, '0'), 'hex');
}

/** SM4-GCM with a 96-bit nonce: the ciphertext and the 128-bit tag. */
export function sm4GcmEncrypt(
  key: Buffer,
  nonce: Buffer,
  plaintext: Buffer,
  aad: Buffer = Buffer.alloc(0),
): { ciphertext: Buffer; tag: Buffer } {
  const ciphertext = ctr(key, counterBlock(nonce, 2), plaintext);
  return { ciphertext, tag: tagOf(key, nonce, aad, ciphertext) };
}

/** Undefined when the tag does not match (wrong key, or altered). */
export function sm4GcmDecrypt(
  key: Buffer,
  nonce: Buffer,
  ciphertext: Buffer,
  tag: Buffer,
  aad: Buffer = Buffer.alloc(0),
): Buffer | undefined {
  const expected = tagOf(key, nonce, aad, ciphertext);
  if (tag.length !== TAG_BYTES || !timingSafeEqual(expected, tag)) return undefined;
  return ctr(key, counterBlock(nonce, 2), ciphertext);
}

/** Seals a body in the wire format, with a fresh random nonce. */
export function sealBody(key: Buffer, plaintext: Buffer, nonce: Buffer = randomBytes(NONCE_BYTES)): Buffer {
  const version = Buffer.from([WIRE_VERSION]);
  const { ciphertext, tag } = sm4GcmEncrypt(key, nonce, plaintext, version);
  return Buffer.concat([version, nonce, ciphertext, tag]);
}

/** Opens a wire-format body; throws a message naming what is wrong (format, or key/tag). */
export function openBody(key: Buffer, sealed: Buffer): Buffer {
  if (sealed.length < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] !== WIRE_VERSION)
    throw new Error(
      `the body is not in the hearth-sm4 wire format (version 1, 12-byte nonce, ciphertext, 16-byte tag)`,
    );
  const plain = sm4GcmDecrypt(
    key,
    sealed.subarray(1, 1 + NONCE_BYTES),
    sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES),
    sealed.subarray(sealed.length - TAG_BYTES),
    sealed.subarray(0, 1),
  );
  if (plain === undefined)
    throw new Error('the SM4-GCM tag does not match: the body was sealed under another key, or altered');
  return plain;
}

/** A 128-bit SM4 key as a secret or key file holds it: 32 hex digits, or 16 raw bytes. */
export function parseSm4Key(value: Buffer): Buffer | undefined {
  const text = value.toString('latin1').trim();
  if (/^[0-9a-fA-F]{32}$/.test(text)) return Buffer.from(text, 'hex');
  return value.length === 16 ? Buffer.from(value) : undefined;
}
