/**
 * @module Garbage collection on the real platform (issue 11): a deleted function's code package is deleted
 * once the grace period has passed, with the freed bytes in the platform log; a deployed function keeps its
 * package and still answers. The grace period and interval are shortened through the platform config.
 */

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  api,
  copyFixture,
  deployFolder,
  eventually,
  functionApiPath,
  getFunction,
  type Hearth,
  invoke,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { configFile } from '../support/load.js';

let hearth: Hearth;
let config: Awaited<ReturnType<typeof configFile>>;
const folders: TempFolder[] = [];

beforeAll(async () => {
  config = await configFile({ gc: { grace: '3s', interval: '500ms' } });
  hearth = await startHearth({ args: ['--config', config.path] });
});

afterAll(async () => {
  await hearth?.stop();
  await config?.cleanup();
  for (const folder of folders) await folder.cleanup();
});

/** Deploys node-esm-named as `name`, its code made distinct by a marker file; returns its code hash. */
async function deploy(name: string, version: string): Promise<string> {
  const folder = await copyFixture('node-esm-named', {
    'hearth.yaml': manifest(name, '{ runtime: node20, handler: src/app.handler }'),
    'src/marker.txt': `${name} ${version}\n`,
  });
  folders.push(folder);
  const { status, body } = await deployFolder(hearth.url, folder.dir, { name });
  expect(status, JSON.stringify(body)).toBe(200);
  const detail = await getFunction(hearth.url, name);
  if (detail === undefined) throw new Error(`${name} is not deployed`);
  return detail.code.hash;
}

describe('garbage collection', () => {
  it("deletes a removed function's package after the grace period and logs the bytes freed", async () => {
    const goneHash = await deploy('gc-gone', '1');
    const keptHash = await deploy('gc-kept', '1');
    const packageOf = (hash: string) => join(hearth.dataDir, 'packages', `${hash}.tar.gz`);
    expect(existsSync(packageOf(goneHash))).toBe(true);

    const removed = await api(hearth.url, functionApiPath('gc-gone'), { method: 'DELETE' });
    expect(removed.status).toBeLessThan(300);
    const line = await eventually(
      'a garbage collection that frees the package',
      () =>
        hearth.log.find(
          (entry) =>
            entry.msg === 'garbage collected' && typeof entry.packages === 'number' && entry.packages >= 1,
        ),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(line.freedBytes).toEqual(expect.any(Number));
    expect(Number(line.freedBytes)).toBeGreaterThan(0);
    expect(String(line.freed)).toMatch(/\d/);
    expect(existsSync(packageOf(goneHash))).toBe(false);

    // The deployed function keeps its package, through several collections, and answers.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(existsSync(packageOf(keptHash))).toBe(true);
    const answer = await invoke(hearth.url, 'gc-kept', { method: 'POST', body: '{"item":"x"}' });
    expect(answer.status).toBe(201);
  });
});
