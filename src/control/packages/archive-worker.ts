/** @module Worker thread for archive work: inflating and parsing stay off the event loop that serves invocations. */

import { parentPort } from 'node:worker_threads';
import { type ErrorCode, type ErrorDetails, HearthError } from '../../domain/errors.js';
import { extractPackage, hashForPackage, packTree } from './package-files.js';
import type { TreeDigest } from './tree-hash.js';
import { type UnpackLimits, unpackArchive } from './unpack.js';
import { readYamlFile, type YamlFile } from './yaml-file.js';

export interface UnpackJob {
  readonly kind: 'unpack';
  /** The saved .tar.gz. */
  readonly archive: string;
  /** An empty directory to extract into. */
  readonly dir: string;
  readonly limits: UnpackLimits;
}

/** Content hash of a tree, and the members its package will hold. */
export interface HashJob {
  readonly kind: 'hash';
  readonly dir: string;
  /** Top-level names left out. */
  readonly exclude: readonly string[];
}

export interface PackJob {
  readonly kind: 'pack';
  readonly dir: string;
  readonly members: readonly string[];
  readonly file: string;
}

/** One of the code store's own packages into an empty directory. */
export interface ExtractJob {
  readonly kind: 'extract';
  readonly file: string;
  readonly dir: string;
}

/** A small YAML file (a function's hearth.yaml), parsed. */
export interface YamlJob {
  readonly kind: 'yaml';
  readonly file: string;
  readonly maxBytes: number;
}

export type ArchiveJob = UnpackJob | HashJob | PackJob | ExtractJob | YamlJob;

export interface JobResults {
  readonly unpack: undefined;
  readonly hash: { readonly digest: TreeDigest; readonly members: string[] };
  readonly pack: undefined;
  readonly extract: { readonly bytes: number };
  readonly yaml: YamlFile;
}

/** A HearthError cannot cross the thread boundary as a class: its fields do, and are rebuilt on the other side. */
export interface SerialisedError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details?: ErrorDetails;
  /** The original error's own words, for the platform's log only: they may name paths on this server. */
  readonly internal?: string;
}

export type JobOutcome =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: SerialisedError };

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
    message: `archive work failed on this node${typeof code === 'string' ? ` (${code})` : ''}`,
    internal: error instanceof Error ? (error.stack ?? error.message) : String(error),
  };
}

async function perform(job: ArchiveJob): Promise<JobResults[ArchiveJob['kind']]> {
  switch (job.kind) {
    case 'unpack':
      await unpackArchive(job.archive, job.dir, job.limits);
      return undefined;
    case 'hash':
      return hashForPackage(job.dir, job.exclude);
    case 'pack':
      await packTree(job.dir, job.members, job.file);
      return undefined;
    case 'extract':
      return { bytes: await extractPackage(job.file, job.dir) };
    case 'yaml':
      return readYamlFile(job.file, job.maxBytes);
  }
}

async function run(job: ArchiveJob): Promise<JobOutcome> {
  try {
    return { ok: true, value: await perform(job) };
  } catch (error) {
    return { ok: false, error: serialise(error) };
  }
}

// One job at a time: the pool on the main thread sends the next only after this one's answer.
parentPort?.on('message', (job: ArchiveJob) => {
  void run(job).then((outcome) => parentPort?.postMessage(outcome));
});
