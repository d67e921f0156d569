/**
 * One way to walk a tar stream, shared by the oci-archive reader and the layer unpacker: node-tar's
 * Parser emits entries faster than an async handler can consume them, so handlers are chained to run
 * one at a time, in archive order.
 */
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';

/**
 * Streams `stages` (a source and its transforms) into a tar parser and awaits `onEntry` for each entry.
 * The first error `onEntry` throws stops the handling (later entries are drained) and is rethrown after
 * the stream ends; a stream that is not a readable tar rejects with what `unreadable` makes of the error.
 * An entry `onEntry` does not consume must be resumed by it.
 */
export async function forEachTarEntry(
  stages: ReadonlyArray<Readable | NodeJS.ReadWriteStream>,
  onEntry: (entry: ReadEntry) => Promise<void>,
  unreadable: (error: Error) => unknown,
): Promise<void> {
  const parser = new Parser({ strict: true, brotli: false, zstd: false });
  let failure: unknown;
  let chain = Promise.resolve();
  parser.on('entry', (entry: ReadEntry) => {
    chain = chain.then(async () => {
      if (failure !== undefined) {
        entry.resume();
        return;
      }
      try {
        await onEntry(entry);
      } catch (error) {
        failure ??= error;
        entry.resume();
      }
    });
  });
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve());
    parser.on('error', reject);
  });
  // node-tar's Parser is not a Node stream: its write() answers false until the entry being written drains.
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (parser.write(chunk)) callback();
      else parser.once('drain', () => callback());
    },
    final(callback) {
      parser.end();
      callback();
    },
  });
  try {
    await pipeline([...stages, sink]);
    await parsed;
  } catch (error) {
    if (failure === undefined) throw unreadable(error as Error);
  }
  await chain;
  if (failure !== undefined) throw failure;
}
