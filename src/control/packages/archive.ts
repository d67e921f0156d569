/** @module Safe intake of uploaded .tar.gz archives: a bounded upload, then vetting and extraction in a worker thread, bounded in bytes and time. */

import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { finished, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { HearthError } from '../../domain/errors.js';
import { PACKAGE_ROOT } from '../../runtime/paths.js';
import type { ArchiveJob, JobOutcome, SerialisedError } from './archive-worker.js';
import type { UnpackLimits } from './unpack.js';

export type { UnpackLimits } from './unpack.js';

export interface ReceivedTree {
  readonly dir: string;
  cleanup(): Promise<void>;
}

/**
 * Saves `body` under `workDir`, vets every entry, then unpacks it into a fresh directory with normalised
 * permissions (`unpack.ts`, in a worker thread). Refuses (never silently skips) unsafe entries; on any
 * failure nothing is left in `workDir`.
 * The body is paused, not destroyed, when it is too large, so an HTTP caller can still answer.
 */
export async function receiveArchive(
  body: NodeJS.ReadableStream | Readable,
  workDir: string,
  limits: UnpackLimits,
): Promise<ReceivedTree> {
  await mkdir(workDir, { recursive: true, mode: 0o700 });
  const scratch = await mkdtemp(join(workDir, 'upload-'));
  // Retries cover a failed extraction whose last file writes are still landing while we delete.
  const cleanup = () => rm(scratch, { recursive: true, force: true, maxRetries: 3 });
  try {
    const archive = join(scratch, 'archive.tar.gz');
    await saveUpload(body, archive, limits.maxArchiveBytes);
    await requireGzip(archive);
    const dir = join(scratch, 'tree');
    await mkdir(dir);
    await archiveWorkers.run({ kind: 'unpack', archive, dir, limits }, limits.unpackTimeoutMs);
    await rm(archive);
    return { dir, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function saveUpload(
  body: NodeJS.ReadableStream | Readable,
  file: string,
  maxBytes: number,
): Promise<void> {
  let received = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received <= maxBytes) return callback(null, chunk);
      callback(
        new HearthError('HEARTH_E_ARCHIVE_TOO_LARGE', `upload exceeds ${maxBytes} bytes`, {
          details: { limit: maxBytes },
        }),
      );
    },
  });
  // Stays attached: a body that fails after we stop reading must not become an uncaught exception.
  finished(body, (error) => {
    if (error) meter.destroy(new HearthError('HEARTH_E_BAD_REQUEST', `upload interrupted: ${error.message}`));
  });
  body.pipe(meter);
  try {
    await pipeline(meter, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  } finally {
    body.unpipe(meter);
  }
}

async function requireGzip(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    const { bytesRead, buffer } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    if (bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) return;
  } finally {
    await handle.close();
  }
  throw new HearthError('HEARTH_E_ARCHIVE_INVALID', 'expected a gzip-compressed tar archive (.tar.gz)');
}

/** The compiled worker, as the guests are: under the tests too, the build output is what runs. */
const WORKER_URL = pathToFileURL(`${PACKAGE_ROOT}dist/control/packages/archive-worker.js`);

/**
 * Worker threads for archive jobs, one job per worker at a time. One idle worker is kept (starting one
 * costs ~50 ms, a job on a warm one well under 1 ms of overhead); a worker that overruns is terminated.
 */
class ArchiveWorkers {
  private readonly idle: Worker[] = [];

  constructor(private readonly keepIdle: number) {}

  run(job: ArchiveJob, timeoutMs: number): Promise<void> {
    const worker =
      this.idle.pop() ?? new Worker(WORKER_URL, { resourceLimits: { maxOldGenerationSizeMb: 512 } });
    worker.ref();
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (): boolean => {
        if (done) return false;
        done = true;
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        return true;
      };
      // The scratch directory is deleted after this rejects: the worker must have stopped writing first.
      const discard = (error: HearthError): void => {
        void worker.terminate().then(
          () => reject(error),
          () => reject(error),
        );
      };
      const onMessage = (outcome: JobOutcome): void => {
        if (!finish()) return;
        this.release(worker);
        if (outcome.ok) resolve();
        else reject(deserialise(outcome.error));
      };
      const onError = (error: Error): void => {
        if (finish())
          discard(new HearthError('HEARTH_E_INTERNAL', 'the archive worker failed', { cause: error }));
      };
      const onExit = (code: number): void => {
        if (finish()) reject(new HearthError('HEARTH_E_INTERNAL', `the archive worker exited (${code})`));
      };
      const timer = setTimeout(() => {
        if (finish()) discard(unpackTimedOut(timeoutMs));
      }, timeoutMs);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage(job);
    });
  }

  private release(worker: Worker): void {
    if (this.idle.length >= this.keepIdle) {
      void worker.terminate();
      return;
    }
    // An idle worker must not keep a CLI or a test process alive.
    worker.unref();
    this.idle.push(worker);
  }
}

const archiveWorkers = new ArchiveWorkers(1);

function deserialise(error: SerialisedError): HearthError {
  return new HearthError(error.code, error.message, {
    ...(error.details === undefined ? {} : { details: error.details }),
    ...(error.internal === undefined ? {} : { cause: new Error(error.internal) }),
  });
}

function unpackTimedOut(timeoutMs: number): HearthError {
  return new HearthError(
    'HEARTH_E_ARCHIVE_TOO_LARGE',
    `archive took longer than ${timeoutMs / 1000}s to unpack (upload.unpackTimeout); send fewer or smaller files`,
    { details: { field: 'upload.unpackTimeout', limit: timeoutMs } },
  );
}
