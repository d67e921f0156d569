/**
 * @module Container functions behind the same walls as sandboxed ones (issue 17, the second half): a static
 * Go image built here (test/fixtures/containers/go-http) probes them from inside, through the real platform.
 *
 * - Networks as the sandbox's: egress `none` (no network), `allow` (a namespace of its own linked by
 *   slirp4netns, out to other addresses, never the host's loopback) and an allow-list (only the listed
 *   host:port, reached through `host-gateway`, names from hostAliases in /etc/hosts); nothing of them
 *   (slirp4netns, namespaces) is left once the platform stops.
 * - Secrets: `spec.secrets` env and mountPath files reach the container's environment and
 *   $HEARTH_SECRETS_DIR; `spec.encryption` (SM4-GCM) bodies are opened and sealed around it; the platform's
 *   own entries (the SM4 key, the secret files' transport) never reach the container.
 * - The abuse suite's probes: a memory bomb, a fork bomb, /tmp fill, /proc/1/environ, mount, ptrace, raw
 *   and packet sockets, new user namespaces.
 * - Pre-made containers per image: two image functions each keep a stem cell whose container is made ahead.
 */

import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTAINER_RUN_DIR } from '../../src/runtime/container/index.js';
import { goHttpImage } from '../support/container-images.mjs';
import { type ContainerPlatform, startContainerPlatform } from '../support/containers.js';
import {
  api,
  deployFolder,
  eventually,
  functionLogs,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  runCli,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

const PASSWORD = 'container-secret-password-4711';
/** In the platform's own environment: no container may read it. */
const PLATFORM_SECRET = 'platform-env-secret-0815';
const CERT = '-----BEGIN CERT----- container -----END CERT-----';

let platform: ContainerPlatform;
let hearth: Hearth;
let goImage: string;
/** The same image in another folder: a second image, as the platform tells them apart. */
let otherImage: string;
let recorder: Recorder;
/** A service on the host's loopback that no container function may reach. */
let hostPort: number;
let keyFile: string;
const folders: TempFolder[] = [];
/** Copies of the image made by the suite, removed at its end. */
const imageCopies: string[] = [];

/** The Go image again in a folder of its own: another image, as the platform tells `dir:` images apart. */
function copyOfImage(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  imageCopies.push(dir);
  cpSync(goImage, join(dir, 'image'), { recursive: true });
  return join(dir, 'image');
}

const deployOk = (name: string, spec: string, query?: string): Promise<void> =>
  platform.deployOk(name, spec, query);

async function probe(name: string, path: string): Promise<string> {
  const answer = await invoke(hearth.url, name, { path });
  expect(answer.status, answer.text).toBe(200);
  return answer.text;
}

/** slirp4netns processes the platform started (its children). */
function slirpChildren(platformPid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === platformPid && readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'slirp4netns')
        pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Processes running a prepared container's helper (the static busybox waiting for its go signal). */
function preparedContainers(): number {
  let count = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.startsWith('/dev/.hearth/busybox\0sh\0')) count += 1;
    } catch {
      // Gone meanwhile.
    }
  }
  return count;
}

/**
 * Removes the go fifo of every container made ahead, from each supervisor's private tmpfs (seen through
 * /proc/PID/root, its mount namespace); returns how many were removed.
 */
function removePreparedGoSignals(): number {
  let removed = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fifo = `/proc/${entry}/root${CONTAINER_RUN_DIR}/helper/go`;
    try {
      rmSync(fifo);
      removed += 1;
    } catch {
      // Not a supervisor's namespace, gone meanwhile, or removed through another process of the same one.
    }
  }
  return removed;
}

