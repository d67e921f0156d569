/**
 * @module Where `X-Callback-Url` may point, through the real platform: private, loopback and link-local
 * destinations (literal, IPv4-mapped, or a name that resolves there) are refused with 400 by default; an
 * operator's `async.callback.allow` lets a loopback receiver get its callback; a redirect is not followed.
 */

import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InvocationRecord } from '../../src/control/api/events-types.js';
import {
  api,
  deployFolder,
  eventually,
  FIXTURES,
  type Hearth,
  makeFolder,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

const folders: TempFolder[] = [];
const closers: (() => Promise<void>)[] = [];

async function platform(config: string): Promise<Hearth> {
  const folder = await makeFolder({ 'hearth.config.yaml': config });
  folders.push(folder);
  const hearth = await startHearth({ args: ['--config', join(folder.dir, 'hearth.config.yaml')] });
  closers.push(async () => {
    await hearth.stop();
  });
  const deployed = await deployFolder(hearth.url, join(FIXTURES, 'node-esm-default'), {
    name: 'node-esm-default',
  });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  return hearth;
}

function acceptWith(hearth: Hearth, callbackUrl: string): Promise<Response> {
  return fetch(`${hearth.url}/async-function/node-esm-default`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-callback-url': callbackUrl },
    body: '{"n":1}',
  });
}

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('by default', () => {
  let hearth: Hearth;
  beforeAll(async () => {
    hearth = await platform('async: { callback: { attempts: 1 } }\n');
  });

  it.each([
    ['http://169.254.169.254/latest/meta-data/', '169.254.169.254'],
    ['http://10.0.0.1/hook', '10.0.0.1'],
    ['http://127.0.0.1:9/hook', '127.0.0.1'],
    ['http://[::ffff:127.0.0.1]:9/hook', '::ffff:7f00:1'],
    ['http://[::1]:9/hook', '::1'],
    ['http://192.168.1.20/hook', '192.168.1.20'],
    ['http://localhost:9/hook', 'localhost resolves to'],
  ])('refuses %s with 400 naming the header, and accepts nothing', async (url, why) => {
    const response = await acceptWith(hearth, url);
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { code: string; message: string; details: unknown } };
    expect(body.error.code).toBe('HEARTH_E_VALIDATION');
    expect(body.error.message).toContain(`X-Callback-Url: got "${url}", expected a public destination`);
    expect(body.error.message).toContain(why);
    expect(body.error.details).toMatchObject({ field: 'X-Callback-Url', value: url });
    const listed = await api<{ items: unknown[] }>(
      hearth.url,
      '/api/v1/invocations?function=node-esm-default',
    );
    expect(listed.body.items).toEqual([]);
  });

  it('still refuses a URL that is not http(s)', async () => {
    const response = await acceptWith(hearth, 'file:///etc/passwd');
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({
      error: { details: { field: 'X-Callback-Url', expected: 'an http:// or https:// URL' } },
    });
  });
});

describe('with async.callback.allow', () => {
  let hearth: Hearth;
  let recorder: Recorder;
  let forbidden: Server;
  let forbiddenHits = 0;
  let forbiddenUrl = '';
  let redirector: Server;
  let redirectorUrl = '';

  beforeAll(async () => {
    recorder = await startRecorder();
    closers.push(() => recorder.close());
    // Reached only by following a redirect: 127.0.0.2 is loopback and not in the allow-list.
    forbidden = createServer((req, res) => {
      forbiddenHits += 1;
      req.resume();
      res.end('stolen');
    });
    await new Promise<void>((resolve) => forbidden.listen(0, '127.0.0.2', resolve));
    const forbiddenAddress = forbidden.address();
    forbiddenUrl = `http://127.0.0.2:${typeof forbiddenAddress === 'object' ? forbiddenAddress?.port : 0}/stolen`;
    redirector = createServer((req, res) => {
      req.resume();
      res.writeHead(307, { location: forbiddenUrl }).end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    const redirectorAddress = redirector.address();
    redirectorUrl = `http://127.0.0.1:${typeof redirectorAddress === 'object' ? redirectorAddress?.port : 0}/hook`;
    closers.push(
      () => new Promise((resolve) => forbidden.close(() => resolve())),
      () => new Promise((resolve) => redirector.close(() => resolve())),
    );
    hearth = await platform('async: { callback: { attempts: 1, allow: ["127.0.0.1/32", "10.9.0.0/16"] } }\n');
  });

  it('delivers the callback to an allowed loopback receiver', async () => {
    const response = await acceptWith(hearth, `${recorder.url}/callback`);
    expect(response.status).toBe(202);
    const { id } = (await response.json()) as { id: string };
    await recorder.waitFor('the callback', (all) => all.some((r) => r.path === '/callback'));
    const callback = recorder.received.find((r) => r.path === '/callback');
    expect(callback?.headers['x-hearth-invocation-id']).toBe(id);
    expect(callback?.json()).toMatchObject({ body: { n: 1 } });
  });

  it('still refuses what the allow-list does not name', async () => {
    expect((await acceptWith(hearth, 'http://127.0.0.2:9/hook')).status).toBe(400);
    expect((await acceptWith(hearth, 'http://169.254.169.254/')).status).toBe(400);
    expect((await acceptWith(hearth, 'http://10.9.1.1:9/hook')).status).toBe(202);
  });

  it('does not follow a redirect from an allowed receiver to a forbidden address', async () => {
    const response = await acceptWith(hearth, redirectorUrl);
    expect(response.status).toBe(202);
    const { id } = (await response.json()) as { id: string };
    const record = await eventually('the callback to fail', async () => {
      const body = (await api<InvocationRecord>(hearth.url, `/api/v1/invocations/${id}`)).body;
      return body.callback?.state === 'failed' ? body : undefined;
    });
    expect(record.callback?.error).toContain('HTTP 307; redirects are not followed');
    expect(forbiddenHits).toBe(0);
  });
});
