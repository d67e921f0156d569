/**
 * @module AWS Signature Version 4, checked on the Lambda Invoke API so the AWS SDKs, boto3 and the AWS CLI
 * authenticate with a Hearth API key (issue 18 × issue 10).
 *
 * Hand-written rather than `@smithy/signature-v4`: verifying is ~80 lines of `node:crypto` (canonical
 * request, string to sign, four chained HMACs), synchronous, with no dependency loaded on the gateway; the
 * library is a signer (it would have to rebuild a smithy `HttpRequest` from the Node request and re-sign
 * it asynchronously). The tests check this against AWS's published test vector and against requests
 * signed by `@smithy/signature-v4` and by the real SDKs.
 *
 * Scope: the `Authorization: AWS4-HMAC-SHA256 …` header form (what every SDK sends); presigned URLs
 * (`X-Amz-Signature` in the query) are not accepted. The path is double-encoded as the SDKs do for every
 * service but S3: the canonical URI is the wire path URI-encoded once more.
 */

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
/** AWS refuses a request whose `x-amz-date` is more than 15 minutes from its clock; so does Hearth. */
export const SIGV4_MAX_SKEW_MS = 15 * 60 * 1000;

/** A request as received, with its whole body (already read within the route's body bound). */
export interface SignedRequest {
  readonly method: string;
  /** The path and query as sent on the wire (`req.url`). */
  readonly url: string;
  /** Node's `rawHeaders`: name, value, name, value… (repeated headers kept apart). */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
}

/** What the `Authorization` header says. */
export interface SigV4Authorization {
  readonly accessKeyId: string;
  /** `YYYYMMDD` of the credential scope. */
  readonly date: string;
  readonly region: string;
  readonly service: string;
  /** Lower-case header names, as listed (sorted by the signer). */
  readonly signedHeaders: readonly string[];
  /** Hex. */
  readonly signature: string;
}

/** Why a signature is refused, as AWS names it. */
export class SigV4Refusal extends Error {
  constructor(
    readonly type:
      | 'UnrecognizedClientException'
      | 'InvalidSignatureException'
      | 'IncompleteSignatureException',
    message: string,
  ) {
    super(message);
    this.name = type;
  }
}

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request\s*,\s*SignedHeaders=([a-z0-9;_.-]+)\s*,\s*Signature=([0-9a-f]{64})\s*$/;

export function isSigV4(authorization: string | undefined): boolean {
  return authorization?.startsWith(SIGV4_ALGORITHM) === true;
}

/** Parses the header; undefined when it is not a complete SigV4 Authorization header. */
export function parseSigV4Authorization(authorization: string | undefined): SigV4Authorization | undefined {
  const match = authorization === undefined ? null : AUTHORIZATION.exec(authorization);
  if (match === null) return undefined;
  return {
    accessKeyId: match[1] as string,
    date: match[2] as string,
    region: match[3] as string,
    service: match[4] as string,
    signedHeaders: (match[5] as string).split(';'),
    signature: match[6] as string,
  };
}

/**
 * Checks `request`'s signature with `secretAccessKey`: the scope's service, the date's freshness, the body
 * against `x-amz-content-sha256` when sent, then the signature (compared in constant time). Throws a
 * `SigV4Refusal` naming what is wrong.
 */
