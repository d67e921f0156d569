/**
 * @module No accepted async invocation is lost across a crash: 1,000 accepted while the platform is
 * `kill -9`ed mid-way, then restarted on the same data dir; every invocation that got its 202 runs at
 * least once. Executions are counted by a sandboxed function reporting its invocation id to a recorder
 * on this machine (egress `allow`, at its own address).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import {
  cleanUp,
  copyFixture,
  deployFolder,
  type Hearth,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { type Recorder, startRecorder } from '../support/recorder.js';

const TOTAL = 1000;
const KILL_AFTER = 500;
const CONCURRENCY = 32;

let recorder: Recorder | undefined;
let hearth: Hearth | undefined;
let fixture: TempFolder | undefined;
let dataDir: string | undefined;

afterAll(async () => {
  // The killed run's handle when the restart never came: its stop reclaims what the kill left.
  await cleanUp(
    () => hearth?.stop(),
    () => recorder?.close(),
    () => fixture?.cleanup(),
    () => (dataDir === undefined ? undefined : rm(dataDir, { recursive: true, force: true })),
  );
});

it('runs every accepted invocation at least once across a kill -9 of the platform', {
  timeout: 240_000,
}, async () => {
  recorder = await startRecorder();
  dataDir = await mkdtemp(join(tmpdir(), 'hearth-crash-'));
  hearth = await startHearth({ dataDir });
  fixture = await copyFixture('event-recorder', {
    'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: counter }\nspec:\n  runtime: node20\n  egress: allow\n  scaling: { targetConcurrency: 16 }\n  env: { RECORDER_URL: "${recorder.functionUrl}/hit" }\n`,
  });
  expect((await deployFolder(hearth.url, fixture.dir, { name: 'counter' })).status).toBe(200);

  const accepted = new Set<string>();
  let refused = 0;
  let next = 0;
  let killed = false;
  const running = hearth;
  const send = async (): Promise<void> => {
    while (next < TOTAL) {
      const n = next++;
      try {
        const response = await fetch(`${running.url}/async-function/counter`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ n, sleepMs: 200 }),
        });
        if (response.status === 202) accepted.add(((await response.json()) as { id: string }).id);
        else refused += 1;
      } catch {
        // The platform died under this request: it was never acknowledged, so it does not count.
        refused += 1;
      }
      if (!killed && accepted.size >= KILL_AFTER) {
        killed = true;
        running.process.kill('SIGKILL');
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, send));
  expect(killed).toBe(true);
  await new Promise<void>((resolve) => {
    if (running.process.exitCode !== null || running.process.signalCode !== null) resolve();
    else running.process.once('exit', () => resolve());
  });
  expect(accepted.size).toBeGreaterThanOrEqual(KILL_AFTER);
  expect(accepted.size + refused).toBe(TOTAL);

  // Most were still queued when the platform died (each run takes 200 ms): the restart must deliver them.
  const ranBeforeRestart = new Set(
    recorder.received.map((r) => r.json<{ invocationId: string }>().invocationId),
  );
  const pending = [...accepted].filter((id) => !ranBeforeRestart.has(id)).length;
  expect(pending).toBeGreaterThan(100);
  // Restart on the same data dir: what was accepted and not yet run is delivered now.
  hearth = await startHearth({ dataDir });
  const ran = (): Set<string> =>
    new Set(recorder?.received.map((r) => r.json<{ invocationId: string }>().invocationId) ?? []);
  await recorder.waitFor(
    `all ${accepted.size} accepted invocations to run`,
    () => {
      const seen = ran();
      for (const id of accepted) if (!seen.has(id)) return false;
      return true;
    },
    180_000,
  );
  const seen = ran();
  const lost = [...accepted].filter((id) => !seen.has(id));
  expect(lost).toEqual([]);
});
