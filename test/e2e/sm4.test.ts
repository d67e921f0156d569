/**
 * @module SM4 on the transaction path (issue 13), against the real platform: `hearth invoke --encrypt`
 * round trips through Node and Python functions whose `spec.encryption` names a secret key; the body is
 * opened only in the guest; a plain body or a wrong key is a 400 naming the problem; an async invocation's
 * payload and result are stored sealed.
 */

import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBody, sealBody } from '../../src/compliance/sm4-gcm.js';
import type { InvocationRecord } from '../../src/control/api/events-types.js';
import {
  api,
  deployFolder,
  errorLines,
  eventually,
  type Hearth,
  invoke,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

const KEY = randomBytes(16);
const ACCOUNT = `acct-${randomBytes(8).toString('hex')}`;
let hearth: Hearth;
let keyFile: string;
const folders: TempFolder[] = [];

async function folder(files: Record<string, string>): Promise<string> {
  const made = await makeFolder(files);
  folders.push(made);
  return made.dir;
}

const ENCRYPTION = '{ algorithm: sm4-gcm, key: { secret: pay, key: sm4 } }';

beforeAll(async () => {
  hearth = await startHearth();
  keyFile = join(await folder({ 'sm4.key': `${KEY.toString('hex')}\n` }), 'sm4.key');
  const set = await runCli(['secret', 'set', 'pay', '--from-file', `sm4=${keyFile}`], { url: hearth.url });
  expect(set.code, set.stderr).toBe(0);
  for (const [name, files] of [
    [
      'pay-node',
      {
        'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: pay-node }\nspec: { runtime: node20, encryption: ${ENCRYPTION} }\n`,
        'index.mjs': `export default (event) => ({ runtime: 'node', got: event.body, type: event.headers['content-type'], key: process.env.HEARTH_SM4_KEY ?? null });\n`,
      },
    ],
    [
      'pay-python',
      {
        'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: pay-python }\nspec: { runtime: python3, encryption: ${ENCRYPTION} }\n`,
        'main.py': `import os\ndef handler(event, context):\n    return {"runtime": "python", "got": event["body"], "type": event["headers"].get("content-type"), "key": os.environ.get("HEARTH_SM4_KEY")}\n`,
      },
    ],
  ] as const) {
    const deployed = await deployFolder(hearth.url, await folder(files), { name });
    expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  }
});

afterAll(async () => {
  await hearth?.stop();
  await Promise.all(folders.map((made) => made.cleanup()));
});

describe('SM4-GCM invocations', () => {
  it.each(['pay-node', 'pay-python'])('%s: hearth invoke --encrypt round trips', async (name) => {
    const result = await runCli(
      [
        'invoke',
        name,
        '--encrypt',
        '--key-file',
        keyFile,
        '-d',
        `{"account":"${ACCOUNT}","amount":"100.00"}`,
      ],
      { url: hearth.url },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      runtime: name === 'pay-node' ? 'node' : 'python',
      got: { account: ACCOUNT, amount: '100.00' },
      type: 'application/json',
      key: null,
    });
  });

  it.each(['pay-node', 'pay-python'])('%s: the wire carries only ciphertext, both ways', async (name) => {
    const sealed = sealBody(KEY, Buffer.from(`{"account":"${ACCOUNT}"}`));
    const response = await fetch(`${hearth.url}/function/${name}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/hearth-sm4',
        'x-hearth-plain-content-type': 'application/json',
      },
      body: sealed,
    });
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/hearth-sm4');
    expect(bytes.includes(ACCOUNT)).toBe(false);
    expect(JSON.parse(openBody(KEY, bytes).toString())).toMatchObject({ got: { account: ACCOUNT } });
  });

  it.each(['pay-node', 'pay-python'])(
    '%s: a wrong key or a plain body is a 400 naming the problem',
    async (name) => {
      const wrongKey = join(await folder({ k: randomBytes(16).toString('hex') }), 'k');
      const wrong = await runCli(['invoke', name, '--encrypt', '--key-file', wrongKey, '-d', '{"a":1}'], {
        url: hearth.url,
      });
      expect(wrong.code).not.toBe(0);
      expect(errorLines(wrong.stderr)).toEqual([
        expect.stringMatching(
          /^error: HEARTH_E_BAD_REQUEST: the SM4-GCM tag does not match: the body was sealed under another key, or altered \(invocation /,
        ),
      ]);
      const plain = await invoke(hearth.url, name, {
        body: '{"a":1}',
        headers: { 'content-type': 'application/json' },
      });
      expect(plain.status).toBe(400);
      expect(plain.text).toContain(
        'takes SM4-GCM sealed bodies (content-type application/hearth-sm4), got application/json',
      );
    },
  );

  it('stores an async invocation payload and its result sealed', async () => {
    const sealed = sealBody(KEY, Buffer.from(`{"account":"${ACCOUNT}"}`));
    const accepted = await fetch(`${hearth.url}/async-function/pay-node`, {
      method: 'POST',
      headers: {
        'content-type': 'application/hearth-sm4',
        'x-hearth-plain-content-type': 'application/json',
      },
      body: sealed,
    });
    expect(accepted.status).toBe(202);
    const id = accepted.headers.get('x-hearth-invocation-id') ?? '';
    const done = await eventually('the async invocation to finish', async () => {
      const record = await api<InvocationRecord>(hearth.url, `/api/v1/invocations/${id}`);
      return record.body.status === 'succeeded' ? record.body : undefined;
    });
    const body = Buffer.from(
      done.result?.body ?? '',
      done.result?.isBase64Encoded === true ? 'base64' : 'utf8',
    );
    expect(JSON.parse(openBody(KEY, body).toString())).toMatchObject({ got: { account: ACCOUNT } });
    for (const entry of await readdir(hearth.dataDir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      const bytes = await readFile(join(entry.parentPath, entry.name)).catch(() => Buffer.alloc(0));
      expect(bytes.includes(ACCOUNT), `${entry.name} holds the account in clear`).toBe(false);
    }
  });
});
