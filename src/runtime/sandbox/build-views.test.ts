/**
 * @module A sandboxed build's scratch dir, with real bubblewrap and real mounts: the host reads it only
 * through the overlay the build writes through, and nothing is read from it while an overlay may still be
 * over it.
 */

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { BuildCommand } from '../index.js';
import { SandboxIsolation } from './index.js';

const dirs: string[] = [];
const sandboxes: SandboxIsolation[] = [];

afterEach(async () => {
  for (const sandbox of sandboxes.splice(0)) sandbox.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** Mount points whose path is under `dir`, as the host sees them. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point.startsWith(`${dir}/`));
}

async function setUp(): Promise<{ sandbox: SandboxIsolation; work: string; cache: string } | undefined> {
  const dataDir = await mkdtemp(join(tmpdir(), 'hearth-build-views-'));
  dirs.push(dataDir);
  const sandbox = new SandboxIsolation({ stateDir: join(dataDir, 'run', 'sandbox') });
  sandboxes.push(sandbox);
  if (sandbox.unavailable !== undefined || process.getuid?.() !== 0) return undefined;
  const work = join(dataDir, 'tmp', 'build-1');
  const cache = join(dataDir, 'cache');
  await mkdir(work, { recursive: true });
  await mkdir(cache);
  return { sandbox, work, cache };
}

function shell(script: string, work: string, cache: string): BuildCommand {
  return {
    command: '/bin/sh',
    args: ['-c', script],
    env: { PATH: '/usr/bin:/bin' },
    workDir: work,
    cacheDir: cache,
    readOnlyPaths: [],
    timeoutMs: 30_000,
    onOutput: () => {},
  };
}

describe('a sandboxed build’s scratch dir (root, bubblewrap)', () => {
  it('is read by the host through the overlay while the build runs, and nothing is mounted after', async () => {
    const setup = await setUp();
    if (setup === undefined)
      throw new Error('this suite needs root and bubblewrap (npm test installs bubblewrap; run it as root)');
    const { sandbox, work, cache } = setup;
    let seenWhileRunning: string[] = [];
    let content = '';
    const outcome = await sandbox.run({
      ...shell('mkdir out && echo one > out/file && echo ready && sleep 1', work, cache),
      onOutput: (line) => {
        if (line !== 'ready') return;
        seenWhileRunning = mountsUnder(join(work, '..'));
        content = readFileSync(join(work, 'out', 'file'), 'utf8');
      },
    });
    expect(outcome.ok, outcome.tail).toBe(true);
    // The host's path of the scratch dir is the overlay itself, not the upper dir behind it.
    expect(seenWhileRunning).toEqual([work]);
    expect(content).toBe('one\n');
    expect(mountsUnder(join(work, '..'))).toEqual([]);
    expect(await readFile(join(work, 'out', 'file'), 'utf8')).toBe('one\n');
  });

  it('refuses a build whose scratch dir is still held when it ends, rather than reading it', async () => {
    const setup = await setUp();
    if (setup === undefined)
      throw new Error('this suite needs root and bubblewrap (npm test installs bubblewrap; run it as root)');
    const { sandbox, work, cache } = setup;
    let holder: ReturnType<typeof spawn> | undefined;
    const outcome = await sandbox.run({
      ...shell('mkdir out && echo ready && sleep 1', work, cache),
      // A host process sitting in the scratch dir past the build's end keeps its overlay busy.
      onOutput: (line) => {
        if (line === 'ready') holder = spawn('sh', ['-c', `cd ${join(work, 'out')} && sleep 30`]);
      },
    });
    holder?.kill('SIGKILL');
    expect(outcome.ok).toBe(false);
    expect(outcome.tail).toMatch(/the build's scratch dir could not be unmounted: .*busy/);
    expect(outcome.tail).not.toContain(work);
  }, 30_000);
});
