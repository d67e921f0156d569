/** @module End-to-end: a function's lifecycle through the real CLI and API — create, deploy, update, fail, remove, restart. */

import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail, FunctionSummary, ListResponse } from '../../src/control/api/types.js';
import {
  api,
  copyFixture,
  deployFolder,
  deployStreaming,
  errorLines,
  FIXTURES,
  functionApiPath,
  getFunction,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  runCli,
  STACK_FRAME,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
/** Kept across the restart test, so the harness must not delete it: created and removed here. */
let dataDir: string;
let work: string;
const folders: TempFolder[] = [];

async function folder(made: Promise<TempFolder>): Promise<string> {
  const result = await made;
  folders.push(result);
  return result.dir;
}

function cli(args: readonly string[]) {
  return runCli(args, { url: hearth.url });
}

async function layerCount(): Promise<number> {
  return (await readdir(join(dataDir, 'layers'))).length;
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'hearth-e2e-deploy-'));
  work = await mkdtemp(join(tmpdir(), 'hearth-e2e-work-'));
  hearth = await startHearth({ dataDir });
});

afterAll(async () => {
  await hearth?.stop();
  for (const made of folders) await made.cleanup();
  await rm(work, { recursive: true, force: true });
  await rm(dataDir, { recursive: true, force: true });
});

describe('new → deploy → invoke → inspect → rm, through the CLI', () => {
  it.each([
    ['node20', 'hello-node'],
    ['python3', 'hello-py'],
  ])('%s: hearth new, deploy and invoke', async (runtime, name) => {
    const dir = join(work, name);
    const created = await cli(['new', name, '--runtime', runtime, '--dir', dir]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain(`Created function ${name} (${runtime})`);

    const deployed = await cli(['deploy', dir]);
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.stdout).toMatch(
      new RegExp(`^deployed default/${name} version 1 in .+ → ${hearth.url}/function/${name}\\n$`),
    );

    const invoked = await cli(['invoke', name, '--data', '{"name": "Hearth"}', '--path', '/greet']);
    expect(invoked.code, invoked.stderr).toBe(0);
    expect(JSON.parse(invoked.stdout)).toMatchObject({
      message: 'Hello, Hearth!',
      method: 'POST',
      path: '/greet',
    });
  });

  it('hearth ls and ls -o json list the deployed functions', async () => {
    const text = await cli(['ls']);
    expect(text.code, text.stderr).toBe(0);
    const rows = text.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^NAME\s+NAMESPACE\s+RUNTIME\s+VERSION\s+INSTANCES\s+ISOLATION\s+AGE$/);
    expect(rows.some((row) => /^hello-node\s+default\s+node20\s+1\s+\d+\s+sandbox\s/.test(row))).toBe(true);
    expect(rows.some((row) => /^hello-py\s+default\s+python3\s+1\s+\d+\s+sandbox\s/.test(row))).toBe(true);

    const json = await cli(['ls', '-o', 'json']);
    expect(json.code, json.stderr).toBe(0);
    const listed = JSON.parse(json.stdout) as ListResponse<FunctionSummary>;
    expect(listed.items.find((fn) => fn.name === 'hello-py')).toMatchObject({
      namespace: 'default',
      runtime: 'python3',
      version: 1,
      isolation: 'sandbox',
      url: '/function/hello-py',
    });
  });

  it('hearth describe shows the isolation note and the versions; -o json the detail', async () => {
    const text = await cli(['describe', 'hello-node']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^Name:\s+hello-node$/m);
    expect(text.stdout).toMatch(/^Version:\s+1$/m);
    expect(text.stdout).toMatch(/^Isolation:\s+sandbox: bubblewrap namespaces/m);
    expect(text.stdout).toMatch(/^Versions:\n\s+VERSION\s+AGE\s+CODE\n\s+1 \(active\)\s/m);

    const json = await cli(['describe', 'hello-node', '-o', 'json']);
    expect(json.code, json.stderr).toBe(0);
    const detail = JSON.parse(json.stdout) as FunctionDetail;
    expect(detail).toMatchObject({ name: 'hello-node', version: 1, runtime: 'node20', isolation: 'sandbox' });
    expect(detail.isolationNote).toMatch(/^sandbox:/);
    expect(detail.versions.map((version) => version.version)).toEqual([1]);
    expect(detail.versions[0]?.codeHash).toBe(detail.code.hash);
    expect(detail.lastDeployment).toMatchObject({ status: 'succeeded', version: 1 });
  });

  it('-n deploys the same folder into another namespace, overriding the one in hearth.yaml', async () => {
    // The template's hearth.yaml says `namespace: default`; the flag must win.
    const deployed = await cli(['deploy', join(work, 'hello-node'), '-n', 'team-b']);
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.stdout).toContain(`deployed team-b/hello-node version 1`);
    expect(deployed.stdout).toContain(`${hearth.url}/function/hello-node.team-b`);

    const invoked = await cli(['invoke', 'hello-node', '-n', 'team-b', '-q', 'name=team']);
    expect(invoked.code, invoked.stderr).toBe(0);
    expect(JSON.parse(invoked.stdout)).toMatchObject({ message: 'Hello, team!' });

    const team = JSON.parse(
      (await cli(['ls', '-n', 'team-b', '-o', 'json'])).stdout,
    ) as ListResponse<FunctionSummary>;
    expect(team.items.map((fn) => `${fn.namespace}/${fn.name}`)).toEqual(['team-b/hello-node']);
    const everywhere = JSON.parse(
      (await cli(['ls', '-A', '-o', 'json'])).stdout,
    ) as ListResponse<FunctionSummary>;
    const names = everywhere.items.map((fn) => `${fn.namespace}/${fn.name}`);
    expect(names).toContain('team-b/hello-node');
    expect(names).toContain('default/hello-node');
  });

  it('hearth rm removes the function: invoking it answers 404 naming the invocation', async () => {
    const removed = await cli(['rm', 'hello-py']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toBe('function/hello-py deleted\n');

    const response = await invoke(hearth.url, 'hello-py');
    expect(response.status).toBe(404);
    const invocationId = response.headers.get('x-hearth-invocation-id');
    expect(response.json()).toEqual({
      error: { code: 'HEARTH_E_FN_NOT_FOUND', message: expect.stringContaining('hello-py'), invocationId },
    });
    expect(typeof invocationId).toBe('string');

    const viaCli = await cli(['invoke', 'hello-py']);
    expect(viaCli.code).not.toBe(0);
    expect(errorLines(viaCli.stderr)).toHaveLength(1);
    expect(errorLines(viaCli.stderr)[0]).toMatch(/^error: HEARTH_E_FN_NOT_FOUND: /);
    expect(await getFunction(hearth.url, 'hello-py')).toBeUndefined();
  });
});

