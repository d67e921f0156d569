/**
 * @module Secrets (issue 13) against the real platform: set with the CLI, received by Node and Python
 * functions as env and files, never in clear in any file of the data directory (the SQLite bytes, WAL
 * included), the log, describe or the API; applied with functions all or nothing; the master key rotated
 * live, and a rotation a crash interrupted finished on the next start.
 */

import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

// Values no test data elsewhere contains, so finding them anywhere is a leak.
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const CERT = `cert-${randomBytes(12).toString('hex')}`;
const NEW_PASSWORD = `pw2-${randomBytes(12).toString('hex')}`;

let hearth: Hearth;
const folders: TempFolder[] = [];

async function folder(files: Record<string, string>): Promise<string> {
  const made = await makeFolder(files);
  folders.push(made);
  return made.dir;
}

const SECRETS_SPEC = '[{ name: db, env: { DB_PASSWORD: password }, mountPath: db }]';

const NODE_READER = {
  'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: reader }\nspec: { runtime: node20, secrets: ${SECRETS_SPEC} }\n`,
  'index.mjs': `import { readFileSync } from 'node:fs';
export default () => ({
  env: process.env.DB_PASSWORD,
  file: readFileSync(process.env.HEARTH_SECRETS_DIR + '/db/cert', 'utf8'),
  leftover: process.env.HEARTH_SECRET_FILES ?? null,
});
`,
};

const PYTHON_READER = {
  'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: pyreader }\nspec: { runtime: python3, secrets: ${SECRETS_SPEC} }\n`,
  'main.py': `import os
def handler(event, context):
    with open(os.path.join(os.environ["HEARTH_SECRETS_DIR"], "db", "cert")) as f:
        return {"env": os.environ.get("DB_PASSWORD"), "file": f.read(), "leftover": os.environ.get("HEARTH_SECRET_FILES")}
`,
};

/** Every byte of every file under the data directory, as latin1 text to search. */
async function dataDirBytes(dir: string): Promise<string> {
  let all = '';
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const info = await stat(path).catch(() => undefined);
    if (info === undefined || info.size > 64 * 1024 ** 2) continue;
    all += (await readFile(path).catch(() => Buffer.alloc(0))).toString('latin1');
  }
  return all;
}

function expectNoClearText(text: string, where: string): void {
  for (const value of [PASSWORD, CERT, NEW_PASSWORD]) {
    expect(text.includes(value), `${value} in clear in ${where}`).toBe(false);
    expect(text.includes(Buffer.from(value).toString('base64')), `${value} as base64 in ${where}`).toBe(
      false,
    );
  }
}

beforeAll(async () => {
  hearth = await startHearth();
});

afterAll(async () => {
  await hearth?.stop();
  await Promise.all(folders.map((made) => made.cleanup()));
});

