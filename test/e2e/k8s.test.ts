/**
 * @module Kubernetes mode (issue 12) against a real kube-apiserver and etcd (test/support/kube.ts): the CRDs,
 * the operator reconciling Function and EventGateway CRs (node tier, status, conflicts, a deleted owned
 * object made again, deletion), a Function deployed to a real Hearth and invoked over HTTP, `hearth deploy
 * --target k8s`, and the Helm chart linted, rendered and validated by the API server (server-side dry run).
 * No kubelet runs: the Hearth started by test/support/hearth.ts stands in for every namespace's node pods.
 */

import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  ApiException,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadAllYaml,
  PatchStrategy,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODE_LIMITS } from '../../src/k8s/code.js';
import { crdFiles } from '../../src/k8s/crd.js';
import {
  FINALIZER,
  GATEWAY_SERVICE,
  type HearthResource,
  NODES,
  type Operator,
  startOperator,
  TENANT_POLICY,
} from '../../src/k8s/index.js';
import { gzipBomb } from '../support/archives.js';
import {
  api,
  BIN,
  eventually,
  type Hearth,
  invoke,
  makeFolder,
  packFolder,
  ROOT,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { HELM, type RunningKube, startKube } from '../support/kube.js';

let kube: RunningKube;
let hearth: Hearth;
let operator: Operator;
let objects: KubernetesObjectApi;
const folders: TempFolder[] = [];
/** Set by the conflict test: runs before the operator's status writes until it answers true (it raced one). */
let raceStatusWrite: ((resource: HearthResource) => Promise<boolean>) | undefined;
const operatorLog: Record<string, unknown>[] = [];

const HANDLER = `export default async function handler(event) {
  return { greeting: process.env.GREETING ?? 'hello', path: event.path };
}
`;

function fn(
  name: string,
  spec: Record<string, unknown>,
  namespace = 'default',
): KubernetesObject & { spec: unknown } {
  return { apiVersion: 'hearth.dev/v1', kind: 'Function', metadata: { name, namespace }, spec };
}

async function read<T extends KubernetesObject>(
  apiVersion: string,
  kind: string,
  name: string,
  namespace = 'default',
): Promise<T | undefined> {
  try {
    return await objects.read<T>({ apiVersion, kind, metadata: { name, namespace } });
  } catch (error) {
    if (error instanceof ApiException && error.code === 404) return undefined;
    throw error;
  }
}

const readFunction = (name: string, namespace = 'default') =>
  read<HearthResource>('hearth.dev/v1', 'Function', name, namespace);

/** Waits until the operator reported the CR's current generation. */
async function reconciled(name: string, namespace = 'default', kind = 'Function'): Promise<HearthResource> {
  return eventually(
    `${kind} ${namespace}/${name} reconciled`,
    async () => {
      const resource = await read<HearthResource>('hearth.dev/v1', kind, name, namespace);
      if (resource === undefined) return undefined;
      return resource.status?.observedGeneration === resource.metadata.generation ? resource : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

function apiMessage(error: unknown): string {
  if (!(error instanceof ApiException)) return String(error);
  return typeof error.body === 'string' ? error.body : JSON.stringify(error.body);
}

beforeAll(async () => {
  kube = await startKube();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(kube.kubeconfig);
  objects = KubernetesObjectApi.makeApiClient(kubeConfig);
  for (const text of Object.values(crdFiles()))
    for (const crd of loadAllYaml(text) as KubernetesObject[])
      await objects.patch(crd, undefined, undefined, 'hearth-test', true, PatchStrategy.ServerSideApply);
  await eventually(
    'the CRDs established',
    async () => {
      for (const name of ['functions.hearth.dev', 'eventgateways.hearth.dev']) {
        const crd = await read<
          KubernetesObject & { status?: { conditions?: { type: string; status: string }[] } }
        >('apiextensions.k8s.io/v1', 'CustomResourceDefinition', name, '');
        if (!crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'))
          return undefined;
      }
      return true;
    },
    { timeoutMs: 30_000 },
  );
  for (const namespace of ['tenant-b', 'hearth-system'])
    await objects.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
  hearth = await startHearth();
  operator = await startOperator({
    kubeConfig,
    // No kubelet runs the node pods: the one real Hearth serves every namespace's nodes.
    hearthUrl: () => hearth.url,
    resyncMs: 2_000,
    nodes: { operatorNamespace: 'hearth-system', maxReplicas: 3 },
    log: (record) => operatorLog.push(record),
    beforeStatusWrite: async (resource) => {
      if (raceStatusWrite !== undefined && (await raceStatusWrite(resource))) raceStatusWrite = undefined;
    },
  });
}, 240_000);

afterAll(async () => {
  await operator?.stop();
  await hearth?.stop();
  await kube?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('CRDs', () => {
  it('refuse an invalid Function, naming the field', async () => {
    const refused = await objects
      .create(fn('bad-runtime', { runtime: 'ruby', code: { inline: { 'index.js': HANDLER } } }))
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(refused).toBeInstanceOf(ApiException);
    expect((refused as ApiException<unknown>).code).toBe(422);
    expect(apiMessage(refused)).toContain('spec.runtime');
    expect(apiMessage(refused)).toContain('ruby');

    const scaling = await objects
      .create(fn('bad-scaling', { runtime: 'node20', scaling: { min: -1 } }))
      .catch((error: unknown) => error);
    expect((scaling as ApiException<unknown>).code).toBe(422);
    expect(apiMessage(scaling)).toContain('spec.scaling.min');
  });

  it('leave what the API schema cannot say to the operator, which reports it as InvalidSpec', async () => {
    await objects.create(
      fn('tiny-memory', {
        runtime: 'node20',
        limits: { memory: '1Ki' },
        code: { inline: { 'index.js': HANDLER } },
      }),
    );
    const resource = await reconciled('tiny-memory');
    const ready = resource.status?.conditions?.find((c) => c.type === 'Ready');
    expect(resource.status?.ready).toBe(false);
    expect(ready).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(ready?.message).toContain('limits.memory');
    await objects.delete(fn('tiny-memory', {}));
  });
});

describe('operator', () => {
  it('deploys a Function CR with inline code to Hearth, writes its status, and it answers over HTTP', async () => {
    await objects.create(
      fn('hello', { runtime: 'node20', env: { GREETING: 'hi' }, code: { inline: { 'index.js': HANDLER } } }),
    );
    const resource = await reconciled('hello');
    expect(resource.status).toMatchObject({ ready: true, observedGeneration: 1, version: '1' });
    expect(resource.status?.endpoint).toBe(`${hearth.url}/function/hello.default`);
    expect(resource.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      reason: 'Deployed',
    });
    expect(resource.metadata.finalizers).toContain(FINALIZER);

    const answer = await invoke(hearth.url, 'hello', { path: '/x' });
    expect(answer.status).toBe(200);
    expect(answer.json()).toEqual({ greeting: 'hi', path: '/x' });
  });

  it('applies the node tier: StatefulSet with health probes, gateway Service, HPA on in-flight work, NetworkPolicy, owned by the CRs', async () => {
    const hello = await readFunction('hello');
    type Owned = KubernetesObject & { spec: Record<string, unknown> };
    const statefulSet = await eventually('the StatefulSet', () =>
      read<Owned>('apps/v1', 'StatefulSet', NODES),
    );
    const owners = statefulSet.metadata?.ownerReferences ?? [];
    expect(owners).toContainEqual(
      expect.objectContaining({ kind: 'Function', name: 'hello', uid: hello?.metadata.uid }),
    );
    const container = (statefulSet.spec as { template: { spec: { containers: Record<string, unknown>[] } } })
      .template.spec.containers[0];
    expect(container).toMatchObject({
      livenessProbe: { httpGet: { path: '/healthz', port: 'http' } },
      readinessProbe: { httpGet: { path: '/readyz', port: 'http' } },
    });
    const service = await read<Owned>('v1', 'Service', GATEWAY_SERVICE);
    expect(service?.spec).toMatchObject({ ports: [expect.objectContaining({ port: 8080 })] });
    const hpa = await read<Owned>('autoscaling/v2', 'HorizontalPodAutoscaler', NODES);
    expect(hpa?.spec).toMatchObject({
      scaleTargetRef: { kind: 'StatefulSet', name: NODES },
      maxReplicas: 3,
      metrics: [{ type: 'Pods', pods: { metric: { name: 'hearth_instances' } } }],
    });
    const policy = await read<Owned>('networking.k8s.io/v1', 'NetworkPolicy', TENANT_POLICY);
    expect(JSON.stringify(policy?.spec)).toContain('hearth-system');
  });

  it('redeploys on a spec change and reports the new generation', async () => {
    await objects.patch(
      {
        apiVersion: 'hearth.dev/v1',
        kind: 'Function',
        metadata: { name: 'hello', namespace: 'default' },
        spec: { env: { GREETING: 'howdy' } },
      },
      undefined,
      undefined,
      'hearth-test',
      undefined,
      PatchStrategy.MergePatch,
    );
    const resource = await reconciled('hello');
    expect(resource.metadata.generation).toBe(2);
    expect(resource.status).toMatchObject({ ready: true, version: '2', observedGeneration: 2 });
    expect((await invoke(hearth.url, 'hello')).json()).toMatchObject({ greeting: 'howdy' });
  });

  it('re-reads and retries a status write the API server refuses with 409 Conflict', async () => {
    const before = operator.stats.conflicts;
    let raced = false;
    raceStatusWrite = async (resource) => {
      if (resource.metadata.name !== 'racer') return false;
      // Someone else changes the CR between the operator's read and its write.
      await objects.patch(
        {
          apiVersion: 'hearth.dev/v1',
          kind: 'Function',
          metadata: { name: resource.metadata.name, namespace: 'default', labels: { touched: 'yes' } },
        },
        undefined,
        undefined,
        'hearth-test',
        undefined,
        PatchStrategy.MergePatch,
      );
      raced = true;
      return true;
    };
    await objects.create(fn('racer', { runtime: 'node20', code: { inline: { 'index.js': HANDLER } } }));
    const resource = await reconciled('racer');
    expect(raced).toBe(true);
    expect(operator.stats.conflicts).toBeGreaterThan(before);
    expect(resource.metadata.labels).toMatchObject({ touched: 'yes' });
    expect(resource.status?.ready).toBe(true);
    expect(operatorLog.some((line) => String(line.msg).startsWith('conflict'))).toBe(true);
  });

  it('makes a deleted owned object again', async () => {
    const original = await read<KubernetesObject>('apps/v1', 'StatefulSet', NODES);
    await objects.delete({
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: NODES, namespace: 'default' },
    });
    const again = await eventually(
      'the StatefulSet made again',
      async () => {
        const current = await read<KubernetesObject>('apps/v1', 'StatefulSet', NODES);
        return current !== undefined && current.metadata?.uid !== original?.metadata?.uid
          ? current
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(again.metadata?.ownerReferences?.map((owner) => owner.name)).toContain('hello');
  });

  it('applies an EventGateway CR to Hearth and routes through it', async () => {
    await objects.create({
      apiVersion: 'hearth.dev/v1',
      kind: 'EventGateway',
      metadata: { name: 'edge', namespace: 'default' },
      spec: { functions: [{ name: 'hello', match: { path: '/greet/*' } }] },
    } as KubernetesObject);
    const resource = await reconciled('edge', 'default', 'EventGateway');
    expect(resource.status).toMatchObject({ ready: true });
    const detail = await api(hearth.url, '/api/v1/namespaces/default/gateways/edge');
    expect(detail.status).toBe(200);
    const routed = await fetch(`${hearth.url}/greet/there`);
    expect(routed.status).toBe(200);
    expect(await routed.json()).toMatchObject({ greeting: 'howdy' });
  });

  it('on deletion removes the function from Hearth, then the namespace’s node tier with the last resource', async () => {
    await objects.create(
      fn('solo', { runtime: 'node20', code: { inline: { 'index.js': HANDLER } } }, 'tenant-b'),
    );
    await reconciled('solo', 'tenant-b');
    expect((await api(hearth.url, '/api/v1/namespaces/tenant-b/functions/solo')).status).toBe(200);
    expect(await read('apps/v1', 'StatefulSet', NODES, 'tenant-b')).toBeDefined();
    expect(await read('networking.k8s.io/v1', 'NetworkPolicy', TENANT_POLICY, 'tenant-b')).toBeDefined();

    await objects.delete(fn('solo', {}, 'tenant-b'));
    await eventually(
      'the CR gone (finalizer released)',
      async () => ((await readFunction('solo', 'tenant-b')) === undefined ? true : undefined),
      {
        timeoutMs: 30_000,
      },
    );
    expect((await api(hearth.url, '/api/v1/namespaces/tenant-b/functions/solo')).status).toBe(404);
    await eventually('the node tier removed', async () =>
      (await read('apps/v1', 'StatefulSet', NODES, 'tenant-b')) === undefined &&
      (await read('networking.k8s.io/v1', 'NetworkPolicy', TENANT_POLICY, 'tenant-b')) === undefined
        ? true
        : undefined,
    );
    // Another namespace's tier is untouched.
    expect(await read('apps/v1', 'StatefulSet', NODES)).toBeDefined();
  });

  it('deploys code from a URL of a .tar.gz', async () => {
    const folder = await makeFolder({
      'index.js': HANDLER,
      'hearth.yaml': 'ignored: the CR is the manifest\n',
    });
    folders.push(folder);
    const archive = await packFolder(folder.dir);
    const server = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/gzip' }).end(archive),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      await objects.create(
        fn('fetched', {
          runtime: 'node20',
          env: { GREETING: 'from a url' },
          code: { url: `http://127.0.0.1:${port}/fn.tar.gz` },
        }),
      );
      const resource = await reconciled('fetched');
      expect(resource.status).toMatchObject({ ready: true, version: '1' });
      expect((await invoke(hearth.url, 'fetched')).json()).toMatchObject({ greeting: 'from a url' });
    } finally {
      // Gone with its server: a CR left naming a closed port would be fetched again by every later pass,
      // and that port may by then belong to another suite's server that never answers.
      await objects
        .delete({
          apiVersion: 'hearth.dev/v1',
          kind: 'Function',
          metadata: { name: 'fetched', namespace: 'default' },
        })
        .catch(() => undefined);
      await eventually(
        'the fetched Function gone',
        async () =>
          (await read('hearth.dev/v1', 'Function', 'fetched', 'default')) === undefined ? true : undefined,
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      server.close();
    }
  });

  it('undoes an edit to a field it owns on an owned object', async () => {
    await objects.patch(
      {
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: NODES, namespace: 'default' },
        spec: { replicas: 7 },
      },
      undefined,
      undefined,
      'someone-else',
      undefined,
      PatchStrategy.MergePatch,
    );
    await eventually(
      'the StatefulSet back to 1 replica',
      async () => {
        const current = await read<KubernetesObject & { spec: { replicas: number } }>(
          'apps/v1',
          'StatefulSet',
          NODES,
        );
        return current?.spec.replicas === 1 ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  });

  it('refuses code from a URL that unpacks past the cap (a gzip bomb) as CodeTooLarge naming it', async () => {
    const bomb = gzipBomb(CODE_LIMITS.maxUnpackedBytes + 1024);
    const server = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/gzip' }).end(bomb),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      await objects.create(
        fn('bomb', { runtime: 'node20', code: { url: `http://127.0.0.1:${port}/bomb.tar.gz` } }),
      );
      const resource = await reconciled('bomb');
      expect(resource.status?.ready).toBe(false);
      const ready = resource.status?.conditions?.find((c) => c.type === 'Ready');
      expect(ready).toMatchObject({ status: 'False', reason: 'CodeTooLarge' });
      expect(ready?.message).toContain(`archive unpacks to more than ${CODE_LIMITS.maxUnpackedBytes} bytes`);
      expect(ready?.message).toContain('256 MiB unpacked');
    } finally {
      await objects.delete(fn('bomb', {})).catch(() => undefined);
      await eventually(
        'the bomb Function gone',
        async () =>
          (await read('hearth.dev/v1', 'Function', 'bomb', 'default')) === undefined ? true : undefined,
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      server.close();
    }
  });

  it('reports a missing code ConfigMap as CodeNotFound', async () => {
    await objects.create(fn('orphan', { runtime: 'node20', code: { configMap: { name: 'no-such-code' } } }));
    const resource = await reconciled('orphan');
    expect(resource.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'CodeNotFound',
    });
    await objects.delete(fn('orphan', {}));
  });
});

describe('hearth deploy --target k8s', () => {
  it('packs the folder into a ConfigMap and a Function CR the operator deploys', async () => {
    const folder = await makeFolder({
      'hearth.yaml':
        'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: packed }\nspec:\n  runtime: node20\n  env: { GREETING: packed }\n',
      'index.js': HANDLER,
      'lib/extra.txt': 'a nested file travels too\n',
    });
    folders.push(folder);
    const result = await runCli(['deploy', folder.dir, '--target', 'k8s', '--kubeconfig', kube.kubeconfig]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('deployed default/packed version 1 through Kubernetes');
    const resource = await readFunction('packed');
    expect(resource?.spec.code).toMatchObject({ configMap: { name: 'hearth-code-packed' } });
    expect((await invoke(hearth.url, 'packed')).json()).toMatchObject({ greeting: 'packed' });

    const refused = await runCli(['deploy', folder.dir, '--target', 'k9s', '--kubeconfig', kube.kubeconfig]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('--target');
  });
});

describe('Helm chart', () => {
  const chart = join(ROOT, 'deploy', 'helm', 'hearth');

  it('passes helm lint', () => {
    const output = execFileSync(HELM, ['lint', chart, '--strict'], { encoding: 'utf8' });
    expect(output).toContain('0 chart(s) failed');
  });

  it('renders manifests the API server accepts (server-side dry run), with least-privilege RBAC', async () => {
    for (const values of [
      [],
      ['--set', 'operator.watchNamespace=tenant-b', '--set', 'nodes.cluster.postgres=postgres://pg/hearth'],
    ]) {
      const rendered = execFileSync(
        HELM,
        ['template', 'hearth', chart, '--namespace', 'hearth-system', '--include-crds', ...values],
        { encoding: 'utf8' },
      );
      const documents = (loadAllYaml(rendered) as (KubernetesObject | null)[]).filter(
        (doc): doc is KubernetesObject => doc !== null,
      );
      const kinds = documents.map((doc) => doc.kind).sort();
      expect(kinds).toEqual(
        expect.arrayContaining(['CustomResourceDefinition', 'Deployment', 'ServiceAccount']),
      );
      for (const doc of documents) {
        doc.metadata = { namespace: 'hearth-system', ...doc.metadata };
        if (doc.kind === 'CustomResourceDefinition' || doc.kind?.startsWith('Cluster'))
          delete doc.metadata.namespace;
        const accepted = await objects
          .patch(doc, undefined, 'All', 'hearth-test', true, PatchStrategy.ServerSideApply)
          .then(
            () => 'accepted',
            (error: unknown) => `${doc.kind}/${doc.metadata?.name}: ${apiMessage(error)}`,
          );
        expect(accepted).toBe('accepted');
      }
      const role = documents.find(
        (doc) => doc.kind === 'ClusterRole' || doc.kind === 'Role',
      ) as KubernetesObject & {
        rules: { resources: string[]; verbs: string[] }[];
      };
      const resources = role.rules.flatMap((rule) => rule.resources);
      expect(resources).not.toContain('secrets');
      expect(resources).not.toContain('pods');
      expect(role.rules.flatMap((rule) => rule.verbs)).not.toContain('*');
    }
  });
});

describe('hearth operator', () => {
  it('refuses a bad flag with one line', async () => {
    const result = await runCli(['operator', '--kubeconfig', kube.kubeconfig, '--node-replicas', '0']);
    expect(result.code).not.toBe(0);
    expect(result.stderr.trim().split('\n')).toEqual([expect.stringContaining('--node-replicas')]);
  });

  it('runs as a command: reconciles a Function, then stops on SIGTERM', async () => {
    // The in-process operator steps aside: one operator per cluster, as the chart runs it.
    await operator.stop();
    const child = spawn(
      process.execPath,
      [BIN, 'operator', '--kubeconfig', kube.kubeconfig, '--hearth-url', hearth.url, '--resync', '2'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    try {
      await objects.create(
        fn('by-command', { runtime: 'node20', code: { inline: { 'index.js': HANDLER } } }),
      );
      const resource = await reconciled('by-command').catch((error: Error) => {
        // Why it did not: the operator's own log says.
        throw new Error(`${error.message}\noperator's stderr:\n${stderr.slice(-4000)}`);
      });
      expect(resource.status).toMatchObject({ ready: true, version: '1' });
      expect((await invoke(hearth.url, 'by-command')).status).toBe(200);
    } finally {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
    expect(stderr).toContain('watching Function and EventGateway resources');
  }, 120_000);
});