describe('dependencies', () => {
  let nodeDeps: string;

  it('node-deps (npm) and py-deps (PyPI) build their layers and answer', async () => {
    nodeDeps = await folder(copyFixture('node-deps'));
    const node = await deployFolder(hearth.url, nodeDeps, { name: 'node-deps' });
    expect(node.status, JSON.stringify(node.body)).toBe(200);
    const py = await deployFolder(hearth.url, `${FIXTURES}/py-deps`, { name: 'py-deps' });
    expect(py.status, JSON.stringify(py.body)).toBe(200);

    expect((await invoke(hearth.url, 'node-deps', { path: '?d=1h' })).json()).toEqual({ parsed: 3_600_000 });
    expect((await invoke(hearth.url, 'py-deps')).json()).toEqual({ six: '1.16.0', text: 'ok' });
    expect((await getFunction(hearth.url, 'node-deps'))?.dependencies?.key).toMatch(/^node20-/);
    expect((await getFunction(hearth.url, 'py-deps'))?.dependencies?.key).toMatch(/^python3-/);
  });

  it('a code-only redeploy reuses the dependency layer: nothing installed, no new layer', async () => {
    const layersBefore = await layerCount();
    await writeFile(
      join(nodeDeps, 'index.mjs'),
      "import ms from 'ms';\n\nexport default async function handler(event) {\n  return { parsed: ms(event.query.d ?? '2 days'), edition: 2 };\n}\n",
    );
    const deployed = await deployStreaming(hearth.url, nodeDeps, { name: 'node-deps' });
    expect(deployed.status).toBe(200);
    expect(deployed.contentType).toBe('application/x-ndjson');
    const messages = deployed.events.flatMap((event) => (event.event === 'progress' ? [event.message] : []));
    expect(
      messages.some((message) => /dependency layer node20-\S+ reused \(nothing installed\)/.test(message)),
    ).toBe(true);
    expect(deployed.events.filter((event) => event.event === 'output')).toEqual([]);
    expect(deployed.events.filter((event) => event.event === 'error')).toEqual([]);
    const result = deployed.events.at(-1);
    expect(result?.event).toBe('result');
    if (result?.event === 'result') expect(result.function.version).toBe(2);
    expect(await layerCount()).toBe(layersBefore);
    expect((await invoke(hearth.url, 'node-deps', { path: '?d=1s' })).json()).toEqual({
      parsed: 1000,
      edition: 2,
    });
  });

  it('a failed dependency build refuses the deploy and the previous version keeps serving', async () => {
    const dir = await folder(
      copyFixture('py-deps', { 'hearth.yaml': manifest('py-build', '{ runtime: python3 }') }),
    );
    expect((await deployFolder(hearth.url, dir, { name: 'py-build' })).status).toBe(200);
    expect((await invoke(hearth.url, 'py-build')).json()).toEqual({ six: '1.16.0', text: 'ok' });

    await writeFile(join(dir, 'requirements.txt'), 'six==1.16.0\nhearth-no-such-package-xyz==1.0\n');
    const failed = await cli(['deploy', dir]);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).not.toMatch(STACK_FRAME);
    expect(errorLines(failed.stderr)).toHaveLength(1);
    expect(errorLines(failed.stderr)[0]).toMatch(/^error: HEARTH_E_BUILD_FAILED: /);

    const detail = await getFunction(hearth.url, 'py-build');
    expect(detail?.version).toBe(1);
    expect(detail?.lastDeployment).toMatchObject({
      status: 'failed',
      error: { code: 'HEARTH_E_BUILD_FAILED' },
    });
    expect((await invoke(hearth.url, 'py-build')).json()).toEqual({ six: '1.16.0', text: 'ok' });
  });
});

