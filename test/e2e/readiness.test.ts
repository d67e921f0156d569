/**
 * @module Readiness (issue 11): `/healthz` is liveness and answers as soon as the port is open; `/readyz` is
 * 503 naming what it waits for until the store is open, the stem-cell pools started and the bundled examples
 * deployed, then 200; `hearth up` prints its "listening" line only then, so a script that waits for either
 * can call `/function/hello` at once.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import type { ReadinessResponse } from '../../src/control/api/types.js';
import { BIN, ROOT } from '../support/hearth.js';

let child: ChildProcess | undefined;
let dataDir: string | undefined;

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    const exited = new Promise((resolve) => child?.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

interface Probe {
  readonly healthz: number;
  readonly readyz: number;
  readonly body: ReadinessResponse;
}

async function probe(url: string): Promise<Probe> {
  const health = await fetch(`${url}/healthz`);
  await health.arrayBuffer();
  const ready = await fetch(`${url}/readyz`);
  return { healthz: health.status, readyz: ready.status, body: (await ready.json()) as ReadinessResponse };
}

describe('readiness', () => {
  it('/readyz turns 200 only with the examples deployed, and `hearth up` says "listening" only then', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'hearth-e2e-ready-'));
    const started = spawn(process.execPath, [BIN, 'up', '--port', '0', '--data-dir', dataDir], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = started;
    const probes: Probe[] = [];
    let listeningLine = false;

    // The JSON log names the port as soon as it is bound: probe from then on, while the platform starts.
    const url = await new Promise<string>((resolve, reject) => {
      started.once('exit', (code) => reject(new Error(`hearth up exited with ${code}`)));
      if (started.stdout === null) return;
      createInterface({ input: started.stdout }).on('line', (line) => {
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (entry.msg === 'hearth listening' && typeof entry.url === 'string') resolve(entry.url);
      });
    });
    const polling = (async () => {
      while (!listeningLine) {
        probes.push(await probe(url));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const listening = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no "listening" line within 60s')), 60_000);
      if (started.stderr === null) return;
      createInterface({ input: started.stderr }).on('line', (line) => {
        if (line.startsWith('hearth: listening on ')) {
          clearTimeout(timer);
          resolve(line);
        }
      });
    });
    // At the moment `hearth up` says "listening", it is ready and the example answers.
    const atListening = await probe(url);
    const hello = await fetch(`${url}/function/hello`);
    listeningLine = true;
    await polling;
    expect(listening).toContain(url);
    expect(atListening.readyz).toBe(200);
    expect(atListening.body).toEqual({
      status: 'ready',
      checks: { store: true, stemCells: true, examples: true },
      waitingFor: [],
    });
    expect(hello.status).toBe(200);
    expect(await hello.json()).toEqual({ hello: 'world' });

    // Liveness all along; readiness never said 200 before the examples were there, and said why it waited.
    expect(probes.length).toBeGreaterThan(0);
    for (const seen of probes) {
      expect(seen.healthz).toBe(200);
      if (seen.readyz === 503) {
        expect(seen.body.status).toBe('starting');
        expect(seen.body.waitingFor.length).toBeGreaterThan(0);
        expect(seen.body.checks.store).toBe(true);
      } else expect(seen.readyz).toBe(200);
    }
    const firstReady = probes.findIndex((seen) => seen.readyz === 200);
    if (firstReady >= 0) expect(probes.slice(firstReady).every((seen) => seen.readyz === 200)).toBe(true);
  });
});
