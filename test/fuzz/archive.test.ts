/**
 * @module Fuzzing the archive reader (control/packages/archive.ts) in process, with tight limits: random
 * bytes, valid archives with bytes flipped, cut short or padded, and tar archives written header by header
 * with odd entries (long and hostile names, every type flag, sizes that lie, pax and GNU long names).
 * Whatever comes in, it unpacks or refuses with one 4xx HearthError that names no path of this machine,
 * within a bound, and leaves nothing behind in its work dir when it refuses.
 */

import { lstat, mkdtemp, readdir, readlink, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { receiveArchive, type UnpackLimits } from '../../src/control/packages/index.js';
import { errorBody, HearthError } from '../../src/domain/errors.js';
import { fuzzParams, fuzzTimeout, leaks, shortly } from '../support/fuzz.js';
import { build, byteEdit, entry, tarOf, VALID } from './tar.js';

const LIMITS: UnpackLimits = {
  maxArchiveBytes: 256 * 1024,
  maxUnpackedBytes: 512 * 1024,
  maxFiles: 20,
  unpackTimeoutMs: 5000,
};
/** Reading a small archive takes milliseconds; this catches a stall, not a slow disk. */
const BOUND_MS = 5000;

// --- the property -------------------------------------------------------------------------------------------

let base = '';
let workDir = '';

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-fuzz-archive-'));
  workDir = join(base, 'work');
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Symbolic links in `dir` that resolve outside it. */
async function escapes(dir: string): Promise<string[]> {
  const found: string[] = [];
  const root = await realpath(dir);
  for (const name of await readdir(dir, { recursive: true })) {
    const path = join(dir, name);
    const stat = await lstat(path);
    if (!stat.isSymbolicLink()) continue;
    const target = resolve(dirname(path), await readlink(path));
    const real = await realpath(target).catch(() => target);
    if (real !== root && !real.startsWith(`${root}${sep}`)) found.push(`${name} -> ${real}`);
  }
  return found;
}

async function judge(archive: Buffer, described: string): Promise<void> {
  const problems: string[] = [];
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    receiveArchive(Readable.from([archive]), workDir, LIMITS).then(
      (tree) => ({ tree }),
      (error: unknown) => ({ error }),
    ),
    new Promise<'stalled'>((settle) => {
      timer = setTimeout(() => settle('stalled'), BOUND_MS);
    }),
  ]);
  clearTimeout(timer);
  const ms = performance.now() - started;
  if (outcome === 'stalled') {
    problems.push(`did not finish within ${BOUND_MS} ms`);
  } else if (ms > BOUND_MS) {
    // Work that blocks the event loop finishes before the timer can fire; it is as much a stall.
    problems.push(`took ${Math.round(ms)} ms (bound ${BOUND_MS} ms)`);
  }
  if (outcome === 'stalled') {
    // Nothing to inspect: the reader is still at work.
  } else if ('tree' in outcome) {
    problems.push(
      ...(await escapes(outcome.tree.dir)).map((link) => `unpacked a link out of the tree: ${link}`),
    );
    await outcome.tree.cleanup();
  } else {
    const { error } = outcome;
    if (!(error instanceof HearthError)) {
      problems.push(
        `threw ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}, not a HearthError`,
      );
    } else {
      if (error.status < 400 || error.status >= 500) problems.push(`${error.code} is status ${error.status}`);
      const body = JSON.stringify(errorBody(error));
      problems.push(...leaks(body, { paths: [base] }).map((leak) => `its answer has ${leak}`));
    }
  }
  if (outcome !== 'stalled') {
    // A refused extraction's last writes may land after it returned; give them a moment to show.
    if ('error' in outcome) await new Promise((settle) => setTimeout(settle, 25));
    const left = await readdir(workDir).catch(() => []);
    if (left.length > 0) problems.push(`left ${left.join(', ')} in the work dir`);
    await rm(workDir, { recursive: true, force: true });
  }
  if (problems.length > 0)
    throw new Error(`${described} (${archive.length} bytes, ${Math.round(ms)} ms): ${problems.join('; ')}`);
}

describe('fuzz: archive reader', () => {
  it(
    'random bytes, with or without a gzip magic number, are refused with one clean 4xx',
    async () => {
      const bytes = fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 4096 }));
      await fc.assert(
        fc.asyncProperty(bytes, async ([magic, data]) => {
          const archive = Buffer.concat([magic ? Buffer.from([0x1f, 0x8b, 0x08]) : Buffer.alloc(0), data]);
          await judge(archive, 'random bytes');
        }),
        fuzzParams(60, 20),
      );
    },
    fuzzTimeout(60, 20),
  );

  it(
    'a valid archive with bytes flipped, cut short, padded or appended unpacks or is refused cleanly, in time',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(byteEdit, { minLength: 1, maxLength: 3 }),
          fc.constantFrom(2, 0, 1, 20),
          async (edits, endBlocks) => {
            await judge(build(tarOf(VALID, endBlocks), edits), `edits ${shortly(edits)}`);
          },
        ),
        fuzzParams(80, 20),
      );
    },
    fuzzTimeout(80, 20),
  );

  it(
    'a tar of odd entries (names, types, sizes, links, long names) unpacks or is refused cleanly, in time',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(entry, { minLength: 1, maxLength: 5 }),
          fc.constantFrom(2, 0, 40),
          async (entries, endBlocks) => {
            await judge(gzipSync(tarOf(entries, endBlocks)), 'odd entries');
          },
        ),
        fuzzParams(100, 20),
      );
    },
    fuzzTimeout(100, 20),
  );
});