beforeAll(async () => {
  goImage = goHttpImage();
  otherImage = copyOfImage('hearth-other-image-');
  recorder = await startRecorder();
  platform = await startContainerPlatform({ env: { HEARTH_TEST_PLATFORM_SECRET: PLATFORM_SECRET } });
  hearth = platform.hearth;
  hostPort = platform.hostPort;
  const keys = await makeFolder({ 'sm4.key': `${'ab'.repeat(16)}\n`, cert: CERT });
  folders.push(keys);
  keyFile = join(keys.dir, 'sm4.key');
  const set = await runCli(
    [
      'secret',
      'set',
      'db',
      '--from-literal',
      `password=${PASSWORD}`,
      '--from-file',
      `cert=${join(keys.dir, 'cert')}`,
      '--from-file',
      `sm4=${keyFile}`,
    ],
    { url: hearth.url },
  );
  expect(set.code, set.stderr).toBe(0);
}, 900_000);

afterAll(async () => {
  await platform?.stop();
  await recorder?.close();
  await Promise.all(folders.map((folder) => folder.cleanup()));
  for (const dir of imageCopies) rmSync(dir, { recursive: true, force: true });
});

describe('networks as the sandbox has them', () => {
  it('egress none: no network at all, the host loopback unreachable', async () => {
    await deployOk('net-none', `{ runtime: image, image: "dir:${goImage}" }`);
    expect(await probe('net-none', `/dial?to=127.0.0.1:${hostPort}`)).toMatch(/connection refused/);
    expect(await probe('net-none', `/dial?to=10.0.2.2:${hostPort}`)).toMatch(/network is unreachable/);
    expect(await probe('net-none', '/dial?to=192.0.2.1:80')).toMatch(/network is unreachable/);
  });

  it('egress allow: a network of its own that reaches out, never the host loopback', async () => {
    await deployOk('net-allow', `{ runtime: image, image: "dir:${goImage}", egress: allow }`);
    expect(await probe('net-allow', `/dial?to=127.0.0.1:${hostPort}`)).toMatch(/connection refused/);
    // slirp4netns's address for the host's loopback is refused (--disable-host-loopback).
    expect(await probe('net-allow', `/dial?to=10.0.2.2:${hostPort}`)).not.toMatch(/err=<nil>/);
    expect(await probe('net-allow', `/dial?to=127.0.0.1:${hearth.port}`)).toMatch(/connection refused/);
    // This machine's own address stands in for the outside world.
    const outside = await probe('net-allow', `/get?url=${recorder.functionUrl}/from-allow`);
    expect(outside).toBe('status=200\n');
    expect(recorder.received.map((request) => request.path)).toContain('/from-allow');
  });

  it('an allow-list: the listed host:port (named by hostAliases) passes, nothing else', async () => {
    const port = Number(new URL(recorder.url).port);
    await deployOk(
      'net-list',
      `{ runtime: image, image: "dir:${goImage}", egress: ["recorder:${port}"], hostAliases: { recorder: host-gateway } }`,
    );
    const listed = await probe('net-list', `/get?url=http://recorder:${port}/from-list`);
    expect(listed).toBe('status=200\n');
    expect(recorder.received.map((request) => request.path)).toContain('/from-list');
    const hosts = await probe('net-list', '/read?path=/etc/hosts');
    expect(hosts).toMatch(/^10\.0\.2\.2 recorder$/m);
    // A listening host port not on the list: refused by the namespace's rules, at once.
    expect(await probe('net-list', `/dial?to=10.0.2.2:${hostPort}`)).toMatch(/connection refused/);
    expect(await probe('net-list', `/dial?to=127.0.0.1:${hostPort}`)).toMatch(/connection refused/);
    expect(await probe('net-list', '/dial?to=192.0.2.1:80')).toMatch(/connection refused/);
  });

  it('refuses an allow-list naming nothing it can resolve, naming the field', async () => {
    const folder = await makeFolder({
      'hearth.yaml': manifest(
        'net-bad',
        `{ runtime: image, image: "dir:${goImage}", egress: ["nowhere.invalid:80"] }`,
      ),
    });
    folders.push(folder);
    const deployed = await deployFolder(hearth.url, folder.dir, { name: 'net-bad' });
    expect(deployed.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(deployed.body)).toContain('spec.egress');
  });
});

