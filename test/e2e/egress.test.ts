/**
 * @module Egress allow-lists and hostAliases enforced in the sandbox's own network namespace, Redis as
 * the state store (REDIS_URL injected), and the seed's Python session/cart handler, unchanged, against a
 * real Redis on this machine reached as `redis-master`.
 */

import { readlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childrenNamed, cpuCgroupOf } from '../support/cgroups.js';
import {
  copyFixture,
  deployFolder,
  errorLines,
  FIXTURES,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  runCli,
  STACK_FRAME,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type RunningRedis, startRedis } from '../support/redis.js';

/** Dials each `[label, host, port]` of `?targets=` and says what happened; its network namespace too. */
const DIAL = `
import { readFileSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';
const dial = (host, port) => new Promise((resolve) => {
  const socket = connect({ host, port, timeout: 3000 });
  const done = (outcome) => { socket.destroy(); resolve(outcome); };
  socket.once('connect', () => done('connected'));
  socket.once('timeout', () => done('timeout'));
  socket.once('error', (error) => done(error.code ?? error.message));
});
export default async function handler(event) {
  const results = {};
  for (const [label, host, port] of JSON.parse(event.query.targets)) results[label] = await dial(host, port);
  return {
    results,
    hosts: readFileSync('/etc/hosts', 'utf8'),
    redisUrl: process.env.REDIS_URL ?? null,
    netns: readlinkSync('/proc/self/ns/net'),
  };
}
`;

/** This machine's first non-loopback IPv4 address: "outside" for a function's network namespace. */
function hostAddress(): string {
  for (const infos of Object.values(networkInterfaces()))
    for (const info of infos ?? []) if (info.family === 'IPv4' && !info.internal) return info.address;
  throw new Error('this machine has no non-loopback IPv4 address');
}

/** The seed's code says `port=6379`; it runs unchanged, so its Redis listens there. */
const SEED_PORT = 6379;

let redis: RunningRedis;
let client: Redis;
let hearth: Hearth;
let configDir: string;
let open: Server;
let openPort: number;

beforeAll(async () => {
  redis = await startRedis(SEED_PORT);
  client = new Redis(redis.url);
  // A port that is listening on the host: reachable in principle, so a refusal is the allow-list's doing.
  open = createServer((socket) => socket.end());
  await new Promise<void>((resolve) => open.listen(0, '127.0.0.1', resolve));
  const address = open.address();
  openPort = typeof address === 'object' && address !== null ? address.port : 0;
  configDir = await mkdtemp(join(tmpdir(), 'hearth-egress-'));
  const config = join(configDir, 'hearth.yaml');
  await writeFile(config, `state: { redis: { url: "${redis.url}" } }\n`);
  hearth = await startHearth({ args: ['--config', config] });
}, 240_000);

afterAll(async () => {
  await hearth?.stop();
  client?.disconnect();
  await redis?.stop();
  await new Promise((resolve) => open?.close(resolve));
  await rm(configDir, { recursive: true, force: true });
});

