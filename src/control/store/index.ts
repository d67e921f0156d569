/**
 * @module The resource store's contract: functions, their versions and deployments. SQLite is the
 * embedded implementation; a PostgreSQL one (cluster mode) implements the same interface.
 */

import type { ErrorBody } from '../../domain/errors.js';
import type { FunctionManifest, FunctionRef } from '../../domain/function.js';
import type { GatewayManifest } from '../../domain/gateway.js';
import type { ResolvedImage } from '../../domain/image.js';

export interface StoredVersion {
  readonly namespace: string;
  readonly name: string;
  readonly version: number;
  readonly manifest: FunctionManifest;
  readonly codeHash: string;
  readonly codeFiles: number;
  readonly codeBytes: number;
  readonly depsKey: string | null;
  readonly depsMount: string | null;
  /** The image a `runtime: image` version pins (issue 17), else null. */
  readonly image: ResolvedImage | null;
  readonly createdAt: string;
}

export interface StoredFunction {
  readonly namespace: string;
  readonly name: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly active: StoredVersion;
}

export interface StoredDeployment {
  readonly id: string;
  readonly namespace: string;
  readonly name: string;
  readonly version: number | null;
  readonly status: 'running' | 'succeeded' | 'failed';
  readonly error: ErrorBody['error'] | null;
  readonly phases: Readonly<Record<string, number>>;
  readonly startedAt: string;
  readonly finishedAt: string | null;
}

export type NewVersion = Omit<StoredVersion, 'version' | 'createdAt' | 'namespace' | 'name'>;

export interface StoredGateway {
  readonly namespace: string;
  readonly name: string;
  readonly manifest: GatewayManifest;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface Store {
  listFunctions(namespace?: string): StoredFunction[];
  getFunction(ref: FunctionRef): StoredFunction | undefined;
  versions(ref: FunctionRef, limit: number): StoredVersion[];
  /** The number the next version of this function will get. */
  nextVersion(ref: FunctionRef): number;
  /** Records a version and makes it the active one, atomically; older versions beyond the retention are dropped. */
  commitVersion(ref: FunctionRef, version: number, data: NewVersion): StoredVersion;
  deleteFunction(ref: FunctionRef): boolean;
  startDeployment(ref: FunctionRef): string;
  finishDeployment(
    id: string,
    outcome: Pick<StoredDeployment, 'status' | 'version' | 'error' | 'phases'>,
  ): void;
  lastDeployment(ref: FunctionRef): StoredDeployment | undefined;
  /** Code (and image) bytes of every retained version of the namespace's functions (its `codeBytes` use). */
  retainedCodeBytes(namespace: string): number;
  /** Code bytes of the versions the function's next version pushes out of the retention. */
  codeBytesReleasedByNext(ref: FunctionRef): number;
  /** Code hashes referenced by any retained version, so unreferenced packages can be collected. */
  codeHashesInUse(): Set<string>;
  /** Dependency layer keys referenced by any retained version, so unreferenced layers can be collected. */
  depsKeysInUse(): Set<string>;
  /** Image manifest digests referenced by any retained version, so unreferenced blobs and rootfs dirs can be collected. */
  imageDigestsInUse(): Set<string>;
  /** EventGateway resources (issue 3). */
  listGateways(namespace?: string): StoredGateway[];
  getGateway(namespace: string, name: string): StoredGateway | undefined;
  putGateway(namespace: string, name: string, manifest: GatewayManifest): StoredGateway;
  deleteGateway(namespace: string, name: string): boolean;
  /** Small durable values triggers keep across restarts (a cron trigger's last fire). */
  getTriggerState(key: string): string | undefined;
  setTriggerState(key: string, value: string): void;
  /** Runs `work` in one transaction: every write in it is stored, or (when it throws) none is. */
  transaction<T>(work: () => T): T;
  close(): void;
}

export { SqliteStore } from './sqlite.js';
