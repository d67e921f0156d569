/**
 * @module Tenants, keys and roles (issue 10) against the real platform over real HTTP: auth off on a
 * loopback platform without keys and on once one exists, the roles × actions matrix, 401/403 bodies that
 * name what is needed and nothing that exists, revocation, tokens and their expiry, the `hearth keys`
 * CLI, namespace quotas, function-level `key` and `jwt` auth with `ctx.auth` in Node and Python, and
 * the first admin key that `hearth up` prints when it listens beyond loopback.
 */

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  GetFunctionConfigurationCommand,
  InvokeCommand,
  LambdaClient,
  type LambdaServiceException,
} from '@aws-sdk/client-lambda';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsClients } from '../support/aws/clients.mjs';
import {
  type Hearth,
  makeFolder,
  manifest,
  packFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

interface Answer {
  readonly status: number;
  readonly body: { error?: { code: string; message: string; details?: Record<string, unknown> } } & Record<
    string,
    unknown
  >;
  readonly text: string;
}

async function call(
  url: string,
  path: string,
  init: { method?: string; key?: string; json?: unknown; body?: Buffer; contentType?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (init.key !== undefined) headers.authorization = `Bearer ${init.key}`;
  if (init.json !== undefined) headers['content-type'] = 'application/json';
  if (init.contentType !== undefined) headers['content-type'] = init.contentType;
  const response = await fetch(`${url}${path}`, {
    method: init.method ?? 'GET',
    headers,
    ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await response.text();
  let body: Answer['body'] = {};
  try {
    body = JSON.parse(text) as Answer['body'];
  } catch {
    // not JSON (metrics)
  }
  return { status: response.status, body, text };
}

const folders: TempFolder[] = [];

async function deploy(
  url: string,
  name: string,
  namespace: string,
  files: Record<string, string>,
  key?: string,
): Promise<Answer> {
  const folder = await makeFolder(files);
  folders.push(folder);
  return call(url, `/api/v1/namespaces/${namespace}/functions/${name}/deploy`, {
    method: 'POST',
    body: await packFolder(folder.dir),
    contentType: 'application/gzip',
    ...(key === undefined ? {} : { key }),
  });
}

const NODE_WHO = {
  'index.mjs':
    'export default async (event, ctx) => ({ auth: ctx.auth ?? null, authorization: event.headers.authorization ?? null });\n',
};
const PY_WHO = {
  'main.py':
    'def handler(event, context):\n    return {"auth": context.auth, "authorization": event["headers"].get("authorization")}\n',
};

function nodeFunction(name: string, namespace: string, extra = ''): Record<string, string> {
  return {
    ...NODE_WHO,
    'hearth.yaml': manifest(name, `{ runtime: node20${extra} }`, `namespace: ${namespace}`),
  };
}

afterAll(async () => {
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('a loopback platform', () => {
  let hearth: Hearth;
  let admin: string;
  const keys: Record<'deployer' | 'invoker' | 'viewer', string> = { deployer: '', invoker: '', viewer: '' };
  const ids: Record<string, string> = {};
  /** Each key's AWS credentials, as `POST /api/v1/keys` gave them (SigV4 on the Lambda Invoke API). */
  const aws: Record<string, { accessKeyId: string; secretAccessKey: string }> = {};

  beforeAll(async () => {
    hearth = await startHearth();
  }, 60_000);
  afterAll(async () => {
    await hearth?.stop();
  });

  it('is open while no key exists, and prints no key', async () => {
    expect((await call(hearth.url, '/api/v1/functions')).status).toBe(200);
    expect(hearth.stderr()).not.toContain('admin key');
    const deployed = await deploy(hearth.url, 'who', 'team-a', nodeFunction('who', 'team-a', ', auth: key'));
    expect(deployed.status).toBe(200);
    // A function with auth: key needs a key even while the platform's own auth is off.
    const refused = await call(hearth.url, '/function/who.team-a');
    expect(refused.status).toBe(401);
    expect(refused.body.error?.details?.required).toEqual({
      action: 'invoke',
      role: 'invoker',
      namespace: 'team-a',
    });
  });

  it('turns auth on once the first key exists', async () => {
    const created = await call(hearth.url, '/api/v1/keys', {
      method: 'POST',
      json: { role: 'admin', name: 'ops' },
    });
    expect(created.status).toBe(201);
    admin = created.body.key as string;
    expect(admin).toMatch(/^hth_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const anonymous = await call(hearth.url, '/api/v1/functions');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error?.code).toBe('HEARTH_E_UNAUTHORIZED');
    expect(anonymous.body.error?.details?.required).toEqual({
      action: 'read',
      role: 'viewer',
      namespace: '*',
    });
    expect((await call(hearth.url, '/api/v1/functions', { key: admin })).status).toBe(200);
    const wrong = await call(hearth.url, '/api/v1/functions', { key: `${admin.slice(0, -4)}AAAA` });
    expect(wrong.status).toBe(401);
    // The stored form is a hash: the listing never carries a secret.
    const listed = await call(hearth.url, '/api/v1/keys', { key: admin });
    expect(listed.text).not.toContain(admin.slice(18));
    expect(listed.text).not.toContain('hash');
  });

  it('gives each role its actions, and only in its namespaces', async () => {
    for (const role of ['deployer', 'invoker', 'viewer'] as const) {
      const created = await call(hearth.url, '/api/v1/keys', {
        method: 'POST',
        key: admin,
        json: { role, namespaces: ['team-a'] },
      });
      expect(created.status).toBe(201);
      keys[role] = created.body.key as string;
      ids[role] = created.body.id as string;
      aws[role] = {
        accessKeyId: created.body.awsAccessKeyId as string,
        secretAccessKey: created.body.awsSecretAccessKey as string,
      };
    }
    for (const [json, field] of [
      [{ role: 'root', namespaces: ['team-a'] }, 'role'],
      [{ role: 'viewer' }, 'namespaces'],
      [{ role: 'viewer', namespaces: ['Team A'] }, 'namespaces'],
    ] as const) {
      const refused = await call(hearth.url, '/api/v1/keys', { method: 'POST', key: admin, json });
      expect(refused.status).toBe(400);
      expect(refused.body.error?.details?.field).toBe(field);
    }
    const actions: Record<string, (key: string) => Promise<Answer>> = {
      read: (key) => call(hearth.url, '/api/v1/namespaces/team-a/functions', { key }),
      logs: (key) => call(hearth.url, '/api/v1/namespaces/team-a/functions/who/logs', { key }),
      deploy: (key) =>
        call(hearth.url, '/api/v1/namespaces/team-a/functions/missing', { method: 'DELETE', key }),
      invoke: (key) => call(hearth.url, '/function/who.team-a', { key }),
      admin: (key) => call(hearth.url, '/api/v1/keys', { key }),
    };
    const expected: Record<string, readonly string[]> = {
      admin: ['read', 'logs', 'deploy', 'invoke', 'admin'],
      deployer: ['read', 'logs', 'deploy', 'invoke'],
      invoker: ['invoke'],
      viewer: ['read'],
    };
    const seen: Record<string, string[]> = {};
    for (const [role, allowed] of Object.entries(expected)) {
      const key = role === 'admin' ? admin : keys[role as keyof typeof keys];
      seen[role] = [];
      for (const [action, attempt] of Object.entries(actions)) {
        const answer = await attempt(key);
        if (answer.status === 403) {
          expect(answer.body.error?.code).toBe('HEARTH_E_FORBIDDEN');
          expect(answer.body.error?.details?.required).toMatchObject({ action });
        } else seen[role]?.push(action);
        // The deploy probe deletes a function that does not exist: allowed means 404, not 403.
        if (action === 'deploy' && allowed.includes('deploy')) expect(answer.status).toBe(404);
      }
      expect({ role, actions: seen[role] }).toEqual({ role, actions: [...allowed] });
    }
  });

  it('names the key, never the secret, in the audit log, which only an admin reads', async () => {
    await call(hearth.url, '/api/v1/namespaces/team-a/functions/not-there', { method: 'DELETE', key: admin });
    const audit = await call(hearth.url, '/api/v1/audit?limit=1000', { key: admin });
    expect(audit.status).toBe(200);
    const records = audit.body.items as { action: string; target: string; actor: { key?: string } }[];
    const deletion = records.find(
      (record) => record.target === '/api/v1/namespaces/team-a/functions/not-there',
    );
    expect(deletion?.actor.key).toBe(admin.slice(4, 16));
    expect(audit.text).not.toContain(admin.slice(17));
    expect((await call(hearth.url, '/api/v1/audit', { key: keys.viewer })).status).toBe(403);
  });

  it('audits refused logins: no key (401) and a key outside its role (403), with who and from where', async () => {
    expect((await call(hearth.url, '/api/v1/namespaces/team-a/functions/refused-probe')).status).toBe(401);
    expect(
      (await call(hearth.url, '/api/v1/namespaces/team-b/functions/refused-probe', { key: keys.viewer }))
        .status,
    ).toBe(403);
    const audit = await call(hearth.url, '/api/v1/audit?limit=1000', { key: admin });
    const records = audit.body.items as {
      action: string;
      target: string;
      outcome: string;
      status: number;
      actor: { key?: string; remote: string };
    }[];
    const refused = records.filter((record) => record.target.endsWith('/refused-probe'));
    expect(refused.map(({ action, outcome, status }) => ({ action, outcome, status }))).toEqual([
      { action: 'login GET', outcome: 'refused', status: 401 },
      { action: 'login GET', outcome: 'refused', status: 403 },
    ]);
    expect(refused[0]?.actor.key).toBeUndefined();
    expect(refused[1]?.actor.key).toBe(keys.viewer.slice(4, 16));
    expect(refused[0]?.actor.remote).toMatch(/127\.0\.0\.1/);
  });

  it('refuses other namespaces without saying what exists there', async () => {
    await deploy(hearth.url, 'secret', 'team-b', nodeFunction('secret', 'team-b'), admin);
    const existing = await call(hearth.url, '/api/v1/namespaces/team-b/functions/secret', {
      key: keys.deployer,
    });
    const missing = await call(hearth.url, '/api/v1/namespaces/team-b/functions/nothing-here', {
      key: keys.deployer,
    });
    expect(existing.status).toBe(403);
    expect(existing.text).toBe(missing.text);
    expect(existing.body.error?.details?.required).toEqual({
      action: 'read',
      role: 'viewer',
      namespace: 'team-b',
    });
    expect(existing.text).not.toContain('secret');
    // Listing namespaces shows only the caller's own.
    const namespaces = await call(hearth.url, '/api/v1/namespaces', { key: keys.viewer });
    expect((namespaces.body.items as { name: string }[]).map((ns) => ns.name)).toEqual(['team-a']);
  });

  it('derives tokens that may only narrow their key, expire, and die with it', async () => {
    const token = await call(hearth.url, '/api/v1/tokens', {
      method: 'POST',
      key: keys.deployer,
      json: { ttlSeconds: 2, role: 'viewer' },
    });
    expect(token.status).toBe(201);
    const bearer = token.body.token as string;
    expect((await call(hearth.url, '/api/v1/namespaces/team-a/functions', { key: bearer })).status).toBe(200);
    const deployDenied = await call(hearth.url, '/api/v1/namespaces/team-a/functions/missing', {
      method: 'DELETE',
      key: bearer,
    });
    expect(deployDenied.status).toBe(403);
    const wider = await call(hearth.url, '/api/v1/tokens', {
      method: 'POST',
      key: keys.deployer,
      json: { role: 'admin' },
    });
    expect(wider.status).toBe(403);
    const otherNamespace = await call(hearth.url, '/api/v1/tokens', {
      method: 'POST',
      key: keys.deployer,
      json: { namespaces: ['team-b'] },
    });
    expect(otherNamespace.status).toBe(403);
    // Expiry: checked against the clock, so waiting past it is the test (no timing is asserted).
    await new Promise((resolve) => setTimeout(resolve, 3_100));
    const expired = await call(hearth.url, '/api/v1/namespaces/team-a/functions', { key: bearer });
    expect(expired.status).toBe(401);
    expect(expired.body.error?.code).toBe('HEARTH_E_UNAUTHORIZED');
    // A longer token dies when its key is revoked.
    const lasting = await call(hearth.url, '/api/v1/tokens', { method: 'POST', key: keys.viewer, json: {} });
    const lastingToken = lasting.body.token as string;
    expect(
      (await call(hearth.url, '/api/v1/namespaces/team-a/functions', { key: lastingToken })).status,
    ).toBe(200);
    expect(
      (await call(hearth.url, `/api/v1/keys/${ids.viewer}`, { method: 'DELETE', key: admin })).status,
    ).toBe(200);
    expect((await call(hearth.url, '/api/v1/namespaces/team-a/functions', { key: keys.viewer })).status).toBe(
      401,
    );
    expect(
      (await call(hearth.url, '/api/v1/namespaces/team-a/functions', { key: lastingToken })).status,
    ).toBe(401);
  }, 20_000);

  it('manages keys from the CLI with --api-key and $HEARTH_API_KEY', async () => {
    const env = { HEARTH_API_KEY: admin };
    const created = await runCli(
      ['keys', 'create', '--role', 'viewer', '--namespace', 'team-a', '--name', 'ci'],
      {
        url: hearth.url,
        env,
      },
    );
    expect(created.code).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^hth_[0-9a-f]{12}_/);
    const shown = /aws_access_key_id = (HTHK[0-9A-F]{12})\n\s*aws_secret_access_key = (\S{43})/.exec(
      created.stderr,
    );
    expect(shown).not.toBeNull();
    // The key's holder gets the same pair again; a token derived from it does not.
    const again = await runCli(['keys', 'aws-credentials', '--output', 'json', '--api-key', key], {
      url: hearth.url,
    });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      awsAccessKeyId: shown?.[1],
      awsSecretAccessKey: shown?.[2],
    });
    const token = await call(hearth.url, '/api/v1/tokens', { method: 'POST', key, json: {} });
    const byToken = await call(hearth.url, '/api/v1/keys/aws-credentials', {
      method: 'POST',
      key: token.body.token as string,
      json: {},
    });
    expect(byToken.status).toBe(403);
    const id = key.slice(4, 16);
    const listed = await runCli(['keys', 'ls'], { url: hearth.url, env });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`${id}\\s+ci\\s+viewer\\s+team-a`));
    expect(listed.stdout).not.toContain(key.slice(17));
    const ls = await runCli(['ls', '-n', 'team-a', '--api-key', key], { url: hearth.url });
    expect(ls.code).toBe(0);
    expect(ls.stdout).toContain('who');
    const anonymous = await runCli(['ls', '-n', 'team-a'], { url: hearth.url, env: { HEARTH_API_KEY: '' } });
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr.trim().split('\n')).toHaveLength(1);
    expect(anonymous.stderr).toContain('HEARTH_E_UNAUTHORIZED');
    const viewerKeys = await runCli(['keys', 'ls', '--api-key', key], { url: hearth.url });
    expect(viewerKeys.code).not.toBe(0);
    expect(viewerKeys.stderr).toContain('HEARTH_E_FORBIDDEN');
    expect((await runCli(['keys', 'revoke', id], { url: hearth.url, env })).code).toBe(0);
    expect((await runCli(['ls', '-n', 'team-a', '--api-key', key], { url: hearth.url })).code).not.toBe(0);
  });

  it('checks key auth when an async invocation is accepted, and carries ctx.auth through the queue', async () => {
    const anonymous = await call(hearth.url, '/async-function/who.team-a', { method: 'POST', json: {} });
    expect(anonymous.status).toBe(401);
    const accepted = await call(hearth.url, '/async-function/who.team-a', {
      method: 'POST',
      json: {},
      key: keys.invoker,
    });
    expect(accepted.status).toBe(202);
    // The function answers later, from the queue, with the caller it was accepted for (never the key).
    const statusUrl = accepted.body.statusUrl as string;
    let answer: Record<string, unknown> | undefined;
    for (let attempt = 0; attempt < 100 && answer === undefined; attempt++) {
      const record = await call(hearth.url, statusUrl, { key: admin });
      const result = record.body.result as { body: string } | null;
      if (record.body.status === 'succeeded' && result !== null) answer = JSON.parse(result.body);
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(answer?.authorization).toBeNull();
    expect(answer?.auth).toMatchObject({ type: 'key', role: 'invoker' });
  });

  it('checks key auth on the Lambda Invoke API with Bearer credentials', async () => {
    const path = '/2015-03-31/functions/who.team-a/invocations';
    const invoked = await call(hearth.url, path, {
      method: 'POST',
      json: { headers: {} },
      key: keys.invoker,
    });
    expect(invoked.status).toBe(200);
    expect(invoked.body).toMatchObject({ auth: { type: 'key', key: ids.invoker, role: 'invoker' } });
    const config = await call(hearth.url, '/2015-03-31/functions/who.team-a', {});
    expect(config.status).toBe(401);
  });

  it("verifies SigV4 on the Lambda Invoke API against a key's AWS credentials", async () => {
    expect(aws.invoker?.accessKeyId).toBe(`HTHK${ids.invoker?.toUpperCase()}`);
    const client = (credentials: { accessKeyId: string; secretAccessKey: string }): LambdaClient =>
      new LambdaClient({ endpoint: hearth.url, region: 'eu-west-1', credentials, maxAttempts: 1 });
    const invoke = (credentials: { accessKeyId: string; secretAccessKey: string }) => {
      const lambda = client(credentials);
      return lambda
        .send(
          new InvokeCommand({
            FunctionName: 'who.team-a',
            Payload: new TextEncoder().encode(JSON.stringify({ headers: {} })),
          }),
        )
        .finally(() => lambda.destroy());
    };
    const refusal = (promise: Promise<unknown>): Promise<[string, number | undefined, string]> =>
      promise.then(
        () => ['resolved', undefined, ''],
        (error: LambdaServiceException) => [error.name, error.$metadata?.httpStatusCode, error.message],
      );

    const output = await invoke(aws.invoker as { accessKeyId: string; secretAccessKey: string });
    expect(output.StatusCode).toBe(200);
    expect(output.FunctionError).toBeUndefined();
    expect(JSON.parse(Buffer.from(output.Payload ?? new Uint8Array()).toString('utf8'))).toEqual({
      auth: { type: 'key', key: ids.invoker, name: 'invoker key', role: 'invoker' },
      authorization: null,
    });

    const invoker = aws.invoker as { accessKeyId: string; secretAccessKey: string };
    expect(
      await refusal(invoke({ ...invoker, secretAccessKey: `${invoker.secretAccessKey.slice(0, -2)}xx` })),
    ).toEqual([
      'InvalidSignatureException',
      403,
      expect.stringContaining('signature we calculated does not match'),
    ]);
    expect(await refusal(invoke({ ...invoker, accessKeyId: 'HTHK000000000000' }))).toEqual([
      'UnrecognizedClientException',
      403,
      expect.stringContaining('no active Hearth API key'),
    ]);
    // The viewer key was revoked above: its AWS credentials end with it.
    expect((await refusal(invoke(aws.viewer as { accessKeyId: string; secretAccessKey: string })))[0]).toBe(
      'UnrecognizedClientException',
    );
    // A key of another namespace is held to the same role and namespace checks as with Bearer.
    const outsider = await call(hearth.url, '/api/v1/keys', {
      method: 'POST',
      key: admin,
      json: { role: 'invoker', namespaces: ['team-b'] },
    });
    expect(
      await refusal(
        invoke({
          accessKeyId: outsider.body.awsAccessKeyId as string,
          secretAccessKey: outsider.body.awsSecretAccessKey as string,
        }),
      ),
    ).toEqual(['AccessDeniedException', 403, expect.stringContaining('in namespace team-a')]);
    // GetFunctionConfiguration needs read: the deployer has it, the invoker does not.
    const configOf = (credentials: { accessKeyId: string; secretAccessKey: string }) => {
      const lambda = client(credentials);
      return lambda
        .send(new GetFunctionConfigurationCommand({ FunctionName: 'who.team-a' }))
        .finally(() => lambda.destroy());
    };
    expect(
      (await configOf(aws.deployer as { accessKeyId: string; secretAccessKey: string })).FunctionName,
    ).toBe('who');
    expect((await refusal(configOf(invoker)))[0]).toBe('AccessDeniedException');

    // A made-up SigV4 header (no Hearth key) is refused as AWS refuses an unknown access key id.
    const forged = await fetch(`${hearth.url}/2015-03-31/functions/who.team-a/invocations`, {
      method: 'POST',
      headers: {
        authorization:
          'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=00',
      },
      body: '{}',
    });
    expect(forged.status).toBe(403);
    expect(forged.headers.get('x-amzn-errortype')).toBe('IncompleteSignatureException');
  }, 30_000);

  it('lets boto3 invoke a key function with its AWS credentials', async () => {
    const bin = awsClients();
    const script = `import json, sys
import boto3
from botocore.config import Config

client = boto3.client("lambda", endpoint_url=sys.argv[1], region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
r = client.invoke(FunctionName="who.team-a", Payload=json.dumps({"headers": {}}))
out = {"status": r["StatusCode"], "payload": json.loads(r["Payload"].read())}
try:
    boto3.client(
        "lambda", endpoint_url=sys.argv[1], region_name="us-east-1",
        aws_access_key_id=sys.argv[2], aws_secret_access_key="wrong", config=Config(retries={"max_attempts": 1}),
    ).invoke(FunctionName="who.team-a", Payload=b"{}")
except Exception as error:
    out["wrong"] = error.response["Error"]["Code"]
print(json.dumps(out))
`;
    const folder = await makeFolder({ 'invoke.py': script });
    folders.push(folder);
    const invoker = aws.invoker as { accessKeyId: string; secretAccessKey: string };
    const { stdout } = await promisify(execFile)(
      join(bin, 'python'),
      [join(folder.dir, 'invoke.py'), hearth.url, invoker.accessKeyId],
      {
        env: {
          ...process.env,
          AWS_ACCESS_KEY_ID: invoker.accessKeyId,
          AWS_SECRET_ACCESS_KEY: invoker.secretAccessKey,
          AWS_EC2_METADATA_DISABLED: 'true',
        },
      },
    );
    expect(JSON.parse(stdout)).toEqual({
      status: 200,
      payload: {
        auth: { type: 'key', key: ids.invoker, name: 'invoker key', role: 'invoker' },
        authorization: null,
      },
      wrong: 'InvalidSignatureException',
    });
  }, 120_000);

  it('lets ctx.invoke reach a key function only from its own namespace', async () => {
    const caller = (namespace: string) => ({
      'index.mjs':
        'export default async (event, ctx) => { try { return { answer: await ctx.invoke(event.query.target, {}) }; } catch (error) { return { error: error.message, type: error.name }; } };\n',
      'hearth.yaml': manifest('caller', '{ runtime: node20 }', `namespace: ${namespace}`),
    });
    for (const namespace of ['team-a', 'team-b'])
      expect((await deploy(hearth.url, 'caller', namespace, caller(namespace), admin)).status).toBe(200);
    const inside = await call(hearth.url, '/function/caller.team-a?target=who', { key: admin });
    expect(inside.body.answer).toMatchObject({ statusCode: 200 });
    const across = await call(hearth.url, '/function/caller.team-b?target=who.team-a', { key: admin });
    expect(across.body.type).toBe('HEARTH_E_FORBIDDEN');
    expect(across.body.error).toContain('only from its own namespace');
  });

  it('keeps key functions out of reach of POST /events without a key', async () => {
    const event = {
      specversion: '1.0',
      id: 'e1',
      source: 'tests',
      type: 'probe',
      subject: 'who.team-a',
      datacontenttype: 'application/json',
      data: {},
    };
    const post = (key?: string) =>
      call(hearth.url, '/events', {
        method: 'POST',
        body: Buffer.from(JSON.stringify(event)),
        contentType: 'application/cloudevents+json',
        ...(key === undefined ? {} : { key }),
      });
    const anonymous = await post();
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error?.details?.required).toEqual({
      action: 'invoke',
      role: 'invoker',
      namespace: '*',
    });
    expect((await post(keys.invoker)).status).toBe(403);
    // Past the door: the function got the event (it reads HTTP headers a CloudEvent lacks, so it throws).
    expect([401, 403]).not.toContain((await post(admin)).status);
  });

  it('passes key auth to the function as ctx.auth, never the key itself', async () => {
    const invoked = await call(hearth.url, '/function/who.team-a', { key: keys.invoker });
    expect(invoked.status).toBe(200);
    expect(invoked.body.authorization).toBeNull();
    expect(invoked.body.auth).toMatchObject({ type: 'key', role: 'invoker' });
    const outsider = await call(hearth.url, '/api/v1/keys', {
      method: 'POST',
      key: admin,
      json: { role: 'invoker', namespaces: ['team-b'] },
    });
    const denied = await call(hearth.url, '/function/who.team-a', { key: outsider.body.key as string });
    expect(denied.status).toBe(403);
    expect(denied.body.error?.details?.required).toEqual({
      action: 'invoke',
      role: 'invoker',
      namespace: 'team-a',
    });
  });

  it('applies Namespace resources and enforces their quotas', async () => {
    const folder = await makeFolder({
      'ns.yaml': [
        'apiVersion: hearth.dev/v1',
        'kind: Namespace',
        'metadata: { name: quota-a }',
        'spec:',
        '  functionAuth: key',
        '  quotas: { functions: 1, requestsPerSecond: 0.1, codeBytes: 1Mi }',
        '---',
        'apiVersion: hearth.dev/v1',
        'kind: Namespace',
        'metadata: { name: quota-b }',
        'spec:',
        '  quotas: { instances: 1 }',
        '---',
        'apiVersion: hearth.dev/v1',
        'kind: Namespace',
        'metadata: { name: quota-c }',
        'spec:',
        '  quotas: { codeBytes: 10 }',
        '---',
        'apiVersion: hearth.dev/v1',
        'kind: Namespace',
        'metadata: { name: quota-d }',
        'spec:',
        '  quotas: { queueDepth: 0 }',
        '---',
        'apiVersion: hearth.dev/v1',
        'kind: Namespace',
        'metadata: { name: quota-e }',
        'spec:',
        '  quotas: { memory: 200Mi }',
        '---',
        'apiVersion: hearth.dev/v1',
        'kind: Namespace',
        'metadata: { name: quota-f }',
        'spec:',
        '  quotas: { codeBytes: 20000 }',
        '',
      ].join('\n'),
    });
    folders.push(folder);
    const applied = await runCli(['apply', '-f', join(folder.dir, 'ns.yaml'), '--api-key', admin], {
      url: hearth.url,
    });
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toContain('namespace/quota-a configured');
    // A deployer may not set its own quotas.
    const byDeployer = await runCli(
      ['apply', '-f', join(folder.dir, 'ns.yaml'), '--api-key', keys.deployer],
      {
        url: hearth.url,
      },
    );
    expect(byDeployer.code).not.toBe(0);
    expect(byDeployer.stderr).toContain('HEARTH_E_FORBIDDEN');

    const listed = await runCli(['ls', 'namespaces', '--api-key', admin], { url: hearth.url });
    expect(listed.stdout).toMatch(/quota-a\s+yes\s+key\s+functions 0\/1/);

    // functions
    expect((await deploy(hearth.url, 'one', 'quota-a', nodeFunction('one', 'quota-a'), admin)).status).toBe(
      200,
    );
    const second = await deploy(hearth.url, 'two', 'quota-a', nodeFunction('two', 'quota-a'), admin);
    expect(second.status).toBe(403);
    expect(second.body.error?.code).toBe('HEARTH_E_QUOTA_EXCEEDED');
    expect(second.body.error?.details).toMatchObject({ quota: 'functions', limit: 1, current: 1 });
    // codeBytes
    const big = await deploy(hearth.url, 'big', 'quota-c', nodeFunction('big', 'quota-c'), admin);
    expect(big.status).toBe(403);
    expect(big.body.error?.details).toMatchObject({ quota: 'codeBytes', limit: 10, current: 0 });
    // Every retained version's code counts, not only the active one's: two versions of about 8 kB (stored,
    // incompressible) fit in 20 kB, a third does not.
    const padded = (): Record<string, string> => ({
      ...nodeFunction('kept', 'quota-f'),
      'padding.txt': randomBytes(6000).toString('base64'),
    });
    for (let version = 1; version <= 2; version++)
      expect((await deploy(hearth.url, 'kept', 'quota-f', padded(), admin)).status).toBe(200);
    const third = await deploy(hearth.url, 'kept', 'quota-f', padded(), admin);
    expect(third.status).toBe(403);
    expect(third.body.error?.details).toMatchObject({ quota: 'codeBytes', limit: 20000 });
    expect(third.body.error?.details?.current as number).toBeGreaterThan(12_000);

    // functionAuth: key makes the public function need a key; then requestsPerSecond (0.1/s: one token).
    const anonymous = await call(hearth.url, '/function/one.quota-a');
    expect(anonymous.status).toBe(401);
    const first = await call(hearth.url, '/function/one.quota-a', { key: admin });
    expect(first.status).toBe(200);
    const throttled = await call(hearth.url, '/function/one.quota-a', { key: admin });
    expect(throttled.status).toBe(429);
    expect(throttled.body.error?.code).toBe('HEARTH_E_QUOTA_THROTTLED');
    expect(throttled.body.error?.details).toMatchObject({
      quota: 'requestsPerSecond',
      namespace: 'quota-a',
      limit: 0.1,
    });

    // instances: the first function keeps its instance; the second, scaled to zero, may not start one.
    expect((await deploy(hearth.url, 'b1', 'quota-b', nodeFunction('b1', 'quota-b'), admin)).status).toBe(
      200,
    );
    // The deploy's verify instance is one of the namespace's too: no room for it while b1 holds the one.
    const noRoom = await deploy(hearth.url, 'b2', 'quota-b', nodeFunction('b2', 'quota-b'), admin);
    expect(noRoom.status).toBe(403);
    expect(noRoom.body.error?.details).toMatchObject({ quota: 'instances', limit: 1, current: 1 });
    expect((await call(hearth.url, '/api/v1/namespaces/quota-b/functions/b2', { key: admin })).status).toBe(
      404,
    );
    await call(hearth.url, '/api/v1/namespaces/quota-b/functions/b1/instances', {
      method: 'DELETE',
      key: admin,
    });
    expect((await deploy(hearth.url, 'b2', 'quota-b', nodeFunction('b2', 'quota-b'), admin)).status).toBe(
      200,
    );
    expect((await call(hearth.url, '/function/b2.quota-b')).status).toBe(200);
    await call(hearth.url, '/api/v1/namespaces/quota-b/functions/b2/instances', {
      method: 'DELETE',
      key: admin,
    });
    expect((await call(hearth.url, '/function/b1.quota-b')).status).toBe(200);
    const overInstances = await call(hearth.url, '/function/b2.quota-b');
    expect(overInstances.status).toBe(403);
    expect(overInstances.body.error?.details).toMatchObject({ quota: 'instances', limit: 1, current: 1 });
    // memory: two 128Mi functions do not both fit in 200Mi (each deploy's verify instance stays as its first).
    for (const name of ['e1', 'e2']) {
      expect((await deploy(hearth.url, name, 'quota-e', nodeFunction(name, 'quota-e'), admin)).status).toBe(
        200,
      );
      await call(hearth.url, `/api/v1/namespaces/quota-e/functions/${name}/instances`, {
        method: 'DELETE',
        key: admin,
      });
    }
    expect((await call(hearth.url, '/function/e1.quota-e')).status).toBe(200);
    await call(hearth.url, '/api/v1/namespaces/quota-e/functions/e2/instances', {
      method: 'DELETE',
      key: admin,
    });
    const overMemory = await call(hearth.url, '/function/e2.quota-e');
    expect(overMemory.status).toBe(403);
    expect(overMemory.body.error?.details).toMatchObject({
      quota: 'memory',
      limit: 200 * 1024 * 1024,
      current: 128 * 1024 * 1024,
    });
    // queueDepth: 0 accepts no async invocation at all.
    expect((await deploy(hearth.url, 'd1', 'quota-d', nodeFunction('d1', 'quota-d'), admin)).status).toBe(
      200,
    );
    const queued = await call(hearth.url, '/async-function/d1.quota-d', { method: 'POST', json: {} });
    expect(queued.status).toBe(429);
    expect(queued.body.error?.details).toMatchObject({ quota: 'queueDepth', limit: 0, current: 0 });
    const described = await runCli(['describe', 'namespace', 'quota-b', '--api-key', admin], {
      url: hearth.url,
    });
    expect(described.stdout).toContain('instances 1/1');
  }, 60_000);
});

