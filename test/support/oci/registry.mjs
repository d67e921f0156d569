// A real OCI registry for tests and benchmarks: Debian's `docker-registry` (distribution v2) on a free loopback
// port, storing under a temp dir: anonymous, behind htpasswd basic auth, or behind bearer tokens from a small
// token service started here (Docker's token auth: ES256 JWTs whose x5c header carries a self-signed
// certificate the registry trusts through `rootcertbundle`). Types in registry.d.mts.
import { execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function startRegistry(options = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-registry-'));
  const storage = join(dir, 'storage');
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log: { level: warn }',
    `storage: { filesystem: { rootdirectory: ${JSON.stringify(storage)} }, delete: { enabled: true } }`,
    `http: { addr: "127.0.0.1:${port}" }`,
  ];
  let tokenService;
  if (options.auth !== undefined && options.token === true) {
    tokenService = await startTokenService(dir, options.auth);
    lines.push(
      `auth: { token: { realm: "${tokenService.realm}", service: ${SERVICE}, issuer: ${ISSUER}, rootcertbundle: ${JSON.stringify(tokenService.certFile)} } }`,
    );
  } else if (options.auth !== undefined) {
    const htpasswd = execFileSync('htpasswd', ['-Bbn', options.auth.username, options.auth.password], {
      encoding: 'utf8',
    });
    await writeFile(join(dir, 'htpasswd'), htpasswd);
    lines.push(`auth: { htpasswd: { realm: hearth-test, path: ${JSON.stringify(join(dir, 'htpasswd'))} } }`);
  }
  await writeFile(join(dir, 'config.yml'), `${lines.join('\n')}\n`);
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk.toString();
  });
  const host = `127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await fetch(`http://${host}/v2/`).then(
      (response) => response.status === 200 || response.status === 401,
      () => false,
    );
    if (ok) break;
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`docker-registry did not start: ${stderr.slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    host,
    storage,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await tokenService?.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const SERVICE = 'hearth-test-registry';
const ISSUER = 'hearth-test-issuer';

/** Answers `GET /token?service&scope` for the one user, with every action asked for on the repository. */
async function startTokenService(dir, auth) {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
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
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=hearth-test-token',
    ],
    { stdio: 'ignore' },
  );
  const key = createPrivateKey(await readFile(keyFile));
  const der = new X509Certificate(await readFile(certFile)).raw.toString('base64');
  const expected = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'wrong user name or password' }] }));
      return;
    }
    const access = url.searchParams.getAll('scope').map((scope) => {
      const [type, name, actions] = scope.split(':');
      return { type, name, actions: (actions ?? '').split(',') };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64({ alg: 'ES256', typ: 'JWT', x5c: [der] });
    const claims = b64({
      iss: ISSUER,
      sub: auth.username,
      aud: url.searchParams.get('service'),
      exp: now + 600,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    });
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ token: `${header}.${claims}.${signature.toString('base64url')}`, expires_in: 600 }),
    );
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    realm: `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}/token`,
    certFile,
    stop: () => new Promise((resolve) => server.close(() => resolve(undefined))),
  };
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
