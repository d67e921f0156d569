/** @module Tests of `hearth apply`: validate-everything-first, staged source folders, one all-or-nothing request. */

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
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

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function api(handler: FakeHandler): Promise<FakeApi> {
  const server = await startFakeApi(handler);
  cleanups.push(server.close);
  return server;
}

/** A project folder with `app.yaml` and two function folders, `echo/` and `greeter/`. */
async function project(appYaml: string): Promise<string> {
  const made = await makeFolder({
    'app.yaml': appYaml,
    'echo/index.mjs': 'export default () => 1;\n',
    'echo/hearth.yaml': 'stale: manifest that apply must replace\n',
    'greeter/main.py': 'def handler(e, c):\n    return {}\n',
  });
  cleanups.push(made.cleanup);
  return made.dir;
}

const resource = (name: string, spec: string) => `apiVersion: hearth.dev/v1
kind: Function
metadata:
  name: ${name}
spec:
${spec}`;

const THREE = [
  `# the whole app\n${resource('echo', '  runtime: node20\n  source: ./echo\n  env:\n    MODE: fast\n')}`,
  resource('greeter', '  runtime: python3\n  source: greeter\n'),
  resource('config-only', '  runtime: node20\n  limits:\n    timeout: 5s\n'),
].join('---\n');

interface ApplyBody {
  documents: ({ manifest: { kind: string; metadata: { name: string } } } | { staged: string })[];
}

/** Stages uploads as `staged-NAME` and applies every document, numbering versions (4 for config-only). */
const happyServer: FakeHandler = (request, res) => {
  if (request.url === '/api/v1/apply') {
    const body = JSON.parse(request.body.toString()) as ApplyBody;
    sendJson(res, 200, {
      dryRun: false,
      items: body.documents.map((document, index) => {
        const name =
          'staged' in document ? document.staged.replace('staged-', '') : document.manifest.metadata.name;
        const version = 'staged' in document ? 2 : 4;
        return {
          index,
          kind: 'Function',
          namespace: 'default',
          name,
          unchanged: false,
          version,
          function: functionDetail({ name, version }),
          deployment: deploymentSummary(version),
        };
      }),
    });
    return;
  }
  const name = request.url.split('/')[6] ?? 'x';
  sendNdjson(res, [
    { event: 'progress', phase: 'store', message: 'storing code', elapsedMs: 1 },
    { event: 'staged', staged: `staged-${name}`, expiresAt: new Date().toISOString() },
  ]);
};

