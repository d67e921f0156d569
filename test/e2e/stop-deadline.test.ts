/**
 * @module End-to-end: stopping `hearth up` is bounded. A stop that keeps waiting (here on a NATS trigger
 * whose broker accepts connections and never answers, with a request in flight in a sandboxed function)
 * gives up at the stop deadline (`stopTimeout`), or at once on a second SIGTERM, exits 1 with one line
 * saying what it gave up waiting for, and leaves nothing behind: no process, no mount under its data dir,
 * no cgroup of its own.
 */

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployFolder,
  errorLines,
  eventually,
  getFunction,
  type Hearth,
  makeFolder,
  manifest,
  mountsUnder,
  platformCgroupDirs,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let blackHole: Server;
let blackHolePort: number;
const held = new Set<Socket>();
const folders: TempFolder[] = [];
const platforms: Hearth[] = [];
/** The pid of each platform's instance that was answering a request when it was stopped. */
const guests = new Map<Hearth, number>();

beforeAll(async () => {
  // A "broker" that takes connections and never says a word: a NATS client waits for its greeting.
  blackHole = createServer((socket) => {
    held.add(socket);
    socket.on('close', () => held.delete(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
  blackHolePort = (blackHole.address() as { port: number }).port;
});

afterAll(async () => {
  for (const platform of platforms) await platform.stop().catch(() => undefined);
  for (const socket of held) socket.destroy();
  await new Promise((resolve) => blackHole.close(resolve));
  for (const folder of folders) await folder.cleanup();
});

/** Processes whose command line names the data dir (the platform, its sandboxes and helpers). */
function processesOf(dataDir: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dataDir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function cgroupsOf(dataDir: string): string[] {
  return ['sandbox', 'microvm', 'containers'].flatMap((name) =>
    platformCgroupDirs(join(dataDir, 'run', name)),
  );
}

/**
 * A platform stuck draining: a function with a NATS trigger on the black hole, and a request of it in
 * flight (its handler sleeps), so that a sandbox is running when the stop gives up.
 */
async function stuckPlatform(stopTimeout: string): Promise<{ hearth: Hearth; inFlight: Promise<unknown> }> {
  const config = await makeFolder({ 'hearth.yaml': `stopTimeout: ${stopTimeout}\n` });
  folders.push(config);
  const hearth = await startHearth({ args: ['--config', join(config.dir, 'hearth.yaml')] });
  platforms.push(hearth);
  const fn = await makeFolder({
    'hearth.yaml': manifest(
      'sleeper',
      `{ runtime: node20, limits: { timeout: 120s }, triggers: [{ nats: { url: "nats://127.0.0.1:${blackHolePort}", subject: "jobs.*", stream: JOBS } }] }`,
    ),
    'index.mjs':
      'export default async () => { await new Promise((resolve) => setTimeout(resolve, 120_000)); return { ok: true }; };\n',
  });
  folders.push(fn);
  const deployed = await deployFolder(hearth.url, fn.dir, { name: 'sleeper' });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  const inFlight = fetch(`${hearth.url}/function/sleeper`, { method: 'POST', body: '{}' }).catch(
    (error: unknown) => error,
  );
  // The request is in the function once its instance counts it; that instance's process must go too.
  const pid = await eventually('the request to be in flight', async () => {
    const detail = await getFunction(hearth.url, 'sleeper');
    return detail?.activeInstances.find((instance) => instance.inFlight > 0)?.pid;
  });
  expect(existsSync(`/proc/${pid}`)).toBe(true);
  guests.set(hearth, pid);
  return { hearth, inFlight };
}

function exited(hearth: Hearth): Promise<number | null> {
  return new Promise((resolve) => {
    if (hearth.process.exitCode !== null || hearth.process.signalCode !== null)
      resolve(hearth.process.exitCode);
    else hearth.process.once('exit', (code) => resolve(code));
  });
}

async function expectNothingLeft(hearth: Hearth): Promise<void> {
  const dataDir = hearth.dataDir;
  const guest = guests.get(hearth);
  expect(guest !== undefined && existsSync(`/proc/${guest}`), `instance ${guest}`).toBe(false);
  expect(processesOf(dataDir)).toEqual([]);
  expect(mountsUnder(dataDir)).toEqual([]);
  expect(cgroupsOf(dataDir)).toEqual([]);
  // And the harness had nothing to reclaim.
  await hearth.stop();
  expect(hearth.leftBehind()).toEqual([]);
}

describe('a stop that keeps waiting', () => {
  it('gives up at the stop deadline, says on what, exits 1 and leaves nothing behind', async () => {
    const { hearth, inFlight } = await stuckPlatform('2s');
    expect(cgroupsOf(hearth.dataDir).length).toBeGreaterThan(0);
    hearth.process.kill('SIGTERM');
    // Generous: it proves the stop did not hang (the NATS client alone would wait longer).
    const code = await Promise.race([exited(hearth), new Promise((resolve) => setTimeout(resolve, 30_000))]);
    expect(code).toBe(1);
    const lines = errorLines(hearth.stderr());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /stopped at once on the stop deadline \(2 s, stopTimeout\), without waiting for the triggers/,
    );
    await inFlight;
    await expectNothingLeft(hearth);
  }, 120_000);

  it('a second SIGTERM stops at once: exit 1, one line, nothing left behind', async () => {
    const { hearth, inFlight } = await stuckPlatform('10m');
    hearth.process.kill('SIGTERM');
    await eventually('the stop to begin', () =>
      hearth.stderr().includes('hearth: stopping') ? true : undefined,
    );
    hearth.process.kill('SIGTERM');
    const code = await Promise.race([exited(hearth), new Promise((resolve) => setTimeout(resolve, 30_000))]);
    expect(code).toBe(1);
    const lines = errorLines(hearth.stderr());
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/stopped at once on a second signal, without waiting for /);
    await inFlight;
    await expectNothingLeft(hearth);
  }, 120_000);
});
