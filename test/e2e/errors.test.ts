/** @module End-to-end: every bad input answers one JSON error naming the problem — no stack trace, nothing half-applied. */

import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  api,
  deployArchive,
  deployFolder,
  errorLines,
  functionApiPath,
  getFunction,
  type Hearth,
  invoke,
  listFunctions,
  makeFolder,
  manifest,
  packFolder,
  rawTarGz,
  runCli,
  STACK_FRAME,
  stackTraceIn,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

interface ErrorAnswer {
  error: { code: string; message: string; invocationId?: string; details?: Record<string, unknown> };
}

const INDEX = 'export default async () => "ok";\n';

let hearth: Hearth;
let baseline: string[];
const folders: TempFolder[] = [];

beforeAll(async () => {
  hearth = await startHearth();
  const folder = await makeFolder({
    'hearth.yaml': manifest('keeper', '{ runtime: node20 }'),
    'index.mjs': INDEX,
  });
  folders.push(folder);
  expect((await deployFolder(hearth.url, folder.dir, { name: 'keeper' })).status).toBe(200);
  const small = await makeFolder({
    'hearth.yaml': manifest('small-body', '{ runtime: node20, limits: { maxBody: 1Ki } }'),
    'index.mjs': 'export default async (event) => ({ received: event.body.length });\n',
  });
  folders.push(small);
  expect((await deployFolder(hearth.url, small.dir, { name: 'small-body' })).status).toBe(200);
  const badHeader = await makeFolder({
    'hearth.yaml': manifest('bad-header', '{ runtime: node20 }'),
    'index.mjs':
      "export default async () => ({ statusCode: 200, headers: { 'x-bad': 'line\\nbreak' }, body: 'x' });\n",
  });
  folders.push(badHeader);
  expect((await deployFolder(hearth.url, badHeader.dir, { name: 'bad-header' })).status).toBe(200);
  baseline = await listFunctions(hearth.url);
});

// Whatever a test sent, the platform must not have created a function from it, nor touched `keeper`.
afterEach(async () => {
  expect(await listFunctions(hearth.url)).toEqual(baseline);
  expect((await getFunction(hearth.url, 'keeper'))?.version).toBe(1);
});

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

/** A user-facing error: the catalogue's status and code, a message, and nothing from the platform's insides. */
function expectError(
  answer: { status: number; text: string; headers: Headers },
  status: number,
  code: string,
): ErrorAnswer {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.headers.get('content-type')).toBe('application/json');
  expect(answer.text).not.toContain('node:internal');
  const body = JSON.parse(answer.text) as ErrorAnswer;
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(stackTraceIn(body)).toBeUndefined();
  return body;
}

const BAD_MANIFESTS = [
  {
    problem: 'an unknown field',
    name: 'bad-field',
    spec: '{ runtime: node20, timeout: 5s }',
    field: 'spec.timeout',
  },
  {
    problem: 'a bad duration',
    name: 'bad-duration',
    spec: '{ runtime: node20, limits: { timeout: 5 parsecs } }',
    field: 'spec.limits.timeout',
  },
  {
    problem: 'a bad size',
    name: 'bad-size',
    spec: '{ runtime: node20, limits: { memory: lots } }',
    field: 'spec.limits.memory',
  },
  { problem: 'a bad runtime', name: 'bad-runtime', spec: '{ runtime: cobol85 }', field: 'spec.runtime' },
] as const;

