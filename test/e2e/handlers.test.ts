/** @module End-to-end: every supported handler style, deployed to a real platform and called over HTTP. */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  deployFolder,
  FIXTURES,
  type Hearth,
  invoke,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { exchange } from '../support/raw-http.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const FIXTURE_NAMES = [
  'node-esm-default',
  'node-esm-named',
  'node-cjs-default',
  'node-lambda',
  'node-callback',
  'node-binary',
  'py-sync',
  'py-async',
  'py-event-only',
  'py-binary',
  'py-decorated',
] as const;

let hearth: Hearth;
let teamCopy: TempFolder;
let decoratedAsync: TempFolder;

beforeAll(async () => {
  hearth = await startHearth();
  // Sequential: each deploy starts a sandboxed instance to verify its handler, and the machine is small.
  for (const name of FIXTURE_NAMES) {
    const deployed = await deployFolder(hearth.url, `${FIXTURES}/${name}`, { name });
    expect(deployed.status, `deploy ${name}: ${JSON.stringify(deployed.body)}`).toBe(200);
  }
  // The same function name in another namespace, configured differently so the route's choice shows.
  teamCopy = await copyFixture('node-esm-default', {
    'hearth.yaml': manifest('node-esm-default', '{ runtime: node20, env: { GREETING: hola } }'),
  });
  const team = await deployFolder(hearth.url, teamCopy.dir, {
    name: 'node-esm-default',
    namespace: 'team-a',
  });
  expect(team.status, JSON.stringify(team.body)).toBe(200);
  decoratedAsync = await copyFixture('py-decorated', {
    'hearth.yaml': manifest('py-decorated-async', '{ runtime: python3, handler: main.concurrent }'),
  });
  const coroutine = await deployFolder(hearth.url, decoratedAsync.dir, { name: 'py-decorated-async' });
  expect(coroutine.status, JSON.stringify(coroutine.body)).toBe(200);
});

afterAll(async () => {
  await hearth?.stop();
  await teamCopy?.cleanup();
  await decoratedAsync?.cleanup();
});

describe('Node handlers', () => {
  it('ESM default export gets the parsed event, the spec env and a context', async () => {
    const response = await invoke(hearth.url, 'node-esm-default', {
      method: 'POST',
      path: '/a/b?tag=x&tag=y&single=1',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ item: 'apple', count: 2 }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.headers.get('x-hearth-invocation-id')).toMatch(UUID);
    expect(response.json()).toEqual({
      greeting: 'hi',
      method: 'POST',
      path: '/a/b',
      query: { tag: ['x', 'y'], single: '1' },
      body: { item: 'apple', count: 2 },
      contentType: 'application/json',
      fn: 'node-esm-default',
      remainingPositive: true,
    });
  });

  it('ESM default export sees path "/" and an empty query when called bare', async () => {
    const response = await invoke(hearth.url, 'node-esm-default');
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({ method: 'GET', path: '/', query: {}, contentType: null });
  });

  it('ESM named export in a subfolder (src/app.handler) sets status, header and body', async () => {
    const response = await invoke(hearth.url, 'node-esm-named', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ item: 'pear' }),
    });
    expect(response.status).toBe(201);
    expect(response.headers.get('x-style')).toBe('esm-named');
    expect(response.text).toBe('created pear');
  });

  it('CommonJS default export returning a string answers text/plain', async () => {
    const response = await invoke(hearth.url, 'node-cjs-default');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(response.text).toBe('plain text for GET');
  });

  it('an unchanged AWS Lambda handler gets the API Gateway v2 event and Lambda context', async () => {
    const response = await invoke(hearth.url, 'node-lambda', {
      method: 'POST',
      path: '/orders/7?expand=items',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ n: 21 }),
    });
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({
      doubled: 42,
      rawPath: '/orders/7',
      method: 'POST',
      qs: { expand: 'items' },
      remaining: true,
    });
    const invocationId = response.headers.get('x-hearth-invocation-id');
    expect(invocationId).toMatch(UUID);
    // context.awsRequestId is the platform's invocation id.
    expect(response.headers.get('x-request-id')).toBe(invocationId);
  });

  it('a Lambda handler called without a query string gets queryStringParameters undefined', async () => {
    const response = await invoke(hearth.url, 'node-lambda', {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    expect(response.status).toBe(200);
    expect(response.json()).toMatchObject({ doubled: 0, rawPath: '/', qs: null });
  });

  it('a callback-style Lambda handler answers through its callback', async () => {
    const response = await invoke(hearth.url, 'node-callback');
    expect(response.status).toBe(202);
    expect(response.text).toBe('accepted by callback');
  });
});

