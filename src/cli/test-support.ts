/** @module Test doubles for the CLI: captured streams and a tiny HTTP server playing the control API. */

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { t } from 'tar';
import type { DeploymentSummary, FunctionDetail } from '../control/api/types.js';
import type { CliIo } from './io.js';

export interface CapturedIo {
  readonly io: CliIo;
  stdout(): string;
  stderr(): string;
  /** stderr split into lines, without the empty one after the final newline. */
  stderrLines(): string[];
}

export function captureIo(
  options: { env?: Record<string, string>; stdin?: string | Buffer } = {},
): CapturedIo {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const collector = (into: Buffer[]): Writable =>
    new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        into.push(Buffer.from(chunk));
        callback();
      },
    });
  const stdin = new PassThrough();
  stdin.end(options.stdin ?? '');
  const stderr = (): string => Buffer.concat(err).toString('utf8');
  return {
    io: { stdout: collector(out), stderr: collector(err), stdin, env: options.env ?? {} },
    stdout: () => Buffer.concat(out).toString('utf8'),
    stderr,
    stderrLines: () =>
      stderr()
        .split('\n')
        .filter((line, index, all) => line !== '' || index < all.length - 1),
  };
}

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export type FakeHandler = (request: RecordedRequest, res: ServerResponse) => void | Promise<void>;

export interface FakeApi {
  readonly url: string;
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Records every request (body read in full) and lets `handler` answer it. */
export async function startFakeApi(handler: FakeHandler): Promise<FakeApi> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded = {
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      requests.push(recorded);
      Promise.resolve(handler(recorded, res)).catch((error: unknown) => {
        res.writeHead(500);
        res.end(String(error));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

export function sendNdjson(res: ServerResponse, events: readonly unknown[]): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  res.end(events.map((event) => `${JSON.stringify(event)}\n`).join(''));
}

/** A port nothing listens on: bound, then released. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/** Entry paths of a .tar.gz (as `tar.t` lists them) and the text of its regular files. */
export async function readArchive(archive: Buffer): Promise<{ paths: string[]; files: Map<string, string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-archive-'));
  try {
    const file = join(dir, 'archive.tar.gz');
    await writeFile(file, archive);
    const paths: string[] = [];
    const files = new Map<string, string>();
    await t({
      file,
      onReadEntry: (entry) => {
        paths.push(entry.path);
        if (entry.type !== 'File') {
          entry.resume();
          return;
        }
        const chunks: Buffer[] = [];
        entry.on('data', (chunk: Buffer) => chunks.push(chunk));
        entry.on('end', () => files.set(entry.path, Buffer.concat(chunks).toString('utf8')));
      },
    });
    return { paths, files };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A fresh folder with the given files (`{ 'src/a.js': 'text' }`); removed by `cleanup`. */
export async function makeFolder(
  files: Readonly<Record<string, string>>,
): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-cli-'));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A FunctionDetail as the server would send it, with `overrides` applied. */
export function functionDetail(overrides: Partial<FunctionDetail> = {}): FunctionDetail {
  const now = new Date().toISOString();
  return {
    namespace: 'default',
    name: 'echo',
    runtime: 'node20',
    version: 3,
    isolation: 'sandbox',
    instances: 1,
    url: '/function/echo',
    updatedAt: now,
    manifest: {
      apiVersion: 'hearth.dev/v1',
      kind: 'Function',
      metadata: { name: 'echo', namespace: 'default' },
      spec: { runtime: 'node20' },
    },
    spec: {
      runtime: 'node20',
      handler: 'index',
      env: { API_TOKEN: 'hunter2' },
      limits: { memory: '128Mi', cpu: 0.5, timeout: '30s', maxBody: '6Mi', pids: 256, tmp: '64Mi' },
      scaling: { min: 0, max: 50, targetConcurrency: 100, idleTimeout: '5m', warmPoolRatio: 0.1 },
      isolation: 'sandbox',
      egress: 'none',
      priority: 0,
      eventFormat: 'auto',
      build: { scripts: false },
      auth: 'public',
    },
    isolationNote: 'sandboxed with bubblewrap',
    code: { hash: 'abcdef0123456789abcdef', files: 3, bytes: 1234 },
    dependencies: null,
    activeInstances: [],
    startingInstances: 0,
    queuedRequests: 0,
    autoscaling: null,
    versions: [{ version: 3, createdAt: now, codeHash: 'abcdef0123456789abcdef' }],
    lastDeployment: null,
    createdAt: now,
    ...overrides,
  };
}

export function deploymentSummary(version = 3): DeploymentSummary {
  const now = new Date().toISOString();
  return {
    id: 'dep-1',
    version,
    status: 'succeeded',
    error: null,
    startedAt: now,
    finishedAt: now,
    phases: { unpack: 3, store: 1, verify: 40, activate: 1 },
  };
}
