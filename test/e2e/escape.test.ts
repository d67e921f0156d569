/**
 * @module End-to-end escape suite (issue 21): what a hostile tenant tried from inside a function and from
 * inside its own dependency build, each against a real sandbox and a real build.
 */

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  deployFolder,
  FIXTURES,
  type Hearth,
  invoke,
  manifest,
  ROOT,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

/** What the build's install script wrote into the layer: each address it tried, and what happened. */
interface BuildProbe {
  connections: Record<string, string>;
  mountinfo: string;
  planted?: boolean;
  sawPlanted?: boolean;
}

let hearth: Hearth;
let listener: Server;
let listenerPort = 0;
/** Connections the host-side listener accepted: any one is a build that reached a host service. */
let accepted = 0;
const folders: TempFolder[] = [];

/** The host's own addresses: loopback, as slirp4netns shows it (10.0.2.2), and every interface's. */
function hostAddresses(): string[] {
  const external = Object.values(networkInterfaces())
    .flat()
    .filter((info) => info !== undefined && info.family === 'IPv4' && !info.internal)
    .map((info) => info?.address ?? '');
  return ['127.0.0.1', '10.0.2.2', ...external];
}

/**
 * A postinstall script (inline: a build sees only package.json and the lockfile) that tries every host
 * address on the listener's port and on the platform's own port, and writes what happened into the layer.
 */
function probeScript(ports: readonly number[], cache: 'plant' | 'look' | 'none'): string {
  const targets = hostAddresses().flatMap((host) => ports.map((port) => [host, port]));
  const code = `
const net = require('node:net'), fs = require('node:fs'), path = require('node:path');
const targets = ${JSON.stringify(targets)};
const marker = path.join(process.env.npm_config_cache || '/nonexistent', 'planted-by-another-tenant');
const result = { connections: {}, mountinfo: fs.readFileSync('/proc/self/mountinfo', 'utf8') };
if (${JSON.stringify(cache)} === 'plant') { fs.writeFileSync(marker, 'x'); result.planted = true; }
if (${JSON.stringify(cache)} === 'look') result.sawPlanted = fs.existsSync(marker);
const tryOne = ([host, port]) => new Promise((done) => {
  const socket = net.connect({ host, port, timeout: 2000 });
  const finish = (outcome) => { socket.destroy(); result.connections[host + ':' + port] = outcome; done(); };
  socket.once('connect', () => finish('connected'));
  socket.once('error', (error) => finish(error.code || error.message));
  socket.once('timeout', () => finish('TIMEOUT'));
});
Promise.all(targets.map(tryOne)).then(() =>
  fs.writeFileSync(path.join('node_modules', '.hearth-probe.json'), JSON.stringify(result)));
`;
  return `node -e ${JSON.stringify(code.replace(/\n/g, ' '))}`;
}

