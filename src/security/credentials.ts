/**
 * @module API key secrets and the short-lived tokens derived from them: their format, how they are
 * hashed for storage, and how a presented one is checked (in constant time).
 *
 * A key is `hth_<id>_<secret>`: the id (12 hex digits, public, shown by `hearth keys ls`) finds the
 * record, the secret (32 random bytes, base64url) is checked against its stored SHA-256. SHA-256 is
 * enough here, where a password needs a slow hash (scrypt, argon2): the secret is 256 bits from the
 * CSPRNG, not something a person chose, so there is no dictionary to try and brute force over 2^256
 * is out of reach at any hash speed; a slow hash would only add milliseconds to every request.
 *
 * A token is `hth_t_<payload>.<mac>` (hand-written rather than a JWT library: one HMAC-SHA256 over a
 * small JSON payload, checked synchronously on the request path): the key it came from, its role,
 * namespaces and expiry, signed with the platform's token secret (stored in the control store).
 */

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Grant, ROLES, type Role } from './roles.js';

const KEY_PATTERN = /^hth_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
const TOKEN_PREFIX = 'hth_t_';

export interface NewSecret {
  readonly id: string;
  /** The whole key, shown to its creator once. */
  readonly key: string;
  /** What is stored: hex SHA-256 of the secret part. */
  readonly hash: string;
}

export function newKeySecret(): NewSecret {
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, key: `hth_${id}_${secret}`, hash: hashSecret(secret) };
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Splits a presented key; undefined when it does not have a key's shape. */
export function parseKey(presented: string): { readonly id: string; readonly secret: string } | undefined {
  const match = KEY_PATTERN.exec(presented);
  if (match === null) return undefined;
  return { id: match[1] as string, secret: match[2] as string };
}

/** Whether `secret` hashes to `storedHash`, compared in constant time. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const presented = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return presented.length === stored.length && timingSafeEqual(presented, stored);
}

export interface TokenClaims extends Grant {
  /** The id of the key it was derived from: revoking that key ends the token too. */
  readonly keyId: string;
  /** Epoch seconds. */
  readonly expiresAt: number;
}

export function isToken(presented: string): boolean {
  return presented.startsWith(TOKEN_PREFIX);
}

export function signToken(claims: TokenClaims, secret: Buffer): string {
  const payload = Buffer.from(
    JSON.stringify({ k: claims.keyId, r: claims.role, n: claims.namespaces, e: claims.expiresAt }),
  ).toString('base64url');
  return `${TOKEN_PREFIX}${payload}.${mac(payload, secret)}`;
}

/** The token's claims when its signature is good and it has not expired; else undefined. */
export function verifyToken(presented: string, secret: Buffer, nowSeconds: number): TokenClaims | undefined {
  const body = presented.slice(TOKEN_PREFIX.length);
  const dot = body.indexOf('.');
  if (dot < 0) return undefined;
  const payload = body.slice(0, dot);
  const given = Buffer.from(body.slice(dot + 1), 'base64url');
  const expected = Buffer.from(mac(payload, secret), 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object') return undefined;
  const { k, r, n, e } = parsed as { k?: unknown; r?: unknown; n?: unknown; e?: unknown };
  if (typeof k !== 'string' || typeof e !== 'number' || !isRole(r)) return undefined;
  if (!Array.isArray(n) || !n.every((item) => typeof item === 'string')) return undefined;
  if (e <= nowSeconds) return undefined;
  return { keyId: k, role: r, namespaces: n as string[], expiresAt: e };
}

function mac(payload: string, secret: Buffer): string {
  return createHmac('sha256', secret).update(payload).digest('base64url');
}

/**
 * The AWS credentials of a key, for SigV4 clients (the AWS SDKs, boto3, the AWS CLI) on the Lambda
 * Invoke API. The access key id is the key's id in AWS's charset (`HTHK` + 12 upper-case hex digits: 16
 * characters, AWS's minimum). The secret access key is derived, never stored: HMAC-SHA256 of the key's id
 * and stored hash under the platform's secret (so the server recomputes it to check a signature, a leaked
 * store alone does not yield it, and revoking the key ends it).
 */
export function awsCredentials(
  keyId: string,
  storedHash: string,
  platformSecret: Buffer,
): { readonly accessKeyId: string; readonly secretAccessKey: string } {
  return {
    accessKeyId: `${AWS_KEY_PREFIX}${keyId.toUpperCase()}`,
    secretAccessKey: createHmac('sha256', platformSecret)
      .update(`hearth-aws-sigv4\0${keyId}\0${storedHash}`)
      .digest('base64url'),
  };
}

const AWS_KEY_PREFIX = 'HTHK';
const AWS_ACCESS_KEY_ID = /^HTHK([0-9A-F]{12})$/;

/** The Hearth key id an AWS access key id names; undefined when it is not one of ours. */
export function keyIdOfAwsAccessKey(accessKeyId: string): string | undefined {
  return AWS_ACCESS_KEY_ID.exec(accessKeyId)?.[1]?.toLowerCase();
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
