/**
 * @module A real PostgreSQL for tests (Debian's `postgresql`): a private cluster made with initdb in a temp
 * dir, served by its own `postgres` process on a free loopback port, and stopped by the test. PostgreSQL
 * refuses to run as root, so under root both run as the `postgres` user the Debian package creates.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './redis.js';

export interface RunningPostgres {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/** The newest installed server's bin dir (`/usr/lib/postgresql/<major>/bin`). */
function serverBin(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((name) => /^\d+$/.test(name) && existsSync(join(root, name, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors[0] === undefined)
    throw new Error('PostgreSQL is not installed (npm test installs Debian package postgresql)');
  return join(root, majors[0], 'bin');
}

/** Root runs the server as `postgres`; anyone else as themselves. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

export interface PostgresOptions {
  /** An address of this machine to listen on besides loopback (a test network's bridge)... */
  readonly host?: string;
  /** ...and the clients allowed from it, as a CIDR (trusted, like loopback). */
  readonly allow?: string;
}

export async function startPostgres(options: PostgresOptions = {}): Promise<RunningPostgres> {
  const bin = serverBin();
  const user = serverUser();
  const dir = await mkdtemp(join(tmpdir(), 'hearth-pg-'));
  if (user !== undefined) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  execFileSync(
    join(bin, 'initdb'),
    ['-D', data, '-U', 'hearth', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions'],
    { stdio: ['ignore', 'ignore', 'pipe'], ...(user ?? {}), env: { ...process.env, LC_ALL: 'C.UTF-8' } },
  );
  if (options.allow !== undefined)
    await appendFile(join(data, 'pg_hba.conf'), `host all all ${options.allow} trust\n`);
  const port = await freePort();
  const child = spawn(
    join(bin, 'postgres'),
    [
      '-D',
      data,
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      `listen_addresses=${['127.0.0.1', ...(options.host === undefined ? [] : [options.host])].join(',')}`,
      // A test database: durability across a crash of the machine is not what is under test.
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const url = `postgres://hearth@127.0.0.1:${port}/postgres`;
  const advertised = `postgres://hearth@${options.host ?? '127.0.0.1'}:${port}/postgres`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (await answers(url)) break;
    if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}): ${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`postgres did not answer on port ${port} within 30s: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url: advertised,
    port,
    process: child,
    log: () => output,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        // SIGINT: PostgreSQL's fast shutdown (disconnects clients rather than waiting for them).
        child.kill('SIGINT');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}