describe('hearth apply', () => {
  it('deploys source folders with the document as their manifest and configures the rest with PUT', async () => {
    const server = await api(happyServer);
    const dir = await project(THREE);
    const out = captureIo();
    const code = await main(['apply', '-f', join(dir, 'app.yaml'), '--url', server.url], out.io);

    expect(out.stderr()).not.toContain('error:');
    expect(code).toBe(0);
    expect(server.requests.map((request) => `${request.method} ${request.url}`)).toEqual([
      'POST /api/v1/namespaces/default/functions/echo/deploy?stage=true',
      'POST /api/v1/namespaces/default/functions/greeter/deploy?stage=true',
      'POST /api/v1/apply',
    ]);
    const echo = await readArchive(server.requests[0]?.body ?? Buffer.alloc(0));
    expect(echo.paths.sort()).toEqual(['hearth.yaml', 'index.mjs']);
    const manifest = echo.files.get('hearth.yaml') ?? '';
    expect(parse(manifest)).toEqual({
      apiVersion: 'hearth.dev/v1',
      kind: 'Function',
      metadata: { name: 'echo' },
      spec: { runtime: 'node20', env: { MODE: 'fast' } },
    });
    const applied = server.requests[2];
    expect(applied?.headers['content-type']).toBe('application/json');
    expect(JSON.parse(applied?.body.toString() ?? '')).toMatchObject({
      documents: [
        { staged: 'staged-echo' },
        { staged: 'staged-greeter' },
        {
          manifest: {
            metadata: { name: 'config-only' },
            spec: { runtime: 'node20', limits: { timeout: '5s' } },
          },
        },
      ],
    });
    expect(out.stdout()).toBe(
      'function/echo configured (version 2)\nfunction/greeter configured (version 2)\nfunction/config-only configured (version 4)\n',
    );
  });

  it('refuses the whole file, before any request, when one document is invalid', async () => {
    const server = await api(happyServer);
    const bad = THREE.replace('timeout: 5s', 'timeout: ten');
    const dir = await project(bad);
    const out = captureIo();
    const code = await main(['apply', '-f', join(dir, 'app.yaml'), '--url', server.url], out.io);
    expect(code).toBe(1);
    expect(server.requests).toHaveLength(0);
    expect(out.stdout()).toBe('');
    expect(out.stderrLines()).toEqual([
      expect.stringMatching(
        /^error: HEARTH_E_VALIDATION: .*app\.yaml:\d+: document 3 \(function\/config-only\): spec\.limits\.timeout: got "ten", expected a duration/,
      ),
    ]);
  });

  it('refuses a document whose source folder does not exist', async () => {
    const server = await api(happyServer);
    const dir = await project(THREE.replace('source: greeter', 'source: ./missing'));
    const out = captureIo();
    expect(await main(['apply', '-f', join(dir, 'app.yaml'), '--url', server.url], out.io)).toBe(1);
    expect(server.requests).toHaveLength(0);
    expect(out.stderrLines()).toEqual([
      expect.stringMatching(
        /document 2 \(function\/greeter\): spec\.source: got "\.\/missing", expected a folder .*does not exist/,
      ),
    ]);
  });

  it('names the line of a YAML syntax error', async () => {
    const server = await api(happyServer);
    const dir = await project(
      `${resource('echo', '  runtime: node20\n')}---\nmetadata:\n  name: [unclosed\n`,
    );
    const out = captureIo();
    expect(await main(['apply', '-f', join(dir, 'app.yaml'), '--url', server.url], out.io)).toBe(1);
    expect(server.requests).toHaveLength(0);
    expect(out.stderrLines()).toEqual([
      expect.stringMatching(/^error: .*app\.yaml: invalid YAML: .*line \d+/),
    ]);
  });

  it('refuses the same function twice', async () => {
    const dir = await project(
      `${resource('echo', '  runtime: node20\n')}---\n${resource('echo', '  runtime: node20\n')}`,
    );
    const out = captureIo();
    expect(await main(['apply', '-f', join(dir, 'app.yaml')], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([
      expect.stringMatching(/document 2 \(function\/echo\) repeats function default\/echo/),
    ]);
  });

  it('applies nothing when an upload fails, naming the document', async () => {
    const server = await api((request, res) => {
      if (request.url.includes('/greeter/')) {
        sendNdjson(res, [
          { event: 'progress', phase: 'dependencies', message: 'installing', elapsedMs: 1 },
          { event: 'error', error: { code: 'HEARTH_E_BUILD_FAILED', message: 'pip install failed' } },
        ]);
        return;
      }
      return happyServer(request, res);
    });
    const dir = await project(THREE);
    const out = captureIo();
    const code = await main(['apply', '-f', join(dir, 'app.yaml'), '--url', server.url], out.io);
    expect(code).toBe(1);
    expect(server.requests.map((request) => request.url)).not.toContain('/api/v1/apply');
    expect(out.stdout()).toBe('');
    const errors = out.stderrLines().filter((line) => line.startsWith('error:'));
    expect(errors).toEqual([
      expect.stringMatching(
        /^error: HEARTH_E_BUILD_FAILED: .*app\.yaml: document 2 \(function\/greeter\): pip install failed \(nothing applied\)$/,
      ),
    ]);
    expect(out.stderrLines().at(-1)).toBe(errors[0]);
  });

  it('names the document the server refused, and prints nothing as applied', async () => {
    const server = await api((request, res) => {
      if (request.url !== '/api/v1/apply') return happyServer(request, res);
      sendJson(res, 404, {
        error: {
          code: 'HEARTH_E_FN_NOT_FOUND',
          message: 'documents.1 (Function default/config-only): function config-only does not exist',
          details: {
            document: { index: 1, kind: 'Function', namespace: 'default', name: 'config-only' },
            reason: 'function config-only does not exist',
          },
        },
      });
    });
    const text = `${resource('echo', '  runtime: node20\n')}---\n${resource('config-only', '  runtime: node20\n')}`;
    const out = captureIo({ stdin: text });
    expect(await main(['apply', '-f', '-', '--url', server.url], out.io)).toBe(1);
    expect(out.stdout()).toBe('');
    expect(out.stderrLines()).toEqual([
      'error: HEARTH_E_FN_NOT_FOUND: <stdin>: document 2 (function/config-only): function config-only does not exist (nothing applied)',
    ]);
  });

  it('reads resources from stdin with -f -', async () => {
    const server = await api(happyServer);
    const out = captureIo({ stdin: resource('config-only', '  runtime: node20\n') });
    expect(await main(['apply', '-f', '-', '--url', server.url, '-o', 'json'], out.io)).toBe(0);
    expect(server.requests.map((request) => `${request.method} ${request.url}`)).toEqual([
      'POST /api/v1/apply',
    ]);
    const parsed = JSON.parse(out.stdout()) as { items: { name: string; version: number }[] };
    expect(parsed.items).toMatchObject([{ name: 'config-only', version: 4 }]);
  });

  it('says "unchanged" when the server found nothing to change', async () => {
    const server = await api((_request, res) =>
      sendJson(res, 200, {
        dryRun: false,
        items: [
          {
            index: 0,
            kind: 'Function',
            namespace: 'default',
            name: 'echo',
            unchanged: true,
            version: 4,
            function: functionDetail({ version: 4 }),
            deployment: null,
          },
        ],
      }),
    );
    const out = captureIo({ stdin: resource('echo', '  runtime: node20\n') });
    expect(await main(['apply', '-f', '-', '--url', server.url], out.io)).toBe(0);
    expect(out.stdout()).toBe('function/echo unchanged (version 4)\n');
  });

  it('names a missing file', async () => {
    const dir = await project('');
    const out = captureIo();
    expect(await main(['apply', '-f', join(dir, 'nope.yaml')], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([expect.stringMatching(/^error: .*nope\.yaml: no such file$/)]);
    await writeFile(join(dir, 'empty.yaml'), '# nothing\n');
    const empty = captureIo();
    expect(await main(['apply', '-f', join(dir, 'empty.yaml')], empty.io)).toBe(1);
    expect(empty.stderrLines()).toEqual([expect.stringMatching(/empty\.yaml: no resources found$/)]);
  });
});
