/**
 * @module JWT checks for functions with `spec.auth: jwt`, with the `jose` library: the signature against
 * a JWKS (a URL, fetched and cached by jose, or a file on the platform's machine), then issuer, audience
 * and expiry. The claims become the function's `ctx.auth`.
 */

import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { HearthError } from '../domain/errors.js';

export interface JwtPolicy {
  /** `https://…/jwks.json`, or an absolute path (or file:// URL) of a JWKS file on this machine. */
  readonly jwks: string;
  readonly issuer: string | readonly string[];
  readonly audience: string | readonly string[];
}

/** One key set per JWKS source, shared by every function that names it. */
const keySets = new Map<string, Promise<JWTVerifyGetKey>>();

function keySetFor(source: string, reload: boolean): Promise<JWTVerifyGetKey> {
  let keySet = reload ? undefined : keySets.get(source);
  if (keySet === undefined) {
    keySet = /^https?:\/\//.test(source)
      ? Promise.resolve(createRemoteJWKSet(new URL(source)))
      : readFile(source.startsWith('file://') ? new URL(source) : source, 'utf8').then((text) =>
          createLocalJWKSet(JSON.parse(text) as JSONWebKeySet),
        );
    keySet.catch(() => keySets.delete(source));
    keySets.set(source, keySet);
  }
  return keySet;
}

/**
 * Tokens already verified, until their `exp` (at most 5 minutes): a client sends one JWT many times, and
 * an ES256 verification costs ~100 µs of the gateway's CPU where a lookup costs well under 1 µs
 * (bench/auth.mjs). Keyed by the policy too, so a token good for one function is not for another.
 */
const verified = new Map<string, { readonly payload: JWTPayload; readonly until: number }>();
const MAX_VERIFIED = 10_000;
const MAX_CACHED_MS = 5 * 60_000;

/** The token's claims, or a 401 naming what failed (never the expected issuer or audience). */
export async function verifyJwt(token: string, policy: JwtPolicy): Promise<JWTPayload> {
  const cacheKey = `${policy.jwks}\n${String(policy.issuer)}\n${String(policy.audience)}\n${token}`;
  const cached = verified.get(cacheKey);
  const now = Date.now();
  if (cached !== undefined && cached.until > now) return cached.payload;
  const payload = await verifyUncached(token, policy);
  if (verified.size >= MAX_VERIFIED) verified.clear();
  const expiresAt = typeof payload.exp === 'number' ? payload.exp * 1000 : now;
  verified.set(cacheKey, { payload, until: Math.min(expiresAt, now + MAX_CACHED_MS) });
  return payload;
}

async function verifyUncached(token: string, policy: JwtPolicy): Promise<JWTPayload> {
  const options = {
    issuer: policy.issuer as string | string[],
    audience: policy.audience as string | string[],
  };
  try {
    try {
      return (await jwtVerify(token, await keySetFor(policy.jwks, false), options)).payload;
    } catch (error) {
      // A file JWKS is read again once when no key matches: the keys were rotated on disk.
      if (!/^https?:/.test(policy.jwks) && codeOf(error) === 'ERR_JWKS_NO_MATCHING_KEY')
        return (await jwtVerify(token, await keySetFor(policy.jwks, true), options)).payload;
      throw error;
    }
  } catch (error) {
    throw new HearthError('HEARTH_E_UNAUTHORIZED', `the bearer JWT was refused: ${reasonOf(error)}`, {
      details: { required: 'a JWT signed by a key of the function’s JWKS, with its issuer and audience' },
    });
  }
}

function codeOf(error: unknown): string | undefined {
  return error !== null && typeof error === 'object' && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

/** jose's reason in words that do not echo the expected values. */
function reasonOf(error: unknown): string {
  switch (codeOf(error)) {
    case 'ERR_JWT_EXPIRED':
      return 'it has expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const claim =
        error !== null && typeof error === 'object' && 'claim' in error ? String(error.claim) : 'a claim';
      return `its "${claim}" claim is not accepted`;
    }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'its signature does not verify';
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'no key of the JWKS matches it';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
      return 'it is not a well-formed JWT';
    default:
      return 'it could not be verified';
  }
}
