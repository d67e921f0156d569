/**
 * @module Container functions run by runc, the fallback OCI runtime (config `containerRuntime: runc`, or a
 * node without crun): a part of containers.test.ts again — the Go image serves, its walls hold (memory,
 * pids, read-only rootfs, no host loopback), and nothing of it is left once the platform stops.
 */

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTAINER_RUN_DIR } from '../../src/runtime/container/index.js';
import { goHttpImage } from '../support/container-images.mjs';
import { type ContainerPlatform, containerCgroups, startContainerPlatform } from '../support/containers.js';
import { eventually, type Hearth, invoke } from '../support/hearth.js';

let platform: ContainerPlatform;
let hearth: Hearth;
let goImage: string;

const deployOk = (name: string, spec: string): Promise<void> => platform.deployOk(name, spec);

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
  platform = await startContainerPlatform({ extraConfig: 'containerRuntime: runc\n' });
  hearth = platform.hearth;
}, 900_000);

afterAll(async () => {
  await platform?.stop();
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
    const dial = await invoke(hearth.url, 'runc-walls', { path: `/dial?to=127.0.0.1:${platform.hostPort}` });
    expect(dial.text).toMatch(/connection refused/);
  });

  it('leaves nothing once the platform stops', async () => {
    const running = runcProcesses();
    expect(containerCgroups(hearth.dataDir).length).toBeGreaterThan(0);
    await hearth.stop();
    await eventually('every runc process to end', () =>
      running.every((pid) => !existsSync(`/proc/${pid}`)) ? true : undefined,
    );
    expect(readdirSync(CONTAINER_RUN_DIR)).toEqual([]);
    // runc makes the instance's cgroup in every controller; none of them stays.
    await eventually('every container cgroup to be removed', () =>
      containerCgroups(hearth.dataDir).length === 0 ? true : undefined,
    );
  });
});
