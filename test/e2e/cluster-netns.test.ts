/**
 * @module End-to-end, cluster mode across hosts (issue 12): three Hearth nodes, each in its own network
 * namespace with its own address (ip netns + veth + a bridge the test makes), reaching PostgreSQL, NATS and
 * Redis on the bridge and each other only over it. A deploy on one serves on the others; a node killed
 * with SIGKILL is seen dead and the others keep serving.
 */

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClusterServices, firstAdminKey, startClusterServices } from '../support/cluster.js';
import {
  api,
  cleanUp,
  eventually,
  FIXTURES,
  functionApiPath,
  type Hearth,
  invoke,
  makeFolder,
  packFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { createTestNetwork, type TestNetwork } from '../support/netns.js';

const NAME = 'node-version';
/** The master key every node shares, so a secret one node seals the others open. */
const MASTER_KEY = randomBytes(32).toString('hex');
const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;
const READER = {
  'hearth.yaml':
    'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: reader }\nspec: { runtime: node20, secrets: [{ name: db, env: { DB_PASSWORD: password } }] }\n',
  'index.mjs': `export default () => {
  console.log('reader ran');
  return { password: process.env.DB_PASSWORD };
};
`,
};

let network: TestNetwork;
let services: ClusterServices;
let configDir: TempFolder;
const nodes: Hearth[] = [];
/** Beyond loopback the API needs a key: the first node makes and prints it, the others read it from PostgreSQL. */
let adminKey: string;

interface LogsAnswer {
  readonly items: readonly { readonly node?: string; readonly time: string; readonly message: string }[];
  readonly nodes?: { readonly answered: string[]; readonly unreachable: { node: string; reason: string }[] };
}

function nodeArgs(i: number): string[] {
  return [
    '--host',
    network.hosts[i]?.address as string,
    ...services.flags(`n${i}`),
    '--config',
    join(configDir.dir, 'lean.yaml'),
  ];
}

function startNode(i: number, dataDir?: string): Promise<Hearth> {
  return startHearth({
    prefix: network.hosts[i]?.prefix ?? [],
    args: nodeArgs(i),
    env: { HEARTH_MASTER_KEY: MASTER_KEY },
    ...(dataDir === undefined ? {} : { dataDir }),
  });
}

async function memberIds(url: string): Promise<string[]> {
  const answer = await api<{ items: { id: string; url: string }[] }>(url, '/cluster/nodes', {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  expect(answer.status, answer.text).toBe(200);
  return answer.body.items.map((item) => `${item.id}@${new URL(item.url).hostname}`);
}

describe('cluster mode: three nodes in their own network namespaces', () => {
  beforeAll(async () => {
    network = await createTestNetwork(3);
    services = await startClusterServices(network);
    configDir = await makeFolder({ 'lean.yaml': 'stemCells: { node20: 1, python3: 0 }\n' });
    nodes.push(await startNode(0));
    adminKey = await firstAdminKey(nodes[0] as Hearth, 'n0');
    nodes.push(...(await Promise.all([startNode(1), startNode(2)])));
  }, 180_000);

  afterAll(async () => {
    await cleanUp(
      // Each node is stopped even when another fails to; a killed one whose restart failed is reclaimed.
      async () => {
        const stopped = await Promise.allSettled(nodes.map((hearth) => hearth.stop()));
        const failed = stopped.filter((result) => result.status === 'rejected');
        if (failed.length > 0) throw new AggregateError(failed.map((result) => result.reason));
      },
      () => services?.stop(),
      () => configDir?.cleanup(),
      () => network?.destroy(),
    );
  }, 90_000);

  it('each node listens on its own address and sees the others at theirs', async () => {
    const [n0, n1, n2] = network.hosts.map((host) => host.address);
    for (const [i, node] of nodes.entries()) {
      expect(new URL(node.url).hostname).toBe(network.hosts[i]?.address);
      await eventually(`n${i} to see the three nodes`, async () => {
        const ids = await memberIds(node.url);
        return ids.join(',') === `n0@${n0},n1@${n1},n2@${n2}` ? ids : undefined;
      });
    }
  });

  it('a function deployed on n0 is served by n1 and n2', async () => {
    const [n0, n1, n2] = nodes as [Hearth, Hearth, Hearth];
    const deployed = await fetch(`${n0.url}/api/v1/namespaces/default/functions/${NAME}/deploy`, {
      method: 'POST',
      headers: { 'content-type': 'application/gzip', authorization: `Bearer ${adminKey}` },
      body: await packFolder(join(FIXTURES, NAME)),
    });
    expect(deployed.status, await deployed.text()).toBe(200);
    for (const node of [n1, n2])
      await eventually(`${node.url} to serve ${NAME}`, async () => {
        const answer = await invoke(node.url, NAME);
        return answer.status === 200 ? answer.json() : undefined;
      });
  });

  it('a key made on n0 is taken by n1 at once, and refused there once n0 revokes it', async () => {
    const [n0, n1] = nodes as [Hearth, Hearth];
    const admin = { authorization: `Bearer ${adminKey}` };
    const created = await api<{ id: string; key: string }>(n0.url, '/api/v1/keys', {
      method: 'POST',
      json: { role: 'viewer', namespaces: ['default'], name: 'made on n0' },
      headers: admin,
    });
    expect(created.status, created.text).toBe(201);
    const asViewer = { headers: { authorization: `Bearer ${created.body.key}` } };
    const readable = functionApiPath(NAME);
    expect((await api(n0.url, readable, asViewer)).status).toBe(200);
    await eventually('n1 to take the new key', async () =>
      (await api(n1.url, readable, asViewer)).status === 200 ? true : undefined,
    );
    const revoked = await api(n0.url, `/api/v1/keys/${created.body.id}`, {
      method: 'DELETE',
      headers: admin,
    });
    expect(revoked.status, revoked.text).toBe(200);
    await eventually('n1 to refuse the revoked key', async () =>
      (await api(n1.url, readable, asViewer)).status === 401 ? true : undefined,
    );
  });

  it('a secret set on n0 reaches the functions n1 and n2 start, and a change set on n1 too', async () => {
    const [n0, n1, n2] = nodes as [Hearth, Hearth, Hearth];
    const admin = { authorization: `Bearer ${adminKey}` };
    const setSecret = async (on: Hearth, password: string) => {
      const set = await api(on.url, '/api/v1/namespaces/default/secrets/db', {
        method: 'PUT',
        json: { stringData: { password } },
        headers: admin,
      });
      expect(set.status, set.text).toBe(200);
      // It answered once the other nodes' copies held it, not after giving up on one.
      expect(on.stderr()).not.toContain('had not taken it');
    };
    await setSecret(n0, PASSWORD);
    const folder = await makeFolder(READER);
    try {
      const deployed = await fetch(`${n0.url}/api/v1/namespaces/default/functions/reader/deploy`, {
        method: 'POST',
        headers: { 'content-type': 'application/gzip', ...admin },
        body: await packFolder(folder.dir),
      });
      expect(deployed.status, await deployed.text()).toBe(200);
    } finally {
      await folder.cleanup();
    }
    // Listed on every node (PostgreSQL), sealed: no node answers with the value, and the database holds
    // only the sealed bytes.
    const listed = await api(n2.url, '/api/v1/secrets', { headers: admin });
    expect(listed.text).toContain('"db"');
    expect(listed.text).not.toContain(PASSWORD);
    const database = new pg.Client({ connectionString: services.postgres.url });
    await database.connect();
    try {
      const rows = await database.query<{ row: string }>('SELECT secrets::text AS row FROM secrets');
      expect(rows.rows).toHaveLength(1);
      const stored = rows.rows[0]?.row ?? '';
      expect(stored).toContain('db');
      for (const clear of [
        PASSWORD,
        Buffer.from(PASSWORD).toString('base64'),
        Buffer.from(PASSWORD).toString('hex'),
      ])
        expect(stored.includes(clear), `${clear} in PostgreSQL`).toBe(false);
    } finally {
      await database.end();
    }
    for (const node of [n1, n2]) {
      const answer = await invoke(node.url, 'reader');
      expect(answer.status, answer.text).toBe(200);
      // Run by the node asked (a forwarded answer would name the node that ran it).
      expect(answer.headers.get('x-hearth-node')).toBeNull();
      expect(answer.json()).toEqual({ password: PASSWORD });
    }
    /** What a new instance of the reader started on `node` (its warm ones released first) sees. */
    const coldStartOn = async (node: Hearth): Promise<unknown> => {
      const released = await api(node.url, `${functionApiPath('reader')}/instances`, {
        method: 'DELETE',
        headers: admin,
      });
      expect(released.status, released.text).toBe(200);
      const answer = await invoke(node.url, 'reader');
      expect(answer.headers.get('x-hearth-node')).toBeNull();
      return answer.json();
    };
    // A change made on n1 reaches the next instance n2 starts.
    await setSecret(n1, `${PASSWORD}-2`);
    expect(await coldStartOn(n2)).toEqual({ password: `${PASSWORD}-2` });
    // Each node starts instances from its own copy of the sealed secrets: a change made on n0 is in n1's
    // copy by the time n0 answers, so the instance n1 starts right after has the new value.
    await setSecret(n0, `${PASSWORD}-3`);
    expect(await coldStartOn(n1)).toEqual({ password: `${PASSWORD}-3` });
  });

  it('the logs of invocations run on n1 and n2 are read through n0, each line marked with its node', async () => {
    const [n0] = nodes as [Hearth];
    const path = `${functionApiPath('reader')}/logs?q=reader%20ran`;
    const read = await eventually('n0 to gather the reader lines of n1 and n2', async () => {
      const answer = await api<LogsAnswer>(n0.url, path, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      expect(answer.status, answer.text).toBe(200);
      const counts = { n1: 0, n2: 0 };
      for (const item of answer.body.items) if (item.node === 'n1' || item.node === 'n2') counts[item.node]++;
      // n1 and n2 ran it twice each (their second instances started after the secret changed).
      return counts.n1 === 2 && counts.n2 === 2 ? answer.body : undefined;
    });
    expect(read.nodes).toEqual({ answered: ['n0', 'n1', 'n2'], unreachable: [] });
    const times = read.items.map((item) => item.time);
    expect(times).toEqual([...times].sort());
    const cli = await runCli(['logs', 'reader', '--grep', 'reader ran'], {
      url: n0.url,
      env: { HEARTH_API_KEY: adminKey },
    });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout.match(/ n1 .*reader ran/g)?.length).toBe(2);
    expect(cli.stdout.match(/ n2 .*reader ran/g)?.length).toBe(2);
  });

  it('following the logs through n0 streams the new lines of n1 and n2 as they run', async () => {
    const [n0, n1, n2] = nodes as [Hearth, Hearth, Hearth];
    const stop = new AbortController();
    const response = await fetch(`${n0.url}${functionApiPath('reader')}/logs?follow=1&q=reader%20ran`, {
      headers: { authorization: `Bearer ${adminKey}` },
      signal: stop.signal,
    });
    expect(response.status).toBe(200);
    const lines: { node?: string; message?: string; unreachable?: unknown }[] = [];
    const reading = (async () => {
      let buffered = '';
      const decoder = new TextDecoder();
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(chunk, { stream: true });
        const parts = buffered.split('\n');
        buffered = parts.pop() ?? '';
        for (const part of parts) if (part.trim() !== '') lines.push(JSON.parse(part));
      }
    })().catch(() => undefined);
    try {
      // The backlog first: n1's two lines and n2's two.
      await eventually('the backlog of n1 and n2', () => (lines.length >= 4 ? true : undefined));
      for (const node of [n1, n2]) expect((await invoke(node.url, 'reader')).status).toBe(200);
      const count = (node: string) => lines.filter((line) => line.node === node).length;
      await eventually('the new lines of n1 and n2 to be streamed', () =>
        count('n1') === 3 && count('n2') === 3 ? true : undefined,
      );
      expect(lines.filter((line) => line.unreachable !== undefined)).toEqual([]);
    } finally {
      stop.abort();
      await reading;
    }
  });

  it('an EventGateway made on n0 serves on n1 and n2 at once, its own port too, and stops when n0 deletes it', async () => {
    const [n0, n1, n2] = nodes as [Hearth, Hearth, Hearth];
    const admin = { authorization: `Bearer ${adminKey}` };
    // Each node is in its own network namespace: all three may listen on the same extra port.
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    const gateway = {
      apiVersion: 'hearth.dev/v1',
      kind: 'EventGateway',
      metadata: { name: 'vault' },
      spec: { protocols: [{ http: { port } }], functions: [{ name: 'reader', match: { path: '/vault' } }] },
    };
    const made = await api(n0.url, '/api/v1/namespaces/default/gateways/vault', {
      method: 'PUT',
      json: gateway,
      headers: admin,
    });
    expect(made.status, made.text).toBeLessThan(300);
    const status = async (url: string): Promise<number | string> =>
      fetch(url).then(
        (answer) => answer.status,
        (error: Error) => `unreachable: ${error.message}`,
      );
    for (const [i, node] of [n1, n2].entries()) {
      const extra = `http://${network.hosts[i + 1]?.address}:${port}/vault`;
      await eventually(`n${i + 1} to serve /vault on its own port and its extra one`, async () =>
        (await status(`${node.url}/vault`)) === 200 && (await status(extra)) === 200 ? true : undefined,
      );
    }
    const deleted = await api(n0.url, '/api/v1/namespaces/default/gateways/vault', {
      method: 'DELETE',
      headers: admin,
    });
    expect(deleted.status, deleted.text).toBe(200);
    for (const [i, node] of [n1, n2].entries()) {
      const extra = `http://${network.hosts[i + 1]?.address}:${port}/vault`;
      await eventually(`n${i + 1} to stop serving /vault and close its extra port`, async () =>
        (await status(`${node.url}/vault`)) === 404 && String(await status(extra)).startsWith('unreachable')
          ? true
          : undefined,
      );
    }
  });

  it('a node killed with SIGKILL is seen dead, and the others keep serving', async () => {
    const victim = nodes[2] as Hearth;
    const exited = new Promise((resolve) => victim.process.once('exit', resolve));
    victim.process.kill('SIGKILL');
    await exited;
    // Still a member for n0 until its heartbeats have been silent for deadAfter: its logs are missing,
    // and the answer says so rather than leaving its lines out silently.
    const logs = await api<LogsAnswer>(nodes[0]?.url as string, `${functionApiPath('reader')}/logs`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(logs.status, logs.text).toBe(200);
    expect(logs.body.nodes?.unreachable.map((entry) => entry.node)).toEqual(['n2']);
    expect(logs.body.items.some((item) => item.node === 'n1')).toBe(true);
    for (const node of nodes.slice(0, 2)) {
      await eventually(
        `${node.url} to see n2 gone`,
        async () => ((await memberIds(node.url)).some((id) => id.startsWith('n2@')) ? undefined : true),
        { timeoutMs: 30_000 },
      );
      expect((await invoke(node.url, NAME)).status).toBe(200);
    }
    // Restarted in its namespace on its data dir, so its start ends the sandboxes the SIGKILL left.
    nodes[2] = await startNode(2, victim.dataDir);
    expect((await invoke(nodes[2].url, NAME)).status).toBe(200);
  });
});
