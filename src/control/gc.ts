/**
 * @module Garbage collection of code packages and dependency layers (issue 11). A package or layer no
 * retained version references, nothing has checked out (an instance bound to it), and nobody stored or reused
 * within the grace period is deleted; each run reports what it freed. The grace period covers what is in
 * flight between upload and commit: a staged package (kept 15 minutes) and a deploy that reuses a package or
 * layer (storing it again restarts its grace period). Image blobs and unpacked rootfs dirs (issue 17) are
 * collected the same way: those no retained version's manifest digest needs, untouched within the grace period.
 * In a cluster, the copies of layers the nodes share in PostgreSQL are collected by the same rule (whichever
 * node collects first deletes them; the others find nothing to do).
 */

import type { LayerStore, SharedLayers } from './build/index.js';
import type { CodeStore } from './packages/code-store.js';
import type { Store } from './store/index.js';

export interface CollectedGarbage {
  readonly packages: number;
  readonly layers: number;
  /** Cluster mode: layers deleted from the store the nodes share (each node also deletes its own copy). */
  readonly sharedLayers?: number;
  /** Image blobs and rootfs dirs, when the node has an image store. */
  readonly imageBlobs?: number;
  readonly imageRootfs?: number;
  readonly freedBytes: number;
}

/** The image store as the collector sees it (src/images `Images.collect`). */
export interface CollectableImages {
  collect(
    keep: ReadonlySet<string>,
    cutoff: number,
  ): Promise<{ readonly blobs: number; readonly rootfs: number; readonly freedBytes: number }>;
}

export interface GarbageCollectorOptions {
  readonly store: Pick<Store, 'codeHashesInUse' | 'depsKeysInUse'> &
    Partial<Pick<Store, 'imageDigestsInUse'>>;
  readonly code: Pick<CodeStore, 'listPackages' | 'collect'>;
  readonly layers: Pick<LayerStore, 'list' | 'remove'>;
  /** Cluster mode: the layers every node shares; collected by the same rule as this node's own. */
  readonly sharedLayers?: Pick<SharedLayers, 'list' | 'remove'>;
  readonly images?: CollectableImages;
  /** Nothing younger than this (since stored or last reused) is collected. */
  readonly graceMs: number;
  /** How often to collect. */
  readonly intervalMs: number;
  /** Told after each run that freed something. */
  readonly onCollected: (collected: CollectedGarbage) => void;
  readonly onError: (error: unknown) => void;
}

/** One collection: returns what it deleted. */
export async function collectGarbage(
  options: Pick<GarbageCollectorOptions, 'store' | 'code' | 'layers' | 'sharedLayers' | 'graceMs' | 'images'>,
  now = Date.now(),
): Promise<CollectedGarbage> {
  const cutoff = now - options.graceMs;
  // Listed before the references are read: anything stored after this listing is not a candidate at all.
  const packages = await options.code.listPackages();
  const layers = await options.layers.list();
  const sharedLayers = (await options.sharedLayers?.list()) ?? [];
  const codeInUse = options.store.codeHashesInUse();
  const depsInUse = options.store.depsKeysInUse();
  let freedBytes = 0;
  let packageCount = 0;
  let layerCount = 0;
  for (const candidate of packages) {
    if (codeInUse.has(candidate.hash) || candidate.storedAt > cutoff) continue;
    const freed = await options.code.collect(candidate.hash, cutoff);
    if (freed === undefined) continue;
    freedBytes += freed;
    packageCount += 1;
  }
  for (const candidate of layers) {
    if (depsInUse.has(candidate.key) || candidate.usedAt > cutoff) continue;
    const freed = await options.layers.remove(candidate.key, cutoff);
    if (freed === undefined) continue;
    freedBytes += freed;
    layerCount += 1;
  }
  let sharedCount = 0;
  for (const candidate of sharedLayers) {
    if (depsInUse.has(candidate.key) || candidate.usedAt > cutoff) continue;
    // The store checks again in the delete itself: a version committed since names it, or a node reused it.
    const freed = await options.sharedLayers?.remove(candidate.key, cutoff);
    if (freed === undefined) continue;
    freedBytes += freed;
    sharedCount += 1;
  }
  const shared = options.sharedLayers === undefined ? {} : { sharedLayers: sharedCount };
  const imageDigests = options.store.imageDigestsInUse?.();
  if (options.images === undefined || imageDigests === undefined)
    return { packages: packageCount, layers: layerCount, ...shared, freedBytes };
  const images = await options.images.collect(imageDigests, cutoff);
  return {
    packages: packageCount,
    layers: layerCount,
    ...shared,
    imageBlobs: images.blobs,
    imageRootfs: images.rootfs,
    freedBytes: freedBytes + images.freedBytes,
  };
}

/** Collects every `intervalMs`, one run at a time. */
export class GarbageCollector {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: GarbageCollectorOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.runOnce(), this.options.intervalMs);
    this.timer.unref();
  }

  /** One run now (or the one under way); never rejects. */
  runOnce(): Promise<void> {
    this.running ??= collectGarbage(this.options)
      .then(
        (collected) => {
          const images = (collected.imageBlobs ?? 0) + (collected.imageRootfs ?? 0);
          if (collected.packages + collected.layers + (collected.sharedLayers ?? 0) + images > 0)
            this.options.onCollected(collected);
        },
        (error: unknown) => this.options.onError(error),
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
