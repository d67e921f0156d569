/**
 * @module Token-bucket rate limits: per gateway protocol, per route, per function and per client (API key,
 * else IP). A request takes one token from every bucket that applies, or from none; the refusal says how
 * long until a token is back (`Retry-After`), and the `RateLimit-*` headers show the tightest bucket.
 */

import { createHash } from 'node:crypto';
import { HearthError } from '../domain/errors.js';
import { type RateLimitEvent, rateLimitChannel } from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import type { RateLimit } from '../domain/triggers.js';

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    now = performance.now(),
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Tokens available at `now` (refilled continuously at `rate` per second, up to `burst`). */
  available(now: number): number {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
    }
    return this.tokens;
  }

  take(): void {
    this.tokens -= 1;
  }

  /** Milliseconds until one token is available. */
  waitMs(now: number): number {
    const tokens = this.available(now);
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) * 1000) / this.rate);
  }

  get full(): boolean {
    return this.tokens >= this.burst;
  }
}

export type LimitScope = RateLimitEvent['scope'];

/** One configured limit: a shared bucket and/or a bucket per client. */
export class LimitRule {
  readonly shared: TokenBucket | undefined;
  private readonly clients = new Map<string, TokenBucket>();

  constructor(
    readonly scope: Exclude<LimitScope, 'client'>,
    readonly key: string,
    readonly limit: RateLimit,
    readonly ref: FunctionRef | undefined,
  ) {
    this.shared = limit.rate === undefined ? undefined : new TokenBucket(limit.rate, limit.burst);
  }

  clientBucket(client: string, now: number): TokenBucket | undefined {
    const perClient = this.limit.perClient;
    if (perClient === undefined) return undefined;
    let bucket = this.clients.get(client);
    if (bucket === undefined) {
      bucket = new TokenBucket(perClient, this.limit.clientBurst, now);
      this.clients.set(client, bucket);
    }
    return bucket;
  }

  /** Forgets clients whose buckets are full again: they would start full anyway. */
  sweep(now: number): void {
    for (const [client, bucket] of this.clients) {
      bucket.available(now);
      if (bucket.full) this.clients.delete(client);
    }
  }
}

export interface LimitOutcome {
  /** `RateLimit-*` headers for the tightest bucket, as a flat `[name, value, ...]` list. */
  readonly headers: string[];
}

/**
 * Takes one token from each bucket of `rules` (shared and this client's), or refuses with a 429 naming the
 * bucket that ran out. Returns the headers to add to the response when any rule applied.
 */
export function takeTokens(rules: readonly LimitRule[], client: string): LimitOutcome | undefined {
  if (rules.length === 0) return undefined;
  const now = performance.now();
  let tightest: { bucket: TokenBucket; rule: LimitRule; scope: LimitScope; key: string } | undefined;
  let tightestLeft = Number.POSITIVE_INFINITY;
  let refused:
    | { bucket: TokenBucket; rule: LimitRule; scope: LimitScope; key: string; waitMs: number }
    | undefined;
  const buckets: TokenBucket[] = [];
  for (const rule of rules) {
    const candidates: [TokenBucket | undefined, LimitScope, string][] = [
      [rule.shared, rule.scope, rule.key],
      [rule.clientBucket(client, now), 'client', `${rule.key}/client/${client}`],
    ];
    for (const [bucket, scope, key] of candidates) {
      if (bucket === undefined) continue;
      const left = bucket.available(now);
      if (left < 1) {
        const waitMs = bucket.waitMs(now);
        if (refused === undefined || waitMs > refused.waitMs) refused = { bucket, rule, scope, key, waitMs };
        continue;
      }
      buckets.push(bucket);
      if (left / bucket.rate < tightestLeft) {
        tightestLeft = left / bucket.rate;
        tightest = { bucket, rule, scope, key };
      }
    }
  }
  if (refused !== undefined) {
    const retryAfter = Math.max(1, Math.ceil(refused.waitMs / 1000));
    if (rateLimitChannel.hasSubscribers)
      rateLimitChannel.publish({
        scope: refused.scope,
        key: refused.key,
        ref: refused.rule.ref,
        limit: refused.bucket.rate,
        retryAfterMs: refused.waitMs,
      } satisfies RateLimitEvent);
    throw new HearthError(
      'HEARTH_E_RATE_LIMITED',
      `rate limit of ${formatRate(refused.bucket.rate)} (${refused.scope} ${refused.key}) exceeded; retry in ${refused.waitMs}ms`,
      {
        retryAfter,
        details: {
          scope: refused.scope,
          key: refused.key,
          limit: refused.bucket.rate,
          retryAfterMs: refused.waitMs,
        },
        headers: Object.fromEntries(pairs(headersFor(refused.bucket, 0, refused.scope, refused.waitMs))),
      },
    );
  }
  for (const bucket of buckets) bucket.take();
  if (tightest === undefined) return undefined;
  const remaining = tightest.bucket.available(now);
  return { headers: headersFor(tightest.bucket, remaining, tightest.scope, 0) };
}

/** IETF draft `RateLimit-*` fields (draft-ietf-httpapi-ratelimit-headers-06, as most clients read them). */
function headersFor(bucket: TokenBucket, remaining: number, scope: LimitScope, waitMs: number): string[] {
  const reset = waitMs > 0 ? Math.ceil(waitMs / 1000) : Math.ceil((bucket.burst - remaining) / bucket.rate);
  return [
    'ratelimit-limit',
    String(Math.round(bucket.rate)),
    'ratelimit-remaining',
    String(Math.max(0, Math.floor(remaining))),
    'ratelimit-reset',
    String(Math.max(0, reset)),
    'ratelimit-policy',
    `${Math.round(bucket.rate)};w=1;burst=${bucket.burst};scope=${scope}`,
  ];
}

function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
}

export function formatRate(perSecond: number): string {
  return perSecond >= 1 ? `${Number(perSecond.toFixed(2))}qps` : `${Number((perSecond * 60).toFixed(2))}qpm`;
}

/** API keys never appear in logs or error bodies: a client is named by a digest of its key. */
function keyId(key: string): string {
  return `key:${createHash('sha256').update(key).digest('hex').slice(0, 12)}`;
}

/** Who the client is for per-client limits: the API key when one is sent, else the peer address. */
export function clientKeyOf(rawHeaders: readonly string[], remoteAddress: string | undefined): string {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (name === 'x-api-key') return keyId(rawHeaders[i + 1] ?? '');
    if (name === 'authorization') {
      const value = rawHeaders[i + 1] ?? '';
      if (value.toLowerCase().startsWith('bearer ')) return keyId(value.slice(7).trim());
    }
  }
  return `ip:${remoteAddress ?? 'unknown'}`;
}
