/** @module Safe intake of uploaded .tar.gz archives: a bounded upload, then vetting and extraction in a worker thread, bounded in bytes and time. */

import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { finished, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HearthError } from '../../domain/errors.js';
import type { UnpackLimits } from './unpack.js';
import { runArchiveJob } from './workers.js';

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
    await runArchiveJob({ kind: 'unpack', archive, dir, limits }, unpackTimedOut(limits.unpackTimeoutMs));
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

function unpackTimedOut(timeoutMs: number): { readonly ms: number; readonly error: () => HearthError } {
  return {
    ms: timeoutMs,
    error: () =>
      new HearthError(
        'HEARTH_E_ARCHIVE_TOO_LARGE',
        `archive took longer than ${timeoutMs / 1000}s to unpack (upload.unpackTimeout); send fewer or smaller files`,
        { details: { field: 'upload.unpackTimeout', limit: timeoutMs } },
      ),
  };
}
