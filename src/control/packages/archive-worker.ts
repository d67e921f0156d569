/** @module Worker thread for archive work: inflating and parsing stay off the event loop that serves invocations. */

import { parentPort } from 'node:worker_threads';
import { type ErrorCode, type ErrorDetails, HearthError } from '../../domain/errors.js';
import { type UnpackLimits, unpackArchive } from './unpack.js';

export interface UnpackJob {
  readonly kind: 'unpack';
  /** The saved .tar.gz. */
  readonly archive: string;
  /** An empty directory to extract into. */
  readonly dir: string;
  readonly limits: UnpackLimits;
}

export type ArchiveJob = UnpackJob;

/** A HearthError cannot cross the thread boundary as a class: its fields do, and are rebuilt on the other side. */
export interface SerialisedError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details?: ErrorDetails;
  /** The original error's own words, for the platform's log only: they may name paths on this server. */
  readonly internal?: string;
}

export type JobOutcome = { readonly ok: true } | { readonly ok: false; readonly error: SerialisedError };

function serialise(error: unknown): SerialisedError {
  if (error instanceof HearthError) {
    return {
      code: error.code,
      message: error.message,
      ...(error.details === undefined ? {} : { details: error.details }),
    };
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return {
    code: 'HEARTH_E_INTERNAL',
    message: `could not unpack the archive on this node${typeof code === 'string' ? ` (${code})` : ''}`,
    internal: error instanceof Error ? (error.stack ?? error.message) : String(error),
  };
}

async function run(job: ArchiveJob): Promise<JobOutcome> {
  try {
    await unpackArchive(job.archive, job.dir, job.limits);
    return { ok: true };
  } catch (error) {
    return { ok: false, error: serialise(error) };
  }
}

// One job at a time: the pool on the main thread sends the next only after this one's answer.
parentPort?.on('message', (job: ArchiveJob) => {
  void run(job).then((outcome) => parentPort?.postMessage(outcome));
});
