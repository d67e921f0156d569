/**
 * @module TLS end to end: `hearth up --tls-cert/--tls-key` serves HTTPS on the platform port (the fast
 * invocation front and node:http behind it, the API) and on EventGateway listeners; a replaced
 * certificate is served without a restart; the CLI trusts it through NODE_EXTRA_CA_CERTS; bad files stop
 * the start with one line.
 */

import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  errorLines,
  eventually,
  functionApiPath,
  type Hearth,
  packFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

interface Certificate {
  readonly certPath: string;
  readonly keyPath: string;
  readonly pem: string;
}

/** A self-signed certificate for 127.0.0.1 and localhost, made with openssl; `name` tells two apart. */
async function makeCertificate(dir: string, name: string): Promise<Certificate> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: 'ignore' },
  );
  return { certPath, keyPath, pem: await readFile(certPath, 'utf8') };
}

interface Answer {
  readonly status: number;
  readonly body: string;
  /** The CN of the certificate the server presented. */
  readonly servedBy: string;
}

/** One HTTPS request on a fresh connection, trusting only `ca`. */
function httpsCall(
  url: string,
  ca: string,
  init: { method?: string; body?: Buffer | string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: init.method ?? 'GET', ca, agent: false, headers: init.headers },
      (res) => {
        const socket = res.socket as TLSSocket;
        const servedBy = String(socket.getPeerCertificate().subject?.CN ?? '');
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), servedBy }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

let dir: string;
let first: Certificate;
let served: { certPath: string; keyPath: string };
let hearth: Hearth;
const folders: TempFolder[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-tls-'));
  first = await makeCertificate(dir, 'first');
  // The platform reads these paths; the reload test replaces them.
  served = { certPath: join(dir, 'served.crt'), keyPath: join(dir, 'served.key') };
  await writeFile(served.certPath, first.pem);
  await writeFile(served.keyPath, await readFile(first.keyPath));
  const config = join(dir, 'hearth.config.yaml');
  await writeFile(config, `tls: { cert: ${served.certPath}, key: ${served.keyPath} }\n`);
  hearth = await startHearth({ args: ['--config', config] });
  const folder = await copyFixture('gw-echo');
  folders.push(folder);
  const deployed = await httpsCall(`${hearth.url}${functionApiPath('gw-echo')}/deploy`, first.pem, {
    method: 'POST',
    headers: { 'content-type': 'application/gzip' },
    body: await packFolder(folder.dir),
  });
  expect(deployed.status, deployed.body).toBe(200);
}, 120_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe('hearth up with a certificate', () => {
  it('serves invocations and the API over HTTPS, and not over plain HTTP', async () => {
    expect(hearth.url).toMatch(/^https:\/\//);
    const get = await httpsCall(`${hearth.url}/function/gw-echo/a?x=1`, first.pem);
    expect(get.status).toBe(200);
    expect(JSON.parse(get.body)).toMatchObject({ method: 'GET', path: '/a' });
    // A body too large for the fast front goes to node:http on the same TLS connection.
    const big = await httpsCall(`${hearth.url}/function/gw-echo`, first.pem, {
      method: 'POST',
      headers: { 'transfer-encoding': 'chunked', 'content-type': 'text/plain' },
      body: 'x'.repeat(100_000),
    });
    expect(big.status).toBe(200);
    const listed = await httpsCall(`${hearth.url}/api/v1/functions`, first.pem);
    expect(listed.status).toBe(200);
    expect(listed.body).toContain('gw-echo');
    const plain = await fetch(`${hearth.url.replace('https:', 'http:')}/healthz`).then(
      (response) => response.status,
      (error: unknown) => (error as Error).name,
    );
    expect(plain).not.toBe(200);
  });

  it('serves an EventGateway on its own port over HTTPS too', async () => {
    const port = await freePort();
    const applied = await httpsCall(`${hearth.url}/api/v1/namespaces/default/gateways/secure`, first.pem, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'hearth.dev/v1',
        kind: 'EventGateway',
        metadata: { name: 'secure' },
        spec: {
          protocols: [{ http: { port } }],
          functions: [{ name: 'gw-echo', match: { path: '/secure/*' } }],
        },
      }),
    });
    expect(applied.status, applied.body).toBeLessThan(300);
    const routed = await httpsCall(`https://127.0.0.1:${port}/secure/thing`, first.pem);
    expect(routed.status).toBe(200);
    expect(JSON.parse(routed.body)).toMatchObject({ route: expect.any(String) });
  });

  it('lets the CLI in when NODE_EXTRA_CA_CERTS names the certificate, and says what to do when not', async () => {
    const trusted = await runCli(['invoke', 'gw-echo'], {
      url: hearth.url,
      env: { NODE_EXTRA_CA_CERTS: first.certPath },
    });
    expect(trusted.stderr).toBe('');
    expect(trusted.code).toBe(0);
    expect(trusted.stdout).toContain('"method"');
    const untrusted = await runCli(['ls'], { url: hearth.url, env: { NODE_EXTRA_CA_CERTS: '' } });
    expect(untrusted.code).not.toBe(0);
    const lines = errorLines(untrusted.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('NODE_EXTRA_CA_CERTS');
  });

  it('serves a replaced certificate to new connections without a restart', async () => {
    const second = await makeCertificate(dir, 'second');
    const pid = hearth.process.pid;
    // Replaced as renewals do it: new files renamed over the old ones.
    await rename(second.keyPath, served.keyPath);
    await rename(second.certPath, served.certPath);
    const answer = await eventually(
      'the new certificate to be served',
      async () => {
        const call = await httpsCall(`${hearth.url}/function/gw-echo`, second.pem).catch(() => undefined);
        return call?.servedBy === 'second' ? call : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(answer.status).toBe(200);
    expect(hearth.process.pid).toBe(pid);
    expect(hearth.process.exitCode).toBeNull();
    expect(hearth.log.some((entry) => String(entry.msg).includes('TLS certificate reloaded'))).toBe(true);
  });
});

describe('bad TLS files', () => {
  it('a missing certificate stops hearth up with one line naming the file', async () => {
    const result = await runCli([
      'up',
      '--port',
      '0',
      '--no-examples',
      '--data-dir',
      join(dir, 'bad-data'),
      '--tls-cert',
      join(dir, 'nowhere.crt'),
      '--tls-key',
      first.keyPath,
    ]);
    expect(result.code).not.toBe(0);
    const lines = errorLines(result.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('nowhere.crt');
  });

  it('a key that is not the certificate’s stops hearth up with one line', async () => {
    const other = await makeCertificate(dir, 'other');
    const result = await runCli([
      'up',
      '--port',
      '0',
      '--no-examples',
      '--data-dir',
      join(dir, 'bad-data'),
      '--tls-cert',
      first.certPath,
      '--tls-key',
      other.keyPath,
    ]);
    expect(result.code).not.toBe(0);
    const lines = errorLines(result.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('not a usable PEM certificate and matching key');
  });

  it('--tls-cert without --tls-key is refused', async () => {
    const result = await runCli(['up', '--port', '0', '--tls-cert', first.certPath]);
    expect(result.code).not.toBe(0);
    expect(errorLines(result.stderr)[0]).toContain('--tls-key');
  });
});
