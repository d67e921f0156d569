/**
 * @module Async invocation through the real platform: 202 and a fetchable result, callbacks with retries,
 * refusals at accept time, and the dead-letter list (`hearth dlq ls|show|redrive`).
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AsyncAccepted, InvocationRecord } from '../../src/control/api/events-types.js';
import {
  api,
  copyFixture,
  deployFolder,
  errorLines,
  eventually,
  FIXTURES,
  type Hearth,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

let hearth: Hearth;
let recorder: Recorder;
const folders: TempFolder[] = [];

function recorderManifest(name: string, env: string): string {
  return `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec:\n  runtime: node20\n  egress: allow\n  env: { RECORDER_URL: "${recorder.functionUrl}/hit", ${env} }\n`;
}

async function accept(
  name: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<AsyncAccepted> {
  const response = await fetch(`${hearth.url}/async-function/${name}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(202);
  return (await response.json()) as AsyncAccepted;
}

async function settled(
  id: string,
  state: InvocationRecord['status'] = 'succeeded',
): Promise<InvocationRecord> {
  return eventually(`invocation ${id} to be ${state}`, async () => {
    const record = (await api<InvocationRecord>(hearth.url, `/api/v1/invocations/${id}`)).body;
    return record.status === state ? record : undefined;
  });
}

beforeAll(async () => {
  recorder = await startRecorder();
  const config = await makeFolder({
    'hearth.config.yaml':
      // The recorder listens on loopback, which callbacks may reach only when the operator allows it.
      'async: { retry: { attempts: 2, backoff: 100ms }, callback: { attempts: 3, backoff: 100ms, timeout: 2s, allow: ["127.0.0.1"] } }\n',
  });
  folders.push(config);
  hearth = await startHearth({ args: ['--config', join(config.dir, 'hearth.config.yaml')] });
  for (const [name, env] of [
    ['recorder', 'FAIL: "0"'],
    ['flaky', 'FAIL: "1"'],
  ] as const) {
    const fixture = await copyFixture('event-recorder', { 'hearth.yaml': recorderManifest(name, env) });
    folders.push(fixture);
    const { status, body } = await deployFolder(hearth.url, fixture.dir, { name });
    expect(status, JSON.stringify(body)).toBe(200);
  }
  expect(
    (await deployFolder(hearth.url, join(FIXTURES, 'node-esm-default'), { name: 'node-esm-default' })).status,
  ).toBe(200);
});

afterAll(async () => {
  await hearth?.stop();
  await recorder?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('POST /async-function/<name>', () => {
  it('answers 202 with an id at once; the result is fetchable once the function ran', async () => {
    const accepted = await accept('node-esm-default', { hello: 'later' });
    expect(accepted.statusUrl).toBe(`/api/v1/invocations/${accepted.id}`);
    const record = await settled(accepted.id);
    expect(record.attempts).toBe(1);
    expect(record.result?.statusCode).toBe(200);
    expect(JSON.parse(record.result?.body ?? '{}')).toMatchObject({
      method: 'POST',
      body: { hello: 'later' },
    });
    const shown = await runCli(['get', 'invocation', accepted.id], { url: hearth.url });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain('Status:      succeeded');
    expect(shown.stdout).toContain('Result:      HTTP 200');
  });

  it('refuses an unknown function, a bad callback URL and an oversized body before accepting anything', async () => {
    const unknown = await fetch(`${hearth.url}/async-function/nobody`, { method: 'POST', body: '{}' });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'HEARTH_E_FN_NOT_FOUND' } });
    const badCallback = await fetch(`${hearth.url}/async-function/recorder`, {
      method: 'POST',
      body: '{}',
      headers: { 'x-callback-url': 'ftp://example/x' },
    });
    expect(badCallback.status).toBe(400);
    expect(await badCallback.json()).toMatchObject({ error: { details: { field: 'X-Callback-Url' } } });
    const big = await fetch(`${hearth.url}/async-function/recorder`, {
      method: 'POST',
      body: Buffer.alloc(7 * 1024 * 1024),
    });
    expect(big.status).toBe(413);
  });

  it('POSTs the result to X-Callback-Url, retrying a callback that fails', async () => {
    recorder.failNext(1, 503);
    const accepted = await accept(
      'node-esm-default',
      { n: 1 },
      { 'x-callback-url': `${recorder.url}/callback` },
    );
    await recorder.waitFor(
      'two callback attempts',
      (all) => all.filter((r) => r.path === '/callback').length >= 2,
    );
    const callbacks = recorder.received.filter((r) => r.path === '/callback');
    const last = callbacks.at(-1);
    expect(last?.headers['x-hearth-invocation-id']).toBe(accepted.id);
    expect(last?.headers['x-hearth-status']).toBe('200');
    expect(last?.json()).toMatchObject({ body: { n: 1 } });
    const record = await eventually('the callback to be recorded', async () => {
      const body = (await api<InvocationRecord>(hearth.url, `/api/v1/invocations/${accepted.id}`)).body;
      return body.callback?.state === 'delivered' ? body : undefined;
    });
    expect(record.callback?.attempts).toBe(2);
  });

  it('`hearth invoke --async` queues and prints the id', async () => {
    const result = await runCli(['invoke', 'node-esm-default', '--async', '--data', '{"via":"cli"}'], {
      url: hearth.url,
    });
    expect(result.code).toBe(0);
    const { id } = JSON.parse(result.stdout) as AsyncAccepted;
    await settled(id);
  });
});

describe('dead letters', () => {
  it('retries with backoff, dead-letters, lists and shows it, and redrives it once fixed', async () => {
    const accepted = await accept('flaky', { order: 7 });
    const dead = await settled(accepted.id, 'dead');
    expect(dead.attempts).toBe(2);
    expect(dead.error?.code).toBe('HEARTH_E_FN_ERROR');
    const attempts = recorder.received.filter(
      (r) => r.path === '/hit' && r.json<{ invocationId: string }>().invocationId === accepted.id,
    );
    expect(attempts).toHaveLength(2);

    const ls = await runCli(['dlq', 'ls'], { url: hearth.url });
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(new RegExp(`${accepted.id}\\s+flaky\\s+async\\s+dead\\s+2/2`));
    const show = await runCli(['dlq', 'show', accepted.id], { url: hearth.url });
    expect(show.stdout).toContain('Error:       HEARTH_E_FN_ERROR: Error: failing on purpose');

    // Fix the function's configuration, then redrive: it runs again and succeeds.
    const fix = await makeFolder({ 'fix.yaml': recorderManifest('flaky', 'FAIL: "0"') });
    folders.push(fix);
    const applied = await runCli(['apply', '-f', join(fix.dir, 'fix.yaml')], { url: hearth.url });
    expect(applied.code, applied.stderr).toBe(0);
    const redrive = await runCli(['dlq', 'redrive', accepted.id], { url: hearth.url });
    expect(redrive.stdout).toBe('1 dead letter redriven\n');
    const done = await settled(accepted.id);
    expect(done.attempts).toBe(1);
    expect((await runCli(['dlq', 'ls', '-o', 'json'], { url: hearth.url })).stdout).not.toContain(
      accepted.id,
    );
  });

  it('says so in one line when redrive is given nothing or an unknown id', async () => {
    const nothing = await runCli(['dlq', 'redrive'], { url: hearth.url });
    expect(nothing.code).not.toBe(0);
    expect(errorLines(nothing.stderr)).toEqual([
      'error: redrive needs exactly one of: dead-letter ids, --function/--source, or --all',
    ]);
    const unknown = await runCli(['dlq', 'show', 'no-such-id'], { url: hearth.url });
    expect(unknown.code).not.toBe(0);
    expect(errorLines(unknown.stderr)[0]).toContain('HEARTH_E_RESOURCE_NOT_FOUND');
  });
});