describe('egress allow-list', () => {
  it('lets the listed host:port through and refuses everything else at once', async () => {
    const { status, body } = await deployFolder(hearth.url, join(FIXTURES, 'node-egress'), {
      name: 'node-egress',
    });
    expect(status, JSON.stringify(body)).toBe(200);
    const response = await invoke(hearth.url, 'node-egress', { path: `?open=${openPort}` });
    expect(response.status, response.text).toBe(200);
    const answer = response.json() as {
      tamper: { status: number | null };
      results: Record<string, { outcome: string; ms: number }>;
      dns: string;
      hosts: string;
      redisUrl: string;
    };
    expect(answer.tamper.status, 'nft flush ruleset inside the sandbox').not.toBe(0);
    expect(answer.results.allowed?.outcome).toBe('connected');
    // A listening host port not on the list: refused by the sandbox's rules, not left to time out.
    expect(answer.results.openButNotListed?.outcome).toBe('ECONNREFUSED');
    expect(answer.results.openButNotListed?.ms).toBeLessThan(1000);
    expect(answer.results.aliasNotListed?.outcome).toBe('ECONNREFUSED');
    // No resolver inside: names resolve only through /etc/hosts.
    expect(['ENOTFOUND', 'EAI_AGAIN']).toContain(answer.dns);
    expect(answer.hosts).toMatch(/^10\.0\.2\.2 redis-master$/m);
    expect(answer.hosts).toMatch(/^10\.0\.2\.2 host\.hearth\.internal$/m);
    // REDIS_URL points at the platform's Redis as this sandbox reaches it.
    expect(answer.redisUrl).toBe(`redis://host.hearth.internal:${SEED_PORT}`);
    // Its slirp4netns carries this sandbox's traffic alone: born in the sandbox's cpu cgroup, so the CPU it
    // spends counts against the function's quota, never in the platform's (ten times a sandbox's weight).
    const slirps = childrenNamed(hearth.process.pid ?? 0, 'slirp4netns');
    expect(slirps.length).toBeGreaterThan(0);
    for (const pid of slirps) {
      const cgroup = cpuCgroupOf(pid) ?? '';
      expect(cgroup).toMatch(/^\/hearth\/[0-9a-f]{12}\/[^/]+$/);
      expect(cgroup).not.toMatch(/\/(platform-\d+|helpers)$/);
    }
  });

  it('gives egress: allow a network of its own: out to other addresses, never to the host loopback', async () => {
    // A service on this machine's own (non-loopback) address stands in for the outside world.
    const outside = createServer((socket) => socket.end());
    const ownAddress = hostAddress();
    await new Promise<void>((resolve) => outside.listen(0, ownAddress, resolve));
    const outsidePort = (outside.address() as { port: number }).port;
    const folder = await makeFolder({
      'hearth.yaml': manifest(
        'allow-open',
        '{ runtime: node20, egress: allow, hostAliases: { redis-master: host-gateway, outside: host-gateway } }',
      ),
      'index.mjs': DIAL,
    });
    try {
      const { status, body } = await deployFolder(hearth.url, folder.dir, { name: 'allow-open' });
      expect(status, JSON.stringify(body)).toBe(200);
      const targets = [
        ['outsideByAddress', ownAddress, outsidePort],
        ['outsideByAlias', 'outside', outsidePort],
        ['loopbackService', '127.0.0.1', openPort],
        ['hostLoopbackViaSlirp', '10.0.2.2', openPort],
        ['redisOnLoopback', 'redis-master', SEED_PORT],
        ['redisViaSlirp', '10.0.2.2', SEED_PORT],
      ];
      const answer = await invoke(hearth.url, 'allow-open', {
        path: `?targets=${encodeURIComponent(JSON.stringify(targets))}`,
      });
      expect(answer.status, answer.text).toBe(200);
      const { results, hosts, redisUrl, netns } = answer.json() as {
        results: Record<string, string>;
        hosts: string;
        redisUrl: string | null;
        netns: string;
      };
      expect(results.outsideByAddress).toBe('connected');
      expect(results.outsideByAlias).toBe('connected');
      for (const loopback of ['loopbackService', 'hostLoopbackViaSlirp', 'redisOnLoopback', 'redisViaSlirp'])
        expect({ loopback, outcome: results[loopback] }).not.toEqual({ loopback, outcome: 'connected' });
      // host-gateway names this machine as the namespace reaches it: its own address, as Docker's does.
      expect(hosts).toMatch(new RegExp(`^${ownAddress.replaceAll('.', '\\.')} redis-master$`, 'm'));
      // The platform's Redis listens on loopback only: no REDIS_URL the function could not use.
      expect(redisUrl).toBeNull();
      // Not the host's network namespace (nor, as each instance has its own, another tenant's).
      expect(netns).not.toBe(readlinkSync('/proc/self/ns/net'));
    } finally {
      await folder.cleanup();
      await new Promise((resolve) => outside.close(resolve));
    }
  });

  it('gives egress: allow the host network where the operator chose egressAllow: host', async () => {
    const config = join(configDir, 'host.yaml');
    await writeFile(config, `egressAllow: host\nstate: { redis: { url: "${redis.url}" } }\n`);
    const shared = await startHearth({ args: ['--config', config] });
    const folder = await makeFolder({
      'hearth.yaml': manifest(
        'allow-host',
        '{ runtime: node20, egress: allow, hostAliases: { redis-master: host-gateway } }',
      ),
      'index.mjs': DIAL,
    });
    try {
      const { status, body } = await deployFolder(shared.url, folder.dir, { name: 'allow-host' });
      expect(status, JSON.stringify(body)).toBe(200);
      const targets = [['loopbackService', '127.0.0.1', openPort]];
      const answer = await invoke(shared.url, 'allow-host', {
        path: `?targets=${encodeURIComponent(JSON.stringify(targets))}`,
      });
      const { results, hosts, redisUrl } = answer.json() as {
        results: Record<string, string>;
        hosts: string;
        redisUrl: string | null;
      };
      expect(results.loopbackService).toBe('connected');
      expect(hosts).toMatch(/^127\.0\.0\.1 redis-master$/m);
      expect(redisUrl).toBe(redis.url);
    } finally {
      await folder.cleanup();
      await shared.stop();
    }
  });

  it('refuses what it cannot enforce, naming the field', async () => {
    const cases: [string, string, RegExp][] = [
      [
        'egress-process',
        '{ runtime: node20, isolation: process, egress: ["redis-master:6379"] }',
        /spec\.egress: an allow-list needs isolation: sandbox/,
      ],
      [
        'alias-no-egress',
        '{ runtime: node20, hostAliases: { db: host-gateway } }',
        /spec\.hostAliases: db cannot be reached with egress: none/,
      ],
      ['bad-port', '{ runtime: node20, egress: ["db:70000"] }', /spec\.egress\.0.*port 1-65535/],
      [
        'bad-alias',
        '{ runtime: node20, egress: allow, hostAliases: { db: "not-an-ip" } }',
        /spec\.hostAliases\.db/,
      ],
    ];
    for (const [name, spec, message] of cases) {
      const folder: TempFolder = await copyFixture('node-egress', { 'hearth.yaml': manifest(name, spec) });
      try {
        const { status, body } = await deployFolder(hearth.url, folder.dir, { name });
        expect(status, name).toBe(400);
        expect((body as { error: { message: string } }).error.message, name).toMatch(message);
      } finally {
        await folder.cleanup();
      }
    }
  });
});

