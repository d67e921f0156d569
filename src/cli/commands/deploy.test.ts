/** @module Tests of `hearth deploy` against a fake control API: request shape, progress, failures. */

import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../main.js';
import {
  captureIo,
  deploymentSummary,
  type FakeApi,
  type FakeHandler,
  functionDetail,
  makeFolder,
  readArchive,
  sendJson,
  sendNdjson,
  startFakeApi,
} from '../test-support.js';

const MANIFEST = `apiVersion: hearth.dev/v1
kind: Function
metadata:
  name: echo
spec:
  runtime: node20
  limits:
    timeout: 10s
`;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function api(handler: FakeHandler): Promise<FakeApi> {
  const server = await startFakeApi(handler);
  cleanups.push(server.close);
  return server;
}

async function functionFolder(manifest = MANIFEST): Promise<string> {
  const made = await makeFolder({
    'hearth.yaml': manifest,
    'index.mjs': 'export default () => 1;\n',
    'debug.log': 'x',
  });
  cleanups.push(made.cleanup);
  return made.dir;
}

const SUCCESS = [
  { event: 'progress', phase: 'upload', message: 'receiving archive', elapsedMs: 0 },
  { event: 'progress', phase: 'unpack', message: 'archive unpacked', elapsedMs: 3 },
  {
    event: 'progress',
    phase: 'dependencies',
    message: 'installing dependencies from package.json',
    elapsedMs: 4,
  },
  { event: 'output', phase: 'dependencies', line: 'added 1 package in 1s' },
  { event: 'disk', phase: 'dependencies', bytes: 150 * 1024 ** 2, maxBytes: 4 * 1024 ** 3, elapsedMs: 900 },
  { event: 'progress', phase: 'dependencies', message: 'dependency layer d1 built', elapsedMs: 1204 },
  { event: 'result', function: functionDetail(), deployment: deploymentSummary() },
];

