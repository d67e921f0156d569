/**
 * @module End-to-end harness: starts the real, built platform (`bin/hearth.js up`) on port 0 in a temp
 * data dir, runs the real CLI, and deploys folders over the real API — as a user would.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as tar from 'tar';

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
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly dataDir?: string;
  /** Deploy the bundled examples (default false: suites deploy what they test). */
  readonly examples?: boolean;
}

export async function startHearth(options: StartOptions = {}): Promise<Hearth> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'hearth-e2e-')));
  const args = [BIN, 'up', '--port', '0', '--data-dir', dataDir, ...(options.examples === true ? [] : ['--no-examples']), ...(options.args ?? [])];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  const log: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hearth up did not become ready in 60s\n${stderr}`)), 60_000);
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
  const port = Number(new URL(url).port);
  return {
    url,
    port,
    dataDir,
    process: child,
    log,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      const exited = new Promise<number | null>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
        else child.once('exit', (code) => resolve(code));
      });
      child.kill(signal);
      const code = await exited;
      if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the real `hearth` command against a platform. */
export function runCli(args: readonly string[], options: { url?: string; cwd?: string; input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...(options.url === undefined ? {} : { HEARTH_URL: options.url }), NO_COLOR: '1', ...options.env },
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
  return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) as unknown };
}