describe('secrets', () => {
  it('reach the container as env and as files in $HEARTH_SECRETS_DIR; SM4 bodies are opened and sealed around it', async () => {
    await deployOk(
      'go-secrets',
      `{ runtime: image, image: "dir:${goImage}", secrets: [{ name: db, env: { DB_PASSWORD: password }, mountPath: db }], encryption: { algorithm: sm4-gcm, key: { secret: db, key: sm4 } } }`,
    );
    const result = await runCli(
      ['invoke', 'go-secrets', '--encrypt', '--key-file', keyFile, '--path', '/env', '-d', '{}'],
      { url: hearth.url },
    );
    expect(result.code, result.stderr).toBe(0);
    const env = JSON.parse(result.stdout) as Record<string, string>;
    expect(env.DB_PASSWORD).toBe(PASSWORD);
    expect(env.HEARTH_SECRETS_DIR).toBe('/tmp/hearth-secrets');
    // The platform's own entries stay with the platform.
    for (const name of Object.keys(env))
      expect(name).not.toMatch(/^HEARTH_(SM4_KEY|SECRET_FILES|CONTAINER)$/);
    const file = await runCli(
      [
        'invoke',
        'go-secrets',
        '--encrypt',
        '--key-file',
        keyFile,
        '--path',
        '/read?path=/tmp/hearth-secrets/db/cert',
        '-d',
        '{}',
      ],
      { url: hearth.url },
    );
    expect(file.code, file.stderr).toBe(0);
    expect(file.stdout).toContain(CERT);
    // A body that is not sealed is refused before it reaches the container.
    const plain = await invoke(hearth.url, 'go-secrets', {
      path: '/env',
      method: 'POST',
      body: '{"a":1}',
      headers: { 'content-type': 'application/json' },
    });
    expect(plain.status).toBe(400);
    // Nothing of them is written on the host: the files live in the instance's own tmpfs.
    expect(readdirSync(CONTAINER_RUN_DIR)).toEqual([]);
    const leftovers = readdirSync(tmpdir()).filter((entry) => entry.startsWith('hearth-secrets-'));
    for (const entry of leftovers)
      expect(
        existsSync(join(tmpdir(), entry, 'db', 'cert')) &&
          readFileSync(join(tmpdir(), entry, 'db', 'cert'), 'utf8'),
      ).not.toBe(CERT);
  });
});

