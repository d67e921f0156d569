/** @module Tests of the CLI as a whole and of the read commands (ls, describe, rm, logs) against a fake API. */

import { afterEach, describe, expect, it } from 'vitest';
import { main } from './main.js';
import {
  captureIo,
  closedPortUrl,
  type FakeApi,
  type FakeHandler,
  functionDetail,
  sendJson,
  startFakeApi,
} from './test-support.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function api(handler: FakeHandler): Promise<FakeApi> {
  const server = await startFakeApi(handler);
  cleanups.push(server.close);
  return server;
}

const log = (
  id: number,
  stream: 'stdout' | 'stderr' | 'system',
  message: string,
  invocationId: string | null = 'abcdef123456',
) => ({
  id,
  time: '2026-11-29T03:04:05.123Z',
  namespace: 'default',
  function: 'echo',
  version: 1,
  invocationId,
  instanceId: 'i-1',
  stream,
  message,
});

describe('hearth (global behaviour)', () => {
  it('gives the one-line hint when nothing listens at the URL', async () => {
    const url = await closedPortUrl();
    for (const argv of [
      ['ls'],
      ['describe', 'echo'],
      ['invoke', 'echo'],
      ['logs', 'echo', '-f'],
      ['rm', 'echo'],
    ]) {
      const out = captureIo({ env: { HEARTH_URL: url } });
      expect(await main(argv, out.io)).toBe(1);
      expect(out.stderrLines()).toEqual([`error: cannot reach Hearth at ${url} (is \`hearth up\` running?)`]);
    }
  });

  it('refuses a malformed --url in one line', async () => {
    const out = captureIo();
    await main(['ls', '--url', 'not a url'], out.io);
    expect(out.stderrLines()).toEqual([
      'error: invalid Hearth URL "not a url": expected something like http://127.0.0.1:8080',
    ]);
  });

  it('reports usage errors as one line and exit 1', async () => {
    for (const argv of [
      ['bogus'],
      ['deploy'],
      ['ls', '-o', 'yaml'],
      ['ls', '--nope'],
      ['logs', 'echo', '--limit', 'x'],
    ]) {
      const out = captureIo();
      expect(await main(argv, out.io)).toBe(1);
      expect(out.stderrLines()).toHaveLength(1);
      expect(out.stderrLines()[0]).toMatch(/^error: /);
    }
  });

  it('prints help and the version to stdout with exit 0', async () => {
    const help = captureIo();
    expect(await main(['--help'], help.io)).toBe(0);
    expect(help.stdout()).toContain('deploy [options] [dir]');
    const bare = captureIo();
    expect(await main([], bare.io)).toBe(0);
    expect(bare.stdout()).toContain('Usage: hearth');
    const version = captureIo();
    expect(await main(['--version'], version.io)).toBe(0);
    expect(version.stdout()).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('reports a failure of up in one line without a stack trace', async () => {
    const out = captureIo();
    expect(await main(['up', '--config', '/nonexistent/hearth.yaml'], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([
      'error: HEARTH_E_VALIDATION: --config: cannot read /nonexistent/hearth.yaml (ENOENT)',
    ]);
  });
});

describe('hearth ls', () => {
  it('lists functions as a table, sending the namespace and the API key', async () => {
    const updatedAt = new Date(Date.now() - 3 * 3_600_000).toISOString();
    const server = await api((_request, res) =>
      sendJson(res, 200, {
        items: [functionDetail({ updatedAt }), functionDetail({ name: 'resize', version: 12, instances: 0 })],
      }),
    );
    const out = captureIo({ env: { HEARTH_API_KEY: 'secret' } });
    expect(await main(['ls', '--url', server.url], out.io)).toBe(0);
    expect(server.requests[0]?.url).toBe('/api/v1/functions?namespace=default');
    expect(server.requests[0]?.headers.authorization).toBe('Bearer secret');
    expect(out.stdout()).toBe(
      [
        'NAME    NAMESPACE  RUNTIME  VERSION  INSTANCES  ISOLATION  AGE',
        'echo    default    node20   3        1          sandbox    3h',
        'resize  default    node20   12       0          sandbox    0s',
        '',
      ].join('\n'),
    );
  });

  it('asks for every namespace with --all-namespaces, and says so when nothing is deployed', async () => {
    const server = await api((_request, res) => sendJson(res, 200, { items: [] }));
    const out = captureIo();
    expect(await main(['list', '-A', '--url', server.url], out.io)).toBe(0);
    expect(server.requests[0]?.url).toBe('/api/v1/functions');
    expect(out.stdout()).toBe('No functions deployed. Try: hearth deploy ./examples/hello\n');
    const json = captureIo();
    expect(await main(['ls', '-o', 'json', '--url', server.url], json.io)).toBe(0);
    expect(JSON.parse(json.stdout())).toEqual({ items: [] });
  });
});

describe('hearth describe', () => {
  it('masks env values unless --show-env and prints the isolation note', async () => {
    const detail = functionDetail({
      spec: { ...functionDetail().spec, isolation: 'process' },
      isolationNote: 'NOT SANDBOXED: for trusted development only',
    });
    const server = await api((_request, res) => sendJson(res, 200, detail));
    const out = captureIo();
    expect(await main(['describe', 'echo', '-n', 'team-a', '--url', server.url], out.io)).toBe(0);
    expect(server.requests[0]?.url).toBe('/api/v1/namespaces/team-a/functions/echo');
    expect(out.stdout()).toContain('Isolation:    process — NOT SANDBOXED: for trusted development only');
    expect(out.stdout()).toContain('API_TOKEN=***');
    expect(out.stdout()).not.toContain('hunter2');
    const shown = captureIo();
    expect(await main(['describe', 'echo', '--show-env', '--url', server.url], shown.io)).toBe(0);
    expect(shown.stdout()).toContain('API_TOKEN=hunter2');
    const json = captureIo();
    expect(await main(['describe', 'echo', '-o', 'json', '--url', server.url], json.io)).toBe(0);
    expect(JSON.parse(json.stdout())).toEqual(detail);
  });

  it('shows the walls in force with the function figures, and a wall that does not hold', async () => {
    const detail = functionDetail({
      walls: [
        { wall: 'memory', inForce: true, detail: 'cgroup v1 at /sys/fs/cgroup/memory/hearth/x' },
        { wall: 'cpu', inForce: true, detail: 'cgroup v1 at /sys/fs/cgroup/cpu/hearth/x' },
        { wall: 'pids', inForce: false, detail: 'no cgroup pids controller is mounted' },
        { wall: 'tmp', inForce: true, detail: 'a size-capped tmpfs' },
        { wall: 'seccomp', inForce: true, detail: 'a filter' },
      ],
    });
    const server = await api((_request, res) => sendJson(res, 200, detail));
    const out = captureIo();
    expect(await main(['describe', 'echo', '--url', server.url], out.io)).toBe(0);
    expect(out.stdout()).toContain('pids 256, tmp 64Mi');
    expect(out.stdout()).toContain(
      'Walls:        memory 128Mi (no swap), cpu 0.5, /tmp 64Mi, seccomp, NOT IN FORCE: pids (no cgroup pids controller is mounted)',
    );
  });

  it('passes the server error through as one line', async () => {
    const server = await api((_request, res) =>
      sendJson(res, 404, {
        error: { code: 'HEARTH_E_FN_NOT_FOUND', message: 'function nope not found in namespace default' },
      }),
    );
    const out = captureIo();
    expect(await main(['describe', 'nope', '--url', server.url], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([
      'error: HEARTH_E_FN_NOT_FOUND: function nope not found in namespace default',
    ]);
  });
});

describe('hearth rm', () => {
  it('deletes the function', async () => {
    const server = await api((_request, res) => {
      res.writeHead(204);
      res.end();
    });
    const out = captureIo();
    expect(await main(['delete', 'echo', '--url', server.url], out.io)).toBe(0);
    expect(server.requests.map((request) => `${request.method} ${request.url}`)).toEqual([
      'DELETE /api/v1/namespaces/default/functions/echo',
    ]);
    expect(out.stdout()).toBe('function/echo deleted\n');
  });
});

describe('hearth logs', () => {
  it('prints records with time, short invocation ID and stream, passing the filters', async () => {
    const server = await api((_request, res) =>
      sendJson(res, 200, {
        items: [
          log(1, 'stdout', 'hello\n'),
          log(2, 'stderr', 'two\nlines\n'),
          log(3, 'system', 'instance started', null),
        ],
      }),
    );
    const out = captureIo();
    const argv = [
      'logs',
      'echo',
      '--invocation',
      'abc',
      '--grep',
      'hel lo',
      '--limit',
      '5',
      '--since',
      '2026-11-29T03:00:00Z',
    ];
    expect(await main([...argv, '--url', server.url], out.io)).toBe(0);
    expect(server.requests[0]?.url).toBe(
      '/api/v1/namespaces/default/functions/echo/logs?since=2026-11-29T03%3A00%3A00.000Z&invocation=abc&q=hel+lo&limit=5',
    );
    expect(out.stdout()).toBe(
      [
        '2026-11-29T03:04:05.123Z abcdef12 stdout| hello',
        '2026-11-29T03:04:05.123Z abcdef12 stderr| two',
        '2026-11-29T03:04:05.123Z abcdef12 stderr| lines',
        '2026-11-29T03:04:05.123Z -        system| instance started',
        '',
      ].join('\n'),
    );
  });

  it('turns --since 10m into an ISO time ten minutes ago', async () => {
    const server = await api((_request, res) => sendJson(res, 200, { items: [] }));
    expect(await main(['logs', 'echo', '--since', '10m', '--url', server.url], captureIo().io)).toBe(0);
    const since = new URL(server.requests[0]?.url ?? '', server.url).searchParams.get('since') ?? '';
    expect(Math.abs(Date.now() - 600_000 - Date.parse(since))).toBeLessThan(5_000);
    const bad = captureIo();
    expect(await main(['logs', 'echo', '--since', 'yesterday', '--url', server.url], bad.io)).toBe(1);
    expect(bad.stderrLines()).toEqual([
      expect.stringMatching(/^error: --since "yesterday": expected a duration/),
    ]);
  });

  it('follows the NDJSON stream, one JSON record per line with -o json, until interrupted', async () => {
    const interrupt = new AbortController();
    const server = await api((_request, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(`${JSON.stringify(log(1, 'stdout', 'first\n'))}\n`);
      setTimeout(() => {
        res.write(`${JSON.stringify(log(2, 'stdout', 'second\n'))}\n`);
        setTimeout(() => interrupt.abort(), 50);
      }, 20);
    });
    const out = captureIo();
    const code = await main(['logs', 'echo', '-f', '-o', 'json', '--url', server.url], {
      ...out.io,
      interrupt: interrupt.signal,
    });
    expect(code).toBe(0);
    expect(server.requests[0]?.url).toBe('/api/v1/namespaces/default/functions/echo/logs?follow=1');
    expect(server.requests[0]?.headers.accept).toBe('application/x-ndjson');
    expect(
      out
        .stdout()
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as { id: number }),
    ).toMatchObject([{ id: 1 }, { id: 2 }]);
    expect(out.stderr()).toBe('');
  });
});
