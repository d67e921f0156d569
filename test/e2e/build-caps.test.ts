/**
 * @module Dependency builds inside their caps (issue 10): a build's processes share one cgroup with a
 * memory cap (`build.memory`) and a CPU cap (`build.cpu`); a build that hits the memory cap fails with one
 * line naming it, and the platform carries on.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  deployFolder,
  FIXTURES,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
const folders: TempFolder[] = [];

/** node-deps with a postinstall script of its own (run with build.scripts). */
async function withPostinstall(name: string, script: string): Promise<TempFolder> {
  const packageJson = JSON.parse(readFileSync(join(FIXTURES, 'node-deps', 'package.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  packageJson.scripts = { postinstall: `node -e ${JSON.stringify(script)}` };
  const folder = await copyFixture('node-deps', {
    'hearth.yaml': manifest(name, '{ runtime: node20, build: { scripts: true } }'),
    'package.json': JSON.stringify(packageJson, null, 2),
  });
  folders.push(folder);
  return folder;
}

beforeAll(async () => {
  const config = await makeFolder({ 'hearth.config.yaml': 'build: { memory: 256Mi, cpu: "0.5" }\n' });
  folders.push(config);
  hearth = await startHearth({ args: ['--config', join(config.dir, 'hearth.config.yaml')] });
}, 60_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('dependency build caps', () => {
  it('a build past build.memory fails with one line naming the cap; the platform carries on', async () => {
    // 64 MiB at a time, every page written, up to 4 GiB: far past the 256Mi cap.
    const folder = await withPostinstall(
      'build-bomb',
      'const held = []; for (let i = 0; i < 64; i++) held.push(Buffer.alloc(64 * 1024 * 1024, 1)); console.log("survived")',
    );
    const deployed = await deployFolder(hearth.url, folder.dir, { name: 'build-bomb' });
    const error = (deployed.body as { error?: { code: string; message: string } }).error;
    expect(deployed.status, JSON.stringify(deployed.body)).toBeGreaterThanOrEqual(400);
    expect(error?.code).toBe('HEARTH_E_BUILD_FAILED');
    expect(error?.message).toContain("ran out of memory: the build's cap is 256Mi (build.memory)");
    expect(error?.message.split('\n')).toHaveLength(1);
    expect((await fetch(`${hearth.url}/healthz`)).status).toBe(200);
  }, 120_000);

  it('a build within its caps builds, held to build.cpu', async () => {
    // Spins for 1.5 s of wall time and reports the CPU it got: 0.5 of a core at most.
    const folder = await withPostinstall(
      'build-spin',
      'const start = Date.now(), before = process.cpuUsage(); while (Date.now() - start < 1500) Math.sqrt(Math.random()); const used = process.cpuUsage(before); require("fs").writeFileSync("node_modules/.spin.json", JSON.stringify({ share: (used.user + used.system) / 1000 / (Date.now() - start) }))',
    );
    await import('node:fs/promises').then((fs) =>
      fs.writeFile(
        join(folder.dir, 'index.mjs'),
        `import { readFileSync } from 'node:fs';
export default async function handler() {
  return JSON.parse(readFileSync(new URL('../node_modules/.spin.json', import.meta.url), 'utf8'));
}
`,
      ),
    );
    const deployed = await deployFolder(hearth.url, folder.dir, { name: 'build-spin' });
    expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
    const answer = await invoke(hearth.url, 'build-spin');
    expect(answer.status, answer.text).toBe(200);
    expect((answer.json() as { share: number }).share).toBeLessThan(0.75);
  }, 120_000);
});
