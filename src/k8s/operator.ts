/**
 * @module The Hearth operator (issue 12): watches Function and EventGateway CRs (hearth.dev/v1) and, per
 * namespace that holds any, applies the node tier (resources.ts), deploys each resource to the namespace's
 * Hearth nodes through the Hearth API, and writes status back. Level-triggered: every event (a CR changed,
 * an owned object deleted) and a periodic resync reconcile the whole namespace from fresh reads, one
 * namespace at a time, so a missed event costs at most one resync.
 */

import {
  ApiException,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  PatchStrategy,
  Watch,
} from '@kubernetes/client-node';
// Not re-exported by the package's index; the file is part of its published dist.
import { ObjectSerializer } from '@kubernetes/client-node/dist/serializer.js';
import { HearthError } from '../domain/errors.js';
import { API_VERSION, parseFunctionManifest } from '../domain/function.js';
import { parseGatewayManifest } from '../domain/gateway.js';
import { CodeError, type CodeReference, packCode } from './code.js';
import { GROUP, VERSION } from './crd.js';
import {
  DEFAULT_NODE_TEMPLATE,
  FIELD_MANAGER,
  gatewayUrl,
  type NodeTemplate,
  nodeTier,
  OWNED_SELECTOR,
  type OwnerReference,
} from './resources.js';

/** How long the operator waits for one call to a Hearth node's API. */
const HEARTH_CALL_TIMEOUT_MS = 30_000;

export const FINALIZER = 'hearth.dev/operator';

export type HearthKind = 'Function' | 'EventGateway';
const PLURAL: Record<HearthKind, string> = { Function: 'functions', EventGateway: 'eventgateways' };

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface HearthStatus {
  ready: boolean;
  version?: string;
  endpoint?: string;
  observedGeneration?: number;
  conditions: Condition[];
}

export interface HearthResource extends KubernetesObject {
  metadata: NonNullable<KubernetesObject['metadata']> & { name: string; namespace: string; uid: string };
  spec: Record<string, unknown>;
  status?: Partial<HearthStatus>;
}

export interface OperatorOptions {
  readonly kubeConfig: KubeConfig;
  /** Watch one namespace only (default: all). */
  readonly namespace?: string;
  readonly nodes?: Partial<NodeTemplate>;
  /** The Hearth API of a namespace's nodes (default: its gateway Service, gatewayUrl()). */
  readonly hearthUrl?: (namespace: string) => string;
  /** An API key for the Hearth API (HEARTH_API_KEY), when the nodes require one. */
  readonly hearthApiKey?: string;
  /** Full reconcile of every namespace this often (default 30 s). */
  readonly resyncMs?: number;
  /** One JSON line per notable event (default: stderr). */
  readonly log?: (record: Record<string, unknown>) => void;
  /** Called before each status write, with the object as read: tracing, and tests that race the write. */
  readonly beforeStatusWrite?: (resource: HearthResource) => Promise<void>;
}

export interface OperatorStats {
  reconciles: number;
  /** Writes the API server refused with 409 Conflict and that were re-read and retried. */
  conflicts: number;
  /** Owned objects found missing and made again. */
  recreated: number;
}

export interface Operator {
  readonly stats: OperatorStats;
  /** Reconciles a namespace now and resolves when that pass is done. */
  reconcile(namespace: string): Promise<void>;
  stop(): Promise<void>;
}

function isStatus(error: unknown, code: number): boolean {
  return error instanceof ApiException && error.code === code;
}

function describe(error: unknown): string {
  if (error instanceof ApiException) {
    const body = typeof error.body === 'string' ? error.body : JSON.stringify(error.body);
    try {
      const parsed = JSON.parse(body) as { message?: string };
      return `HTTP ${error.code}: ${parsed.message ?? body}`;
    } catch {
      return `HTTP ${error.code}: ${body}`;
    }
  }
  return error instanceof Error ? error.message : String(error);
}

const OWNED_KINDS = [
  { apiVersion: 'apps/v1', kind: 'StatefulSet', path: '/apis/apps/v1/statefulsets', model: 'V1StatefulSet' },
  { apiVersion: 'v1', kind: 'Service', path: '/api/v1/services', model: 'V1Service' },
  {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    path: '/apis/autoscaling/v2/horizontalpodautoscalers',
    model: 'V2HorizontalPodAutoscaler',
  },
  {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    path: '/apis/networking.k8s.io/v1/networkpolicies',
    model: 'V1NetworkPolicy',
  },
] as const;