describe('the seed session handler (seed §3.2)', () => {
  it('runs unchanged with redis from requirements.txt against the Redis on this machine', async () => {
    const { status, body } = await deployFolder(hearth.url, join(FIXTURES, 'seed-cart'), {
      name: 'seed-cart',
    });
    expect(status, JSON.stringify(body)).toBe(200);
    for (const [session, item] of [
      ['alice-1', 'apple'],
      ['bob-1', 'pear'],
    ] as const) {
      const response = await invoke(hearth.url, 'seed-cart', {
        method: 'POST',
        headers: { 'session-id': session, 'content-type': 'application/json' },
        body: JSON.stringify({ item }),
      });
      expect(response.status, response.text).toBe(200);
      expect(response.json()).toEqual([item]);
      expect(await client.hgetall(`session:${session}`)).toEqual({
        cart: JSON.stringify([item]),
        user_id: 'guest',
      });
    }
  });
});

describe("a running function's dependency layer", () => {
  it('stays mounted while other functions start their own networks (slirp4netns)', async () => {
    // slirp4netns --enable-sandbox once detached the host's slot mounts through mount propagation: a warm
    // function then lost its layer mid-flight (`No module named 'redis._defaults'`).
    const victim = await makeFolder({
      'hearth.yaml': manifest('layer-view', '{ runtime: python3, handler: main.handler }'),
      'requirements.txt': 'redis\n',
      'main.py': [
        'import os',
        'import redis',
        '',
        'def handler(event, context):',
        '    return {"files": len(os.listdir(os.path.dirname(redis.__file__)))}',
        '',
      ].join('\n'),
    });
    const neighbour = await makeFolder({
      'hearth.yaml': manifest(
        'layer-neighbour',
        '{ runtime: node20, egress: ["redis-master:6379"], hostAliases: { redis-master: host-gateway } }',
      ),
      'index.mjs': DIAL,
    });
    try {
      const deployed = await deployFolder(hearth.url, victim.dir, { name: 'layer-view' });
      expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
      const before = await invoke(hearth.url, 'layer-view');
      expect(before.status, before.text).toBe(200);
      const { files } = before.json() as { files: number };
      expect(files).toBeGreaterThan(10);
      // Each of these starts instances in network namespaces of their own, each linked by a slirp4netns.
      for (let round = 0; round < 3; round++) {
        const other = await deployFolder(hearth.url, neighbour.dir, { name: 'layer-neighbour' });
        expect(other.status, JSON.stringify(other.body)).toBe(200);
        const dialled = await invoke(hearth.url, 'layer-neighbour', { path: '?targets=[]' });
        expect(dialled.status, dialled.text).toBe(200);
        const after = await invoke(hearth.url, 'layer-view');
        expect(after.status, after.text).toBe(200);
        expect(after.json()).toEqual({ files });
      }
    } finally {
      await victim.cleanup();
      await neighbour.cleanup();
    }
  });
});

describe('ctx.state on Redis', () => {
  it('refuses to start, in one line, when the configured Redis cannot be reached', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hearth-bad-redis-'));
    try {
      await writeFile(
        join(dir, 'hearth.yaml'),
        'state: { redis: { url: "redis://:hunter2@127.0.0.1:1" } }\n',
      );
      const result = await runCli([
        'up',
        '--port',
        '0',
        '--no-examples',
        '--data-dir',
        join(dir, 'data'),
        '--config',
        join(dir, 'hearth.yaml'),
      ]);
      expect(result.code).not.toBe(0);
      expect(errorLines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toContain('state.redis.url: cannot reach Redis at redis://:***@127.0.0.1:1');
      expect(result.stderr).not.toContain('hunter2');
      expect(result.stderr).not.toMatch(STACK_FRAME);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps function state in the configured Redis', async () => {
    const { status, body } = await deployFolder(hearth.url, join(FIXTURES, 'node-state'), {
      name: 'node-state',
    });
    expect(status, JSON.stringify(body)).toBe(200);
    const response = await invoke(hearth.url, 'node-state');
    expect(response.status, response.text).toBe(200);
    expect((response.json() as { visits: number }).visits).toBe(1);
    expect(await client.get('hearth:state:fn:default/node-state:visits')).toBe('1');
    expect(await client.get('hearth:state:ns:default:team')).toBe('"blue"');
  });
});
