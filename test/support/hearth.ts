/**
 * @module End-to-end harness: starts the real, built platform (`bin/hearth.js up`) on port 0 in a temp
 * data dir, runs the real CLI, and deploys folders over the real API — as a user would.
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';
import type {
  DeployEvent,
  FunctionDetail,
  FunctionSummary,
  ListResponse,
  LogRecord,
} from '../../src/control/api/types.js';
import { Cgroups, platformKey } from '../../src/runtime/sandbox/cgroups.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'bin', 'hearth.js');
export const FIXTURES = join(ROOT, 'test', 'fixtures', 'functions');

export interface Hearth {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly process: ChildProcess;
  /** The platform's JSON log lines so far. */
  readonly log: Record<string, unknown>[];
  /** What `hearth up` has written to stderr so far (its banner and notices, for people). */
  stderr(): string;
  /**
   * Sends `signal` (SIGTERM by default), kills the platform if it has not exited `STOP_KILL_MS` later, then
   * `reclaim`s what it left. A SIGKILL asked for on a data dir the caller gave is a crash the caller starts
   * the platform again on: everything is kept for that start to find.
   */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /**
   * For a platform a test killed and dropped: kills it if it still runs, then removes whatever it left
   * (`reclaimDataDir`: its processes, mounts under its data dir, its cgroups), and the data dir when the
   * harness made it. Nothing once a later platform was started on the same data dir: that one owns it now.
   */
  reclaim(): Promise<void>;
  /** What the last stop or reclaim found the platform had left behind ([] after a clean stop). */
  leftBehind(): readonly string[];
}

export interface StartOptions {
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly dataDir?: string;
  /** Deploy the bundled examples (default false: suites deploy what they test). */
  readonly examples?: boolean;
  /** A command that runs it elsewhere and execs it (`nsenter -t PID -n`): the process is still the platform. */
  readonly prefix?: readonly string[];
}

/**
 * How long `stop` waits for the platform to exit before it kills it: longer than the platform's own stop
 * deadline (30 s by default), after which it gives up waiting on its own and exits.
 */
export const STOP_KILL_MS = 45_000;

/** Data dirs the harness made: a handle on one removes it when stopped, a restart's handle too. */
const madeDirs = new Set<string>();
/** The latest platform started on each data dir: a killed run's handle leaves the dir to it. */
const latestRun = new Map<string, ChildProcess>();

export async function startHearth(options: StartOptions = {}): Promise<Hearth> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'hearth-e2e-')));
  if (options.dataDir === undefined) madeDirs.add(dataDir);
  const args = [
    BIN,
    'up',
    '--port',
    '0',
    '--data-dir',
    dataDir,
    ...(options.examples === true ? [] : ['--no-examples']),
    ...(options.args ?? []),
  ];
  const [command, ...commandArgs] = [...(options.prefix ?? []), process.execPath, ...args] as [
    string,
    ...string[],
  ];
  const child = spawn(command, commandArgs, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  latestRun.set(dataDir, child);
  const log: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`hearth up did not become ready in 60s\n${stderr}`)),
      60_000,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`hearth up exited with ${code}\n${stderr}`));
    });
    if (child.stdout === null) return;
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        log.push(entry);
        if (entry.msg === 'hearth ready' && typeof entry.url === 'string') {
          clearTimeout(timer);
          resolve(entry.url);
        }
      } catch {
        // not a log line
      }
    });
  });
  let url: string;
  try {
    url = await ready;
  } catch (error) {
    // A platform that never became ready leaves neither a process, a mount, a cgroup nor a temp dir behind.
    child.kill('SIGKILL');
    await exitOf(child);
    const made = madeDirs.has(dataDir);
    await reclaimDataDir(dataDir, { remove: made });
    madeDirs.delete(dataDir);
    throw error;
  }
  const port = Number(new URL(url).port);
  let leftBehind: readonly string[] = [];
  const reclaim = async (): Promise<void> => {
    child.kill('SIGKILL');
    await exitOf(child);
    // A restart on this data dir runs (or ran) there now: what is left is its to clean, or its handle's.
    if (latestRun.get(dataDir) !== child) return;
    const made = madeDirs.has(dataDir);
    leftBehind = await reclaimDataDir(dataDir, { remove: made });
    // A platform that exited 0 on its own should have removed all of it: worth seeing in any suite's output.
    if (leftBehind.length > 0 && child.exitCode === 0)
      console.warn(`hearth up (${dataDir}) exited 0 but left behind: ${leftBehind.join(', ')}`);
    if (made) madeDirs.delete(dataDir);
    latestRun.delete(dataDir);
  };
  return {
    url,
    port,
    dataDir,
    process: child,
    log,
    stderr: () => stderr,
    leftBehind: () => leftBehind,
    reclaim,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      const exited = exitOf(child);
      child.kill(signal);
      const timer = setTimeout(() => {
        console.error(
          `hearth up (${dataDir}) did not exit within ${STOP_KILL_MS / 1000} s of ${signal}: killing it. The end of its stderr:\n${stderr.slice(-4000)}`,
        );
        child.kill('SIGKILL');
      }, STOP_KILL_MS);
      const code = await exited;
      clearTimeout(timer);
      if (signal === 'SIGKILL' && !madeDirs.has(dataDir)) return code;
      await reclaim();
      return code;
    },
  };
}

