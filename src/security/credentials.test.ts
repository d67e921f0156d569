/** @module Keys and tokens on their own: shapes, constant-time checks, tampering, expiry, and scope narrowing. */

import { describe, expect, it } from 'vitest';
import { hashSecret, newKeySecret, parseKey, secretMatches, signToken, verifyToken } from './credentials.js';
import { isWithin, permits } from './roles.js';

const SECRET = Buffer.alloc(32, 7);

describe('API keys', () => {
  it('have a public id and a 256-bit secret, stored as its SHA-256', () => {
    const created = newKeySecret();
    const parsed = parseKey(created.key);
    expect(parsed?.id).toBe(created.id);
    expect(created.hash).toBe(hashSecret(parsed?.secret ?? ''));
    expect(created.hash).not.toContain(parsed?.secret);
    expect(secretMatches(parsed?.secret ?? '', created.hash)).toBe(true);
    expect(secretMatches(`${parsed?.secret.slice(0, -1)}x`, created.hash)).toBe(false);
    expect(newKeySecret().key).not.toBe(created.key);
  });

  it('refuse anything without a key shape', () => {
    for (const value of ['', 'hth_', 'hth_abc_def', 'Bearer x', `hth_${'0'.repeat(12)}_${'a'.repeat(42)}`])
      expect(parseKey(value)).toBeUndefined();
  });
});

describe('tokens', () => {
  const claims = { keyId: 'abcdef012345', role: 'viewer' as const, namespaces: ['team-a'], expiresAt: 2000 };

  it('verify until they expire', () => {
    const token = signToken(claims, SECRET);
    expect(verifyToken(token, SECRET, 1999)).toEqual(claims);
    expect(verifyToken(token, SECRET, 2000)).toBeUndefined();
  });

  it('refuse a changed payload, another secret, or a truncated signature', () => {
    const token = signToken(claims, SECRET);
    const [payload, mac] = token.slice('hth_t_'.length).split('.') as [string, string];
    const widened = Buffer.from(
      JSON.stringify({ k: claims.keyId, r: 'admin', n: ['*'], e: claims.expiresAt }),
    ).toString('base64url');
    expect(verifyToken(`hth_t_${widened}.${mac}`, SECRET, 0)).toBeUndefined();
    expect(verifyToken(token, Buffer.alloc(32, 8), 0)).toBeUndefined();
    expect(verifyToken(`hth_t_${payload}.${mac.slice(0, -2)}`, SECRET, 0)).toBeUndefined();
  });
});

describe('roles', () => {
  it('allow their actions in their namespaces only', () => {
    const deployer = { role: 'deployer' as const, namespaces: ['team-a'] };
    expect(permits(deployer, 'deploy', 'team-a')).toBe(true);
    expect(permits(deployer, 'deploy', 'team-b')).toBe(false);
    expect(permits(deployer, 'read', undefined)).toBe(false);
    expect(permits(deployer, 'admin', 'team-a')).toBe(false);
    expect(permits({ role: 'viewer', namespaces: ['*'] }, 'read', undefined)).toBe(true);
    expect(permits({ role: 'invoker', namespaces: ['*'] }, 'read', 'team-a')).toBe(false);
  });

  it('let a token narrow its key, never widen it', () => {
    const key = { role: 'deployer' as const, namespaces: ['team-a', 'team-b'] };
    expect(isWithin({ role: 'viewer', namespaces: ['team-a'] }, key)).toBe(true);
    expect(isWithin({ role: 'invoker', namespaces: ['team-b'] }, key)).toBe(true);
    expect(isWithin({ role: 'admin', namespaces: ['*'] }, key)).toBe(false);
    expect(isWithin({ role: 'viewer', namespaces: ['*'] }, key)).toBe(false);
    expect(isWithin({ role: 'viewer', namespaces: ['team-c'] }, key)).toBe(false);
    expect(isWithin({ role: 'deployer', namespaces: ['team-c'] }, { role: 'admin', namespaces: ['*'] })).toBe(
      true,
    );
  });
});
