/** @module Turns stored functions and live scheduler state into the API's wire shapes. */

import { type FunctionRef, type IsolationName, resolveSpec } from '../../domain/function.js';
import { formatBytes, formatDuration } from '../../domain/units.js';
import type { FunctionStatus } from '../../scheduler/index.js';
import { toDeploymentSummary } from '../deploy.js';
import type { StoredDeployment, StoredFunction, StoredVersion } from '../store/index.js';
import { toAutoscaling } from './autoscaling.js';
import type { FunctionDetail, FunctionSummary } from './types.js';

export function invokePath(ref: FunctionRef): string {
  return ref.namespace === 'default' ? `/function/${ref.name}` : `/function/${ref.name}.${ref.namespace}`;
}

/** `instances`: the live ones, or the status they are counted from. */
export function toSummary(
  fn: StoredFunction,
  instances: number | FunctionStatus | undefined,
): FunctionSummary {
  const spec = fn.active.manifest.spec;
  return {
    namespace: fn.namespace,
    name: fn.name,
    runtime: spec.runtime ?? 'image',
    version: fn.active.version,
    isolation: spec.isolation ?? 'sandbox',
    instances:
      typeof instances === 'number'
        ? instances
        : (instances?.instances.filter((instance) => instance.state !== 'stopped').length ?? 0),
    url: invokePath(fn),
    updatedAt: fn.updatedAt,
  };
}

export function isolationNote(isolation: IsolationName, namespace = 'default', runtime?: string): string {
  if (isolation === 'isolate' && runtime === 'wasm')
    return `isolate (wasm host): its own WebAssembly instances (linear memory capped at limits.memory, no preopened directory, run on a worker thread stopped at the deadline), inside one sandboxed host process (bubblewrap, cgroup) SHARED with the other wasm isolate functions of namespace ${namespace} (never another namespace's): they share its process id, cgroup (memory, cpu, pids), worker threads, compiled modules of identical bytes, /tmp and uid`;
  if (isolation === 'isolate')
    return `isolate: a V8 isolate of its own (heap capped at limits.memory), inside one sandboxed host process (bubblewrap, cgroup) SHARED with the other isolate functions of namespace ${namespace} (never another namespace's): they share its process id, cgroup (memory, cpu, pids), event loop, /tmp and uid; for trusted code`;
  if (isolation === 'microvm')
    return 'microvm: a QEMU microVM of its own (own kernel, RAM sized to limits.memory, no network device), code shared read-only';
  if (isolation === 'container')
    return 'container: crun with user, pid, mount, ipc and uts namespaces, read-only image rootfs, private /tmp, seccomp, cgroup limits';
  return isolation === 'sandbox'
    ? 'sandbox: bubblewrap namespaces (mount, pid, ipc, uts, net), read-only root, private /tmp, unprivileged uid'
    : 'process: NOT SANDBOXED — a plain child process with host access; for trusted development code only';
}

export function toDetail(
  fn: StoredFunction,
  status: FunctionStatus | undefined,
  versions: readonly StoredVersion[],
  lastDeployment: StoredDeployment | undefined,
): FunctionDetail {
  const spec = resolveSpec(fn.active.manifest.spec);
  return {
    ...toSummary(fn, status),
    manifest: fn.active.manifest,
    convention: status?.convention ?? null,
    spec: {
      runtime: spec.runtime,
      handler: spec.handler,
      env: spec.env,
      limits: {
        memory: formatBytes(spec.limits.memoryBytes),
        cpu: spec.limits.cpu,
        timeout: formatDuration(spec.limits.timeoutMs),
        maxBody: formatBytes(spec.limits.maxBodyBytes),
        pids: spec.limits.pids,
        tmp: formatBytes(spec.limits.tmpBytes),
      },
      scaling: {
        min: spec.scaling.min,
        max: spec.scaling.max,
        targetConcurrency: spec.scaling.targetConcurrency,
        idleTimeout: formatDuration(spec.scaling.idleTimeoutMs),
        warmPoolRatio: spec.scaling.warmPoolRatio,
      },
      isolation: spec.isolation,
      egress: spec.egress,
      auth: spec.auth,
      priority: spec.priority,
      eventFormat: spec.eventFormat,
      build: { scripts: spec.build.scripts },
    },
    isolationNote: isolationNote(spec.isolation, fn.namespace, spec.runtime),
    code: { hash: fn.active.codeHash, files: fn.active.codeFiles, bytes: fn.active.codeBytes },
    dependencies: fn.active.depsKey === null ? null : { key: fn.active.depsKey },
    ...(fn.active.image === null
      ? {}
      : {
          image: {
            reference: fn.active.image.reference,
            manifestDigest: fn.active.image.manifestDigest,
            sizeBytes: fn.active.image.sizeBytes,
            config: fn.active.image.config,
            ...(spec.command === undefined ? {} : { command: spec.command }),
            ...(spec.args === undefined ? {} : { args: spec.args }),
          },
        }),
    activeInstances: status?.instances ?? [],
    startingInstances: status?.starting ?? 0,
    queuedRequests: status?.queued ?? 0,
    autoscaling: toAutoscaling(status?.scaling, spec),
    versions: versions.map((version) => ({
      version: version.version,
      createdAt: version.createdAt,
      codeHash: version.codeHash,
    })),
    lastDeployment: lastDeployment === undefined ? null : toDeploymentSummary(lastDeployment),
    createdAt: fn.createdAt,
  };
}
