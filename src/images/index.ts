/**
 * @module Container images on this node (issue 17): pulled over the OCI distribution API or imported from an
 * `oci-archive`, verified digest by digest, stored content-addressed and unpacked once per manifest into a
 * read-only rootfs. The deployer resolves a Function's `spec.image` through `Images`; the container isolation
 * only ever sees the `ResolvedImage` (domain/image.ts) a version pins.
 */

import type { Readable } from 'node:stream';
import type { RegistryCredentials } from './registry.js';
import type { CollectedImages, PullProgress, ResolveOptions, ResolveOutcome } from './store.js';

export interface Images {
  /** Pulls or finds `reference` (a registry reference or `oci-archive:NAME@sha256:…`) and unpacks it. */
  resolve(reference: string, options?: ResolveOptions): Promise<ResolveOutcome>;
  /** Imports an uploaded OCI image layout tarball; the outcome's `image.reference` names it from then on. */
  importArchive(
    archive: Readable,
    name: string,
    scope?: string,
    onProgress?: (progress: PullProgress) => void,
  ): Promise<ResolveOutcome>;
  /** Checks a login against the registry (`GET /v2/`, answering its challenge). */
  checkLogin(registry: string, credentials: RegistryCredentials, signal?: AbortSignal): Promise<void>;
  /** Deletes blobs and rootfs dirs no manifest in `keep` needs, untouched since `cutoff` (epoch ms). */
  collect(keep: ReadonlySet<string>, cutoff: number): Promise<CollectedImages>;
}

export {
  RegistryCredentialStore,
  type RegistryLogin,
  type SealedValues,
} from './credentials.js';
export {
  ARCHIVE_PREFIX,
  apiHost,
  formatReference,
  type ImageReference,
  parseReference,
  registryScheme,
} from './reference.js';
export type { RegistryCredentials } from './registry.js';
export {
  type CollectedImages,
  describeProgress,
  formatSize,
  ImageStore,
  type ImageStoreOptions,
  type PullProgress,
  type ResolveOptions,
  type ResolveOutcome,
} from './store.js';