describe('secrets', () => {
  it('are set with the CLI and listed by name and key names only', async () => {
    const certFile = join(await folder({ cert: CERT }), 'cert');
    const set = await runCli(
      ['secret', 'set', 'db', '--from-literal', `password=${PASSWORD}`, '--from-file', `cert=${certFile}`],
      { url: hearth.url },
    );
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('secret/db set (keys: cert, password)');
    const ls = await runCli(['secret', 'ls'], { url: hearth.url });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/default\s+db\s+cert,password\s+sm4-cbc-hmac-sm3/);
    const shown = await api(hearth.url, '/api/v1/namespaces/default/secrets/db');
    expect(shown.status).toBe(200);
    expectNoClearText(ls.stdout + shown.text, 'the listing and the API');
  });

  it('reach a Node and a Python function as env and files, and the env carrier is gone', async () => {
    for (const [name, files] of [
      ['reader', NODE_READER],
      ['pyreader', PYTHON_READER],
    ] as const) {
      const deployed = await deployFolder(hearth.url, await folder(files), { name });
      expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
      const answer = await invoke(hearth.url, name);
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json()).toEqual({ env: PASSWORD, file: CERT, leftover: null });
      const described = await runCli(['describe', name, '-o', 'json'], { url: hearth.url });
      expect(described.code, described.stderr).toBe(0);
      expect(described.stdout).toContain('"secrets"');
      expectNoClearText(described.stdout, `describe ${name}`);
    }
  });

  it('are never in clear in the data directory (SQLite file and WAL) or the platform log', async () => {
    expectNoClearText(await dataDirBytes(hearth.dataDir), hearth.dataDir);
    expectNoClearText(JSON.stringify(hearth.log) + hearth.stderr(), 'the platform log');
    const keyFile = await stat(join(hearth.dataDir, 'master.key'));
    expect(keyFile.mode & 0o777).toBe(0o600);
  });

  it('are applied together with functions, and a refused apply leaves the secret as it was', async () => {
    const refused = await runCli(
      [
        'apply',
        '-f',
        join(
          await folder({
            'r.yaml': `apiVersion: hearth.dev/v1
kind: Secret
metadata: { name: db }
stringData: { password: ${NEW_PASSWORD}, cert: x }
---
apiVersion: hearth.dev/v1
kind: Function
metadata: { name: reader }
spec: { runtime: node20, secrets: [{ name: db, env: { X: missing-key } }] }
`,
          }),
          'r.yaml',
        ),
      ],
      { url: hearth.url },
    );
    expect(refused.code).not.toBe(0);
    expect(errorLines(refused.stderr)).toHaveLength(1);
    expect(refused.stderr).toContain('has no key "missing-key"');
    expectNoClearText(refused.stderr, 'the refusal');
    // The function still gets the old value on a fresh instance.
    await api(hearth.url, '/api/v1/namespaces/default/functions/reader/instances', { method: 'DELETE' });
    expect((await invoke(hearth.url, 'reader')).json()).toMatchObject({ env: PASSWORD });

    const bad = await runCli(
      [
        'apply',
        '-f',
        join(
          await folder({
            'b.yaml': `apiVersion: hearth.dev/v1
kind: Secret
metadata: { name: other }
data: { token: "not base64!" }
`,
          }),
          'b.yaml',
        ),
      ],
      { url: hearth.url },
    );
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('data.token: expected base64');
    expect(bad.stderr).not.toContain('not base64!');
  });

  it('rotate to a new master key live; running functions keep working and new instances read them', async () => {
    const before = await readFile(join(hearth.dataDir, 'master.key'), 'utf8');
    const rotated = await runCli(['secret', 'rotate-key'], { url: hearth.url });
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/master key rotated: 1 secret\(s\) re-sealed under key [0-9a-f]{16}/);
    const after = await readFile(join(hearth.dataDir, 'master.key'), 'utf8');
    expect(after).not.toBe(before);
    const keyId = /key ([0-9a-f]{16})/.exec(rotated.stdout)?.[1];
    const listed = await api<{ items: { sealedUnder: string }[] }>(hearth.url, '/api/v1/secrets');
    expect(listed.body.items.map((item) => item.sealedUnder)).toEqual([keyId]);
    await api(hearth.url, '/api/v1/namespaces/default/functions/pyreader/instances', { method: 'DELETE' });
    expect((await invoke(hearth.url, 'pyreader')).json()).toMatchObject({ env: PASSWORD, file: CERT });
  });

  it('refuse deletion while a function uses them', async () => {
    const refused = await runCli(['secret', 'rm', 'db'], { url: hearth.url });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('is used by function default/');
  });

  it('finish, on the next start, a rotation that a crash interrupted', async () => {
    // A rotation that wrote its new key (the first step) and then died: the platform holds both keys on
    // start, re-seals what is left and renames the new key over the old.
    const platform = await startHearth({ dataDir: (await makeCrashDir()).dir });
    try {
      const listed = await api<{ items: { sealedUnder: string }[] }>(platform.url, '/api/v1/secrets');
      expect(listed.body.items).toHaveLength(1);
      expect(
        platform.log.some((line) =>
          String(line.msg).includes('finished an interrupted master key rotation: 1 secret'),
        ),
      ).toBe(true);
      const key = await readFile(join(platform.dataDir, 'master.key'), 'utf8');
      expect(key.trim()).toBe(nextKey);
      await expect(stat(join(platform.dataDir, 'master.key.next'))).rejects.toThrow();
    } finally {
      await platform.stop();
    }
  });
});

const nextKey = randomBytes(32).toString('hex');

/** A data dir with one secret, and a `master.key.next` as a rotation leaves it after its first step. */
async function makeCrashDir(): Promise<TempFolder> {
  const made = await makeFolder({});
  folders.push(made);
  const first = await startHearth({ dataDir: made.dir });
  const set = await runCli(['secret', 'set', 'db', '--from-literal', `password=${PASSWORD}`], {
    url: first.url,
  });
  expect(set.code, set.stderr).toBe(0);
  await first.stop('SIGKILL');
  await writeFile(join(made.dir, 'master.key.next'), `${nextKey}\n`, { mode: 0o600 });
  return made;
}