export function verifySigV4(
  request: SignedRequest,
  auth: SigV4Authorization,
  secretAccessKey: string,
  expected: { readonly service: string; readonly nowMs: number },
): void {
  if (auth.service !== expected.service)
    throw invalid(`Credential should be scoped to correct service: '${expected.service}'.`);
  if (!auth.signedHeaders.includes('host'))
    throw invalid("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  const amzDate = headerValues(request.rawHeaders, 'x-amz-date');
  const signedAt = amzDate === undefined ? Number.NaN : parseAmzDate(amzDate);
  if (amzDate === undefined || Number.isNaN(signedAt))
    throw new SigV4Refusal(
      'IncompleteSignatureException',
      'Authorization header requires existence of a valid X-Amz-Date header (YYYYMMDDTHHMMSSZ).',
    );
  if (amzDate.slice(0, 8) !== auth.date)
    throw invalid(
      `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${auth.date}' != '${amzDate.slice(0, 8)}'.`,
    );
  if (Math.abs(expected.nowMs - signedAt) > SIGV4_MAX_SKEW_MS)
    throw invalid(
      `Signature expired: ${amzDate} is now earlier or later than ${new Date(expected.nowMs - SIGV4_MAX_SKEW_MS).toISOString()} to ${new Date(expected.nowMs + SIGV4_MAX_SKEW_MS).toISOString()} (15 minutes either way of the server's clock).`,
    );
  const bodyHash = sha256Hex(request.body);
  const declared = headerValues(request.rawHeaders, 'x-amz-content-sha256');
  if (declared !== undefined && declared !== bodyHash)
    throw invalid('The body does not match its x-amz-content-sha256 header.');
  const computed = sigV4Signature(request, auth, amzDate, secretAccessKey, bodyHash);
  const given = Buffer.from(auth.signature, 'hex');
  const wanted = Buffer.from(computed, 'hex');
  if (given.length !== wanted.length || !timingSafeEqual(given, wanted))
    throw invalid(
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
    );
}

/** The hex signature of `request` under `auth`'s scope (exported for the test vectors). */
export function sigV4Signature(
  request: SignedRequest,
  auth: SigV4Authorization,
  amzDate: string,
  secretAccessKey: string,
  bodyHash: string = sha256Hex(request.body),
): string {
  const queryAt = request.url.indexOf('?');
  const path = queryAt < 0 ? request.url : request.url.slice(0, queryAt);
  const query = queryAt < 0 ? '' : request.url.slice(queryAt + 1);
  const canonicalHeaders = auth.signedHeaders
    .map((name) => `${name}:${headerValues(request.rawHeaders, name) ?? ''}\n`)
    .join('');
  const canonicalRequest = [
    request.method.toUpperCase(),
    canonicalUri(path),
    canonicalQuery(query),
    canonicalHeaders,
    auth.signedHeaders.join(';'),
    bodyHash,
  ].join('\n');
  const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
  const stringToSign = [SIGV4_ALGORITHM, amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  let key: Buffer = hmac(`AWS4${secretAccessKey}`, auth.date);
  for (const part of [auth.region, auth.service, 'aws4_request']) key = hmac(key, part);
  return createHmac('sha256', key).update(stringToSign).digest('hex');
}

/** The wire path (already encoded once by the client) encoded again, segment by segment, dot segments resolved. */
function canonicalUri(path: string): string {
  const segments: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const trailing = path.endsWith('/') && segments.length > 0 ? '/' : '';
  return `/${segments.map(uriEncode).join('/')}${trailing}`;
}

function canonicalQuery(query: string): string {
  if (query === '') return '';
  const pairs: [string, string][] = [];
  for (const part of query.split('&')) {
    if (part === '') continue;
    const equals = part.indexOf('=');
    const name = equals < 0 ? part : part.slice(0, equals);
    const value = equals < 0 ? '' : part.slice(equals + 1);
    pairs.push([uriEncode(safeDecode(name)), uriEncode(safeDecode(value))]);
  }
  pairs.sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  return pairs.map(([name, value]) => `${name}=${value}`).join('&');
}

/** RFC 3986 encoding as SigV4 wants it: everything but `A-Za-z0-9-_.~`. */
function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Every value of a header, trimmed, inner runs of spaces collapsed, joined by commas (SigV4's rule). */
function headerValues(rawHeaders: readonly string[], lowerName: string): string | undefined {
  let joined: string | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2)
    if ((rawHeaders[i] as string).toLowerCase() === lowerName) {
      const value = (rawHeaders[i + 1] as string).trim().replace(/\s+/g, ' ');
      joined = joined === undefined ? value : `${joined},${value}`;
    }
  return joined;
}

function parseAmzDate(value: string): number {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (match === null) return Number.NaN;
  const [, year, month, day, hour, minute, second] = match.map(Number) as number[];
  return Date.UTC(year as number, (month as number) - 1, day, hour, minute, second);
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function invalid(message: string): SigV4Refusal {
  return new SigV4Refusal('InvalidSignatureException', message);
}
