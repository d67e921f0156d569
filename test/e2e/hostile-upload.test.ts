/** @module End-to-end: a hostile upload is refused while warm invocations keep their latency (issue 19). */

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gzipBomb, tarGz, tarMember } from '../support/archives.js';
import {
  type ApiAnswer,
  api,
  deployFolder,
  functionApiPath,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  packFolder,
  stackTraceIn,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

interface ErrorAnswer {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

let hearth: Hearth;
let folder: TempFolder;
let hostile: Buffer;

beforeAll(async () => {
  hearth = await startHearth();
  folder = await makeFolder({
    'hearth.yaml': manifest('warm', '{ runtime: node20 }'),
    'index.mjs': 'export default async () => "ok";\n',
  });
  expect((await deployFolder(hearth.url, folder.dir, { name: 'warm' })).status).toBe(200);
  // A deployable function, then a second gzip member of 256 MiB of zeros: ~250 KB on the wire.
  hostile = Buffer.concat([
    await packFolder(folder.dir),
    gzipSync(Buffer.alloc(256 * 1024 ** 2), { level: 9 }),
  ]);
});

afterAll(async () => {
  await hearth?.stop();
  await folder?.cleanup();
});

/** What is left of refused uploads in the platform's scratch folder (each upload works in `upload-*`). */
function scratchLeft(): string[] {
  const dir = join(hearth.dataDir, 'tmp');
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.startsWith('upload-')) : [];
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

/** One warm invocation's latency; a failure or a stall past 5 s counts as the time it took. */
async function timedInvocation(): Promise<number> {
  const started = performance.now();
  try {
    const response = await fetch(`${hearth.url}/function/warm`, { signal: AbortSignal.timeout(5_000) });
    expect(await response.text()).toBe('ok');
  } catch {
    // Counted below as slow.
  }
  return performance.now() - started;
}

describe('a valid archive followed by gzip-compressed padding', () => {
  it('is refused with a JSON 400 while the warm path keeps its p99', async () => {
    expect(hostile.length).toBeLessThan(1024 ** 2);
    for (let i = 0; i < 20; i++) await timedInvocation();

    let attacking = true;
    const answers: ApiAnswer<ErrorAnswer>[] = [];
    const attack = (async () => {
      while (attacking) {
        answers.push(
          await api<ErrorAnswer>(hearth.url, `${functionApiPath('warm')}/deploy`, {
            method: 'POST',
            headers: { 'content-type': 'application/gzip' },
            body: hostile,
          }),
        );
      }
    })();
    const latencies: number[] = [];
    const until = performance.now() + 3_000;
    while (performance.now() < until) latencies.push(await timedInvocation());
    const health = await api(hearth.url, '/healthz');
    attacking = false;
    await attack;

    const sorted = [...latencies].sort((a, b) => a - b);
    const p99 = percentile(sorted, 99);
    expect(answers.length).toBeGreaterThan(0);
    expect(p99, `p50 ${percentile(sorted, 50).toFixed(1)} ms over ${sorted.length} invocations`).toBeLessThan(
      100,
    );
    expect(health.status).toBe(200);
    for (const answer of answers) {
      expect(answer.status).toBe(400);
      expect(answer.body.error).toEqual({
        code: 'HEARTH_E_ARCHIVE_INVALID',
        message: 'archive continues for more than 1048576 bytes after its end-of-archive marker',
        details: { limit: 1048576 },
      });
      expect(stackTraceIn(answer.body)).toBeUndefined();
    }
    // Refused, nothing half-applied: version 1 still serves.
    expect((await invoke(hearth.url, 'warm')).text).toBe('ok');
  });
});

describe('an oversized hearth.yaml', () => {
  it('is refused by its size, before it is parsed', async () => {
    // YAML parsing grows faster than its input: 1 MiB of mapping kept a core busy for seconds.
    const env = Array.from({ length: 20_000 }, (_, index) => `    K${index}: "${'v'.repeat(40)}"`).join('\n');
    const big = await makeFolder({
      'hearth.yaml': `${manifest('big-manifest', '{ runtime: node20 }')}  env:\n${env}\n`.replace(
        'spec: { runtime: node20 }',
        'spec:\n  runtime: node20',
      ),
      'index.mjs': 'export default async () => "ok";\n',
    });
    try {
      const started = performance.now();
      const answer = await api<ErrorAnswer>(hearth.url, `${functionApiPath('big-manifest')}/deploy`, {
        method: 'POST',
        headers: { 'content-type': 'application/gzip' },
        body: await packFolder(big.dir),
      });
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe('HEARTH_E_VALIDATION');
      expect(answer.body.error.message).toMatch(
        /^hearth\.yaml: got \d+ bytes, expected at most 65536 \(a Function resource\)$/,
      );
    } finally {
      await big.cleanup();
    }
  });
});

describe('a gzip bomb, or an archive of too many entries', () => {
  it('is a 413 naming the cap, and leaves nothing in the upload scratch folder', async () => {
    const bomb = await api<ErrorAnswer>(hearth.url, `${functionApiPath('bomb')}/deploy`, {
      method: 'POST',
      headers: { 'content-type': 'application/gzip' },
      // The node's default upload.maxUnpacked is 256 MiB.
      body: gzipBomb(256 * 1024 ** 2 + 1024),
    });
    expect(bomb.status).toBe(413);
    expect(bomb.body.error.code).toBe('HEARTH_E_ARCHIVE_TOO_LARGE');
    expect(bomb.body.error.message).toMatch(/more than \d+ bytes/);
    const many = await api<ErrorAnswer>(hearth.url, `${functionApiPath('many')}/deploy`, {
      method: 'POST',
      headers: { 'content-type': 'application/gzip' },
      body: tarGz(Array.from({ length: 20_001 }, (_, i) => tarMember(`f${i}`, Buffer.alloc(0)))),
    });
    expect(many.status).toBe(413);
    expect(many.body.error.message).toContain('more than 20000 entries');
    expect(scratchLeft()).toEqual([]);
  });
});