export async function startOperator(options: OperatorOptions): Promise<Operator> {
  const objects = KubernetesObjectApi.makeApiClient(options.kubeConfig);
  const custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
  const watcher = new Watch(options.kubeConfig);
  const template: NodeTemplate = { ...DEFAULT_NODE_TEMPLATE, ...options.nodes };
  const hearthUrl = options.hearthUrl ?? gatewayUrl;
  const log =
    options.log ?? ((record: Record<string, unknown>) => process.stderr.write(`${JSON.stringify(record)}\n`));
  const stats: OperatorStats = { reconciles: 0, conflicts: 0, recreated: 0 };
  /** Digest of what each resource last deployed to Hearth: an unchanged CR is not sent again. */
  const deployed = new Map<string, string>();
  let stopped = false;

  // One pass per namespace at a time; a request during a pass runs one more pass after it.
  const running = new Map<string, Promise<void>>();
  const again = new Set<string>();
  function reconcile(namespace: string): Promise<void> {
    const current = running.get(namespace);
    if (current !== undefined) {
      again.add(namespace);
      return current.then(() => running.get(namespace) ?? Promise.resolve());
    }
    const pass = (async () => {
      do {
        again.delete(namespace);
        try {
          await reconcileNamespace(namespace);
        } catch (error) {
          log({
            level: 'warn',
            msg: 'reconcile failed; retried at the next event or resync',
            namespace,
            error: describe(error),
          });
        }
      } while (again.has(namespace) && !stopped);
    })().finally(() => running.delete(namespace));
    running.set(namespace, pass);
    return pass;
  }

  async function list(kind: HearthKind, namespace: string): Promise<HearthResource[]> {
    const answer = await objects.list<HearthResource>(`${GROUP}/${VERSION}`, kind, namespace);
    return answer.items;
  }

  async function hearth(
    namespace: string,
    method: string,
    path: string,
    body?: { json?: unknown; archive?: Buffer },
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const headers: Record<string, string> = {};
    if (options.hearthApiKey !== undefined) headers.authorization = `Bearer ${options.hearthApiKey}`;
    let payload: string | Buffer | undefined;
    if (body?.json !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body.json);
    } else if (body?.archive !== undefined) {
      headers['content-type'] = 'application/gzip';
      payload = body.archive;
    }
    // Bounded: a Hearth that does not answer fails this pass (logged, retried) instead of holding every
    // later pass of the namespace.
    const response = await fetch(`${hearthUrl(namespace)}${path}`, {
      method,
      headers,
      signal: AbortSignal.timeout(HEARTH_CALL_TIMEOUT_MS),
      ...(payload === undefined ? {} : { body: payload }),
    });
    const text = await response.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { text };
    }
    return { status: response.status, body: parsed };
  }

  function hearthMessage(answer: { status: number; body: Record<string, unknown> }): string {
    const error = answer.body.error as { message?: string } | undefined;
    return `Hearth answered HTTP ${answer.status}${error?.message === undefined ? '' : `: ${error.message}`}`;
  }

  async function reconcileNamespace(namespace: string): Promise<void> {
    stats.reconciles++;
    const resources = [...(await list('Function', namespace)), ...(await list('EventGateway', namespace))];
    const live: HearthResource[] = [];
    for (const resource of resources) {
      if (resource.metadata.deletionTimestamp !== undefined) {
        await finalize(resource);
        continue;
      }
      if (!(resource.metadata.finalizers ?? []).includes(FINALIZER)) {
        const added = await addFinalizer(resource);
        if (added === undefined) continue;
        live.push(added);
      } else live.push(resource);
    }
    const owners: OwnerReference[] = live.map((resource) => ({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: resource.kind as HearthKind,
      name: resource.metadata.name,
      uid: resource.metadata.uid,
      blockOwnerDeletion: false,
    }));
    const tier = nodeTier(namespace, owners, template);
    if (live.length === 0) {
      for (const object of tier) await deleteIfThere(object);
      return;
    }
    let tierProblem: string | undefined;
    try {
      for (const object of tier) {
        const existed = await exists(object);
        // The client serialises known kinds from its models, whose names differ from the wire's in places
        // (NetworkPolicyPeer's `from` is `_from`): the wire form is turned into the model first.
        const model = OWNED_KINDS.find((owned) => owned.kind === object.kind)?.model;
        const typed = (
          model === undefined ? object : ObjectSerializer.deserialize(object, model)
        ) as KubernetesObject;
        await objects.patch(typed, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
        if (!existed && stats.reconciles > 1) {
          stats.recreated++;
          log({
            level: 'info',
            msg: 'owned object applied',
            namespace,
            kind: object.kind,
            name: object.metadata.name,
          });
        }
      }
    } catch (error) {
      tierProblem = describe(error);
    }
    // Functions before gateways: a gateway's routes name functions.
    for (const resource of live) await reconcileResource(resource, tierProblem);
  }

  async function exists(object: KubernetesObject): Promise<boolean> {
    try {
      await objects.read(object as never);
      return true;
    } catch (error) {
      if (isStatus(error, 404)) return false;
      throw error;
    }
  }

  async function deleteIfThere(object: KubernetesObject): Promise<void> {
    try {
      await objects.delete(object);
      log({
        level: 'info',
        msg: 'owned object deleted: no Hearth resource left',
        kind: object.kind,
        namespace: object.metadata?.namespace,
      });
    } catch (error) {
      if (!isStatus(error, 404)) throw error;
    }
  }

  async function reread(resource: HearthResource): Promise<HearthResource | undefined> {
    try {
      return await objects.read<HearthResource>({
        apiVersion: resource.apiVersion ?? `${GROUP}/${VERSION}`,
        kind: resource.kind ?? 'Function',
        metadata: { name: resource.metadata.name, namespace: resource.metadata.namespace },
      });
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
  }

  /**
   * Writes with optimistic concurrency: on 409 Conflict the object is read again and `write` runs on the
   * fresh copy (up to 5 times). Answers the written object, or undefined when the object is gone.
   */
  async function withConflictRetry<T>(
    resource: HearthResource,
    write: (fresh: HearthResource) => Promise<T>,
  ): Promise<T | undefined> {
    let current: HearthResource | undefined = resource;
    for (let attempt = 1; current !== undefined; attempt++) {
      try {
        return await write(current);
      } catch (error) {
        if (!isStatus(error, 409) || attempt >= 5) {
          if (isStatus(error, 404)) return undefined;
          throw error;
        }
        stats.conflicts++;
        log({
          level: 'info',
          msg: 'conflict: re-reading and retrying',
          kind: resource.kind,
          namespace: resource.metadata.namespace,
          name: resource.metadata.name,
          attempt,
        });
        current = await reread(current);
      }
    }
    return undefined;
  }

  async function addFinalizer(resource: HearthResource): Promise<HearthResource | undefined> {
    return withConflictRetry(resource, async (fresh) => {
      if ((fresh.metadata.finalizers ?? []).includes(FINALIZER)) return fresh;
      const updated = {
        ...fresh,
        metadata: { ...fresh.metadata, finalizers: [...(fresh.metadata.finalizers ?? []), FINALIZER] },
      };
      return (await objects.replace(updated, undefined, undefined, FIELD_MANAGER)) as HearthResource;
    });
  }

  async function finalize(resource: HearthResource): Promise<void> {
    const { namespace, name } = resource.metadata;
    if ((resource.metadata.finalizers ?? []).includes(FINALIZER)) {
      const path =
        resource.kind === 'EventGateway'
          ? `/api/v1/namespaces/${namespace}/gateways/${name}`
          : `/api/v1/namespaces/${namespace}/functions/${name}`;
      try {
        const answer = await hearth(namespace, 'DELETE', path);
        if (answer.status >= 300 && answer.status !== 404) throw new Error(hearthMessage(answer));
      } catch (error) {
        // The nodes may be gone already (the namespace is being emptied): nothing is left to remove there.
        log({
          level: 'warn',
          msg: 'could not remove from Hearth; removing the finalizer anyway',
          namespace,
          name,
          error: describe(error),
        });
      }
      deployed.delete(`${resource.kind}/${namespace}/${name}`);
      await withConflictRetry(resource, async (fresh) => {
        const finalizers = (fresh.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
        return objects.replace(
          { ...fresh, metadata: { ...fresh.metadata, finalizers } },
          undefined,
          undefined,
          FIELD_MANAGER,
        );
      });
      log({ level: 'info', msg: 'deleted', kind: resource.kind, namespace, name });
    }
  }

  async function readConfigMap(namespace: string, name: string) {
    try {
      return await objects.read<
        KubernetesObject & { data?: Record<string, string>; binaryData?: Record<string, string> }
      >({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, namespace },
      });
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw error;
    }
  }

  /** Deploys one resource to Hearth; answers its status. */
  async function deploy(
    resource: HearthResource,
  ): Promise<
    Omit<HearthStatus, 'conditions'> & { condition: Omit<Condition, 'lastTransitionTime' | 'type'> }
  > {
    const { namespace, name } = resource.metadata;
    const generation = resource.metadata.generation;
    const endpointBase = hearthUrl(namespace);
    const key = `${resource.kind}/${namespace}/${name}`;
    const failed = (reason: string, message: string) => ({
      ready: false,
      ...(generation === undefined ? {} : { observedGeneration: generation }),
      condition: { status: 'False' as const, reason, message },
    });
    const metadata = { name, namespace };
    if (resource.kind === 'EventGateway') {
      const manifest = { apiVersion: API_VERSION, kind: 'EventGateway', metadata, spec: resource.spec };
      try {
        parseGatewayManifest(manifest, `EventGateway ${namespace}/${name}`);
      } catch (error) {
        return failed('InvalidSpec', error instanceof HearthError ? error.message : describe(error));
      }
      const answer = await hearth(namespace, 'PUT', `/api/v1/namespaces/${namespace}/gateways/${name}`, {
        json: manifest,
      });
      if (answer.status !== 200) return failed('DeployFailed', hearthMessage(answer));
      return {
        ready: true,
        endpoint: endpointBase,
        ...(generation === undefined ? {} : { observedGeneration: generation }),
        condition: {
          status: 'True',
          reason: 'Applied',
          message: 'the gateway routes are served by the Hearth nodes',
        },
      };
    }
    const { code, ...spec } = resource.spec as { code?: CodeReference } & Record<string, unknown>;
    const manifest = { apiVersion: API_VERSION, kind: 'Function', metadata, spec };
    try {
      parseFunctionManifest(manifest, `Function ${namespace}/${name}`);
    } catch (error) {
      return failed('InvalidSpec', error instanceof HearthError ? error.message : describe(error));
    }
    if (code === undefined && spec.image === undefined)
      return failed(
        'InvalidSpec',
        'spec.code: one of inline, configMap or url (or spec.image for a container image)',
      );
    let packed: Awaited<ReturnType<typeof packCode>>;
    try {
      packed = await packCode(manifest, code ?? { inline: {} }, (configMap) =>
        readConfigMap(namespace, configMap),
      );
    } catch (error) {
      if (error instanceof CodeError) return failed(error.reason, error.message);
      throw error;
    }
    const endpoint = `${endpointBase}/function/${name}.${namespace}`;
    const previous = resource.status?.version;
    if (deployed.get(key) === packed.digest && previous !== undefined)
      return {
        ready: true,
        version: previous,
        endpoint,
        ...(generation === undefined ? {} : { observedGeneration: generation }),
        condition: { status: 'True', reason: 'Deployed', message: `version ${previous} serves` },
      };
    let answer: { status: number; body: Record<string, unknown> };
    try {
      answer = await hearth(namespace, 'POST', `/api/v1/namespaces/${namespace}/functions/${name}/deploy`, {
        archive: packed.archive,
      });
    } catch (error) {
      return failed('HearthUnavailable', `the Hearth API at ${endpointBase}: ${describe(error)}`);
    }
    if (answer.status !== 200) return failed('DeployFailed', hearthMessage(answer));
    deployed.set(key, packed.digest);
    const fn = answer.body.function as { version?: number | null; activeVersion?: number | null } | null;
    const deployment = answer.body.deployment as { version?: number | null } | undefined;
    const version = String(deployment?.version ?? fn?.activeVersion ?? fn?.version ?? '');
    return {
      ready: true,
      version,
      endpoint,
      ...(generation === undefined ? {} : { observedGeneration: generation }),
      condition: { status: 'True', reason: 'Deployed', message: `version ${version} serves` },
    };
  }

  function condition(
    previous: Condition[] | undefined,
    next: Omit<Condition, 'lastTransitionTime'>,
  ): Condition {
    const before = previous?.find((c) => c.type === next.type);
    const changed = before === undefined || before.status !== next.status;
    return {
      ...next,
      lastTransitionTime: changed
        ? new Date().toISOString()
        : (before?.lastTransitionTime ?? new Date().toISOString()),
    };
  }

  async function reconcileResource(resource: HearthResource, tierProblem: string | undefined): Promise<void> {
    let outcome: Awaited<ReturnType<typeof deploy>>;
    try {
      outcome = await deploy(resource);
    } catch (error) {
      outcome = {
        ready: false,
        ...(resource.metadata.generation === undefined
          ? {}
          : { observedGeneration: resource.metadata.generation }),
        condition: { status: 'False', reason: 'HearthUnavailable', message: describe(error) },
      };
    }
    const { condition: ready, ...fields } = outcome;
    const generation = resource.metadata.generation;
    const conditions = [
      condition(resource.status?.conditions as Condition[] | undefined, {
        type: 'NodesReady',
        status: tierProblem === undefined ? 'True' : 'False',
        reason: tierProblem === undefined ? 'Applied' : 'ApplyFailed',
        message: tierProblem ?? 'StatefulSet, Service, HorizontalPodAutoscaler and NetworkPolicy applied',
        ...(generation === undefined ? {} : { observedGeneration: generation }),
      }),
      condition(resource.status?.conditions as Condition[] | undefined, {
        type: 'Ready',
        ...ready,
        ...(generation === undefined ? {} : { observedGeneration: generation }),
      }),
    ];
    const status: HearthStatus = { ...fields, conditions };
    const same = JSON.stringify(comparable(resource.status)) === JSON.stringify(comparable(status));
    if (same) return;
    if (options.beforeStatusWrite !== undefined) await options.beforeStatusWrite(resource);
    await withConflictRetry(resource, async (fresh) => {
      // The status describes the generation this pass deployed; a newer spec gets its own pass.
      if (fresh.metadata.generation !== resource.metadata.generation) again.add(resource.metadata.namespace);
      return custom.replaceNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace: fresh.metadata.namespace,
        plural: PLURAL[(fresh.kind ?? 'Function') as HearthKind],
        name: fresh.metadata.name,
        body: { ...fresh, status },
      });
    });
    log({
      level: 'info',
      msg: 'status',
      kind: resource.kind,
      namespace: resource.metadata.namespace,
      name: resource.metadata.name,
      ready: status.ready,
      reason: ready.reason,
    });
  }

  // --- watching ---------------------------------------------------------------------------------------
  const aborts: AbortController[] = [];
  const namespacesSeen = new Set<string>();
  function watch(
    path: string,
    query: Record<string, string>,
    onEvent: (phase: string, object: KubernetesObject) => void,
  ): void {
    const start = async (): Promise<void> => {
      if (stopped) return;
      try {
        const abort = await watcher.watch(path, query, onEvent, (error: unknown) => {
          if (error !== null && error !== undefined && !stopped)
            log({ level: 'warn', msg: 'watch ended; restarting', path, error: describe(error) });
          if (!stopped) setTimeout(() => void start(), error ? 1000 : 0);
        });
        aborts.push(abort);
      } catch (error) {
        if (!stopped) {
          log({ level: 'warn', msg: 'watch failed; retrying', path, error: describe(error) });
          setTimeout(() => void start(), 1000);
        }
      }
    };
    void start();
  }

  const scope = (path: string) =>
    options.namespace === undefined ? path : path.replace(/\/(\w+)$/, `/namespaces/${options.namespace}/$1`);
  for (const kind of ['Function', 'EventGateway'] as const)
    watch(scope(`/apis/${GROUP}/${VERSION}/${PLURAL[kind]}`), {}, (_phase, object) => {
      const namespace = object.metadata?.namespace;
      if (namespace === undefined) return;
      namespacesSeen.add(namespace);
      void reconcile(namespace);
    });
  // A deleted owned object is made again; edits to one are undone at the next resync.
  for (const owned of OWNED_KINDS)
    watch(scope(owned.path), { labelSelector: OWNED_SELECTOR }, (phase, object) => {
      const namespace = object.metadata?.namespace;
      if (phase === 'DELETED' && namespace !== undefined && namespacesSeen.has(namespace))
        void reconcile(namespace);
    });
  // Level-triggered: each resync (and the start) lists the resources themselves, so a namespace whose
  // watch events never came (a watch that was slow to start) is reconciled all the same.
  const discover = async (): Promise<void> => {
    for (const kind of ['Function', 'EventGateway'] as const) {
      try {
        const list = (
          options.namespace === undefined
            ? await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL[kind] })
            : await custom.listNamespacedCustomObject({
                group: GROUP,
                version: VERSION,
                namespace: options.namespace,
                plural: PLURAL[kind],
              })
        ) as { items?: KubernetesObject[] };
        for (const item of list.items ?? [])
          if (item.metadata?.namespace !== undefined) namespacesSeen.add(item.metadata.namespace);
      } catch (error) {
        log({
          level: 'warn',
          msg: 'listing resources failed; retried at the next resync',
          error: describe(error),
        });
      }
    }
    for (const namespace of namespacesSeen) void reconcile(namespace);
  };
  const resync = setInterval(() => void discover(), options.resyncMs ?? 30_000);
  resync.unref();
  void discover();

  return {
    stats,
    reconcile,
    async stop() {
      stopped = true;
      clearInterval(resync);
      for (const abort of aborts) abort.abort();
      await Promise.allSettled([...running.values()]);
    },
  };
}

function comparable(status: Partial<HearthStatus> | undefined): unknown {
  if (status === undefined) return undefined;
  return {
    ...status,
    conditions: (status.conditions ?? []).map(({ lastTransitionTime: _t, ...rest }) => rest),
  };
}