describe('invalid manifests', () => {
  it.each(BAD_MANIFESTS)('$problem: the API answers 400 naming $field', async ({ name, spec, field }) => {
    const folder = await makeFolder({ 'hearth.yaml': manifest(name, spec), 'index.mjs': INDEX });
    folders.push(folder);
    const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name });
    const body = expectError(answer, 400, 'HEARTH_E_VALIDATION');
    expect(body.error.message).toContain(field);
    expect(body.error.details).toMatchObject({ field });
  });

  it.each(BAD_MANIFESTS)(
    '$problem: hearth deploy fails with one error line naming $field',
    async ({ name, spec, field }) => {
      const folder = await makeFolder({ 'hearth.yaml': manifest(name, spec), 'index.mjs': INDEX });
      folders.push(folder);
      const result = await runCli(['deploy', folder.dir], { url: hearth.url });
      expect(result.code).not.toBe(0);
      expect(result.stderr).not.toMatch(STACK_FRAME);
      const lines = errorLines(result.stderr);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^error: HEARTH_E_VALIDATION: /);
      expect(lines[0]).toContain(field);
    },
  );

  it('a bad name: the API answers 400 naming metadata.name', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest('Bad_Name', '{ runtime: node20 }'),
      'index.mjs': INDEX,
    });
    folders.push(folder);
    const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name: 'bad-name' });
    const body = expectError(answer, 400, 'HEARTH_E_VALIDATION');
    expect(body.error.message).toContain('metadata.name');
    expect(body.error.message).toContain('Bad_Name');
  });

  it('a bad name: hearth deploy fails with one error line naming metadata.name', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest('Bad_Name', '{ runtime: node20 }'),
      'index.mjs': INDEX,
    });
    folders.push(folder);
    const result = await runCli(['deploy', folder.dir], { url: hearth.url });
    expect(result.code).not.toBe(0);
    expect(result.stderr).not.toMatch(STACK_FRAME);
    const lines = errorLines(result.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: HEARTH_E_VALIDATION: .*metadata\.name/);
  });

  it('a bad name in the URL answers 400 before anything is read', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest('x', '{ runtime: node20 }'),
      'index.mjs': INDEX,
    });
    folders.push(folder);
    const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name: 'Not_A_Label' });
    expect(expectError(answer, 400, 'HEARTH_E_VALIDATION').error.message).toContain('name');
  });

  it('a wasm function whose module is not WebAssembly answers 400 naming spec.handler', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest('wasm-fn', '{ runtime: wasm }'),
      'main.wasm': 'x',
    });
    folders.push(folder);
    const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name: 'wasm-fn' });
    expect(expectError(answer, 400, 'HEARTH_E_VALIDATION').error.message).toContain(
      'spec.handler: main.wasm is not a valid WebAssembly module',
    );
  });

  it.each([
    ['hearth.yaml that is not YAML', 'metadata: [unclosed\n  : :'],
    ['hearth.yaml that is a list', '- apiVersion: hearth.dev/v1\n'],
    ['an empty hearth.yaml', ''],
  ])('%s answers 400 naming hearth.yaml', async (_, text) => {
    const archive = rawTarGz([
      { name: 'hearth.yaml', content: text },
      { name: 'index.mjs', content: INDEX },
    ]);
    const answer = await deployArchive(hearth.url, archive, { name: 'broken-yaml' });
    expect(expectError(answer, 400, 'HEARTH_E_VALIDATION').error.message).toContain('hearth.yaml');
  });

  it.each([
    ['a missing module', '{ runtime: node20, handler: nowhere }', { 'index.mjs': INDEX }, 'nowhere'],
    [
      'a module that throws while loading',
      '{ runtime: node20 }',
      { 'index.mjs': "throw new Error('boom at import');\n" },
      'boom at import',
    ],
    [
      'a Node syntax error',
      '{ runtime: node20 }',
      { 'index.mjs': 'export default async () => {\n' },
      'SyntaxError',
    ],
    [
      'a missing Python function',
      '{ runtime: python3, handler: main.serve }',
      { 'main.py': 'def handler(event):\n    return 1\n' },
      'serve',
    ],
    ['a Python syntax error', '{ runtime: python3 }', { 'main.py': 'def handler(event:\n' }, 'SyntaxError'],
  ])(
    'a new function with %s answers 422 HEARTH_E_HANDLER_INVALID and is not created',
    async (_, spec, files, named) => {
      const folder = await makeFolder({ 'hearth.yaml': manifest('bad-handler', spec), ...files });
      folders.push(folder);
      const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name: 'bad-handler' });
      expect(await getFunction(hearth.url, 'bad-handler')).toBeUndefined();
      expect((await invoke(hearth.url, 'bad-handler')).status).toBe(404);
      const body = expectError(answer, 422, 'HEARTH_E_HANDLER_INVALID');
      expect(body.error.message).toContain(named);
    },
  );

  it('a missing export is reported in plain words, naming the module and the export', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest('bad-export', '{ runtime: node20, handler: index.serve }'),
      'index.mjs': INDEX,
    });
    folders.push(folder);
    const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name: 'bad-export' });
    const { message } = expectError(answer, 422, 'HEARTH_E_HANDLER_INVALID').error;
    expect(message).toContain('index');
    expect(message).toContain('"serve"');
    // The guest builds this sentence from parts, which can come out as 'index has no an export named "serve"'.
    expect(message).not.toMatch(/\bno an\b/);
  });

  it('a Python handler that fails to load reports no platform internals (guest frames, host paths)', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest('py-import', '{ runtime: python3 }'),
      'main.py': 'import hearth_no_such_module\n\n\ndef handler(event):\n    return 1\n',
    });
    folders.push(folder);
    const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name: 'py-import' });
    expect(answer.status).toBe(422);
    expect(answer.text).toContain('hearth_no_such_module');
    for (const internal of ['/hearth/guest', 'bootstrap.py', '<frozen', 'importlib', '/root/', '.pyenv'])
      expect(answer.text).not.toContain(internal);
  });

  it('an invalid redeploy of an existing function leaves it serving its version', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest('keeper', '{ runtime: node20, limits: { cpu: many } }'),
      'index.mjs': 'export default async () => "new";\n',
    });
    folders.push(folder);
    const answer = await deployArchive(hearth.url, await packFolder(folder.dir), { name: 'keeper' });
    expect(expectError(answer, 400, 'HEARTH_E_VALIDATION').error.message).toContain('spec.limits.cpu');
    const response = await invoke(hearth.url, 'keeper');
    expect(response.status).toBe(200);
    expect(response.text).toBe('ok');
  });

  it('an invalid config-only change (PUT) is refused and changes nothing', async () => {
    const answer = await api(hearth.url, functionApiPath('keeper'), {
      method: 'PUT',
      json: {
        apiVersion: 'hearth.dev/v1',
        kind: 'Function',
        metadata: { name: 'keeper' },
        spec: { runtime: 'node20', env: { HEARTH_X: '1' } },
      },
    });
    expect(expectError(answer, 400, 'HEARTH_E_VALIDATION').error.message).toContain('spec.env');
    expect((await getFunction(hearth.url, 'keeper'))?.spec.env).toEqual({});
  });

  it('a PUT whose body is not JSON answers 400 HEARTH_E_BAD_REQUEST', async () => {
    const answer = await api(hearth.url, functionApiPath('keeper'), {
      method: 'PUT',
      body: '{not json',
      headers: { 'content-type': 'application/json' },
    });
    expect(expectError(answer, 400, 'HEARTH_E_BAD_REQUEST').error.message).toContain('JSON');
  });
});