/** Resolves with the process's exit code once it has exited (at once if it has). */
function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

const execFileAsync = promisify(execFile);

/** The state dirs under `<dataDir>/run` whose path names a platform's cgroups (src/platform.ts). */
const STATE_DIRS = ['sandbox', 'microvm', 'containers'] as const;

/**
 * Removes what a platform that is no longer running left of itself: its processes and cgroups (the
 * platform's own `Cgroups.close`, which kills what is still inside), every mount under its data dir
 * (lazily, deepest first), and with `remove` the data dir. Returns what it found left behind; throws
 * naming what it could not remove. A platform that stopped cleanly left nothing, and this does nothing.
 */
export async function reclaimDataDir(dataDir: string, options: { remove?: boolean } = {}): Promise<string[]> {
  const found: string[] = [];
  for (const name of STATE_DIRS) {
    const stateDir = join(dataDir, 'run', name);
    const dirs = platformCgroupDirs(stateDir);
    if (dirs.length === 0) continue;
    found.push(...dirs);
    // Built for this only: its constructor finds (or makes) the platform's roots, `close` kills and removes.
    await new Cgroups(stateDir).close();
  }
  const mounts = mountsUnder(dataDir);
  found.push(...mounts);
  for (const point of mounts) await execFileAsync('umount', ['-l', point]).catch(() => undefined);
  if (options.remove === true) await rm(dataDir, { recursive: true, force: true });
  const remaining = [
    ...STATE_DIRS.flatMap((name) => platformCgroupDirs(join(dataDir, 'run', name))),
    ...mountsUnder(dataDir),
  ];
  if (remaining.length > 0) throw new Error(`could not reclaim ${dataDir}: ${remaining.join(', ')} remain`);
  return found;
}

/** The mount points at or under `dir` in this mount namespace, deepest first. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => unescapeMountPath(line.split(' ')[4] ?? ''))
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.split('/').length - a.split('/').length);
}

/** mountinfo writes space, tab, newline and backslash in a path as octal escapes (`\040`). */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * The cgroup directories of the platform whose state dir is `stateDir` that exist now: `<mount>/hearth/<key>`
 * and (cgroup v1 cpu) `<mount>/hearth-idle/<key>` under every cgroup mount, `<key>` from cgroups.ts's `platformKey`.
 */
export function platformCgroupDirs(stateDir: string): string[] {
  const key = platformKey(stateDir);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => /^cgroup2? /.test(line.split(' - ')[1] ?? ''))
    .map((line) => unescapeMountPath(line.split(' ')[4] ?? ''));
  return mounts
    .flatMap((mount) => [join(mount, 'hearth', key), join(mount, 'hearth-idle', key)])
    .filter((dir) => existsSync(dir));
}

/**
 * Runs every clean-up step in turn, each one even when one before it failed (a node that would not stop
 * must not keep the brokers running or the temp folders on disk), then throws what failed.
 */
export async function cleanUp(...steps: readonly ((() => unknown) | undefined)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step?.();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} clean-up steps failed`);
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real `hearth` command against a platform. */
export function runCli(
  args: readonly string[],
  options: { url?: string; cwd?: string; input?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: {
        ...process.env,
        ...(options.url === undefined ? {} : { HEARTH_URL: options.url }),
        NO_COLOR: '1',
        ...options.env,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdin.end(options.input ?? '');
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Packs a folder as the CLI would and deploys it over the API; returns the parsed JSON answer. */
export async function deployFolder(
  url: string,
  folder: string,
  target: { name: string; namespace?: string; query?: string },
): Promise<{ status: number; body: Record<string, unknown> }> {
  const archive = await packFolder(folder);
  const response = await fetch(
    `${url}/api/v1/namespaces/${target.namespace ?? 'default'}/functions/${target.name}/deploy${target.query ?? ''}`,
    { method: 'POST', headers: { 'content-type': 'application/gzip' }, body: archive },
  );
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export async function packFolder(folder: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const stream = tar.c({ gzip: true, cwd: folder, portable: true }, ['.']);
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function invoke(
  url: string,
  name: string,
  init: { method?: string; body?: string | Buffer; headers?: Record<string, string>; path?: string } = {},
): Promise<{ status: number; headers: Headers; text: string; json: () => unknown }> {
  const response = await fetch(`${url}/function/${name}${init.path ?? ''}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    ...(init.headers === undefined ? {} : { headers: init.headers }),
    ...(init.body === undefined ? {} : { body: init.body }),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    text,
    json: () => JSON.parse(text) as unknown,
  };
}

