/** @module A loopback HTTP server that records what functions report to it (events, invocation ids, callbacks). */

import { createServer, type IncomingMessage } from 'node:http';
import { networkInterfaces } from 'node:os';

export interface Recorded {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  /** When it arrived (Date.now()), for tests of timing such as backoff and overlap. */
  readonly at: number;
  json<T = Record<string, unknown>>(): T;
}

export interface Recorder {
  readonly url: string;
  /**
   * The same recorder on this machine's own (non-loopback) address: what a function with `egress: allow`
   * reaches, as its network namespace reaches no loopback of the host.
   */
  readonly functionUrl: string;
  readonly received: Recorded[];
  /** Answers the next `count` requests with `status` (then 200 again). */
  failNext(count: number, status?: number): void;
  /** Resolves once `predicate` holds over what was received; fails after `timeoutMs` naming `what`. */
  waitFor(
    what: string,
    predicate: (received: readonly Recorded[]) => boolean,
    timeoutMs?: number,
  ): Promise<void>;
  close(): Promise<void>;
}

export async function startRecorder(): Promise<Recorder> {
  const received: Recorded[] = [];
  let failing = 0;
  let failStatus = 500;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({
        path: req.url ?? '/',
        headers: req.headers,
        body,
        at: Date.now(),
        json: <T>() => JSON.parse(body) as T,
      });
      if (failing > 0) {
        failing -= 1;
        res.writeHead(failStatus).end('not now');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const hostAddress = ownAddress();
  const outer = createServer((req, res) => server.emit('request', req, res));
  outer.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => outer.listen(0, hostAddress, resolve));
  const outerAddress = outer.address();
  const outerPort = typeof outerAddress === 'object' && outerAddress !== null ? outerAddress.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    functionUrl: `http://${hostAddress}:${outerPort}`,
    received,
    failNext(count, status = 500) {
      failing = count;
      failStatus = status;
    },
    async waitFor(what, predicate, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(received)) {
        if (Date.now() > deadline)
          throw new Error(`timed out after ${timeoutMs}ms waiting for ${what} (${received.length} received)`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    close: async () => {
      for (const each of [server, outer])
        await new Promise<void>((resolve) => {
          each.close(() => resolve());
          each.closeAllConnections();
        });
    },
  };
}

/** This machine's first non-loopback IPv4 address (loopback where it has none). */
function ownAddress(): string {
  for (const infos of Object.values(networkInterfaces()))
    for (const info of infos ?? []) if (info.family === 'IPv4' && !info.internal) return info.address;
  return '127.0.0.1';
}