describe('hearth deploy', () => {
  it('uploads the folder as a gzip tar and prints progress, then a one-line summary', async () => {
    const server = await api((_request, res) => sendNdjson(res, SUCCESS));
    const dir = await functionFolder();
    const out = captureIo({ env: { HEARTH_API_KEY: 'k3y' } });
    const code = await main(['deploy', dir, '--url', server.url], out.io);

    expect(out.stderr()).not.toContain('error:');
    expect(code).toBe(0);
    const [request] = server.requests;
    expect(request?.method).toBe('POST');
    expect(request?.url).toBe('/api/v1/namespaces/default/functions/echo/deploy');
    expect(request?.headers['content-type']).toBe('application/gzip');
    expect(request?.headers.accept).toBe('application/x-ndjson');
    expect(request?.headers.authorization).toBe('Bearer k3y');
    const archive = await readArchive(request?.body ?? Buffer.alloc(0));
    expect(archive.paths.sort()).toEqual(['debug.log', 'hearth.yaml', 'index.mjs']);
    expect(archive.files.get('hearth.yaml')).toBe(MANIFEST);

    expect(out.stdout()).toMatch(
      new RegExp(`^deployed default/echo version 3 in \\d+(ms|\\.\\ds) → ${server.url}/function/echo\\n$`),
    );
    const progress = out.stderr();
    expect(progress).toMatch(/✓ unpack\s+3ms {2}archive unpacked/);
    expect(progress).toContain(
      '  dependencies  installing dependencies from package.json\n  | added 1 package in 1s\n  | build disk 150.0 MiB of 4.0 GiB\n',
    );
    expect(progress).toMatch(/✓ dependencies\s+1\.2s {2}dependency layer d1 built/);
  });

  it('prints the result as JSON with -o json', async () => {
    const server = await api((_request, res) => sendNdjson(res, SUCCESS));
    const out = captureIo();
    const code = await main(['deploy', await functionFolder(), '--url', server.url, '-o', 'json'], out.io);
    expect(code).toBe(0);
    const parsed = JSON.parse(out.stdout()) as { function: { version: number }; deployment: { id: string } };
    expect(parsed.function.version).toBe(3);
    expect(parsed.deployment.id).toBe('dep-1');
  });

  it('exits 1 with one error line carrying the code when the stream ends in an error event', async () => {
    const server = await api((_request, res) =>
      sendNdjson(res, [
        { event: 'progress', phase: 'upload', message: 'receiving archive', elapsedMs: 0 },
        { event: 'progress', phase: 'unpack', message: 'archive unpacked', elapsedMs: 2 },
        { event: 'progress', phase: 'verify', message: 'starting an instance', elapsedMs: 3 },
        {
          event: 'error',
          error: {
            code: 'HEARTH_E_HANDLER_INVALID',
            message: 'index has no default export\nthat is a function',
          },
        },
      ]),
    );
    const out = captureIo();
    const code = await main(['deploy', await functionFolder(), '--url', server.url], out.io);
    expect(code).toBe(1);
    expect(out.stdout()).toBe('');
    const errors = out.stderrLines().filter((line) => line.startsWith('error:'));
    expect(errors).toEqual([
      'error: HEARTH_E_HANDLER_INVALID: index has no default export that is a function',
    ]);
    expect(out.stderrLines().at(-1)).toBe(errors[0]);
    expect(out.stderr()).not.toMatch(/\n\s+at /);
  });

  it('reports an error response (not a stream) the same way', async () => {
    const server = await api((_request, res) =>
      sendJson(res, 409, {
        error: { code: 'HEARTH_E_CONFLICT', message: 'a deploy of echo is in progress' },
      }),
    );
    const out = captureIo();
    const code = await main(['deploy', await functionFolder(), '--url', server.url], out.io);
    expect(code).toBe(1);
    expect(out.stderrLines()).toEqual(['error: HEARTH_E_CONFLICT: a deploy of echo is in progress']);
  });

  it('accepts a plain JSON answer from a server that does not stream', async () => {
    const server = await api((_request, res) =>
      sendJson(res, 200, { unchanged: false, deployment: deploymentSummary(), function: functionDetail() }),
    );
    const out = captureIo();
    expect(await main(['deploy', await functionFolder(), '--url', server.url], out.io)).toBe(0);
    expect(out.stdout()).toMatch(/^deployed default\/echo version 3 in /);
  });

  it('refuses an invalid hearth.yaml before any request, naming file, line, field, value and expectation', async () => {
    const server = await api((_request, res) => sendNdjson(res, SUCCESS));
    const dir = await functionFolder(MANIFEST.replace('timeout: 10s', 'timeout: ten'));
    const out = captureIo();
    const code = await main(['deploy', dir, '--url', server.url], out.io);
    expect(code).toBe(1);
    expect(server.requests).toHaveLength(0);
    expect(out.stderrLines()).toEqual([
      expect.stringMatching(
        /^error: HEARTH_E_VALIDATION: .*hearth\.yaml:8: spec\.limits\.timeout: got "ten", expected a duration/,
      ),
    ]);
  });

  it('names a folder without hearth.yaml', async () => {
    const made = await makeFolder({ 'index.mjs': '' });
    cleanups.push(made.cleanup);
    const out = captureIo();
    expect(await main(['deploy', made.dir], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([
      expect.stringMatching(/^error: .*hearth\.yaml: not found; .*hearth new NAME/),
    ]);
  });

  it('takes the namespace from the manifest, and lets --namespace override it in the archive too', async () => {
    const server = await api((_request, res) => sendNdjson(res, SUCCESS));
    const dir = await functionFolder(MANIFEST.replace('  name: echo', '  name: echo\n  namespace: team-a'));
    expect(await main(['deploy', dir, '--url', server.url], captureIo().io)).toBe(0);
    expect(await main(['deploy', dir, '--url', server.url, '-n', 'team-b'], captureIo().io)).toBe(0);
    expect(server.requests.map((request) => request.url)).toEqual([
      '/api/v1/namespaces/team-a/functions/echo/deploy',
      '/api/v1/namespaces/team-b/functions/echo/deploy',
    ]);
    const pinned = await readArchive(server.requests[1]?.body ?? Buffer.alloc(0));
    expect(pinned.files.get('hearth.yaml')).toContain('namespace: team-b');
  });

  it('with --no-wait, returns once the server has the archive', async () => {
    const server = await api((_request, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(
        `${JSON.stringify({ event: 'progress', phase: 'upload', message: 'receiving', elapsedMs: 0 })}\n`,
      );
      res.write(
        `${JSON.stringify({ event: 'progress', phase: 'unpack', message: 'unpacked', elapsedMs: 1 })}\n`,
      );
      // Never ends: the CLI must not wait for the rest.
    });
    const out = captureIo();
    const code = await main(['deploy', await functionFolder(), '--url', server.url, '--no-wait'], out.io);
    expect(code).toBe(0);
    expect(server.requests[0]?.url).toBe('/api/v1/namespaces/default/functions/echo/deploy');
    expect(out.stdout()).toContain('deploying default/echo (archive received)');
  });
});
