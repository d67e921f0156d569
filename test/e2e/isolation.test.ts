/** @module End-to-end: crashes and timeouts stay contained, logs tell what happened, and the sandbox's walls hold. */

import { existsSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FunctionDetail, HealthResponse } from '../../src/control/api/types.js';
import {
  api,
  copyFixture,
  deployFolder,
  eventually,
  FIXTURES,
  functionLogs,
  getFunction,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  runCli,
  startCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

interface Attempt {
  ok: boolean;
  value?: unknown;
  error?: string;
}

interface NodeWalls {
  uid: number;
  niceness: number;
  env: string[];
  shadow: Attempt;
  paths: Record<string, Attempt>;
  writeCode: Attempt;
  writeUsr: Attempt;
  writeTmp: Attempt;
  processes: Attempt;
  root: Attempt;
  code: Attempt;
  gateway: Attempt;
}

interface PyWalls {
  uid: number;
  niceness: number;
  env: string[];
  shadow: Attempt;
  writeCode: Attempt;
  gateway: Attempt;
}

interface CrashAnswer {
  alive: boolean;
  pid: number;
  boot: string;
}

const SECRET = 'HEARTH_TEST_SECRET';
/**
 * What a guest may see besides its own spec env: the platform's names for it, a few basics, the
 * invocation's W3C trace context (`TRACEPARENT`, set for sync Python handlers), and Lambda's documented
 * runtime variables (issue 18: handlers written for Lambda read them).
 */
const ALLOWED_ENV =
  /^(PATH|HOME|LANG|LC_ALL|TMPDIR|NODE_ENV|PYTHONUNBUFFERED|PYTHONDONTWRITEBYTECODE|HEARTH_[A-Z_]+|AWS_LAMBDA_[A-Z_]+|AWS_REGION|AWS_DEFAULT_REGION|AWS_EXECUTION_ENV|LAMBDA_TASK_ROOT|_HANDLER|TRACEPARENT)$/;

let hearth: Hearth;
let openCopy: TempFolder;
let pyThrow: TempFolder;

async function deploy(fixture: string): Promise<void> {
  const deployed = await deployFolder(hearth.url, join(FIXTURES, fixture), { name: fixture });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
}

async function instanceIds(name: string): Promise<string[]> {
  const detail = await getFunction(hearth.url, name);
  return (detail?.activeInstances ?? [])
    .filter((instance) => instance.state !== 'stopped')
    .map((instance) => instance.id);
}

async function crashAnswer(): Promise<CrashAnswer> {
  const response = await invoke(hearth.url, 'node-crash');
  expect(response.status, response.text).toBe(200);
  return response.json() as CrashAnswer;
}

beforeAll(async () => {
  // A secret in the platform's own environment: no function may see it.
  hearth = await startHearth({ env: { [SECRET]: 's3cret' } });
  for (const fixture of ['node-crash', 'node-slow', 'node-esm-default', 'py-sync', 'node-walls', 'py-walls'])
    await deploy(fixture);
  pyThrow = await makeFolder({
    'hearth.yaml': manifest('py-throw', '{ runtime: python3 }'),
    'main.py': 'def handler(event, context):\n    raise ValueError("bad input on purpose")\n',
  });
  expect((await deployFolder(hearth.url, pyThrow.dir, { name: 'py-throw' })).status).toBe(200);
  openCopy = await copyFixture('node-walls', {
    'hearth.yaml': manifest('node-open', '{ runtime: node20, isolation: process }'),
  });
  const open = await deployFolder(hearth.url, openCopy.dir, { name: 'node-open' });
  expect(open.status, JSON.stringify(open.body)).toBe(200);
});

afterAll(async () => {
  await hearth?.stop();
  await openCopy?.cleanup();
  await pyThrow?.cleanup();
});

describe('failures stay contained', () => {
  it('a handler that throws answers 500 with its message; the same instance serves the next request', async () => {
    const before = await crashAnswer();
    const instancesBefore = await instanceIds('node-crash');

    const response = await invoke(hearth.url, 'node-crash', { path: '?throw=1' });
    expect(response.status).toBe(500);
    const invocationId = response.headers.get('x-hearth-invocation-id');
    expect(response.json()).toEqual({
      error: {
        code: 'HEARTH_E_FN_ERROR',
        message: 'TypeError: bad input on purpose',
        invocationId,
        details: { type: 'TypeError' },
      },
    });

    const after = await crashAnswer();
    expect(after).toEqual(before);
    expect(await instanceIds('node-crash')).toEqual(instancesBefore);
  });

  it('a process that dies answers 502; a new instance serves next; other functions never notice', async () => {
    const other = async (): Promise<string[]> => {
      const response = await invoke(hearth.url, 'node-esm-default');
      expect(response.status).toBe(200);
      return instanceIds('node-esm-default');
    };
    const otherBefore = await other();
    const before = await crashAnswer();

    const response = await invoke(hearth.url, 'node-crash', { path: '?die=1' });
    expect(response.status).toBe(502);
    expect(response.json()).toMatchObject({
      error: {
        code: 'HEARTH_E_FN_CRASHED',
        message: expect.stringContaining('exit'),
        invocationId: response.headers.get('x-hearth-invocation-id'),
      },
    });

    const after = await crashAnswer();
    expect(after.alive).toBe(true);
    expect(after.boot).not.toBe(before.boot);
    expect(await other()).toEqual(otherBefore);
  });

  it('a handler that outlives its 1 s timeout answers 504', async () => {
    const response = await invoke(hearth.url, 'node-slow', { path: '?ms=5000' });
    expect(response.status).toBe(504);
    expect(response.json()).toMatchObject({
      error: { code: 'HEARTH_E_TIMEOUT', message: expect.stringContaining('1000ms') },
    });
  });

  it('a handler spinning on the CPU answers 504, and its instance is replaced so the function still serves', async () => {
    // Make sure there is a live instance first, to see it go.
    expect((await invoke(hearth.url, 'node-slow', { path: '?ms=1' })).status).toBe(200);
    const spinning = await instanceIds('node-slow');
    expect(spinning.length).toBeGreaterThan(0);
    const timeoutsLogged = async () =>
      functionLogs(hearth.url, 'node-slow', { q: 'instance stopped: timeout' });
    const loggedBefore = (await timeoutsLogged()).length;

    const response = await invoke(hearth.url, 'node-slow', { path: '?spin=1' });
    expect(response.status).toBe(504);
    expect(response.json()).toMatchObject({ error: { code: 'HEARTH_E_TIMEOUT' } });

    const next = await invoke(hearth.url, 'node-slow', { path: '?ms=10' });
    expect(next.status, next.text).toBe(200);
    expect(next.json()).toEqual({ slept: 10 });
    const now = await instanceIds('node-slow');
    for (const id of spinning) expect(now).not.toContain(id);
    const system = await eventually('the timeout in the system log', async () => {
      const records = await timeoutsLogged();
      return records.length > loggedBefore ? records : undefined;
    });
    expect(system.every((record) => record.stream === 'system')).toBe(true);
  });

  it("a client's shorter deadline (X-Hearth-Timeout) answers 504 naming that deadline", async () => {
    const response = await invoke(hearth.url, 'node-slow', {
      path: '?ms=5000',
      headers: { 'x-hearth-timeout': '300' },
    });
    expect(response.status).toBe(504);
    const { error } = response.json() as { error: { code: string; message: string } };
    expect(error.code).toBe('HEARTH_E_TIMEOUT');
    // The request was cut at 300 ms; a message claiming the function's own 1000 ms misleads.
    expect(error.message).toMatch(/\b300 ?ms\b/);
    expect(error.message).not.toContain('1000ms');
  });

  it('the platform is still healthy after all of it', async () => {
    const health = await api<HealthResponse>(hearth.url, '/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', sandbox: { available: true } });
    expect((await invoke(hearth.url, 'py-sync')).status).toBe(200);
  });
});