describe('walls (the abuse suite against the container class)', () => {
  it('a memory bomb is 502 HEARTH_E_FN_OOM naming the limit', async () => {
    await deployOk('abuse-mem', `{ runtime: image, image: "dir:${goImage}", limits: { memory: 64Mi } }`);
    const bomb = await invoke(hearth.url, 'abuse-mem', { path: '/alloc' });
    expect(bomb.status).toBe(502);
    const error = (bomb.json() as { error: { code: string; message: string } }).error;
    expect(error.code).toBe('HEARTH_E_FN_OOM');
    expect(error.message).toMatch(/limits\.memory is 64 ?Mi/);
  });

  it('a fork bomb stops at limits.pids and /tmp fills only to limits.tmp', async () => {
    await deployOk(
      'abuse-walls',
      `{ runtime: image, image: "dir:${goImage}", limits: { pids: 32, tmp: 4Mi } }`,
    );
    const fork = await probe('abuse-walls', '/fork');
    expect(Number(/started=(\d+)/.exec(fork)?.[1])).toBeLessThan(32);
    const fill = await probe('abuse-walls', '/tmpfill');
    expect(fill).toMatch(/no space left on device/);
    expect(Number(/written=(\d+)/.exec(fill)?.[1])).toBeLessThanOrEqual(4 * 1024 ** 2);
  });

  it('/proc/1/environ is its own; mount, ptrace, raw and packet sockets, new user namespaces are refused', async () => {
    await deployOk('abuse-probe', `{ runtime: image, image: "dir:${goImage}" }`);
    const environ = await probe('abuse-probe', '/read?path=/proc/1/environ');
    expect(environ).toContain('PORT=8080');
    expect(environ).not.toMatch(/HEARTH_CONTAINER|HEARTH_SM4_KEY|HEARTH_SECRET_FILES|hearth-e2e-/);
    expect(environ).not.toContain(PLATFORM_SECRET);
    for (const what of ['mount', 'ptrace', 'raw', 'packet', 'unshare'])
      expect({ what, answer: await probe('abuse-probe', `/probe?what=${what}`) }).toEqual({
        what,
        answer: expect.stringMatching(/operation not permitted|permission denied|no such process/),
      });
  });

  it('sees no host pid, no /sys, only harmless devices, and no host path in its mounts', async () => {
    const entries = (listing: string) =>
      listing
        .split('\n')
        .slice(1)
        .filter((name) => name !== '');
    const pids = entries(await probe('abuse-probe', '/ls?path=/proc')).filter((name) => /^\d+$/.test(name));
    expect(pids.length).toBeLessThanOrEqual(4);
    expect(pids).not.toContain(String(hearth.process.pid));
    expect(entries(await probe('abuse-probe', '/ls?path=/sys'))).toEqual([]);
    for (const device of entries(await probe('abuse-probe', '/ls?path=/dev')))
      expect([
        '.hearth',
        'full',
        'mqueue',
        'null',
        'ptmx',
        'pts',
        'random',
        'shm',
        'tty',
        'urandom',
        'zero',
        'console',
        'core',
        'fd',
        'stdin',
        'stdout',
        'stderr',
      ]).toContain(device);
    expect(await probe('abuse-probe', '/read?path=/dev/kmsg')).not.toMatch(/err=<nil>/);
    expect(await probe('abuse-probe', '/read?path=/dev/mem')).not.toMatch(/err=<nil>/);
    const mounts = await probe('abuse-probe', '/read?path=/proc/self/mountinfo');
    expect(mounts).not.toContain(hearth.dataDir);
    expect(mounts).not.toContain(process.cwd());
  });
});

describe('pre-made containers per image', () => {
  it('two container functions of two images alternating each keep a container made ahead', async () => {
    await deployOk('image-a', `{ runtime: image, image: "dir:${goImage}", egress: allow }`);
    await deployOk('image-b', `{ runtime: image, image: "dir:${otherImage}", egress: allow }`);
    for (const name of ['image-a', 'image-b', 'image-a', 'image-b'])
      expect((await invoke(hearth.url, name)).status).toBe(200);
    const pools = async () =>
      (
        await api<{ node: { stemCells: { image?: string; ready: number; network: string }[] } }>(
          hearth.url,
          '/api/v1/stats',
        )
      ).body.node.stemCells.filter((pool) => pool.network === 'outbound' && pool.image !== undefined);
    await eventually('a ready stem cell per image', async () => {
      const ready = (await pools()).filter((pool) => pool.ready > 0).map((pool) => pool.image);
      return ready.includes(`dir:${goImage}`) && ready.includes(`dir:${otherImage}`) ? true : undefined;
    });
    expect(preparedContainers()).toBeGreaterThanOrEqual(2);
  });

  it('keeps the pools of at most 4 images, the one unused longest going first', async () => {
    const third = copyOfImage('hearth-third-image-');
    await deployOk('image-c', `{ runtime: image, image: "dir:${third}", egress: allow }`);
    expect((await invoke(hearth.url, 'image-c')).status).toBe(200);
    const stats = await api<{ node: { stemCells: { image?: string; network: string }[] } }>(
      hearth.url,
      '/api/v1/stats',
    );
    const imagePools = stats.body.node.stemCells.filter((pool) => pool.image !== undefined);
    // Five image pools were used (none, outbound and filtered of the first image; the other two): 4 stay.
    expect(imagePools.length).toBeLessThanOrEqual(4);
    expect(imagePools.map((pool) => `${pool.image} ${pool.network}`)).toEqual(
      expect.arrayContaining([
        `dir:${third} outbound`,
        `dir:${otherImage} outbound`,
        `dir:${goImage} outbound`,
      ]),
    );
  });
});

