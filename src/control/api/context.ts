/** @module What the control API's handlers work with, and the checks every function route shares. */

import type { ComplianceApi } from '../../compliance/index.js';
import { HearthError, invalidField } from '../../domain/errors.js';
import type { FunctionRef } from '../../domain/function.js';
import type { LogStore } from '../../observe/index.js';
import type { WallStatus } from '../../runtime/index.js';
import type { Scheduler } from '../../scheduler/index.js';
import type { Security } from '../../security/index.js';
import type { Deployer } from '../deploy.js';
import type { EventsApi } from '../events/index.js';
import type { Store, StoredFunction } from '../store/index.js';
import type { ImagesApi } from './images.js';
import type { ApiRequest } from './router.js';
import type { LogRecord } from './types.js';

export interface ApiContext {
  readonly store: Store;
  readonly deployer: Deployer;
  readonly scheduler: Scheduler;
  readonly logs: LogStore;
  readonly onInternal: (error: unknown) => void;
  /** Gateways, async invocations, dead letters and triggers (issue 3); their routes exist only with it. */
  readonly events?: EventsApi;
  /** The sandbox's resource walls on this node, shown by describe. */
  readonly walls?: readonly WallStatus[];
  /** The microVMs' walls on this node (the accelerator among them), shown by describe for microvm functions. */
  readonly microvmWalls?: readonly WallStatus[];
  /** Keys, roles, namespaces and quotas (issue 10); without it every route is open. */
  readonly security?: Security;
  /** Secrets, the audit log and package signatures (issue 13); their routes exist only with it. */
  readonly compliance?: ComplianceApi;
  /** Image uploads and registry logins (issue 17); their routes exist only with it. */
  readonly images?: ImagesApi;
  /** Cluster mode: logs are gathered from every live node. */
  readonly clusterLogs?: ClusterLogs;
}

/** One other node's part of a logs request: its records, or why it gave none. */
export type PeerLogs =
  | { readonly node: string; readonly items: readonly LogRecord[] }
  | { readonly node: string; readonly error: string };

/** Cluster mode (issue 12): a function's logs are read from every live node, not only the one asked. */
export interface ClusterLogs {
  /** This node's id, marked on its own records. */
  readonly nodeId: string;
  /** The same logs request (path and query) asked of every other live node, for its own records only. */
  fetchPeers(pathAndQuery: string, authorization: string | undefined): Promise<readonly PeerLogs[]>;
  /**
   * Follows the same request (`follow=1`) on every other live node: each record as it comes, and each node
   * that cannot be followed (or stops answering) once, with why. Returns the function that stops it all.
   */
  followPeers(
    pathAndQuery: string,
    authorization: string | undefined,
    onRecord: (node: string, record: LogRecord) => void,
    onLost: (node: string, reason: string) => void,
  ): () => void;
}

/** Sent on a request one node makes of another for its logs: answer with your own records only. */
export const NODE_LOGS_HEADER = 'x-hearth-logs-of-node';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function refFrom(request: ApiRequest): FunctionRef {
  const namespace = request.params.namespace ?? 'default';
  const name = request.params.name ?? '';
  if (!DNS_LABEL.test(namespace)) throw invalidField('namespace', namespace, 'a lower-case DNS label');
  if (!DNS_LABEL.test(name)) throw invalidField('name', name, 'a lower-case DNS label');
  return { namespace, name };
}

/** A `?namespace=` (or `:namespace`) that lists by it: a bad one would silently list nothing, so it is a 400. */
export function namespaceFilter(value: string | null | undefined, field = 'namespace'): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (!DNS_LABEL.test(value)) throw invalidField(field, value, 'a lower-case DNS label');
  return value;
}

export function existing(context: ApiContext, ref: FunctionRef): StoredFunction {
  const fn = context.store.getFunction(ref);
  if (fn === undefined)
    throw new HearthError(
      'HEARTH_E_FN_NOT_FOUND',
      `function ${ref.name} not found in namespace ${ref.namespace}`,
    );
  return fn;
}
