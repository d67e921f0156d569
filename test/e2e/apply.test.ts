/**
 * @module `hearth apply -f` with several documents against the real platform: all or nothing. A document
 * the server refuses (a config-only Function that does not exist, a route conflict between two gateways
 * of the file or with a gateway already applied) leaves every other document of the file unapplied.
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApplyResponse, FunctionDetail } from '../../src/control/api/types.js';
import {
  api,
  deployFolder,
  errorLines,
  FIXTURES,
  type Hearth,
  invoke,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
const folders: TempFolder[] = [];

async function applyFiles(
  files: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const folder = await makeFolder(files);
  folders.push(folder);
  return runCli(['apply', '-f', join(folder.dir, 'resources.yaml')], { url: hearth.url });
}

const applyYaml = (...documents: string[]) => applyFiles({ 'resources.yaml': documents.join('---\n') });

function gateway(name: string, path: string): string {
  return `apiVersion: hearth.dev/v1\nkind: EventGateway\nmetadata: { name: ${name} }\nspec:\n  functions:\n    - name: gw-echo\n      match: { path: ${path} }\n`;
}

function fn(name: string, spec: string): string {
  return `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: ${spec}\n`;
}

async function echo(): Promise<FunctionDetail> {
  return (await api<FunctionDetail>(hearth.url, '/api/v1/namespaces/default/functions/gw-echo')).body;
}

async function gatewayStatus(name: string): Promise<number> {
  return (await api(hearth.url, `/api/v1/namespaces/default/gateways/${name}`)).status;
}

beforeAll(async () => {
  hearth = await startHearth();
  const { status, body } = await deployFolder(hearth.url, join(FIXTURES, 'gw-echo'), { name: 'gw-echo' });
  expect(status, JSON.stringify(body)).toBe(200);
  const held = await applyYaml(gateway('held', '/held'));
  expect(held.code, held.stderr).toBe(0);
});

afterAll(async () => {
  await hearth?.stop();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('hearth apply -f with several documents', () => {
  it('refuses a config-only Function that does not exist, and the gateway before it is not applied', async () => {
    const result = await applyYaml(gateway('first', '/first'), fn('no-such-fn', '{ runtime: node20 }'));
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(errorLines(result.stderr)).toEqual([
      expect.stringMatching(
        /^error: HEARTH_E_FN_NOT_FOUND: .*resources\.yaml: document 2 \(function\/no-such-fn\): function no-such-fn does not exist in namespace default.*\(nothing applied\)$/,
      ),
    ]);
    expect(await gatewayStatus('first')).toBe(404);
    expect((await fetch(`${hearth.url}/first`)).status).toBe(404);
  });

  it('refuses a route conflict between two gateways of the file; neither is applied', async () => {
    const result = await applyYaml(gateway('pair-a', '/pair'), gateway('pair-b', '/pair'));
    expect(result.code).not.toBe(0);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(errorLines(result.stderr)).toEqual([
      expect.stringMatching(
        /^error: HEARTH_E_ROUTE_CONFLICT: .*document 2 \(gateway\/pair-b\): gateway default\/pair-b spec\.functions\.0 \(ANY \/pair\) conflicts with gateway default\/pair-a/,
      ),
    ]);
    expect(await gatewayStatus('pair-a')).toBe(404);
    expect(await gatewayStatus('pair-b')).toBe(404);
  });

  it('refuses a route conflict with an applied gateway; the function change before it is not applied', async () => {
    const before = await echo();
    const result = await applyYaml(
      fn('gw-echo', '{ runtime: node20, env: { MARK: changed } }'),
      gateway('rival', '/held'),
    );
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toEqual([
      expect.stringMatching(
        /HEARTH_E_ROUTE_CONFLICT: .*document 2 \(gateway\/rival\): .*conflicts with gateway default\/held/,
      ),
    ]);
    const after = await echo();
    expect(after.version).toBe(before.version);
    expect(after.spec.env).toEqual(before.spec.env);
    expect(await gatewayStatus('rival')).toBe(404);
  });

  it('uploads a source folder but does not release it when a later document is refused', async () => {
    const result = await applyFiles({
      'fresh/index.mjs': 'export default async () => ({ fresh: true });\n',
      'resources.yaml': [
        fn('fresh', '{ runtime: node20, source: ./fresh }'),
        fn('ghost', '{ runtime: node20 }'),
      ].join('---\n'),
    });
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toEqual([
      expect.stringMatching(/document 2 \(function\/ghost\): function ghost does not exist/),
    ]);
    expect((await api(hearth.url, '/api/v1/namespaces/default/functions/fresh')).status).toBe(404);
  });

  it('applies a source folder, a config change and a gateway together when all are valid', async () => {
    const before = await echo();
    const result = await applyFiles({
      'fresh/index.mjs': 'export default async () => ({ fresh: true });\n',
      'resources.yaml': [
        fn('fresh', '{ runtime: node20, source: ./fresh }'),
        fn('gw-echo', '{ runtime: node20, env: { MARK: together } }'),
        gateway('together', '/together'),
      ].join('---\n'),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      `function/fresh configured (version 1)\nfunction/gw-echo configured (version ${before.version + 1})\ngateway/together configured\n`,
    );
    expect((await invoke(hearth.url, 'fresh')).json()).toEqual({ fresh: true });
    expect((await echo()).spec.env).toEqual({ MARK: 'together' });
    expect((await fetch(`${hearth.url}/together`)).status).toBe(200);
  });

  it('refuses a version whose handler does not load, and applies nothing else of the file', async () => {
    const before = await echo();
    const result = await applyFiles({
      'broken/index.mjs': 'export const notAHandler = 1;\n',
      'resources.yaml': [
        fn('gw-echo', '{ runtime: node20, env: { MARK: never } }'),
        gateway('never', '/never'),
        fn('broken', '{ runtime: node20, source: ./broken }'),
      ].join('---\n'),
    });
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)).toEqual([
      expect.stringMatching(
        /HEARTH_E_HANDLER_INVALID: .*document 3 \(function\/broken\): .*\(nothing applied\)$/,
      ),
    ]);
    expect((await echo()).version).toBe(before.version);
    expect(await gatewayStatus('never')).toBe(404);
    expect((await api(hearth.url, '/api/v1/namespaces/default/functions/broken')).status).toBe(404);
  });

  it('moves a route from one gateway to another in one file', async () => {
    const first = await applyYaml(gateway('swap-a', '/swap/one'), gateway('swap-b', '/swap/two'));
    expect(first.code, first.stderr).toBe(0);
    const swapped = await applyYaml(gateway('swap-a', '/swap/two'), gateway('swap-b', '/swap/one'));
    expect(swapped.code, swapped.stderr).toBe(0);
    const one = (await (await fetch(`${hearth.url}/swap/one`)).json()) as { route: string };
    const two = (await (await fetch(`${hearth.url}/swap/two`)).json()) as { route: string };
    expect(one.route).toBe('default/swap-b#0');
    expect(two.route).toBe('default/swap-a#0');
  });

  it('POST /api/v1/apply with dryRun validates every document and changes nothing', async () => {
    const before = await echo();
    const dry = await api<ApplyResponse>(hearth.url, '/api/v1/apply', {
      method: 'POST',
      json: {
        dryRun: true,
        documents: [
          {
            manifest: {
              apiVersion: 'hearth.dev/v1',
              kind: 'Function',
              metadata: { name: 'gw-echo' },
              spec: { runtime: 'node20', env: { MARK: 'dry' } },
            },
          },
        ],
      },
    });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({
      dryRun: true,
      items: [{ kind: 'Function', name: 'gw-echo', unchanged: false }],
    });
    expect((await echo()).version).toBe(before.version);

    const refused = await api<{ error: { code: string; message: string; details: Record<string, unknown> } }>(
      hearth.url,
      '/api/v1/apply',
      { method: 'POST', json: { documents: [{ manifest: { kind: 'Nope', metadata: { name: 'x' } } }] } },
    );
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toBe(
      'documents.0 (Nope default/x): kind: got "Nope", expected "Function", "EventGateway", "Trigger", "Secret" or "Namespace"',
    );
    expect(refused.body.error.details.document).toEqual({
      index: 0,
      kind: 'Nope',
      namespace: 'default',
      name: 'x',
    });
  });
});
