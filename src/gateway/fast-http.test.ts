import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { exchange, type RawAnswer } from '../../test/support/raw-http.js';
import { type FastResponse, installFastFront } from './fast-http.js';
import { createGatewayServer } from './index.js';

/** A gateway server whose node:http handler and fast route both say who answered, and what they saw. */
async function serve(): Promise<{ server: Server; port: number }> {
  const server = createGatewayServer(
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = JSON.stringify({ via: 'node', url: req.url, body: Buffer.concat(chunks).toString() });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      });
    },
    (req, res) => {
      const answer = (): void => {
        if (req.url.startsWith('/function/bad-header')) {
          answerBadHeader(res);
          return;
        }
        const body = JSON.stringify({ via: 'fast', url: req.url, body: req.body.toString() });
        res.writeHead(200, ['content-type', 'application/json', 'content-length', String(body.length)]);
        res.end(body, 'latin1');
      };
      // Answers out of arrival order, as invocations do; `slow` takes longest.
      setTimeout(answer, req.url.startsWith('/function/slow') ? 60 : 1);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port };
}

function answerBadHeader(res: FastResponse): void {
  let code = 'accepted';
  try {
    res.writeHead(200, ['bad name', 'x']);
  } catch (error) {
    code = (error as NodeJS.ErrnoException).code ?? 'thrown';
  }
  res.writeHead(502, ['content-length', String(code.length)]);
  res.end(code, 'latin1');
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
const via = (answer: RawAnswer | undefined): string =>
  (JSON.parse(answer?.body ?? '{}') as { via: string }).via;

describe('the fast front', () => {
  it('answers /function/ itself and hands other requests to node:http on the same connection', async () => {
    const { port } = await serve();
    const { answers, socket } = await exchange(
      port,
      [get('/function/a') + get('/api/v1/functions') + get('/function/b')],
      3,
    );
    socket.destroy();
    expect(answers.map(via)).toEqual(['fast', 'node', 'node']);
    expect(answers.map((a) => JSON.parse(a.body).url)).toEqual([
      '/function/a',
      '/api/v1/functions',
      '/function/b',
    ]);
    expect(answers[0]?.headers.connection).toBe('keep-alive');
    expect(answers[0]?.headers.date).toMatch(/GMT$/);
  });

  it('answers pipelined requests in request order even when the first takes longest', async () => {
    const { port } = await serve();
    const { answers, socket } = await exchange(port, [get('/function/slow') + get('/function/quick')], 2);
    socket.destroy();
    expect(answers.map((a) => JSON.parse(a.body).url)).toEqual(['/function/slow', '/function/quick']);
  });

  it('reads a Content-Length body that arrives in pieces', async () => {
    const { port } = await serve();
    const head = 'POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n';
    const { answers, socket } = await exchange(port, [`${head}hello`, ' world'], 1);
    socket.destroy();
    expect(JSON.parse(answers[0]?.body ?? '{}')).toEqual({
      via: 'fast',
      url: '/function/echo',
      body: 'hello world',
    });
  });

  it('leaves chunked bodies, Expect, HEAD and HTTP/1.0 to node:http', async () => {
    const { port } = await serve();
    const chunked = await exchange(
      port,
      ['POST /function/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
      1,
    );
    chunked.socket.destroy();
    expect(JSON.parse(chunked.answers[0]?.body ?? '{}')).toEqual({
      via: 'node',
      url: '/function/c',
      body: 'hello',
    });
    const expect100 = await exchange(
      port,
      ['POST /function/e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi'],
      2,
    );
    expect100.socket.destroy();
    expect(expect100.answers.map((a) => a.status)).toEqual([100, 200]);
    expect(via(expect100.answers[1])).toBe('node');
    const old = await exchange(port, ['GET /function/old HTTP/1.0\r\nHost: x\r\n\r\n'], 1);
    expect(via(old.answers[0])).toBe('node');
    const head = await exchange(
      port,
      ['HEAD /function/h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
      1,
      true,
    );
    expect(head.answers[0]?.status).toBe(200);
    expect(head.answers[0]?.body).toBe('');
  });

  it('lets node:http refuse malformed heads, smuggling attempts and a missing Host', async () => {
    const { port } = await serve();
    const cases = [
      'GET /function/x HTTP/1.1\r\nHost: x\r\nX-Bad\x01: y\r\n\r\n',
      'GET /function/x HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n',
      'POST /function/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
      'POST /function/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'GET /function/x HTTP/1.1\r\n\r\n',
    ];
    for (const request of cases) {
      const { answers } = await exchange(port, [request], 1);
      expect(answers[0]?.status, JSON.stringify(request)).toBe(400);
    }
  });

  it('refuses invalid response headers the way node:http does', async () => {
    const { port } = await serve();
    const { answers, socket } = await exchange(port, [get('/function/bad-header')], 1);
    socket.destroy();
    expect(answers[0]?.status).toBe(502);
    expect(answers[0]?.body).toBe('ERR_INVALID_HTTP_TOKEN');
  });

  it('closes the connection after a request that asks for it', async () => {
    const { port } = await serve();
    const { answers, closed } = await exchange(port, [get('/function/bye', 'Connection: close\r\n')], 2);
    expect(answers).toHaveLength(1);
    expect(answers[0]?.headers.connection).toBe('close');
    expect(closed).toBe(true);
  });

  it('closes its idle keep-alive connections when the server closes', async () => {
    const { server, port } = await serve();
    const { answers, socket } = await exchange(port, [get('/function/a')], 1);
    expect(via(answers[0])).toBe('fast');
    const socketClosed = new Promise((resolve) => socket.once('close', resolve));
    await new Promise((resolve) => {
      server.close(resolve);
      server.closeAllConnections();
    });
    await socketClosed;
    servers.splice(servers.indexOf(server), 1);
  });

  it('closes connections idle past the keep-alive timeout or slow to finish a head', async () => {
    const server = createServer((_req, res) => res.end());
    installFastFront(server, {
      prefix: '/function/',
      route: (_req, res) => res.end('ok', 'latin1'),
      keepAliveTimeoutMs: 300,
      headersTimeoutMs: 300,
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    const { port } = server.address() as { port: number };
    const started = Date.now();
    const idle = await exchange(port, [get('/function/a')], 1);
    const slow = connect(port, '127.0.0.1');
    slow.write('GET /function/a HTTP/1.1\r\nHost: x\r\n');
    const closed = (socket: Socket) => new Promise((resolve) => socket.once('close', resolve));
    await Promise.all([closed(idle.socket), closed(slow)]);
    // The sweep runs once a second: closed after the timeout, and well before node's own defaults.
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(idle.answers[0]?.body).toBe('ok');
  });
});
