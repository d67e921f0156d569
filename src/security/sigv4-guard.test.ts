/**
 * @module The Lambda Invoke API's guard with SigV4 (security/http.ts `guardLambda`) over real HTTP, with
 * the real control store and `@aws-sdk/client-lambda` signing: the key behind a signature becomes the
 * principal, the body read for the hash reaches the route once, and refusals are shaped as AWS's. The
 * route behind the guard is a stand-in that echoes what it was handed (the real route is covered by the
 * e2e suites).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GetFunctionConfigurationCommand,
  InvokeCommand,
  LambdaClient,
  type LambdaServiceException,
} from '@aws-sdk/client-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../control/store/index.js';
import type { DeployedVersion } from '../domain/deployment.js';
import { readBody } from '../gateway/index.js';
import { guardLambda } from './http.js';
import { Security } from './index.js';

type Credentials = { accessKeyId: string; secretAccessKey: string };

let base: string;
let store: SqliteStore;
let server: Server;
let url: string;
let security: Security;
const creds: Record<string, Credentials> = {};
let invokerId = '';

const auth = (mode: 'public' | 'key') =>
  ({
    ref: { namespace: 'team', name: mode === 'key' ? 'locked' : 'open' },
    version: 1,
    spec: { auth: mode, limits: { maxBodyBytes: 1024 } },
  }) as unknown as DeployedVersion;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-sigv4-'));
  store = new SqliteStore(join(base, 'hearth.db'));
  security = new Security({
    store,
    exposed: false,
    usage: {
      functions: () => ({ names: new Set(), codeBytes: 0 }),
      instances: () => ({ instances: 0, memoryBytes: 0 }),
    },
    audit: () => {},
  });
  for (const [role, namespaces] of [
    ['invoker', ['team']],
    ['viewer', ['team']],
    ['outsider', ['other']],
  ] as const) {
    const created = security.createKey({ role: role === 'outsider' ? 'invoker' : role, namespaces });
    creds[role] = { ...created.aws };
    if (role === 'invoker') invokerId = created.summary.id;
  }
  const functions = { locked: auth('key'), open: auth('public') };
  server = createServer(
    guardLambda(
      security,
      (ref) => functions[ref.name as keyof typeof functions],
      (req, res, guarded) => {
        // The stand-in route: the body once (from the guard, or read here), and ctx.auth as handed on.
        const body = guarded?.body === undefined ? readBody(req, 1024) : Promise.resolve(guarded.body);
        void body.then((bytes) => {
          const payload = JSON.stringify({
            FunctionName: 'echo',
            body: bytes.toString('utf8'),
            fromGuard: guarded?.body !== undefined,
            auth: guarded?.auth ?? null,
          });
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(payload);
        });
      },
    ),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  store?.close();
  await rm(base, { recursive: true, force: true });
});

async function invoke(name: string, credentials: Credentials): Promise<unknown> {
  const lambda = new LambdaClient({ endpoint: url, region: 'eu-west-1', credentials, maxAttempts: 1 });
  try {
    const output = await lambda.send(
      new InvokeCommand({ FunctionName: name, Payload: new TextEncoder().encode('{"n":1}') }),
    );
    return JSON.parse(Buffer.from(output.Payload ?? new Uint8Array()).toString('utf8'));
  } catch (error) {
    return [
      (error as LambdaServiceException).name,
      (error as LambdaServiceException).$metadata?.httpStatusCode,
    ];
  } finally {
    lambda.destroy();
  }
}

describe('guardLambda with SigV4', () => {
  it('lets a key’s AWS credentials invoke a key function, with the key as ctx.auth and the body read once', async () => {
    expect(await invoke('locked.team', creds.invoker as Credentials)).toEqual({
      FunctionName: 'echo',
      body: '{"n":1}',
      fromGuard: true,
      auth: { type: 'key', key: invokerId, name: 'invoker key', role: 'invoker' },
    });
  });

  it('refuses a wrong secret, an unknown id, a role or namespace that does not cover it', async () => {
    const invoker = creds.invoker as Credentials;
    expect(await invoke('locked.team', { ...invoker, secretAccessKey: 'x' })).toEqual([
      'InvalidSignatureException',
      403,
    ]);
    expect(await invoke('locked.team', { ...invoker, accessKeyId: 'HTHK0123456789AB' })).toEqual([
      'UnrecognizedClientException',
      403,
    ]);
    expect(await invoke('locked.team', creds.outsider as Credentials)).toEqual([
      'AccessDeniedException',
      403,
    ]);
    expect(await invoke('locked.team', creds.viewer as Credentials)).toEqual(['AccessDeniedException', 403]);
  });

  it('leaves a public function’s SigV4 unchecked, as before keys', async () => {
    expect(
      await invoke('open.team', { accessKeyId: 'AKIDANYTHING', secretAccessKey: 'anything' }),
    ).toMatchObject({
      fromGuard: false,
      body: '{"n":1}',
    });
  });

  it('gives a key its AWS credentials again, to the key itself only', () => {
    const invoker = security.listKeys().find((key) => key.id === invokerId);
    if (invoker === undefined) throw new Error('no invoker');
    const principal = {
      keyId: invoker.id,
      name: invoker.name,
      role: invoker.role,
      namespaces: invoker.namespaces,
    };
    // (The SDK marks the credentials object it was given, hence toMatchObject.)
    expect(creds.invoker).toMatchObject(security.awsCredentialsOf({ ...principal, via: 'key' }));
    expect(() => security.awsCredentialsOf({ ...principal, via: 'token' })).toThrow(/not a token/);
  });

  it('checks read for GetFunctionConfiguration while auth is on', async () => {
    const config = async (credentials: Credentials): Promise<unknown> => {
      const lambda = new LambdaClient({ endpoint: url, region: 'eu-west-1', credentials, maxAttempts: 1 });
      try {
        return (await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: 'open.team' })))
          .FunctionName;
      } catch (error) {
        return (error as Error).name;
      } finally {
        lambda.destroy();
      }
    };
    expect(await config(creds.viewer as Credentials)).toBe('echo');
    expect(await config(creds.invoker as Credentials)).toBe('AccessDeniedException');
  });
});