describe('logs', () => {
  it("a crash's stack is in the function's logs, tagged with its invocation id", async () => {
    const response = await invoke(hearth.url, 'node-crash', { path: '?throw=1' });
    const invocationId = response.headers.get('x-hearth-invocation-id') ?? '';
    expect(invocationId).not.toBe('');

    const records = await eventually('the stack in the logs', async () => {
      const found = await functionLogs(hearth.url, 'node-crash', { invocation: invocationId });
      return found.some((record) => record.message.includes('at handler')) ? found : undefined;
    });
    expect(records.every((record) => record.invocationId === invocationId)).toBe(true);
    const text = records.map((record) => record.message).join('\n');
    expect(text).toContain('TypeError: bad input on purpose');
    expect(text).toMatch(/at handler \(file:\/\/\/code\/app\/index\.mjs:\d+:\d+\)/);
    expect(records.some((record) => record.stream === 'stderr')).toBe(true);

    const cli = await runCli(['logs', 'node-crash', '--invocation', invocationId], { url: hearth.url });
    expect(cli.code, cli.stderr).toBe(0);
    const lines = cli.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(line).toContain(` ${invocationId.slice(0, 8)} stderr| `);
    expect(cli.stdout).toContain('TypeError: bad input on purpose');
  });

  it.each([
    ['node-crash', '?throw=1', /^\s+at /, 'file:///code/app/'],
    ['py-throw', '', /^\s+File "/, 'File "/code/app/'],
  ])(
    "%s: the stack in the logs shows the function's own frames, not the platform's",
    async (name, query, frame, own) => {
      const response = await invoke(hearth.url, name, { path: query });
      expect(response.status).toBe(500);
      const invocationId = response.headers.get('x-hearth-invocation-id') ?? '';
      const text = await eventually('the stack in the logs', async () => {
        const found = (await functionLogs(hearth.url, name, { invocation: invocationId }))
          .map((record) => record.message)
          .join('\n');
        return found.includes('bad input on purpose') ? found : undefined;
      });
      const frames = text.split('\n').filter((line) => frame.test(line));
      expect(frames.length).toBeGreaterThan(0);
      // The guest's plumbing (bootstrap, async_hooks, events) is noise in a user's log.
      expect(frames.filter((line) => !line.includes(own))).toEqual([]);
    },
  );

  it.each([
    ['node-esm-default', 'console.log', 'echo'],
    ['py-sync', 'print', 'py log'],
  ])("%s: the function's %s lines are retrievable by invocation", async (name, _, prefix) => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const response = await invoke(hearth.url, name);
      expect(response.status).toBe(200);
      ids.push(response.headers.get('x-hearth-invocation-id') ?? '');
    }
    for (const id of ids) {
      const records = await eventually(`the log line of ${id}`, async () => {
        const found = await functionLogs(hearth.url, name, { invocation: id });
        return found.length > 0 ? found : undefined;
      });
      expect(
        records.map((record) => ({
          stream: record.stream,
          message: record.message.trimEnd(),
          invocationId: record.invocationId,
        })),
      ).toEqual([{ stream: 'stdout', message: `${prefix} ${id}`, invocationId: id }]);
    }
    const cli = await runCli(['logs', name, '--grep', ids[1] ?? '-'], { url: hearth.url });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(` ${ids[1]?.slice(0, 8)} stdout\\| ${prefix} ${ids[1]}$`)),
    ]);
  });

  it('hearth logs --follow prints a new line as it is written', async () => {
    // A line in the backlog first: once it is printed, the stream is live and nothing can be missed.
    const first = await invoke(hearth.url, 'node-esm-default');
    const firstId = first.headers.get('x-hearth-invocation-id') ?? '';
    await eventually('the first line stored', async () =>
      (await functionLogs(hearth.url, 'node-esm-default', { invocation: firstId })).length > 0
        ? true
        : undefined,
    );

    const follower = startCli(['logs', 'node-esm-default', '--follow'], { url: hearth.url });
    try {
      await follower.waitForOutput(`echo ${firstId}`);
      const second = await invoke(hearth.url, 'node-esm-default');
      const secondId = second.headers.get('x-hearth-invocation-id') ?? '';
      await follower.waitForOutput(`echo ${secondId}`);
      expect(follower.stdout()).toMatch(new RegExp(` ${secondId.slice(0, 8)} stdout\\| echo ${secondId}\\n`));
    } finally {
      const code = await follower.stop();
      // Ctrl-C is the normal way out of --follow.
      expect(code).toBe(0);
    }
  });
});