describe('unsafe or broken archives', () => {
  it('(control) a hand-made archive of a valid function deploys, so the refusals below are about their entries', async () => {
    const archive = rawTarGz([
      { name: 'hearth.yaml', content: manifest('raw-ok', '{ runtime: node20 }') },
      { name: 'lib', type: '5' },
      { name: 'lib/answer.mjs', content: 'export const answer = 42;\n' },
      {
        name: 'index.mjs',
        content: "import { answer } from './lib/answer.mjs';\nexport default async () => ({ answer });\n",
      },
    ]);
    const answer = await deployArchive(hearth.url, archive, { name: 'raw-ok' });
    expect(answer.status, answer.text).toBe(200);
    expect((await invoke(hearth.url, 'raw-ok')).json()).toEqual({ answer: 42 });
    // Removed again so the function list matches the baseline the other tests check against.
    expect((await api(hearth.url, functionApiPath('raw-ok'), { method: 'DELETE' })).status).toBe(200);
  });

  it('an archive without hearth.yaml answers 400 naming the file', async () => {
    const answer = await deployArchive(hearth.url, rawTarGz([{ name: 'index.mjs', content: INDEX }]), {
      name: 'no-manifest',
    });
    expect(expectError(answer, 400, 'HEARTH_E_VALIDATION').error.message).toContain('hearth.yaml');
  });

  it('a body that is not gzip answers 400 HEARTH_E_ARCHIVE_INVALID', async () => {
    const answer = await deployArchive(hearth.url, Buffer.from('this is not a tarball'), {
      name: 'not-gzip',
    });
    expect(expectError(answer, 400, 'HEARTH_E_ARCHIVE_INVALID').error.message).toContain('gzip');
  });

  it('gzip that is not a tar answers 400 HEARTH_E_ARCHIVE_INVALID', async () => {
    const answer = await deployArchive(hearth.url, gzipSync(Buffer.from('x'.repeat(2000))), {
      name: 'not-tar',
    });
    expectError(answer, 400, 'HEARTH_E_ARCHIVE_INVALID');
  });

  it('a non-archive Content-Type answers 400 HEARTH_E_BAD_REQUEST', async () => {
    const answer = await deployArchive(hearth.url, Buffer.from('{}'), {
      name: 'json-body',
      contentType: 'application/json',
    });
    expect(expectError(answer, 400, 'HEARTH_E_BAD_REQUEST').error.message).toContain('application/gzip');
  });

  describe('entries that would land outside the function folder', () => {
    /** Every file under `dir`, recursively. */
    async function filesUnder(dir: string): Promise<string[]> {
      const entries = await readdir(dir, { recursive: true, withFileTypes: true });
      return entries
        .filter((entry) => !entry.isDirectory())
        .map((entry) => join(entry.parentPath, entry.name));
    }

    it('"../" (zip-slip) is refused and nothing is written outside', async () => {
      const marker = `hearth-zipslip-${randomUUID()}.js`;
      const archive = rawTarGz([
        { name: 'hearth.yaml', content: manifest('zip-slip', '{ runtime: node20 }') },
        { name: 'index.mjs', content: INDEX },
        { name: `../${marker}`, content: 'owned' },
        { name: `../../../../../../../../tmp/${marker}`, content: 'owned' },
      ]);
      const body = expectError(
        await deployArchive(hearth.url, archive, { name: 'zip-slip' }),
        400,
        'HEARTH_E_ARCHIVE_INVALID',
      );
      expect(body.error.message).toContain(`../${marker}`);
      const everywhere = [
        ...(await filesUnder(hearth.dataDir)),
        ...(await readdir(tmpdir())),
        ...(await readdir(dirname(hearth.dataDir))),
      ];
      expect(everywhere.filter((path) => path.includes(marker))).toEqual([]);
    });

    it('an absolute path is refused and nothing is written there', async () => {
      const target = join(tmpdir(), `hearth-absolute-${randomUUID()}.js`);
      const archive = rawTarGz([
        { name: 'hearth.yaml', content: manifest('abs-path', '{ runtime: node20 }') },
        { name: 'index.mjs', content: INDEX },
        { name: target, content: 'owned' },
      ]);
      const body = expectError(
        await deployArchive(hearth.url, archive, { name: 'abs-path' }),
        400,
        'HEARTH_E_ARCHIVE_INVALID',
      );
      expect(body.error.message).toContain('absolute');
      expect(existsSync(target)).toBe(false);
    });

    it.each([
      ['climbs out of the folder', '../../../../etc'],
      ['points at an absolute path', '/etc/passwd'],
    ])('a symbolic link that %s is refused', async (_, linkname) => {
      const archive = rawTarGz([
        { name: 'hearth.yaml', content: manifest('symlink-out', '{ runtime: node20 }') },
        { name: 'index.mjs', content: INDEX },
        { name: 'escape', type: '2', linkname },
      ]);
      const body = expectError(
        await deployArchive(hearth.url, archive, { name: 'symlink-out' }),
        400,
        'HEARTH_E_ARCHIVE_INVALID',
      );
      expect(body.error.message).toContain('escape');
    });

    it('a hard link (to a host file) is refused', async () => {
      const archive = rawTarGz([
        { name: 'hearth.yaml', content: manifest('hard-link', '{ runtime: node20 }') },
        { name: 'index.mjs', content: INDEX },
        { name: 'passwd', type: '1', linkname: '/etc/passwd' },
      ]);
      const body = expectError(
        await deployArchive(hearth.url, archive, { name: 'hard-link' }),
        400,
        'HEARTH_E_ARCHIVE_INVALID',
      );
      expect(body.error.message).toContain('hard links');
    });

    it('a file written through an in-archive symbolic link is refused', async () => {
      const marker = `hearth-through-${randomUUID()}`;
      const archive = rawTarGz([
        { name: 'hearth.yaml', content: manifest('through-link', '{ runtime: node20 }') },
        { name: 'index.mjs', content: INDEX },
        { name: 'lib', type: '2', linkname: '.' },
        { name: `lib/${marker}.js`, content: 'owned' },
      ]);
      expectError(
        await deployArchive(hearth.url, archive, { name: 'through-link' }),
        400,
        'HEARTH_E_ARCHIVE_INVALID',
      );
      expect((await filesUnder(hearth.dataDir)).filter((path) => path.includes(marker))).toEqual([]);
    });

    it('the staging area is left empty after refusals', async () => {
      const staging = join(hearth.dataDir, 'tmp');
      const left = existsSync(staging) ? await readdir(staging) : [];
      expect(left).toEqual([]);
    });
  });
});

