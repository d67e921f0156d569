/**
 * @module The autoscaler lets go when traffic stops (issue 11): with the default 60 s stable window and
 * `idleTimeout: 3s`, a step of 200 concurrent clients and then silence, the instances go to zero a few
 * seconds after idleTimeout, not after the stable window. Bounds are generous: it is the order that counts.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyFixture,
  deployFolder,
  eventually,
  type Hearth,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { closedLoop, functionStats } from '../support/load.js';

const IDLE_TIMEOUT_MS = 3_000;
/** The default stable window the instances used to wait for. */
const STABLE_WINDOW_MS = 60_000;

let hearth: Hearth;
let folder: TempFolder;

beforeAll(async () => {
  hearth = await startHearth();
  folder = await copyFixture('node-slow', {
    'hearth.yaml': manifest(
      'quiet',
      `{ runtime: node20, limits: { timeout: 20s }, scaling: { targetConcurrency: 10, max: 20, idleTimeout: ${IDLE_TIMEOUT_MS}ms } }`,
    ),
  });
  const { status, body } = await deployFolder(hearth.url, folder.dir, { name: 'quiet' });
  expect(status, JSON.stringify(body)).toBe(200);
});

afterAll(async () => {
  await hearth?.stop();
  await folder?.cleanup();
});

async function instances(): Promise<number> {
  const fn = await functionStats(hearth.url, 'quiet');
  return (fn?.instances.ready ?? 0) + (fn?.instances.starting ?? 0);
}

describe('silence after a step load', () => {
  it('releases every instance once idleTimeout has passed, long before the stable window', async () => {
    const load = closedLoop(`${hearth.url}/function/quiet?ms=50`, 200);
    await eventually('the step to bring up several instances', async () =>
      (await instances()) >= 5 ? true : undefined,
    );
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result.failures)).toBe(0);
    const silentFrom = Date.now();
    expect(await instances()).toBeGreaterThanOrEqual(2);

    await eventually(
      'every instance to be released',
      async () => ((await instances()) === 0 ? true : undefined),
      {
        timeoutMs: STABLE_WINDOW_MS / 3,
        intervalMs: 200,
      },
    );
    const tookMs = Date.now() - silentFrom;
    // Not before idleTimeout (the user's word), and nowhere near the 60 s stable window.
    expect(tookMs).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 1_000);
    expect(tookMs).toBeLessThan(STABLE_WINDOW_MS / 3);
  });
});
