/** @module `hearth top` against a fake API: one snapshot, JSON, the live redraw on a terminal, and bad input. */

import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { FunctionStats, StatsResponse } from '../../control/api/types.js';
import type { CliIo } from '../io.js';
import { main } from '../main.js';
import { createStyle } from '../output.js';
import { captureIo, type FakeApi, sendJson, startFakeApi } from '../test-support.js';
import { renderTop } from './top.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function fn(name: string, overrides: Partial<FunctionStats> = {}): FunctionStats {
  return {
    namespace: 'default',
    name,
    version: 2,
    instances: { ready: 3, busy: 2, idle: 1, starting: 1, desired: 4 },
    mode: 'stable',
    inFlight: 17,
    queued: 0,
    rps: 412.4,
    p99Ms: 4.12,
    coldStartRatio: 0.0125,
    memoryBytesPerInstance: 128 * 1024 ** 2,
    totals: { requests: 1000, coldStarts: 12, idleMemoryMiBSeconds: 400 },
    ...overrides,
  };
}

function statsOf(functions: FunctionStats[]): StatsResponse {
  return {
    time: '2026-11-29T05:36:13.000Z',
    policy: 'hybrid',
    node: {
      instances: 5,
      maxInstances: 192,
      memoryBytes: 640 * 1024 ** 2,
      maxMemoryBytes: 18 * 1024 ** 3,
      stemCells: [
        {
          runtime: 'node20',
          isolation: 'sandbox',
          network: 'none',
          ready: 2,
          starting: 0,
          target: 2,
          taken: 9,
          misses: 0,
          burst: 0,
        },
        {
          runtime: 'python3',
          isolation: 'process',
          network: 'host',
          ready: 1,
          starting: 0,
          target: 1,
          taken: 1,
          misses: 0,
          burst: 0,
        },
      ],
    },
    functions,
  };
}

async function api(answer: (count: number) => StatsResponse | 'down'): Promise<FakeApi> {
  let count = 0;
  const server = await startFakeApi((request, res) => {
    if (!request.url.startsWith('/api/v1/stats')) {
      sendJson(res, 404, { error: { code: 'HEARTH_E_NOT_FOUND', message: 'no route' } });
      return;
    }
    count += 1;
    const body = answer(count);
    if (body === 'down')
      sendJson(res, 503, { error: { code: 'HEARTH_E_SHUTTING_DOWN', message: 'shutting down' } });
    else sendJson(res, 200, body);
  });
  cleanups.push(server.close);
  return server;
}

const plain = createStyle(new Writable(), {});

describe('renderTop', () => {
  it('draws the node budget and one row per function', () => {
    const text = renderTop(
      statsOf([fn('hello'), fn('quiet', { rps: 0, p99Ms: null, coldStartRatio: null })]),
      {
        url: 'http://127.0.0.1:8080',
        intervalMs: 2000,
        style: plain,
        width: Number.POSITIVE_INFINITY,
      },
    );
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('hearth top — http://127.0.0.1:8080 — 05:36:13 — every 2s');
    expect(lines[1]).toBe(
      'node: 5/192 instances, 0.6/18.0 GiB reserved, policy hybrid, stem cells node20 2/2, python3(process/host) 1/1',
    );
    expect(lines[3]).toMatch(
      /^NAME +VERSION +READY\/DESIRED +BUSY +STARTING +IN-FLIGHT +QUEUED +RPS +P99 +COLD% +MODE$/,
    );
    expect(lines[4]).toMatch(/^hello +v2 +3\/4 +2 +1 +17 +0 +412 +4\.1ms +1\.3% +stable$/);
    expect(lines[5]).toMatch(/^quiet +v2 +3\/4 +2 +1 +17 +0 +0 +- +- +stable$/);
  });

  it('names the namespace when functions come from several, and fits a small terminal', () => {
    const many = Array.from({ length: 30 }, (_, i) =>
      fn(`fn-${i}`, { namespace: i % 2 === 0 ? 'default' : 'team' }),
    );
    const text = renderTop(statsOf(many), {
      url: 'http://h',
      intervalMs: 500,
      style: plain,
      width: 60,
      height: 12,
      problem: 'cannot reach Hearth',
    });
    const lines = text.trimEnd().split('\n');
    expect(lines.length).toBeLessThanOrEqual(12);
    expect(lines.every((line) => line.length <= 60)).toBe(true);
    expect(lines[2]).toBe('stale: cannot reach Hearth');
    expect(text).toContain('fn-1.team');
    expect(lines.at(-1)).toMatch(/^… \d+ more$/);
  });

  it('says so when nothing is loaded', () => {
    const text = renderTop(statsOf([]), { url: 'http://h', intervalMs: 1000, style: plain, width: 80 });
    expect(text).toContain('No functions loaded on this node.');
  });
});

describe('hearth top', () => {
  it('prints one snapshot when the output is not a terminal, filtered by namespace', async () => {
    const server = await api(() => statsOf([fn('hello')]));
    const out = captureIo({ env: { HEARTH_URL: server.url } });
    expect(await main(['top', '-n', 'team'], out.io)).toBe(0);
    expect(out.stdout()).toMatch(/^hello +v2 +3\/4/m);
    expect(server.requests[0]?.url).toBe('/api/v1/stats?namespace=team');
  });

  it('prints the figures as JSON with -o json', async () => {
    const server = await api(() => statsOf([fn('hello')]));
    const out = captureIo({ env: { HEARTH_URL: server.url } });
    expect(await main(['top', '-o', 'json'], out.io)).toBe(0);
    expect((JSON.parse(out.stdout()) as StatsResponse).functions[0]?.name).toBe('hello');
  });

  it('refuses a bad --interval in one line, before any request', async () => {
    const server = await api(() => statsOf([]));
    const out = captureIo({ env: { HEARTH_URL: server.url } });
    expect(await main(['top', '--interval', '10ms'], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([
      'error: --interval "10ms": expected a duration such as 2s or 500ms, at least 100ms',
    ]);
    expect(server.requests).toHaveLength(0);
  });

  it('redraws in place on a terminal, says when figures are stale, and leaves the screen clean on Ctrl-C', async () => {
    const server = await api((count) =>
      count === 3 ? 'down' : statsOf([fn('hello', { rps: count * 100, inFlight: count })]),
    );
    let written = '';
    const stdout = Object.assign(
      new Writable({
        write(chunk: Buffer | string, _encoding, callback) {
          written += chunk.toString();
          callback();
        },
      }),
      { isTTY: true, columns: 120, rows: 40 },
    );
    const interrupt = new AbortController();
    const io: CliIo = {
      stdout,
      stderr: captureIo().io.stderr,
      stdin: captureIo().io.stdin,
      env: { HEARTH_URL: server.url, NO_COLOR: '1' },
      interrupt: interrupt.signal,
    };
    const running = main(['top', '--interval', '100ms'], io);
    const deadline = Date.now() + 10_000;
    while (!(written.includes('stale:') && /\n *hello +v2 +3\/4 +2 +1 +4 /.test(written))) {
      if (Date.now() > deadline) throw new Error(`top did not redraw as expected:\n${written}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    interrupt.abort();
    expect(await running).toBe(0);
    expect(written.startsWith('\x1b[?1049h\x1b[?25l')).toBe(true);
    expect(written.endsWith('\x1b[?25h\x1b[?1049l')).toBe(true);
    // Each frame starts at the top left and rewrites the screen rather than scrolling it.
    expect(written.split('\x1b[H').length).toBeGreaterThanOrEqual(4);
    expect(written).toContain('stale: HEARTH_E_SHUTTING_DOWN: shutting down');
  });
});
