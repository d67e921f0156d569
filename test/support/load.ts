/**
 * @module Load for the autoscaler suites: closed-loop clients over keep-alive connections (each sends its
 * next request when the last one answers), the figures a user would look at, and a platform config file.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StatsResponse } from '../../src/control/api/types.js';

export interface LoadResult {
  readonly requests: number;
  /** Answers other than 200, and connection errors, by status (0 = no answer). */
  readonly failures: Readonly<Record<number, number>>;
  readonly failed: number;
  readonly coldStarts: number;
  /** The first few failure bodies, to say why. */
  readonly samples: readonly string[];
}

export interface RunningLoad {
  /** Stops sending new requests; resolves when every request in flight has answered. */
  stop(): Promise<LoadResult>;
}

/** `concurrency` clients, each sending GET `url` again as soon as the previous answer is read. */
export function closedLoop(url: string, concurrency: number): RunningLoad {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let stopping = false;
  let requests = 0;
  let coldStarts = 0;
  const failures: Record<number, number> = {};
  const samples: string[] = [];
  const fail = (status: number, body: string): void => {
    failures[status] = (failures[status] ?? 0) + 1;
    if (samples.length < 5) samples.push(`${status}: ${body.slice(0, 300)}`);
  };
  const once = (): Promise<void> =>
    new Promise((resolve) => {
      const req = request(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => {
          requests += 1;
          if (res.headers['x-hearth-cold-start'] === '1') coldStarts += 1;
          if (res.statusCode !== 200) fail(res.statusCode ?? 0, body);
          resolve();
        });
      });
      req.on('error', (error) => {
        requests += 1;
        fail(0, error.message);
        resolve();
      });
      req.end();
    });
  const clients = Array.from({ length: concurrency }, async () => {
    while (!stopping) await once();
  });
  return {
    async stop() {
      stopping = true;
      await Promise.all(clients);
      agent.destroy();
      const failed = Object.values(failures).reduce((sum, n) => sum + n, 0);
      return { requests, failures, failed, coldStarts, samples };
    },
  };
}

/** A platform config file (YAML is a superset of JSON) in a temp dir of its own. */
export async function configFile(
  config: Record<string, unknown>,
): Promise<{ path: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-e2e-config-'));
  const path = join(dir, 'hearth.config.yaml');
  await writeFile(path, JSON.stringify(config));
  return { path, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function stats(url: string): Promise<StatsResponse> {
  const response = await fetch(`${url}/api/v1/stats`);
  if (response.status !== 200) throw new Error(`GET /api/v1/stats: HTTP ${response.status}`);
  return (await response.json()) as StatsResponse;
}

export async function functionStats(
  url: string,
  name: string,
): Promise<StatsResponse['functions'][number] | undefined> {
  return (await stats(url)).functions.find((fn) => fn.name === name && fn.namespace === 'default');
}

/** Samples `probe` every `intervalMs` until `stop` is called; returns the samples with their times. */
export function sampler<T>(
  probe: () => Promise<T>,
  intervalMs = 100,
): { stop(): Promise<{ at: number; value: T }[]> } {
  const samples: { at: number; value: T }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      samples.push({ at: Date.now(), value: await probe() });
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}