describe('a pre-made container that cannot be used', () => {
  it('is replaced by one made at bind: the cold start serves, and the function logs say why', async () => {
    await deployOk(
      'image-fallback',
      `{ runtime: image, image: "dir:${goImage}", egress: allow }`,
      '?verify=false',
    );
    // The instance the autoscaler keeps warm after a deploy goes: the request below needs a cold start.
    await eventually('the instance kept warm after the deploy', () =>
      hearth.log.some((line) => line.function === 'default/image-fallback' && line.msg === 'instance started')
        ? true
        : undefined,
    );
    await eventually('a ready stem cell with a container made ahead', async () => {
      const stats = await api<{ node: { stemCells: { image?: string; ready: number; network: string }[] } }>(
        hearth.url,
        '/api/v1/stats',
      );
      const pool = stats.body.node.stemCells.find(
        (entry) => entry.network === 'outbound' && entry.image === `dir:${goImage}`,
      );
      return (pool?.ready ?? 0) > 0 && preparedContainers() > 0 ? true : undefined;
    });
    await api(hearth.url, '/api/v1/namespaces/default/functions/image-fallback/instances', {
      method: 'DELETE',
    });
    // The function's pool (the image's, with egress): the image has a pool without network too.
    const functionsPool = async (): Promise<{
      ready: number;
      starting: number;
      taken: number;
      misses: number;
    }> => {
      const stats = await api<{
        node: {
          stemCells: {
            image?: string;
            network: string;
            ready: number;
            starting: number;
            taken: number;
            misses: number;
          }[];
        };
      }>(hearth.url, '/api/v1/stats');
      const pool = stats.body.node.stemCells.find(
        (entry) => entry.network === 'outbound' && entry.image === `dir:${goImage}`,
      );
      return pool ?? { ready: 0, starting: 0, taken: 0, misses: 0 };
    };
    // No cell still booting: one that came ready after the signals went would make its container anew.
    await eventually('the image pool at rest', async () => {
      const pool = await functionsPool();
      return pool.starting === 0 && pool.ready > 0 && preparedContainers() > 0 ? true : undefined;
    });
    const before = await functionsPool();
    // Every prepared container's go signal is gone: a bind can no longer start anything in one. (A helper that
    // had not opened its signal yet ends instead: its cell's bind says so too.)
    expect(removePreparedGoSignals()).toBeGreaterThan(0);
    const answer = await invoke(hearth.url, 'image-fallback');
    expect(answer.status, answer.text).toBe(200);
    // The cold start took one of the cells ready before the signals went (the oldest goes first), not a cell
    // booted for it since: that one's container would have its signal.
    expect(await functionsPool(), 'the cold start took a ready cell').toMatchObject({
      taken: before.taken + 1,
      misses: before.misses,
    });
    // Not a failed start the scheduler had to make up for (and its circuit breaker counted).
    const failedStarts = hearth.log
      .map((line) => JSON.stringify(line))
      .filter((line) => line.includes('image-fallback') && line.includes('failed to start'));
    expect(failedStarts).toEqual([]);
    await eventually('the fallback in the function logs', async () => {
      const logs = await functionLogs(hearth.url, 'image-fallback');
      return logs.some((log) => log.message.includes('the container made ahead could not be used'))
        ? true
        : undefined;
    });
  });
});

describe('leaving nothing behind', () => {
  it('stops every slirp4netns and network namespace with the platform', async () => {
    const platformPid = hearth.process.pid as number;
    const slirps = slirpChildren(platformPid);
    // net-allow, net-list, image-a and image-b at least, and their stem cells.
    expect(slirps.length).toBeGreaterThanOrEqual(4);
    await hearth.stop();
    await eventually('every slirp4netns to end', () =>
      slirps.every((pid) => !existsSync(`/proc/${pid}`)) ? true : undefined,
    );
    expect(readdirSync(CONTAINER_RUN_DIR)).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(CONTAINER_RUN_DIR);
  });
});
