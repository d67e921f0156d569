/** @module Tests of where callbacks may go: the forbidden ranges, the allow-list, and the check at send time. */

import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { CallbackPolicy, parseAllowEntry } from './callbacks.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});

async function receiver(): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits += 1;
    req.resume();
    res.end('ok');
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { port: typeof address === 'object' && address !== null ? address.port : 0, hits: () => hits };
}

describe('CallbackPolicy', () => {
  it.each([
    '0.0.0.0',
    '10.1.2.3',
    '100.64.0.1',
    '127.0.0.1',
    '127.255.0.9',
    '169.254.169.254',
    '172.31.255.255',
    '192.168.0.1',
    '224.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    '::ffff:127.0.0.1',
    '::ffff:a9fe:a9fe',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    'ff02::1',
  ])('refuses %s by default', (address) => {
    expect(new CallbackPolicy().refusal(address)).toMatch(/private, loopback, link-local or reserved/);
  });

  it.each(['8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111'])('lets %s through', (address) => {
    expect(new CallbackPolicy().refusal(address)).toBeUndefined();
  });

  it('lets through what the allow-list names, and only that', () => {
    const policy = new CallbackPolicy(['10.1.2.0/24', '127.0.0.1', 'fd00::/8']);
    expect(policy.refusal('10.1.2.77')).toBeUndefined();
    expect(policy.refusal('10.1.3.1')).toBeDefined();
    expect(policy.refusal('127.0.0.1')).toBeUndefined();
    expect(policy.refusal('::ffff:127.0.0.1')).toBeUndefined();
    expect(policy.refusal('127.0.0.2')).toBeDefined();
    expect(policy.refusal('fd00::5')).toBeUndefined();
  });

  it('parses allow-list entries: addresses, CIDRs and host names', () => {
    expect(parseAllowEntry('10.1.2.0/24')).toEqual({
      kind: 'address',
      address: '10.1.2.0',
      prefix: 24,
      family: 'ipv4',
    });
    expect(parseAllowEntry('::1')).toEqual({ kind: 'address', address: '::1', prefix: 128, family: 'ipv6' });
    expect(parseAllowEntry('Hooks.Internal.')).toEqual({ kind: 'host', host: 'hooks.internal' });
    for (const bad of ['10.1.2.0/33', '10.1.2.0/x', 'http://x', '1.2.3', '', 'a b'])
      expect(parseAllowEntry(bad)).toBeUndefined();
  });

  it('checks again when sending: a name resolving to loopback is not connected to', async () => {
    const target = await receiver();
    const policy = new CallbackPolicy();
    await expect(policy.post(`http://localhost:${target.port}/`, {}, Buffer.from('x'), 2000)).rejects.toThrow(
      /localhost resolves to .* is a private, loopback/,
    );
    await expect(policy.post(`http://127.0.0.1:${target.port}/`, {}, Buffer.from('x'), 2000)).rejects.toThrow(
      /127\.0\.0\.1 is a private, loopback/,
    );
    expect(target.hits()).toBe(0);
  });

  it('sends to an allowed receiver, named by address or by host name', async () => {
    const target = await receiver();
    const byAddress = new CallbackPolicy(['127.0.0.1']);
    expect(await byAddress.post(`http://127.0.0.1:${target.port}/`, {}, Buffer.from('x'), 2000)).toBe(200);
    const byName = new CallbackPolicy(['localhost']);
    expect(await byName.post(`http://localhost:${target.port}/`, {}, Buffer.from('x'), 2000)).toBe(200);
    expect(target.hits()).toBe(2);
  });
});