describe('versions and updates', () => {
  it('deploying identical code and spec again answers unchanged and keeps the version', async () => {
    const dir = `${FIXTURES}/node-cjs-default`;
    const first = await deployFolder(hearth.url, dir, { name: 'node-cjs-default' });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ unchanged: false, function: { version: 1 } });
    const second = await deployFolder(hearth.url, dir, { name: 'node-cjs-default' });
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({ unchanged: true, function: { version: 1 } });
    expect(
      (await getFunction(hearth.url, 'node-cjs-default'))?.versions.map((version) => version.version),
    ).toEqual([1]);
  });

  it('a deploy whose handler export is missing is refused naming it; the previous version keeps serving', async () => {
    const dir = await folder(
      makeFolder({
        'hearth.yaml': manifest('exports', '{ runtime: node20, handler: index.handler }'),
        'index.mjs': "export async function handler() {\n  return 'first';\n}\n",
      }),
    );
    expect((await deployFolder(hearth.url, dir, { name: 'exports' })).status).toBe(200);
    await writeFile(
      join(dir, 'hearth.yaml'),
      manifest('exports', '{ runtime: node20, handler: index.serve }'),
    );

    const refused = await deployFolder(hearth.url, dir, { name: 'exports' });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({
      error: { code: 'HEARTH_E_HANDLER_INVALID', message: expect.stringContaining('"serve"') },
    });

    const detail = await getFunction(hearth.url, 'exports');
    expect(detail?.version).toBe(1);
    expect(detail?.spec.handler).toBe('index.handler');
    const response = await invoke(hearth.url, 'exports');
    expect(response.status).toBe(200);
    expect(response.text).toBe('first');
  });

  describe('hearth apply', () => {
    let yamlDir: string;

    it('deploys every document of a multi-document file, sources relative to the file', async () => {
      yamlDir = await folder(
        makeFolder({
          'one/index.mjs': 'export default async () => ({ color: process.env.COLOR ?? null });\n',
          'two/main.py':
            'def handler(event, context):\n    return {"lang": "python", "method": event["method"]}\n',
          'fns.yaml': [
            manifest('app-one', '{ runtime: node20, source: ./one }'),
            '---',
            manifest('app-two', '{ runtime: python3, source: two }'),
          ].join('\n'),
        }),
      );
      // Run from elsewhere: the sources must resolve against the YAML file's folder.
      const applied = await runCli(['apply', '-f', join(yamlDir, 'fns.yaml')], {
        url: hearth.url,
        cwd: work,
      });
      expect(applied.code, applied.stderr).toBe(0);
      expect(applied.stdout).toBe(
        'function/app-one configured (version 1)\nfunction/app-two configured (version 1)\n',
      );
      expect((await invoke(hearth.url, 'app-one')).json()).toEqual({ color: null });
      expect((await invoke(hearth.url, 'app-two')).json()).toEqual({ lang: 'python', method: 'GET' });
    });

    it('a config-only document changes the env and makes a new version with the same code', async () => {
      const before = await getFunction(hearth.url, 'app-one');
      const file = join(yamlDir, 'config.yaml');
      await writeFile(file, manifest('app-one', '{ runtime: node20, env: { COLOR: blue } }'));
      const applied = await cli(['apply', '-f', file]);
      expect(applied.code, applied.stderr).toBe(0);
      expect(applied.stdout).toBe('function/app-one configured (version 2)\n');

      const after = await getFunction(hearth.url, 'app-one');
      expect(after?.version).toBe(2);
      expect(after?.spec.env).toEqual({ COLOR: 'blue' });
      expect(after?.code.hash).toBe(before?.code.hash);
      expect((await invoke(hearth.url, 'app-one')).json()).toEqual({ color: 'blue' });
    });

    it('a config-only change through the API (PUT) answers the new detail', async () => {
      const answer = await api<{ unchanged: boolean; function: FunctionDetail }>(
        hearth.url,
        functionApiPath('app-one'),
        {
          method: 'PUT',
          json: {
            apiVersion: 'hearth.dev/v1',
            kind: 'Function',
            metadata: { name: 'app-one' },
            spec: { runtime: 'node20', env: { COLOR: 'green' } },
          },
        },
      );
      expect(answer.status).toBe(200);
      expect(answer.body.unchanged).toBe(false);
      expect(answer.body.function.version).toBe(3);
      expect((await invoke(hearth.url, 'app-one')).json()).toEqual({ color: 'green' });
    });
  });
});

