/**
 * @module The worker thread an image is unpacked in: inflating and parsing layers of hundreds of MiB would
 * otherwise take turns with invocations on the platform's event loop (as code archives do, issue 19).
 */

import { parentPort, workerData } from 'node:worker_threads';
import { isHearthError } from '../domain/errors.js';
import { applyLayers, type LayerToApply, type UnpackStats } from './unpack.js';

export interface UnpackJob {
  readonly root: string;
  readonly layers: readonly LayerToApply[];
  readonly maxBytes: number;
}

export type UnpackMessage =
  | { readonly kind: 'layer'; readonly index: number }
  | { readonly kind: 'done'; readonly stats: UnpackStats }
  | {
      readonly kind: 'failed';
      readonly code: string | undefined;
      readonly message: string;
      readonly details: Readonly<Record<string, unknown>> | undefined;
    };

const job = workerData as UnpackJob;
const post = (message: UnpackMessage): void => parentPort?.postMessage(message);
applyLayers(job.root, job.layers, job.maxBytes, (index) => post({ kind: 'layer', index })).then(
  (stats) => post({ kind: 'done', stats }),
  (error: unknown) =>
    post({
      kind: 'failed',
      code: isHearthError(error) ? error.code : undefined,
      message: (error as Error).message,
      details: isHearthError(error) ? error.details : undefined,
    }),
);
