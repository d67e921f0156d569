/**
 * @module `hearth deploy --target k8s`: a packed function folder becomes a ConfigMap (`hearth-code-NAME`, the
 * .tar.gz under binaryData `function.tar.gz`) and a Function CR naming it, both server-side applied; the
 * operator then deploys it to the namespace's Hearth nodes. The ConfigMap's digest is in the CR's spec, so a
 * code-only change is a new generation and `--wait` can tell when the operator has it.
 */

import { createHash } from 'node:crypto';
import {
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  PatchStrategy,
} from '@kubernetes/client-node';
import { API_VERSION } from '../domain/function.js';
import { ARCHIVE_KEY } from './code.js';
import type { HearthResource } from './operator.js';
import { FIELD_MANAGER } from './resources.js';

/** ConfigMaps hold at most 1 MiB; the base64 of the archive must fit with room for metadata. */
export const MAX_ARCHIVE_BYTES = 700 * 1024;

export interface KubernetesDeployment {
  readonly namespace: string;
  readonly name: string;
  readonly configMap: string;
  readonly digest: string;
  readonly generation: number;
}

export async function applyFunctionPackage(
  kubeConfig: KubeConfig,
  target: { namespace: string; name: string },
  spec: Record<string, unknown>,
  archive: Buffer,
): Promise<KubernetesDeployment> {
  if (archive.length > MAX_ARCHIVE_BYTES)
    throw new Error(
      `the packed folder is ${archive.length} bytes; a ConfigMap holds at most ${MAX_ARCHIVE_BYTES} (use spec.code.url for larger code)`,
    );
  const objects = KubernetesObjectApi.makeApiClient(kubeConfig);
  const digest = createHash('sha256').update(archive).digest('hex');
  const configMap = `hearth-code-${target.name}`;
  const labels = { 'app.kubernetes.io/part-of': 'hearth', 'hearth.dev/function': target.name };
  await objects.patch(
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: configMap, namespace: target.namespace, labels },
      binaryData: { [ARCHIVE_KEY]: archive.toString('base64') },
    } as never,
    undefined,
    undefined,
    FIELD_MANAGER,
    true,
    PatchStrategy.ServerSideApply,
  );
  const { source: _source, ...rest } = spec;
  const resource: KubernetesObject & { spec: Record<string, unknown> } = {
    apiVersion: API_VERSION,
    kind: 'Function',
    metadata: { name: target.name, namespace: target.namespace, labels },
    spec: { ...rest, code: { configMap: { name: configMap, digest } } },
  };
  const applied = await objects.patch(
    resource,
    undefined,
    undefined,
    'hearth-cli',
    true,
    PatchStrategy.ServerSideApply,
  );
  return { ...target, configMap, digest, generation: applied.metadata?.generation ?? 0 };
}

/** Reads a Function CR until the operator reports the given generation; answers its last copy. */
export async function waitForFunction(
  kubeConfig: KubeConfig,
  target: { namespace: string; name: string; generation: number },
  timeoutMs: number,
): Promise<HearthResource> {
  const objects = KubernetesObjectApi.makeApiClient(kubeConfig);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const resource = await objects.read<HearthResource>({
      apiVersion: API_VERSION,
      kind: 'Function',
      metadata: { name: target.name, namespace: target.namespace },
    });
    if ((resource.status?.observedGeneration ?? 0) >= target.generation) return resource;
    if (Date.now() > deadline) return resource;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
