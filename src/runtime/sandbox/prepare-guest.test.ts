/**
 * @module The sandbox's copy of a runtime's guest folder is prepared once (`LaunchSpec.prepareGuest`: the
 * Python guest's bytecode), and a stem cell starts whether or not the preparation worked (issue 11).
 */

import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LaunchSpec } from '../index.js';
import { PythonRuntime } from '../python/index.js';
import { createSlotManager } from '../slots.js';
import { SandboxIsolation } from './index.js';

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Starts one stem cell of `launch` in a fresh sandbox; its Ready frame and the sandbox's state dir. */
async function startCell(launch: LaunchSpec): Promise<{ runtime: string; stateDir: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'hearth-prepare-guest-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const stateDir = join(dataDir, 'run', 'sandbox');
  const sandbox = new SandboxIsolation({ stateDir });
  expect(sandbox.unavailable).toBeUndefined();
  await sandbox.init();
  const slots = await createSlotManager(join(dataDir, 'slots'), { allowMount: true });
  cleanups.push(async () => {
    await sandbox.closeWalls();
    sandbox.close();
    await slots.close();
  });
  const slot = await slots.create();
  const guest = sandbox.start(launch, slot, 'none');
  cleanups.push(async () => {
    guest.kill('SIGKILL');
    await guest.waitForExit();
  });
  const ready = await guest.ready;
  return { runtime: ready.runtime, stateDir };
}

/** The compiled files in the sandbox's copies of guest folders (none where it binds the checkout's own). */
function compiledGuestFiles(stateDir: string): string[] {
  const copies = join(stateDir, 'guest');
  if (!existsSync(copies)) return [];
  return readdirSync(copies).flatMap((copy) => {
    const cache = join(copies, copy, '__pycache__');
    return existsSync(cache) ? readdirSync(cache) : [];
  });
}

describe('guest preparation', () => {
  it("a Python stem cell starts from a copy holding the guest's bytecode", async () => {
    const { runtime, stateDir } = await startCell(new PythonRuntime().launchSpec());
    expect(runtime).toBe('python3');
    // As root the sandbox shows a copy of the guest folder, prepared; otherwise the checkout's, as it is.
    if (process.getuid?.() === 0)
      expect(compiledGuestFiles(stateDir)).toContainEqual(expect.stringMatching(/^hearth_guest\..*\.pyc$/));
  });

  it('a Python stem cell still starts when preparing its guest fails (it compiles as it starts)', async () => {
    const launch = { ...new PythonRuntime().launchSpec(), prepareGuest: { command: '/bin/false', args: [] } };
    const { runtime, stateDir } = await startCell(launch);
    expect(runtime).toBe('python3');
    expect(compiledGuestFiles(stateDir)).toEqual([]);
  });
});