/** A function with a registry dependency (ms) whose own postinstall runs the probe. */
async function probeFunction(
  name: string,
  options: { scripts: boolean | undefined; cache: 'plant' | 'look' | 'none'; namespace?: string },
): Promise<TempFolder> {
  const build = options.scripts === undefined ? '' : `, build: { scripts: ${options.scripts} }`;
  const packageJson = JSON.parse(readFileSync(join(FIXTURES, 'node-deps', 'package.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  packageJson.scripts = { postinstall: probeScript([listenerPort, hearth.port], options.cache) };
  const folder = await copyFixture('node-deps', {
    'hearth.yaml': manifest(
      name,
      `{ runtime: node20${build} }`,
      options.namespace === undefined ? '' : `namespace: ${options.namespace}`,
    ),
    'package.json': JSON.stringify(packageJson, null, 2),
    'index.mjs': `import { existsSync, readFileSync } from 'node:fs';
import ms from 'ms';
const probe = new URL('../node_modules/.hearth-probe.json', import.meta.url);
export default async function handler() {
  return { ms: ms('1s'), probe: existsSync(probe) ? JSON.parse(readFileSync(probe, 'utf8')) : null };
}
`,
  });
  folders.push(folder);
  return folder;
}

async function deployAndAsk(
  folder: TempFolder,
  name: string,
  namespace = 'default',
): Promise<{ ms: number; probe: BuildProbe | null }> {
  const deployed = await deployFolder(hearth.url, folder.dir, { name, namespace });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  const answer = await invoke(hearth.url, namespace === 'default' ? name : `${name}.${namespace}`);
  expect(answer.status, answer.text).toBe(200);
  return answer.json() as { ms: number; probe: BuildProbe | null };
}

beforeAll(async () => {
  listener = createServer((socket) => {
    accepted++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '0.0.0.0', resolve));
  const address = listener.address();
  listenerPort = typeof address === 'object' && address !== null ? address.port : 0;
  hearth = await startHearth();
});

afterAll(async () => {
  await hearth?.stop();
  await new Promise<void>((resolve) => listener?.close(() => resolve()));
  for (const folder of folders) await folder.cleanup();
});

describe('inside a function', () => {
  let walls: TempFolder;

  beforeAll(async () => {
    // With a dependency layer, so the layer's mount is listed in mountinfo too.
    walls = await copyFixture('node-deps', {
      'hearth.yaml': manifest('escape-walls', '{ runtime: node20 }'),
      'index.mjs': `import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
export default async function handler() {
  const unshare = spawnSync('unshare', ['-U', '-r', '-m', '/bin/sh', '-c', 'mount -t tmpfs none /tmp && echo mounted'], { encoding: 'utf8' });
  return {
    unshare: { status: unshare.status, stdout: unshare.stdout, stderr: unshare.stderr, error: unshare.error?.code },
    mountinfo: readFileSync('/proc/self/mountinfo', 'utf8'),
  };
}
`,
    });
    folders.push(walls);
    const deployed = await deployFolder(hearth.url, walls.dir, { name: 'escape-walls' });
    expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  });

  it('cannot create a user namespace (unshare -U -r), so cannot become root in one and mount', async () => {
    const answer = (await invoke(hearth.url, 'escape-walls')).json() as {
      unshare: { status: number | null; stdout: string; stderr: string };
    };
    expect(answer.unshare.stdout).not.toContain('mounted');
    expect(answer.unshare.status).not.toBe(0);
    expect(answer.unshare.stderr).toMatch(/unshare failed|Operation not permitted|No space left/i);
  });

  it('/proc/self/mountinfo names neither the data dir nor the checkout the platform runs from', async () => {
    const answer = (await invoke(hearth.url, 'escape-walls')).json() as { mountinfo: string };
    expect(answer.mountinfo).toContain(' /code ');
    expect(answer.mountinfo).toContain(' /code/node_modules ');
    expect(answer.mountinfo).not.toContain(hearth.dataDir);
    expect(answer.mountinfo).not.toContain(ROOT.replace(/\/$/, ''));
  });
});

describe('inside a dependency build', () => {
  it('install scripts do not run unless the function opts in (build.scripts)', async () => {
    const folder = await probeFunction('escape-noscripts', { scripts: undefined, cache: 'none' });
    const answer = await deployAndAsk(folder, 'escape-noscripts');
    expect(answer.ms).toBe(1000);
    expect(answer.probe).toBeNull();
  });

  it('an opted-in install script reaches no host service: not loopback, not the platform, not the host', async () => {
    const folder = await probeFunction('escape-build-net', { scripts: true, cache: 'none' });
    const answer = await deployAndAsk(folder, 'escape-build-net');
    // The registry dependency installed: the build's network reaches the registry...
    expect(answer.ms).toBe(1000);
    // ...and the script ran, but every host address refused it.
    expect(answer.probe).not.toBeNull();
    const outcomes = Object.entries(answer.probe?.connections ?? {});
    expect(outcomes.length).toBeGreaterThanOrEqual(4);
    for (const [target, outcome] of outcomes) expect(`${target} ${outcome}`).not.toMatch(/connected$/);
    expect(accepted).toBe(0);
  });

  it("an install script's /proc/self/mountinfo names neither the data dir nor the checkout", async () => {
    const folder = await probeFunction('escape-build-mounts', { scripts: true, cache: 'none' });
    const mountinfo = (await deployAndAsk(folder, 'escape-build-mounts')).probe?.mountinfo ?? '';
    expect(mountinfo).toContain(' /build ');
    expect(mountinfo).toContain(' /cache ');
    expect(mountinfo).not.toContain(hearth.dataDir);
    expect(mountinfo).not.toContain(ROOT.replace(/\/$/, ''));
  });

  it('a pip build reaches PyPI from its own network namespace', async () => {
    const folder = await copyFixture('py-deps', {
      'hearth.yaml': manifest('escape-py-deps', '{ runtime: python3 }'),
    });
    folders.push(folder);
    const deployed = await deployFolder(hearth.url, folder.dir, { name: 'escape-py-deps' });
    expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
    expect((await invoke(hearth.url, 'escape-py-deps')).json()).toEqual({ six: '1.16.0', text: 'ok' });
  });

  it("a build in one namespace cannot plant a file in the package cache that another namespace's build sees", async () => {
    const planter = await probeFunction('escape-plant', {
      scripts: true,
      cache: 'plant',
      namespace: 'tenant-a',
    });
    expect((await deployAndAsk(planter, 'escape-plant', 'tenant-a')).probe?.planted).toBe(true);

    const victim = await probeFunction('escape-victim', {
      scripts: true,
      cache: 'look',
      namespace: 'tenant-b',
    });
    expect((await deployAndAsk(victim, 'escape-victim', 'tenant-b')).probe?.sawPlanted).toBe(false);
  });
});
