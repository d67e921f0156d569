/**
 * @module SigV4 verification on its own: AWS's published test vector, requests signed by
 * `@smithy/signature-v4` (the signer inside the AWS SDK for JavaScript) as the Lambda client signs them,
 * tampering, stale dates, and the AWS credentials derived from a key.
 */

import { createHash, createHmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { awsCredentials, keyIdOfAwsAccessKey } from './credentials.js';
import {
  parseSigV4Authorization,
  type SignedRequest,
  SigV4Refusal,
  sigV4Signature,
  verifySigV4,
} from './sigv4.js';

describe('AWS SigV4 test suite vector', () => {
  // "get-vanilla" from AWS's Signature Version 4 test suite (service `service`, region us-east-1).
  const secret = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
  const authorization =
    'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31';
  const request: SignedRequest = {
    method: 'GET',
    url: '/',
    rawHeaders: [
      'Host',
      'example.amazonaws.com',
      'X-Amz-Date',
      '20150830T123600Z',
      'Authorization',
      authorization,
    ],
    body: Buffer.alloc(0),
  };
  const parsed = parseSigV4Authorization(authorization);

  it('reproduces the published signature', () => {
    expect(parsed).toMatchObject({ accessKeyId: 'AKIDEXAMPLE', region: 'us-east-1', service: 'service' });
    if (parsed === undefined) throw new Error('unparsed');
    expect(sigV4Signature(request, parsed, '20150830T123600Z', secret)).toBe(parsed.signature);
    verifySigV4(request, parsed, secret, { service: 'service', nowMs: Date.UTC(2015, 7, 30, 12, 40) });
  });

  it('refuses it 15 minutes after, with another secret, or for another service', () => {
    if (parsed === undefined) throw new Error('unparsed');
    const refusal = (secretKey: string, service: string, nowMs: number): string | undefined => {
      try {
        verifySigV4(request, parsed, secretKey, { service, nowMs });
        return undefined;
      } catch (error) {
        expect(error).toBeInstanceOf(SigV4Refusal);
        return `${(error as SigV4Refusal).type}: ${(error as Error).message}`;
      }
    };
    expect(refusal(secret, 'service', Date.UTC(2015, 7, 30, 12, 52))).toMatch(
      /^InvalidSignatureException: Signature expired/,
    );
    expect(refusal(secret, 'service', Date.UTC(2015, 7, 30, 12, 20))).toMatch(/Signature expired/);
    expect(refusal(`${secret}x`, 'service', Date.UTC(2015, 7, 30, 12, 36))).toMatch(
      /^InvalidSignatureException: The request signature we calculated does not match/,
    );
    expect(refusal(secret, 'lambda', Date.UTC(2015, 7, 30, 12, 36))).toMatch(/scoped to correct service/);
  });
});

/** The SHA-256 the smithy signer wants (the SDK passes @smithy/hash-node's, which is this). */
class Sha256 {
  private readonly hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash =
      secret === undefined
        ? createHash('sha256')
        : createHmac('sha256', typeof secret === 'string' ? secret : Buffer.from(secret as Uint8Array));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(typeof data === 'string' ? data : Buffer.from(data as Uint8Array));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

/** Signs as `@aws-sdk/client-lambda` does (path segments encoded once by the client, again by the signer). */
async function smithySigned(
  credentials: { accessKeyId: string; secretAccessKey: string },
  init: { path: string; query?: Record<string, string>; body: string; signingDate: Date },
): Promise<SignedRequest> {
  const signer = new SignatureV4({
    credentials,
    region: 'eu-west-1',
    service: 'lambda',
    sha256: Sha256,
    uriEscapePath: true,
  });
  const signed = await signer.sign(
    {
      method: 'POST',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 8080,
      path: init.path,
      query: init.query ?? {},
      headers: {
        host: '127.0.0.1:8080',
        'content-type': 'application/json',
        'x-amz-invocation-type': 'RequestResponse',
      },
      body: init.body,
    },
    { signingDate: init.signingDate },
  );
  const rawHeaders = Object.entries(signed.headers).flat();
  const query = Object.entries(init.query ?? {})
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
    .join('&');
  return {
    method: 'POST',
    url: query === '' ? init.path : `${init.path}?${query}`,
    rawHeaders,
    body: Buffer.from(init.body),
  };
}

function authorizationOf(request: SignedRequest): string | undefined {
  const at = request.rawHeaders.findIndex(
    (name, index) => index % 2 === 0 && name.toLowerCase() === 'authorization',
  );
  return at < 0 ? undefined : request.rawHeaders[at + 1];
}

describe('requests signed by @smithy/signature-v4', () => {
  const keyId = '0123456789ab';
  const credentials = awsCredentials(keyId, 'f'.repeat(64), Buffer.alloc(32, 3));
  const signingDate = new Date(Date.UTC(2026, 11, 6, 23, 0, 0));
  const nowMs = signingDate.getTime() + 60_000;

  it('verify, with an ARN function name (double-encoded path) and a qualifier', async () => {
    const request = await smithySigned(credentials, {
      path: `/2015-03-31/functions/${encodeURIComponent('arn:aws:lambda:eu-west-1:000000000000:function:add.team')}/invocations`,
      query: { Qualifier: '$LATEST' },
      body: JSON.stringify({ a: 1, b: [2, 3] }),
      signingDate,
    });
    const parsed = parseSigV4Authorization(authorizationOf(request));
    expect(parsed?.accessKeyId).toBe(credentials.accessKeyId);
    if (parsed === undefined) throw new Error('unparsed');
    expect(() =>
      verifySigV4(request, parsed, credentials.secretAccessKey, { service: 'lambda', nowMs }),
    ).not.toThrow();
  });

  it('refuse a changed body, path or secret', async () => {
    const request = await smithySigned(credentials, {
      path: '/2015-03-31/functions/add/invocations',
      body: '{"a":1}',
      signingDate,
    });
    const parsed = parseSigV4Authorization(authorizationOf(request));
    if (parsed === undefined) throw new Error('unparsed');
    const verify = (changed: SignedRequest, secret = credentials.secretAccessKey): void =>
      verifySigV4(changed, parsed, secret, { service: 'lambda', nowMs });
    expect(() => verify({ ...request, body: Buffer.from('{"a":2}') })).toThrow(/x-amz-content-sha256/);
    expect(() => verify({ ...request, url: '/2015-03-31/functions/other/invocations' })).toThrow(
      /signature we calculated does not match/,
    );
    expect(() => verify(request, `${credentials.secretAccessKey}x`)).toThrow(/does not match/);
    // Without the payload-hash header (botocore sends none), the body is hashed and signed all the same.
    const withoutHash = request.rawHeaders.flatMap((value, index, all) =>
      index % 2 === 0 && value.toLowerCase() !== 'x-amz-content-sha256'
        ? [value, all[index + 1] as string]
        : [],
    );
    expect(() => verify({ ...request, rawHeaders: withoutHash, body: Buffer.from('{"a":2}') })).toThrow(
      /does not match/,
    );
  });
});

describe('the AWS credentials of a key', () => {
  it('name the key in AWS’s access key charset and derive a secret the store does not hold', () => {
    const platform = Buffer.alloc(32, 9);
    const credentials = awsCredentials('0a1b2c3d4e5f', 'ab'.repeat(32), platform);
    expect(credentials.accessKeyId).toBe('HTHK0A1B2C3D4E5F');
    expect(credentials.accessKeyId).toMatch(/^[A-Z0-9]{16,128}$/);
    expect(keyIdOfAwsAccessKey(credentials.accessKeyId)).toBe('0a1b2c3d4e5f');
    expect(keyIdOfAwsAccessKey('AKIDEXAMPLE')).toBeUndefined();
    expect(credentials.secretAccessKey).not.toContain('ab'.repeat(32));
    expect(awsCredentials('0a1b2c3d4e5f', 'ab'.repeat(32), platform)).toEqual(credentials);
    expect(awsCredentials('0a1b2c3d4e5f', 'ab'.repeat(32), Buffer.alloc(32, 8)).secretAccessKey).not.toBe(
      credentials.secretAccessKey,
    );
  });
});