describe('Python handlers', () => {
  it('a sync handler returning a dict answers JSON; a single query value is a string', async () => {
    const response = await invoke(hearth.url, 'py-sync', {
      method: 'POST',
      path: '/items/3?q=1',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Hearth' }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.json()).toEqual({
      greeting: 'hello',
      method: 'POST',
      path: '/items/3',
      query: { q: '1' },
      body: { name: 'Hearth' },
      fn: 'py-sync',
      remainingPositive: true,
    });
  });

  it('an async handler serves concurrent requests concurrently', async () => {
    // Warm first, so the timing below measures the handler, not an instance start.
    expect((await invoke(hearth.url, 'py-async')).status).toBe(200);
    const started = performance.now();
    const responses = await Promise.all(Array.from({ length: 5 }, () => invoke(hearth.url, 'py-async')));
    const elapsedMs = performance.now() - started;
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect(response.headers.get('x-style')).toBe('async');
      expect(response.text).toBe('slept');
    }
    // Five 0.2 s sleeps one after another would take 1 s; overlapping, about 0.2 s. The bound is loose.
    expect(elapsedMs).toBeLessThan(900);
  });

  it('a handler taking only the event is called with the event', async () => {
    const response = await invoke(hearth.url, 'py-event-only', {
      method: 'PATCH',
      body: 'x',
      headers: { 'content-type': 'text/plain' },
    });
    expect(response.status).toBe(200);
    expect(response.text).toBe('only event: PATCH');
  });

  it("a decorated handler is called with its own parameters (the wrapper's `*args` are not its arity)", async () => {
    const response = await invoke(hearth.url, 'py-decorated', { method: 'PUT' });
    expect(response.status).toBe(200);
    expect(response.text).toBe('decorated, only event: PUT');
  });

  it('a decorated coroutine handler is awaited', async () => {
    const response = await invoke(hearth.url, 'py-decorated-async');
    expect(response.status).toBe(200);
    expect(response.text).toBe('decorated coroutine: py-decorated-async');
  });
});

describe('bodies, methods and routes', () => {
  // Every byte value, including NUL and bytes that are not UTF-8.
  const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));
  const reversed = Buffer.from(bytes).reverse();

  it.each(['node-binary', 'py-binary'])('%s round-trips a binary body byte for byte', async (name) => {
    const response = await fetch(`${hearth.url}/function/${name}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/octet-stream');
    const body = Buffer.from(await response.arrayBuffer());
    expect(body.equals(reversed)).toBe(true);
  });

  it.each(['DELETE', 'PUT', 'OPTIONS'])('%s reaches the handler', async (method) => {
    const response = await invoke(hearth.url, 'node-cjs-default', { method });
    expect(response.status).toBe(200);
    expect(response.text).toBe(`plain text for ${method}`);
  });

  it('HEAD reaches the handler: no body, but the length of what it returned for HEAD', async () => {
    const response = await invoke(hearth.url, 'node-cjs-default', { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(response.text).toBe('');
    expect(response.headers.get('content-length')).toBe(String('plain text for HEAD'.length));
    expect(response.headers.get('x-hearth-invocation-id')).toMatch(UUID);
  });

  it('/function/NAME.NAMESPACE routes to that namespace; the bare name stays in default', async () => {
    const team = await invoke(hearth.url, 'node-esm-default.team-a', { path: '/x' });
    expect(team.status).toBe(200);
    expect(team.json()).toMatchObject({ greeting: 'hola', fn: 'node-esm-default', path: '/x' });
    const plain = await invoke(hearth.url, 'node-esm-default', { path: '/x' });
    expect(plain.json()).toMatchObject({ greeting: 'hi', fn: 'node-esm-default', path: '/x' });
  });

  it('a namespace with no such function answers 404, not the default namespace', async () => {
    const response = await invoke(hearth.url, 'node-callback.team-a');
    expect(response.status).toBe(404);
    expect(response.json()).toMatchObject({ error: { code: 'HEARTH_E_FN_NOT_FOUND' } });
  });
});

describe('one keep-alive connection', () => {
  it('serves pipelined invocations and an API call in order, whichever parser reads them', async () => {
    const port = Number(new URL(hearth.url).port);
    const json = JSON.stringify({ item: 'pear' });
    const chunked = `${json.length.toString(16)}\r\n${json}\r\n0\r\n\r\n`;
    const { answers, socket } = await exchange(
      port,
      [
        // Read by the gateway's fast front: a Content-Length body.
        `POST /function/node-esm-default/one?n=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json}` +
          // Handed to node:http: the control API, then a chunked invocation.
          'GET /api/v1/namespaces/default/functions/node-esm-default HTTP/1.1\r\nHost: h\r\n\r\n' +
          `POST /function/node-esm-default/three HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`,
      ],
      3,
    );
    socket.destroy();
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(JSON.parse(answers[0]?.body ?? '{}')).toMatchObject({
      path: '/one',
      query: { n: '1' },
      body: { item: 'pear' },
    });
    expect(answers[0]?.headers['x-hearth-invocation-id']).toMatch(UUID);
    expect(JSON.parse(answers[1]?.body ?? '{}')).toMatchObject({ name: 'node-esm-default' });
    expect(JSON.parse(answers[2]?.body ?? '{}')).toMatchObject({ path: '/three', body: { item: 'pear' } });
    expect(answers[2]?.headers['x-hearth-invocation-id']).toMatch(UUID);
  });
});