describe('JWT function auth', () => {
  let hearth: Hearth;
  let jwksServer: Server;
  let folder: TempFolder;
  const issuer = 'https://issuer.example';
  const audience = 'hearth-tests';
  let sign: (
    claims: Record<string, unknown>,
    options?: { iss?: string; aud?: string; exp?: number },
  ) => Promise<string>;
  let signWithStranger: () => Promise<string>;

  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const stranger = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    const jwks = JSON.stringify({ keys: [jwk] });
    folder = await makeFolder({ 'jwks.json': jwks });
    folders.push(folder);
    jwksServer = createServer((_, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(jwks);
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    sign = (claims, options = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(options.iss ?? issuer)
        .setAudience(options.aud ?? audience)
        .setIssuedAt()
        .setExpirationTime(options.exp ?? Math.floor(Date.now() / 1000) + 300)
        .sign(privateKey);
    signWithStranger = () =>
      new SignJWT({ sub: 'mallory' })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(issuer)
        .setAudience(audience)
        .setExpirationTime('5m')
        .sign(stranger.privateKey);
    hearth = await startHearth();
  }, 60_000);
  afterAll(async () => {
    await hearth?.stop();
    jwksServer?.close();
  });

  const jwtSpec = (jwks: string): string =>
    `, auth: jwt, jwt: { jwks: "${jwks}", issuer: "${issuer}", audience: "${audience}" }`;

  it('verifies JWTs against a JWKS file and hands the claims to a Node function', async () => {
    const deployed = await deploy(
      hearth.url,
      'jwt-node',
      'default',
      nodeFunction('jwt-node', 'default', jwtSpec(join(folder.dir, 'jwks.json'))),
    );
    expect(deployed.status).toBe(200);
    const good = await sign({ sub: 'alice', scope: 'orders' });
    const ok = await call(hearth.url, '/function/jwt-node', { key: good });
    expect(ok.status).toBe(200);
    expect(ok.body.auth).toMatchObject({ type: 'jwt', sub: 'alice', scope: 'orders', iss: issuer });
    const described = await runCli(['describe', 'jwt-node'], { url: hearth.url });
    expect(described.stdout).toMatch(/Auth:\s+jwt \(issuer https:\/\/issuer\.example, audience hearth-tests/);
    const cases: [string, Promise<string> | undefined, string][] = [
      ['no token', undefined, 'requires a JWT'],
      ['wrong issuer', sign({ sub: 'alice' }, { iss: 'https://evil.example' }), '"iss" claim'],
      ['wrong audience', sign({ sub: 'alice' }, { aud: 'someone-else' }), '"aud" claim'],
      ['expired', sign({ sub: 'alice' }, { exp: Math.floor(Date.now() / 1000) - 600 }), 'expired'],
      ['wrong key', signWithStranger(), 'signature'],
    ];
    for (const [label, token, reason] of cases) {
      const refused = await call(
        hearth.url,
        '/function/jwt-node',
        token === undefined ? {} : { key: await token },
      );
      expect({ label, status: refused.status }).toEqual({ label, status: 401 });
      expect(refused.body.error?.code).toBe('HEARTH_E_UNAUTHORIZED');
      expect(refused.body.error?.message).toContain(reason);
      // The expected issuer and audience are not echoed to a caller who got them wrong.
      expect(refused.text).not.toContain(audience);
    }
  });

  it('fetches a JWKS URL and hands the claims to a Python function', async () => {
    const url = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
    const deployed = await deploy(hearth.url, 'jwt-py', 'default', {
      ...PY_WHO,
      'hearth.yaml': manifest('jwt-py', `{ runtime: python3${jwtSpec(url)} }`),
    });
    expect(deployed.status).toBe(200);
    const ok = await call(hearth.url, '/function/jwt-py', { key: await sign({ sub: 'bob' }) });
    expect(ok.status).toBe(200);
    expect(ok.body.auth).toMatchObject({ type: 'jwt', sub: 'bob', aud: audience });
    expect((await call(hearth.url, '/function/jwt-py', { key: await signWithStranger() })).status).toBe(401);
  });

  it('refuses auth: jwt without its jwt block, naming the field', async () => {
    const refused = await deploy(
      hearth.url,
      'jwt-missing',
      'default',
      nodeFunction('jwt-missing', 'default', ', auth: jwt'),
    );
    expect(refused.status).toBe(400);
    expect(refused.body.error?.details?.field).toBe('spec.jwt');
  });
});

describe('a platform listening beyond loopback', () => {
  it('prints the first admin key once, needs it, and keeps /healthz open', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'hearth-e2e-exposed-'));
    const hearth = await startHearth({ args: ['--host', '0.0.0.0'], dataDir });
    const local = `http://127.0.0.1:${hearth.port}`;
    let restarted: Hearth | undefined;
    try {
      const printed = /admin key: (hth_[0-9a-f]{12}_[A-Za-z0-9_-]{43})/.exec(hearth.stderr())?.[1];
      expect(printed).toBeDefined();
      // Never in the JSON log.
      expect(JSON.stringify(hearth.log)).not.toContain(printed);
      const anonymous = await call(local, '/api/v1/functions');
      expect(anonymous.status).toBe(401);
      expect((await call(local, '/api/v1/functions', { key: printed })).status).toBe(200);
      expect((await call(local, '/metrics')).status).toBe(401);
      expect((await call(local, '/metrics', { key: printed })).status).toBe(200);
      expect((await call(local, '/healthz')).status).toBe(200);
      expect((await call(local, '/ui/api/overview')).status).toBe(401);
      expect((await call(local, '/ui')).status).toBe(200);
      // The dashboard asks for the key on the API's 401 and keeps it for the tab.
      const browser = await chromium.launch({
        executablePath: '/usr/bin/chromium',
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      });
      try {
        const page = await browser.newPage();
        const prompts: string[] = [];
        page.on('dialog', (dialog) => {
          prompts.push(dialog.message());
          void dialog.accept(printed);
        });
        await page.goto(`${local}/ui`);
        await expect
          .poll(() => page.locator('#meta').textContent(), { timeout: 15_000 })
          .toContain('0 functions');
        expect(prompts).toHaveLength(1);
        expect(prompts[0]).toContain('API key');
        expect(await page.evaluate('sessionStorage.getItem("hearth.apiKey")')).toBe(printed);
      } finally {
        await browser.close();
      }
      await hearth.stop();
      restarted = await startHearth({ args: ['--host', '0.0.0.0'], dataDir });
      expect(restarted.stderr()).not.toContain('admin key');
      const again = `http://127.0.0.1:${restarted.port}`;
      expect((await call(again, '/api/v1/functions', { key: printed })).status).toBe(200);
    } finally {
      await restarted?.stop();
      await hearth.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