describe('invocation and routing errors', () => {
  it('a function answering an invalid header gets 502 Bad Gateway with a JSON error', async () => {
    const response = await fetch(`${hearth.url}/function/bad-header`);
    const text = await response.text();
    const body = expectError(
      { status: response.status, text, headers: response.headers },
      502,
      'HEARTH_E_FN_CRASHED',
    );
    expect(body.error.message).toContain('x-bad');
    // The status line must agree with the status: not "502 OK" left over from the refused answer.
    expect(response.statusText).toBe('Bad Gateway');
  });

  it('a body over the function’s maxBody answers 413 HEARTH_E_BODY_TOO_LARGE', async () => {
    const fits = await invoke(hearth.url, 'small-body', {
      body: 'x'.repeat(1024),
      headers: { 'content-type': 'text/plain' },
    });
    expect(fits.status).toBe(200);
    expect(fits.json()).toEqual({ received: 1024 });

    const response = await invoke(hearth.url, 'small-body', {
      body: 'x'.repeat(1025),
      headers: { 'content-type': 'text/plain' },
    });
    const body = expectError(response, 413, 'HEARTH_E_BODY_TOO_LARGE');
    expect(body.error.message).toContain('maxBody');
    expect(body.error.invocationId).toBe(response.headers.get('x-hearth-invocation-id'));
  });

  it('an unknown function answers 404 HEARTH_E_FN_NOT_FOUND with an invocation id', async () => {
    const response = await invoke(hearth.url, 'no-such-function', { path: '/deep/path?x=1' });
    const body = expectError(response, 404, 'HEARTH_E_FN_NOT_FOUND');
    expect(body.error.message).toContain('no-such-function');
    expect(body.error.invocationId).toBe(response.headers.get('x-hearth-invocation-id'));
  });

  it('/function/ without a name answers 404 JSON', async () => {
    const response = await invoke(hearth.url, '');
    expectError(response, 404, 'HEARTH_E_NOT_FOUND');
  });

  it('an unknown API route answers 404 JSON', async () => {
    const answer = await api(hearth.url, '/api/v1/gadgets');
    expect(expectError(answer, 404, 'HEARTH_E_NOT_FOUND').error.message).toContain('/api/v1/gadgets');
  });

  it('an unknown function through the API answers 404 HEARTH_E_FN_NOT_FOUND', async () => {
    expectError(await api(hearth.url, functionApiPath('ghost')), 404, 'HEARTH_E_FN_NOT_FOUND');
    expectError(await api(hearth.url, `${functionApiPath('ghost')}/logs`), 404, 'HEARTH_E_FN_NOT_FOUND');
    expectError(
      await api(hearth.url, functionApiPath('ghost'), { method: 'DELETE' }),
      404,
      'HEARTH_E_FN_NOT_FOUND',
    );
  });

  it('a config-only change of a function that does not exist answers 404 and creates nothing', async () => {
    const answer = await api(hearth.url, functionApiPath('ghost'), {
      method: 'PUT',
      json: {
        apiVersion: 'hearth.dev/v1',
        kind: 'Function',
        metadata: { name: 'ghost' },
        spec: { runtime: 'node20' },
      },
    });
    expectError(answer, 404, 'HEARTH_E_FN_NOT_FOUND');
  });

  it('a wrong method on an API route answers 405 JSON', async () => {
    const answer = await api(hearth.url, '/api/v1/functions', { method: 'POST', json: {} });
    expect(expectError(answer, 405, 'HEARTH_E_METHOD_NOT_ALLOWED').error.message).toContain('POST');
    expectError(
      await api(hearth.url, `${functionApiPath('keeper')}/deploy`, { method: 'GET' }),
      405,
      'HEARTH_E_METHOD_NOT_ALLOWED',
    );
  });
});
