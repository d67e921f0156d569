/**
 * @module A real Kubernetes control plane for tests (issue 12), envtest-style: Debian's etcd and a
 * kube-apiserver built from k8s.io/kubernetes by scripts/k8s-tools.mjs (cached in ~/.cache/hearth/k8s), on
 * free loopback ports, with a serving certificate signed by a CA made here and a static bearer token in
 * system:masters. No kubelet, scheduler nor controller-manager: objects are stored and validated, not run.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.js';

export const KUBERNETES_VERSION = 'v1.34.2';
export const APISERVER = join(homedir(), '.cache', 'hearth', 'k8s', `kube-apiserver-${KUBERNETES_VERSION}`);
export const HELM = join(homedir(), '.cache', 'hearth', 'k8s', 'helm-v4.3.2');

export interface RunningKube {
  /** https://127.0.0.1:PORT */
  readonly server: string;
  readonly token: string;
  /** PEM of the CA that signed the serving certificate. */
  readonly caData: string;
  /** A kubeconfig file for this cluster (context `hearth-test`). */
  readonly kubeconfig: string;
  readonly kubeconfigText: string;
  log(): string;
  stop(): Promise<void>;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

async function exited(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

export async function startKube(): Promise<RunningKube> {
  if (!existsSync(APISERVER))
    throw new Error(`${APISERVER} is missing: npm test builds it (node scripts/k8s-tools.mjs apiserver)`);
  const dir = await mkdtemp(join(tmpdir(), 'hearth-kube-'));
  // A CA, a serving certificate for 127.0.0.1/localhost, and the service-account signing key.
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=hearth-test-ca',
    ],
    dir,
  );
  openssl(
    [
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'server.key',
      '-out',
      'server.csr',
      '-subj',
      '/CN=kube-apiserver',
    ],
    dir,
  );
  await writeFile(
    join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n',
  );
  openssl(
    [
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.crt',
      '-days',
      '2',
      '-extfile',
      'server.ext',
    ],
    dir,
  );
  openssl(['genrsa', '-out', 'sa.key', '2048'], dir);
  openssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
  const token = randomBytes(24).toString('hex');
  await writeFile(join(dir, 'tokens.csv'), `${token},hearth-test-admin,hearth-test-admin,system:masters\n`);

  const logs: string[] = [];
  const keep = (prefix: string) => (chunk: Buffer) => {
    logs.push(`${prefix}${chunk.toString()}`);
    if (logs.length > 2000) logs.splice(0, logs.length - 2000);
  };

  const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcd = spawn(
    'etcd',
    [
      '--name',
      'hearth-test',
      '--data-dir',
      join(dir, 'etcd'),
      '--listen-client-urls',
      `http://127.0.0.1:${etcdClient}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${etcdClient}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${etcdPeer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster',
      `hearth-test=http://127.0.0.1:${etcdPeer}`,
      // A test store: durability across a crash of the machine is not what is under test.
      '--unsafe-no-fsync',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  etcd.stdout?.on('data', keep('etcd: '));
  etcd.stderr?.on('data', keep('etcd: '));

  const apiserver = spawn(
    APISERVER,
    [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      '--bind-address=127.0.0.1',
      `--advertise-address=127.0.0.1`,
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'certs')}`,
      `--tls-cert-file=${join(dir, 'server.crt')}`,
      `--tls-private-key-file=${join(dir, 'server.key')}`,
      `--client-ca-file=${join(dir, 'ca.crt')}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      `--service-account-issuer=https://kubernetes.default.svc`,
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--allow-privileged=true',
      // No controller-manager runs: nothing would create the default ServiceAccount a Pod admission waits on.
      '--disable-admission-plugins=ServiceAccount',
      '--v=0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  apiserver.stdout?.on('data', keep('kube-apiserver: '));
  apiserver.stderr?.on('data', keep('kube-apiserver: '));

  const caData = await readFile(join(dir, 'ca.crt'), 'utf8');
  const server = `https://127.0.0.1:${apiPort}`;
  const stop = async () => {
    await exited(apiserver, 10_000);
    await exited(etcd, 10_000);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitReady(server, token, caData, () => apiserver.exitCode !== null || etcd.exitCode !== null);
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${logs.join('').slice(-4000)}`);
  }
  const kubeconfigText = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: hearth-test',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${Buffer.from(caData).toString('base64')}`,
    'users:',
    '- name: hearth-test-admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: hearth-test',
    '  context: {cluster: hearth-test, user: hearth-test-admin, namespace: default}',
    'current-context: hearth-test',
    '',
  ].join('\n');
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, kubeconfigText, { mode: 0o600 });
  return { server, token, caData, kubeconfig, kubeconfigText, log: () => logs.join(''), stop };
}

/** Polls /readyz (all of its checks, CRD informers included) until it answers ok. */
async function waitReady(server: string, token: string, ca: string, died: () => boolean): Promise<void> {
  const { request } = await import('node:https');
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if (died()) throw new Error('etcd or kube-apiserver exited while starting');
    const status = await new Promise<number>((resolve) => {
      const req = request(
        `${server}/readyz`,
        { ca, headers: { authorization: `Bearer ${token}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', () => resolve(0));
      req.setTimeout(2000, () => req.destroy());
      req.end();
    });
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error('kube-apiserver was not ready within 120 s');
}
