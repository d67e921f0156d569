/**
 * @module Network isolation between tenants (issue 10): functions of different namespaces never share a
 * network namespace, and an egress allow-list naming the platform's own ports or another namespace's
 * function is refused at deploy with a 400 naming the entry.
 */

import { readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  api,
  deployFolder,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth;
const folders: TempFolder[] = [];

const NET_PROBE = `
import { readlinkSync } from 'node:fs';
export default async function handler() {
  return { net: readlinkSync('/proc/self/ns/net') };
}
`;

async function deploy(
  name: string,
  namespace: string,
  spec: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const folder = await makeFolder({
    'hearth.yaml': manifest(name, spec, `namespace: ${namespace}`),
    'index.mjs': NET_PROBE,
  });
  folders.push(folder);
  return deployFolder(hearth.url, folder.dir, { name, namespace });
}

async function networkOf(name: string, namespace: string): Promise<string> {
  const answer = await invoke(hearth.url, `${name}.${namespace}`);
  expect(answer.status, answer.text).toBe(200);
  return (answer.json() as { net: string }).net;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  hearth = await startHearth();
}, 60_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('tenants on the network', () => {
  it('functions of different namespaces never share a network namespace, nor the host’s', async () => {
    const host = readlinkSync('/proc/self/ns/net');
    for (const namespace of ['team-a', 'team-b']) {
      for (const [name, spec] of [
        ['closed', '{ runtime: node20 }'],
        ['listed', '{ runtime: node20, egress: ["192.0.2.10:443"] }'],
      ] as const) {
        const deployed = await deploy(name, namespace, spec);
        expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
      }
    }
    // All four instances are alive (warm) at once: equal numbers would be one namespace shared.
    const networks = new Map<string, string>();
    for (const namespace of ['team-a', 'team-b'])
      for (const name of ['closed', 'listed'])
        networks.set(`${namespace}/${name}`, await networkOf(name, namespace));
    // Asked again: still the same instances, so still alive together.
    for (const [key, net] of networks) {
      const [namespace = '', name = ''] = key.split('/');
      expect(await networkOf(name, namespace)).toBe(net);
    }
    const values = [...networks.values()];
    expect(new Set(values).size, JSON.stringify(Object.fromEntries(networks))).toBe(values.length);
    expect(values).not.toContain(host);
  });

  it("refuses an allow-list naming the platform's own ports, by any name for this machine", async () => {
    const port = hearth.port;
    for (const [entries, aliases] of [
      [`"host-gateway:${port}"`, ''],
      [`"host.hearth.internal:${port}"`, ''],
      [`"127.0.0.1:${port}"`, ''],
      [`"localhost:${port}"`, ''],
      [`"gw:${port}"`, ', hostAliases: { gw: host-gateway }'],
      [`"192.0.2.10:443", "host-gateway:${port}"`, ''],
    ] as const) {
      const deployed = await deploy(
        'sneaky',
        'team-a',
        `{ runtime: node20, egress: [${entries}]${aliases} }`,
      );
      expect(deployed.status, entries).toBe(400);
      const error = (
        deployed.body as { error: { code: string; message: string; details: { field: string } } }
      ).error;
      expect(error.code).toBe('HEARTH_E_VALIDATION');
      const entry = entries.split(', ').at(-1)?.replaceAll('"', '') ?? '';
      expect(error.message).toContain(`"${entry}"`);
      expect(error.message).toContain(`platform's own port ${port}`);
      expect(error.details.field).toMatch(/^spec\.egress\.\d$/);
    }
  });

  it("refuses an EventGateway listener's port too, and another tenant's function; the rest deploys", async () => {
    const port = await freePort();
    const applied = await api(hearth.url, '/api/v1/namespaces/default/gateways/own-port', {
      method: 'PUT',
      json: {
        apiVersion: 'hearth.dev/v1',
        kind: 'EventGateway',
        metadata: { name: 'own-port' },
        spec: {
          protocols: [{ http: { port } }],
          functions: [{ name: 'closed', namespace: 'team-b', match: { path: '/own' } }],
        },
      },
    });
    expect(applied.status, applied.text).toBeLessThan(300);
    const listener = await deploy(
      'sneaky',
      'team-a',
      `{ runtime: node20, egress: ["host-gateway:${port}"] }`,
    );
    expect(listener.status).toBe(400);
    expect(JSON.stringify(listener.body)).toContain(`platform's own port ${port}`);

    const neighbour = await deploy('sneaky', 'team-a', '{ runtime: node20, egress: ["closed.team-b:80"] }');
    expect(neighbour.status).toBe(400);
    expect((neighbour.body as { error: { message: string } }).error.message).toContain(
      '"closed.team-b:80" names closed of namespace team-b',
    );

    const fine = await deploy(
      'fine',
      'team-a',
      '{ runtime: node20, egress: ["host-gateway:9", "192.0.2.10:443"] }',
    );
    expect(fine.status, JSON.stringify(fine.body)).toBe(200);
  });
});
