/**
 * @module Signed packages (issue 13) against the real platform: with `signing.requireSignature`, a deploy
 * of an unsigned, altered or foreign-signed folder is refused with 403 naming the reason; a folder signed
 * with `hearth sign` by a trusted `hearth keygen` key deploys, and the audit log names its signer.
 */

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/compliance/index.js';
import {
  api,
  deployFolder,
  errorLines,
  type Hearth,
  invoke,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
let keys: TempFolder;
let fn: TempFolder;
let trusted: { pub: string; id: string };

async function keygen(prefix: string): Promise<{ pub: string; id: string }> {
  const made = await runCli(['keygen', '--out', join(keys.dir, prefix)]);
  expect(made.code, made.stderr).toBe(0);
  const pub = (await readFile(join(keys.dir, `${prefix}.pub`), 'utf8')).trim();
  const id = /key id ([0-9a-f]{16})/.exec(made.stdout)?.[1] ?? '';
  return { pub, id };
}

const sign = (key: string) => runCli(['sign', fn.dir, '--key', join(keys.dir, `${key}.key`)]);
const deploy = () => runCli(['deploy', fn.dir], { url: hearth.url });

beforeAll(async () => {
  keys = await makeFolder({});
  fn = await makeFolder({
    'hearth.yaml':
      'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: signed }\nspec: { runtime: node20 }\n',
    'index.mjs': "export default () => 'signed code';\n",
  });
  trusted = await keygen('trusted');
  await keygen('stranger');
  const config = join(keys.dir, 'hearth.yaml');
  await writeFile(config, `signing:\n  requireSignature: ["${trusted.pub}"]\n`);
  hearth = await startHearth({ args: ['--config', config] });
});

afterAll(async () => {
  await hearth?.stop();
  await keys?.cleanup();
  await fn?.cleanup();
});

describe('signed packages', () => {
  it('refuses an unsigned package with 403 naming the reason', async () => {
    const answer = await deployFolder(hearth.url, fn.dir, { name: 'signed' });
    expect(answer.status).toBe(403);
    expect(JSON.stringify(answer.body)).toContain('HEARTH_E_SIGNATURE_INVALID');
    const cli = await deploy();
    expect(cli.code).not.toBe(0);
    expect(errorLines(cli.stderr)).toEqual([
      expect.stringContaining('HEARTH_E_SIGNATURE_INVALID: package signature: the package is unsigned'),
    ]);
  });

  it('deploys a package signed by a trusted key, and the audit log names the signer', async () => {
    const signed = await sign('trusted');
    expect(signed.code, signed.stderr).toBe(0);
    expect(signed.stdout).toContain(`with key ${trusted.id}`);
    const cli = await deploy();
    expect(cli.code, cli.stderr).toBe(0);
    expect((await invoke(hearth.url, 'signed')).text).toBe('signed code');
    const records = await api<{ items: AuditRecord[] }>(hearth.url, '/api/v1/audit');
    const deployRecord = records.body.items.filter((record) => record.action.endsWith('/deploy')).at(-1);
    expect(deployRecord).toMatchObject({ outcome: 'success', detail: { signer: trusted.id } });
  });

  it('refuses a package altered after signing, and one signed by an unknown key', async () => {
    await writeFile(join(fn.dir, 'index.mjs'), "export default () => 'tampered';\n");
    const altered = await deploy();
    expect(altered.code).not.toBe(0);
    expect(altered.stderr).toContain(`the package was altered after key ${trusted.id} signed it`);
    expect((await sign('stranger')).code).toBe(0);
    const foreign = await deploy();
    expect(foreign.code).not.toBe(0);
    expect(foreign.stderr).toMatch(/signed by key [0-9a-f]{16}, which is not in requireSignature/);
    const refusedRecord = (await api<{ items: AuditRecord[] }>(hearth.url, '/api/v1/audit')).body.items.at(
      -1,
    );
    expect(refusedRecord).toMatchObject({ outcome: 'refused', status: 403 });
    expect((await invoke(hearth.url, 'signed')).text).toBe('signed code');
  });
});
