/** @module Tests of `hearth invoke` against a fake gateway: method, content type, output, errors. */

import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../main.js';
import {
  captureIo,
  type FakeApi,
  type FakeHandler,
  makeFolder,
  sendJson,
  startFakeApi,
} from '../test-support.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function api(handler: FakeHandler): Promise<FakeApi> {
  const server = await startFakeApi(handler);
  cleanups.push(server.close);
  return server;
}

const echoServer: FakeHandler = (request, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'x-hearth-invocation-id': 'inv-123' });
  res.end(JSON.stringify({ method: request.method, body: request.body.toString() }));
};

describe('hearth invoke', () => {
  it('GETs the gateway route without data and writes the raw body to stdout', async () => {
    const server = await api(echoServer);
    const out = captureIo();
    expect(await main(['invoke', 'echo', '--url', server.url], out.io)).toBe(0);
    const [request] = server.requests;
    expect(request?.method).toBe('GET');
    expect(request?.url).toBe('/function/echo');
    expect(request?.headers['content-type']).toBeUndefined();
    expect(out.stdout()).toBe('{"method":"GET","body":""}');
    expect(out.stderr()).toBe('');
  });

  it('POSTs JSON data as application/json and other text as text/plain', async () => {
    const server = await api(echoServer);
    expect(await main(['invoke', 'echo', '-d', '{"name":"Ada"}', '--url', server.url], captureIo().io)).toBe(
      0,
    );
    expect(await main(['invoke', 'echo', '-d', 'hello there', '--url', server.url], captureIo().io)).toBe(0);
    const [json, text] = server.requests;
    expect(json?.method).toBe('POST');
    expect(json?.headers['content-type']).toBe('application/json');
    expect(json?.body.toString()).toBe('{"name":"Ada"}');
    expect(text?.headers['content-type']).toBe('text/plain; charset=utf-8');
  });

  it('reads @file (typed by extension) and - (stdin)', async () => {
    const server = await api(echoServer);
    const made = await makeFolder({ 'event.json': '{"a":1}', 'blob.bin': 'raw' });
    cleanups.push(made.cleanup);
    expect(
      await main(['invoke', 'echo', '-d', `@${made.dir}/event.json`, '--url', server.url], captureIo().io),
    ).toBe(0);
    expect(
      await main(['invoke', 'echo', '-d', `@${made.dir}/blob.bin`, '--url', server.url], captureIo().io),
    ).toBe(0);
    expect(
      await main(['invoke', 'echo', '-d', '-', '--url', server.url], captureIo({ stdin: '[1,2]' }).io),
    ).toBe(0);
    expect(server.requests.map((request) => request.headers['content-type'])).toEqual([
      'application/json',
      'application/octet-stream',
      'application/json',
    ]);
    expect(server.requests.map((request) => request.body.toString())).toEqual(['{"a":1}', 'raw', '[1,2]']);
  });

  it('honours --method, --path, --query, --header and the namespace in the route', async () => {
    const server = await api(echoServer);
    const argv = [
      'invoke',
      'echo',
      '-n',
      'team-a',
      '-X',
      'delete',
      '--path',
      'users/42',
      '-q',
      'a=1',
      '-q',
      'b=x y',
    ];
    expect(
      await main(
        [...argv, '-H', 'X-Trace=abc', '-H', 'Accept: text/plain', '--url', server.url],
        captureIo().io,
      ),
    ).toBe(0);
    const [request] = server.requests;
    expect(request?.method).toBe('DELETE');
    expect(request?.url).toBe('/function/echo.team-a/users/42?a=1&b=x+y');
    expect(request?.headers['x-trace']).toBe('abc');
    expect(request?.headers.accept).toBe('text/plain');
  });

  it('turns a Hearth error body into one stderr line with code and invocation ID, and exit 1', async () => {
    const server = await api((_request, res) =>
      sendJson(res, 504, {
        error: {
          code: 'HEARTH_E_TIMEOUT',
          message: 'the invocation ran past its 10s timeout',
          invocationId: 'inv-9',
        },
      }),
    );
    const out = captureIo();
    expect(await main(['invoke', 'slow', '--url', server.url], out.io)).toBe(1);
    expect(out.stdout()).toBe('');
    expect(out.stderrLines()).toEqual([
      'error: HEARTH_E_TIMEOUT: the invocation ran past its 10s timeout (invocation inv-9)',
    ]);
  });

  it("prints a function's own non-2xx body to stdout and fails with its status", async () => {
    const server = await api((_request, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('no such user\n');
    });
    const out = captureIo();
    expect(await main(['invoke', 'users', '--url', server.url], out.io)).toBe(1);
    expect(out.stdout()).toBe('no such user\n');
    expect(out.stderrLines()).toEqual(['error: function answered HTTP 404']);
  });

  it('prints {status, headers, body} with -o json, decoding JSON, text and binary bodies', async () => {
    const bodies: [string, Buffer][] = [
      ['application/json', Buffer.from('{"ok":true}')],
      ['text/plain', Buffer.from('héllo')],
      ['application/octet-stream', Buffer.from([0xff, 0x00, 0xfe])],
    ];
    const server = await api((_request, res) => {
      const [type, body] = bodies.shift() ?? ['text/plain', Buffer.alloc(0)];
      res.writeHead(200, { 'content-type': type, 'x-hearth-invocation-id': 'inv-1' });
      res.end(body);
    });
    const results: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      const out = captureIo();
      expect(await main(['invoke', 'echo', '-o', 'json', '--url', server.url], out.io)).toBe(0);
      results.push(JSON.parse(out.stdout()));
    }
    expect(results).toMatchObject([
      {
        status: 200,
        headers: { 'x-hearth-invocation-id': 'inv-1' },
        body: { ok: true },
        bodyEncoding: 'json',
      },
      { status: 200, body: 'héllo', bodyEncoding: 'text' },
      { status: 200, body: Buffer.from([0xff, 0x00, 0xfe]).toString('base64'), bodyEncoding: 'base64' },
    ]);
  });

  it('shows the invocation ID on stderr only with --verbose', async () => {
    const server = await api(echoServer);
    const out = captureIo();
    expect(await main(['invoke', 'echo', '-v', '--url', server.url], out.io)).toBe(0);
    expect(out.stderrLines()).toEqual([expect.stringMatching(/^HTTP 200 in \d+ms, invocation inv-123$/)]);
  });

  it('refuses --data with GET, and an invalid name, without a request', async () => {
    const server = await api(echoServer);
    const withGet = captureIo();
    expect(await main(['invoke', 'echo', '-X', 'GET', '-d', '{}', '--url', server.url], withGet.io)).toBe(1);
    expect(withGet.stderrLines()).toEqual([
      'error: --data cannot be sent with GET; use --method POST (or PUT, PATCH)',
    ]);
    const badName = captureIo();
    expect(await main(['invoke', 'Bad_Name', '--url', server.url], badName.io)).toBe(1);
    expect(badName.stderrLines()).toEqual([
      expect.stringMatching(/^error: "Bad_Name" is not a valid function name/),
    ]);
    expect(server.requests).toHaveLength(0);
  });
});