// --- control API ------------------------------------------------------------------------------------

export interface ApiAnswer<T> {
  readonly status: number;
  readonly headers: Headers;
  /** The raw body, for asserting what a client would see (e.g. no stack traces). */
  readonly text: string;
  readonly body: T;
}

/**
 * One control-API request; `json` is sent as a JSON body. The answer's body is parsed as JSON and typed
 * as the caller says: these are the platform's own wire types, and the assertions check the shape.
 */
export async function api<T = Record<string, unknown>>(
  url: string,
  path: string,
  init: { method?: string; json?: unknown; body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> {
  const body = init.json === undefined ? init.body : JSON.stringify(init.json);
  const response = await fetch(`${url}${path}`, {
    method: init.method ?? 'GET',
    headers: { ...(init.json === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) as T };
}

export function functionApiPath(name: string, namespace = 'default'): string {
  return `/api/v1/namespaces/${namespace}/functions/${name}`;
}

/** `GET` of one function; undefined when the platform answers 404. */
export async function getFunction(
  url: string,
  name: string,
  namespace = 'default',
): Promise<FunctionDetail | undefined> {
  const answer = await api<FunctionDetail>(url, functionApiPath(name, namespace));
  if (answer.status === 404) return undefined;
  if (answer.status !== 200) throw new Error(`GET ${name}: HTTP ${answer.status} ${answer.text}`);
  return answer.body;
}

/** `namespace/name` of every deployed function, sorted. */
export async function listFunctions(url: string): Promise<string[]> {
  const answer = await api<ListResponse<FunctionSummary>>(url, '/api/v1/functions');
  return answer.body.items.map((fn) => `${fn.namespace}/${fn.name}`).sort();
}

/** Deploys an archive as it is (possibly hand-made and hostile) over the API. */
export async function deployArchive(
  url: string,
  archive: Buffer,
  target: { name: string; namespace?: string; contentType?: string },
): Promise<ApiAnswer<Record<string, unknown>>> {
  return api(url, `${functionApiPath(target.name, target.namespace)}/deploy`, {
    method: 'POST',
    headers: { 'content-type': target.contentType ?? 'application/gzip' },
    body: archive,
  });
}

/** Deploys a folder asking for the NDJSON progress stream; returns every event in order. */
export async function deployStreaming(
  url: string,
  folder: string,
  target: { name: string; namespace?: string },
): Promise<{ status: number; contentType: string; events: DeployEvent[] }> {
  const response = await fetch(`${url}${functionApiPath(target.name, target.namespace)}/deploy`, {
    method: 'POST',
    headers: { 'content-type': 'application/gzip', accept: 'application/x-ndjson' },
    body: await packFolder(folder),
  });
  const text = await response.text();
  const events = text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as DeployEvent);
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', events };
}

/** A function's log records (`GET .../logs`), e.g. `{ invocation: id }`. */
export async function functionLogs(
  url: string,
  name: string,
  query: Record<string, string> = {},
  namespace = 'default',
): Promise<readonly LogRecord[]> {
  const search = new URLSearchParams(query).toString();
  const answer = await api<ListResponse<LogRecord>>(
    url,
    `${functionApiPath(name, namespace)}/logs${search === '' ? '' : `?${search}`}`,
  );
  if (answer.status !== 200) throw new Error(`logs of ${name}: HTTP ${answer.status} ${answer.text}`);
  return answer.body.items;
}

// --- waiting without sleeping -------------------------------------------------------------------------

/**
 * Polls `probe` until it returns something other than undefined, or fails after `timeoutMs` naming what
 * it waited for. For state the platform reaches asynchronously (logs flushed, instances replaced).
 */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${options.timeoutMs ?? 10_000}ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
  }
}

// --- folders and archives -----------------------------------------------------------------------------

export interface TempFolder {
  readonly dir: string;
  cleanup(): Promise<void>;
}

/** A temporary folder holding `files` (paths may have subfolders). */
export async function makeFolder(files: Readonly<Record<string, string>>): Promise<TempFolder> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-e2e-fn-'));
  await writeFiles(dir, files);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A temporary copy of a fixture, with some files replaced or added (`null` deletes one). */
export async function copyFixture(
  fixture: string,
  changes: Readonly<Record<string, string | null>> = {},
): Promise<TempFolder> {
  const dir = await mkdtemp(join(tmpdir(), `hearth-e2e-${fixture}-`));
  await cp(join(FIXTURES, fixture), dir, { recursive: true });
  await writeFiles(dir, changes);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

async function writeFiles(dir: string, files: Readonly<Record<string, string | null>>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const target = join(dir, path);
    if (content === null) {
      await rm(target, { force: true });
      continue;
    }
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, content);
  }
}