describe('restart', () => {
  it('a platform restarted on the same data dir still has the functions, and they answer', async () => {
    const before = await api<ListResponse<FunctionSummary>>(hearth.url, '/api/v1/functions');
    const code = await hearth.stop('SIGTERM');
    expect(code).toBe(0);

    hearth = await startHearth({ dataDir });
    const after = await api<ListResponse<FunctionSummary>>(hearth.url, '/api/v1/functions');
    const summary = (items: readonly FunctionSummary[]) =>
      items.map((fn) => `${fn.namespace}/${fn.name}@${fn.version}`).sort();
    expect(summary(after.body.items)).toEqual(summary(before.body.items));
    expect(summary(after.body.items)).toContain('default/app-one@3');

    expect((await invoke(hearth.url, 'node-deps', { path: '?d=1m' })).json()).toEqual({
      parsed: 60_000,
      edition: 2,
    });
    expect((await invoke(hearth.url, 'py-deps')).json()).toEqual({ six: '1.16.0', text: 'ok' });
    expect((await invoke(hearth.url, 'app-one')).json()).toEqual({ color: 'green' });
    expect((await invoke(hearth.url, 'py-build')).json()).toEqual({ six: '1.16.0', text: 'ok' });
    const invoked = await cli(['invoke', 'hello-node']);
    expect(invoked.code, invoked.stderr).toBe(0);
    expect(JSON.parse(invoked.stdout)).toMatchObject({ message: 'Hello, world!' });
  });
});