describe('the sandbox walls', () => {
  let node: NodeWalls;
  let py: PyWalls;
  let otherCodeDir: string;

  beforeAll(async () => {
    // Another function's code, where it lies on the host.
    const described = await runCli(['describe', 'node-crash', '-o', 'json'], { url: hearth.url });
    expect(described.code, described.stderr).toBe(0);
    const hash = (JSON.parse(described.stdout) as FunctionDetail).code.hash;
    otherCodeDir = join(hearth.dataDir, 'cache', 'code', hash);
    expect(existsSync(otherCodeDir)).toBe(true);

    const query = new URLSearchParams([
      ['port', String(hearth.port)],
      ['path', hearth.dataDir],
      ['path', otherCodeDir],
      ['path', '/code/app'],
    ]);
    const nodeResponse = await invoke(hearth.url, 'node-walls', { path: `?${query}` });
    expect(nodeResponse.status, nodeResponse.text).toBe(200);
    node = nodeResponse.json() as NodeWalls;
    const pyResponse = await invoke(hearth.url, 'py-walls', { path: `?port=${hearth.port}` });
    expect(pyResponse.status, pyResponse.text).toBe(200);
    py = pyResponse.json() as PyWalls;
  });

  it('functions run as uid 65534', () => {
    expect(node.uid).toBe(65534);
    expect(py.uid).toBe(65534);
  });

  it('functions run at a lower CPU priority than the gateway that serves them all', () => {
    // The platform runs at this process's niceness; its functions run 5 nicer.
    const expected = Math.min(19, getPriority() + 5);
    expect(node.niceness).toBe(expected);
    expect(py.niceness).toBe(expected);
  });

  it('/etc/shadow is not there to read', () => {
    expect(node.shadow).toEqual({ ok: false, error: expect.stringMatching(/^(ENOENT|EACCES)$/) });
    expect(py.shadow).toEqual({
      ok: false,
      error: expect.stringMatching(/^(FileNotFoundError|PermissionError)$/),
    });
  });

  it("the environment holds none of the platform's variables, only the function's own and a small allow-list", () => {
    for (const env of [node.env, py.env]) {
      expect(env).not.toContain(SECRET);
      expect(env.filter((key) => !ALLOWED_ENV.test(key))).toEqual([]);
      expect(env).toContain('HEARTH_FUNCTION');
    }
  });

  it("neither the data dir nor another function's code is visible", () => {
    expect(node.paths[hearth.dataDir]).toEqual({ ok: false, error: 'ENOENT' });
    expect(node.paths[otherCodeDir]).toEqual({ ok: false, error: 'ENOENT' });
  });

  it('/code holds only the function itself', () => {
    expect(node.code).toEqual({ ok: true, value: ['app'] });
    expect(node.paths['/code/app']).toEqual({ ok: true, value: ['index.mjs'] });
  });

  it('/code/app and /usr are read-only; /tmp is writable', () => {
    expect(node.writeCode).toEqual({ ok: false, error: 'EROFS' });
    expect(node.writeUsr).toEqual({ ok: false, error: 'EROFS' });
    expect(node.writeTmp).toEqual({ ok: true });
    // Python names the errno only through the class: EROFS is a plain OSError.
    expect(py.writeCode).toEqual({ ok: false, error: expect.stringMatching(/^(OSError|PermissionError)$/) });
  });

  it('only a handful of processes are visible (a pid namespace)', () => {
    expect(node.processes.ok).toBe(true);
    expect(node.processes.value).toBeGreaterThan(0);
    expect(node.processes.value).toBeLessThanOrEqual(4);
  });

  it("the gateway's port is unreachable (no egress)", () => {
    expect(node.gateway).toEqual({ ok: false, error: expect.stringMatching(/^(ECONNREFUSED|ENETUNREACH)$/) });
    expect(py.gateway).toEqual({
      ok: false,
      error: expect.stringMatching(/^(ConnectionRefusedError|OSError)$/),
    });
  });

  it('the root holds no host directories beyond the runtime basics', () => {
    const root = node.root.value as string[];
    for (const hostOnly of ['root', 'home', 'var', 'srv', 'opt', 'work'])
      expect(root).not.toContain(hostOnly);
  });

  it('isolation: process deploys, runs on the host, and describe says NOT SANDBOXED', async () => {
    const response = await invoke(hearth.url, 'node-open', {
      path: `?path=${encodeURIComponent(hearth.dataDir)}`,
    });
    expect(response.status).toBe(200);
    const open = response.json() as NodeWalls;
    // The contrast that shows the walls above are the sandbox's doing.
    expect(open.paths[hearth.dataDir]?.ok).toBe(true);

    const described = await runCli(['describe', 'node-open'], { url: hearth.url });
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(/^Isolation:\s+process: NOT SANDBOXED/m);
    const listed = await runCli(['ls'], { url: hearth.url });
    expect(listed.stdout).toMatch(/^node-open\s+default\s+node20\s+\d+\s+\d+\s+process\s/m);
  });
});