/** A minimal `hearth.yaml`. */
export function manifest(name: string, spec: string, metadata = ''): string {
  return `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name}${metadata === '' ? '' : `, ${metadata}`} }\nspec: ${spec}\n`;
}

export interface RawTarEntry {
  readonly name: string;
  /** `0` file (default), `1` hard link, `2` symbolic link, `5` directory. */
  readonly type?: '0' | '1' | '2' | '5';
  readonly content?: string;
  readonly linkname?: string;
}

/**
 * A .tar.gz written byte by byte: the `tar` package refuses to create the hostile entries (`../x`,
 * absolute paths) an attacker would send, so the ustar headers are built here.
 */
export function rawTarGz(entries: readonly RawTarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const content = Buffer.from(entry.content ?? '');
    const type = entry.type ?? '0';
    const size = type === '0' ? content.length : 0;
    const header = Buffer.alloc(512);
    const field = (offset: number, length: number, value: string): void => {
      header.write(value.slice(0, length), offset, length, 'utf8');
    };
    const octal = (offset: number, length: number, value: number): void => {
      field(offset, length, `${value.toString(8).padStart(length - 1, '0')}\0`);
    };
    field(0, 100, entry.name);
    octal(100, 8, type === '5' ? 0o755 : 0o644);
    octal(108, 8, 0);
    octal(116, 8, 0);
    octal(124, 12, size);
    octal(136, 12, Math.floor(Date.now() / 1000));
    field(148, 8, '        ');
    field(156, 1, type);
    field(157, 100, entry.linkname ?? '');
    field(257, 6, 'ustar\0');
    field(263, 2, '00');
    let sum = 0;
    for (const byte of header) sum += byte;
    field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    blocks.push(header);
    if (size > 0) {
      blocks.push(content);
      blocks.push(Buffer.alloc((512 - (size % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

// --- the CLI as a long-running process ------------------------------------------------------------------

export interface RunningCli {
  readonly child: ChildProcess;
  stdout(): string;
  /** Resolves once stdout contains `text`; rejects after `timeoutMs` or if the CLI exits first. */
  waitForOutput(text: string, timeoutMs?: number): Promise<void>;
  /** Interrupts the CLI (SIGINT, as Ctrl-C) and resolves with its exit code. */
  stop(): Promise<number | null>;
}

/** Starts a CLI command that keeps running (`logs --follow`). */
export function startCli(args: readonly string[], options: { url: string }): RunningCli {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, HEARTH_URL: options.url, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => stdout,
    async waitForOutput(text, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!stdout.includes(text)) {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(
            `hearth ${args.join(' ')} exited (${child.exitCode}) before printing ${text}\n${stderr}`,
          );
        }
        if (Date.now() > deadline)
          throw new Error(
            `hearth ${args.join(' ')} did not print ${text} within ${timeoutMs}ms\nstdout: ${stdout}\nstderr: ${stderr}`,
          );
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return exited;
    },
  };
}

/** The CLI's `error:` lines; a failure must produce exactly one, and no stack frames anywhere. */
export function errorLines(stderr: string): string[] {
  return stderr
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('error:'));
}

export const STACK_FRAME = /^\s{4}at /m;

/** A Node stack frame or a Python traceback, anywhere in a string. */
const TRACE = /^\s+at \S|Traceback \(most recent call last\)|^\s+File "[^"]+", line \d+/m;

/**
 * The first string inside a parsed JSON body that carries a stack trace (a JSON body escapes its
 * newlines, so searching the raw text for frames finds nothing); undefined when there is none.
 */
export function stackTraceIn(value: unknown, at = '(body)'): string | undefined {
  if (typeof value === 'string') return TRACE.test(value) ? `${at}: ${value}` : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  for (const [key, inner] of Object.entries(value)) {
    const found = stackTraceIn(inner, `${at}.${key}`);
    if (found !== undefined) return found;
  }
  return undefined;
}
