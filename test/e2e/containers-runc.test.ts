/**
 * @module Container functions run by runc, the fallback OCI runtime (config `containerRuntime: runc`, or a
 * node without crun): a part of containers.test.ts again — the Go image serves, its walls hold (memory,
 * pids, read-only rootfs, no host loopback), and nothing of it is left once the platform stops.
 */

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTAINER_RUN_DIR } from '../../src/runtime/container/index.js';
import { goHttpImage } from '../support/container-images.mjs';
import {
  deployFolder,
  eventually,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
let goImage: string;
let hostServer: Server;
const folders: TempFolder[] = [];

async function deployOk(name: string, spec: string): Promise<void> {
  const folder = await makeFolder({ 'hearth.yaml': manifest(name, spec) });
  folders.push(folder);
  const deployed = await deployFolder(hearth.url, folder.dir, { name });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
}

/** runc processes (its `run` and its `init`) started by this platform's supervisors: their parent's parent. */
function runcProcesses(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(CONTAINER_RUN_DIR) && /(^|\/)runc\0/.test(cmdline)) pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

beforeAll(async () => {
  goImage = goHttpImage();
  hostServer = createServer((_, response) => response.end('host'));
  await new Promise<void>((resolve) => hostServer.listen(0, '127.0.0.1', resolve));
  const config = join(mkdtempSync(join(tmpdir(), 'hearth-runc-')), 'config.yaml');
  writeFileSync(config, 'images: { localDirs: true }\ncontainerRuntime: runc\n');
  hearth = await startHearth({ args: ['--config', config] });
}, 900_000);

afterAll(async () => {
  await hearth?.stop();
  hostServer?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('runc', () => {
  it('runs the Go image: it answers, and its image config and spec env apply', async () => {
    await deployOk('runc-go', `{ runtime: image, image: "dir:${goImage}", env: { EXTRA: "yes" } }`);
    const hello = await invoke(hearth.url, 'runc-go', { path: '/x' });
    expect(hello.status, hello.text).toBe(200);
    expect(hello.text).toBe('hello from go GET /x args=\n');
    const env = (await invoke(hearth.url, 'runc-go', { path: '/env' })).json() as Record<string, string>;
    expect(env).toMatchObject({ PORT: '8080', GREETING: 'from the image', EXTRA: 'yes' });
    expect(runcProcesses().length).toBeGreaterThan(0);
  });

  it('holds the walls: memory, pids, a read-only rootfs, no host loopback', async () => {
    await deployOk('runc-mem', `{ runtime: image, image: "dir:${goImage}", limits: { memory: 64Mi } }`);
    const bomb = await invoke(hearth.url, 'runc-mem', { path: '/alloc' });
    expect(bomb.status).toBe(502);
    expect((bomb.json() as { error: { code: string } }).error.code).toBe('HEARTH_E_FN_OOM');
    await deployOk('runc-walls', `{ runtime: image, image: "dir:${goImage}", limits: { pids: 32 } }`);
    const fork = await invoke(hearth.url, 'runc-walls', { path: '/fork' });
    expect(Number(/started=(\d+)/.exec(fork.text)?.[1])).toBeLessThan(32);
    expect((await invoke(hearth.url, 'runc-walls', { path: '/rootfs' })).text).toMatch(
      /read-only file system/,
    );
    const port = (hostServer.address() as AddressInfo).port;
    const dial = await invoke(hearth.url, 'runc-walls', { path: `/dial?to=127.0.0.1:${port}` });
    expect(dial.text).toMatch(/connection refused/);
  });

  it('leaves nothing once the platform stops', async () => {
    const running = runcProcesses();
    expect(instanceCgroups(hearth.dataDir).length).toBeGreaterThan(0);
    await hearth.stop();
    await eventually('every runc process to end', () =>
      running.every((pid) => !existsSync(`/proc/${pid}`)) ? true : undefined,
    );
    expect(readdirSync(CONTAINER_RUN_DIR)).toEqual([]);
    // runc makes the instance's cgroup in every controller; none of them stays.
    await eventually('every container cgroup to be removed', () =>
      instanceCgroups(hearth.dataDir).length === 0 ? true : undefined,
    );
  });
});

/** Instance cgroups of this platform in any controller (sandbox/cgroups.ts names the platform's folder). */
function instanceCgroups(dataDir: string): string[] {
  const platform = createHash('sha256')
    .update(join(dataDir, 'run', 'containers'))
    .digest('hex')
    .slice(0, 12);
  return readdirSync('/sys/fs/cgroup').flatMap((controller) => {
    const root = join('/sys/fs/cgroup', controller, 'hearth', platform);
    return existsSync(root)
      ? readdirSync(root, { withFileTypes: true })
          .filter((entry) => entry.isDirectory())
          .map((entry) => join(root, entry.name))
      : [];
  });
}
