/**
 * @module An idle Node instance gives its memory back (issue 11, density): once the platform has sent it
 * nothing for a few seconds it runs one full garbage collection (V8's memory reducer then shrinks the heap),
 * without handing the function a `gc` it could see, and a function that never uses fetch never has it loaded
 * (undici is ~5 MiB of every idle instance). Seen from inside a real function in a real sandbox: a
 * PerformanceObserver counts forced collections between two requests. No memory figure is asserted here;
 * `node bench/run.mjs density` measures it.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployFolder,
  eventually,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

interface Seen {
  readonly forcedCollections: number;
  readonly globalGc: string;
  readonly contextGc: string;
  readonly fetchLoaded: boolean;
}

const SOURCE = `import { constants, PerformanceObserver } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';

let forced = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if ((entry.detail?.flags ?? 0) & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) forced += 1;
}).observe({ entryTypes: ['gc'] });

export default async function handler() {
  return {
    forcedCollections: forced,
    globalGc: typeof globalThis.gc,
    contextGc: runInNewContext('typeof gc'),
    fetchLoaded: Object.getOwnPropertyDescriptor(globalThis, 'Response')?.get === undefined,
  };
}
`;

let hearth: Hearth;
let folder: TempFolder;
/** Forced collections the function had seen once the first idle one happened. */
let collectedOnce = 0;

beforeAll(async () => {
  hearth = await startHearth();
  folder = await makeFolder({
    'index.mjs': SOURCE,
    'hearth.yaml': manifest('idle-gc', '{ runtime: node20, handler: index, scaling: { idleTimeout: 10m } }'),
  });
  const deployed = await deployFolder(hearth.url, folder.dir, { name: 'idle-gc' });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
}, 120_000);

afterAll(async () => {
  await hearth?.stop();
  await folder?.cleanup();
});

async function look(): Promise<Seen> {
  const answer = await invoke(hearth.url, 'idle-gc');
  expect(answer.status, answer.text).toBe(200);
  return answer.json() as Seen;
}

describe('an idle node instance', () => {
  it('collects its garbage once left alone, and the function sees no gc and no fetch it did not load', async () => {
    const first = await look();
    // Each look is a request, which starts a new quiet period: look less often than the guest's (2-4 s).
    const later = await eventually(
      'a forced collection in the idle instance',
      async () => {
        const seen = await look();
        return seen.forcedCollections > first.forcedCollections ? seen : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 6_000 },
    );
    expect(later.globalGc).toBe('undefined');
    expect(later.contextGc).toBe('undefined');
    expect(later.fetchLoaded).toBe(false);
    collectedOnce = later.forcedCollections;
  }, 90_000);

  it('does not collect again after each quiet period of a function whose heap stays put', async () => {
    // A full collection per gap would cost a function called every few seconds ~3 ms of CPU per request.
    for (let gap = 0; gap < 2; gap++) {
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      expect((await look()).forcedCollections).toBe(collectedOnce);
    }
  }, 60_000);
});
