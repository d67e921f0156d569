/**
 * @module The cluster's secrets copy against a real PostgreSQL, two stores standing for two nodes: an
 * instance start reads from the node's copy (it answers while PostgreSQL does not), a change made on the
 * other node is what the copy holds once its notice is taken, and neither a late re-read nor a rolled-back
 * write leaves the copy behind PostgreSQL.
 */

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningPostgres, startPostgres } from '../../test/support/postgres.js';
import type { SecretRow } from '../compliance/index.js';
import type { PostgresStore as Store } from './pg-store.js';

// The store runs its SyncPostgres worker from dist/ (a .js file next to it): the built store is tested,
// after `npm run build`, as the end-to-end suites do.
const { PostgresStore } = (await import(
  new URL('../../dist/cluster/pg-store.js', import.meta.url).href
)) as typeof import('./pg-store.js');

let postgres: RunningPostgres;
let packagesDir: string;
let writer: Store;
let reader: Store;

function row(name: string, sealed: string): SecretRow {
  const now = new Date().toISOString();
  return {
    namespace: 'default',
    name,
    keys: '["password"]',
    algorithm: 'aes-256-gcm',
    key_id: 'k1',
    sealed: Buffer.from(sealed),
    created_at: now,
    updated_at: now,
  };
}

function sealedOf(found: SecretRow | undefined): string | undefined {
  return found?.sealed.toString();
}

/** Stops (SIGSTOP) or resumes (SIGCONT) the server and every backend, so no query is answered meanwhile. */
function signalPostgres(signal: 'SIGSTOP' | 'SIGCONT'): void {
  const postmaster = postgres.process.pid as number;
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(postmaster)], { encoding: 'utf8' })
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((pid) => pid > 0);
  for (const pid of [postmaster, ...children]) process.kill(pid, signal);
}

beforeAll(async () => {
  postgres = await startPostgres();
  packagesDir = await mkdtemp(join(tmpdir(), 'hearth-pg-secrets-'));
  writer = PostgresStore.open({ url: postgres.url, packagesDir });
  writer.secretTable().upsert(row('db', 'first'));
  // The second node starts after the first secret was set: its copy is filled at start.
  reader = PostgresStore.open({ url: postgres.url, packagesDir });
}, 60_000);

afterAll(async () => {
  writer?.close();
  reader?.close();
  await postgres?.stop();
  await rm(packagesDir, { recursive: true, force: true });
});

describe('the secrets copy of a cluster node', () => {
  it('answers an instance start from the copy: a secret is read while PostgreSQL answers nothing', () => {
    signalPostgres('SIGSTOP');
    let found: SecretRow | undefined;
    try {
      // With a round trip per read this would wait for PostgreSQL (SyncPostgres gives up after 30 s).
      found = reader.secretTable().get('default', 'db');
    } finally {
      signalPostgres('SIGCONT');
    }
    expect(sealedOf(found)).toBe('first');
  }, 60_000);

  it('holds a change made on another node once its notice is taken, and a delete too', async () => {
    writer.secretTable().upsert(row('db', 'second'));
    await reader.secrets.refresh('default', 'db');
    expect(sealedOf(reader.secretTable().get('default', 'db'))).toBe('second');
    expect(reader.secretTable().delete('default', 'missing')).toBe(false);
    writer.secretTable().upsert(row('gone', 'soon'));
    await reader.secrets.refresh('default', 'gone');
    expect(sealedOf(reader.secretTable().get('default', 'gone'))).toBe('soon');
    expect(writer.secretTable().delete('default', 'gone')).toBe(true);
    await reader.secrets.refresh('default', 'gone');
    expect(reader.secretTable().get('default', 'gone')).toBeUndefined();
  });

  it('reads a secret its copy lacks from PostgreSQL (set elsewhere, its notice not here yet)', () => {
    writer.secretTable().upsert(row('fresh', 'made on the writer'));
    expect(sealedOf(reader.secretTable().get('default', 'fresh'))).toBe('made on the writer');
  });

  it("keeps the node's own write when a re-read begun before it answers after it", async () => {
    writer.secretTable().upsert(row('db', 'third'));
    const late = reader.secrets.refresh('default', 'db');
    // The re-read is on the wire (it may read the third value)...
    await new Promise((resolve) => setImmediate(resolve));
    // ...and this write is synchronous: PostgreSQL has the fourth value before the re-read's answer is handled.
    reader.secretTable().upsert(row('db', 'fourth'));
    await late;
    expect(sealedOf(reader.secretTable().get('default', 'db'))).toBe('fourth');
    await reader.secrets.reload();
    expect(sealedOf(reader.secretTable().get('default', 'db'))).toBe('fourth');
  });

  it('drops a write whose transaction rolled back, and keeps one that committed', () => {
    const table = reader.secretTable();
    expect(() =>
      table.transaction(() => {
        table.upsert(row('db', 'rolled back'));
        // Inside the transaction the node reads what it wrote.
        expect(sealedOf(table.get('default', 'db'))).toBe('rolled back');
        throw new Error('refused');
      }),
    ).toThrow('refused');
    expect(sealedOf(table.get('default', 'db'))).toBe('fourth');
    table.transaction(() => table.upsert(row('db', 'committed')));
    signalPostgres('SIGSTOP');
    try {
      expect(sealedOf(table.get('default', 'db'))).toBe('committed');
    } finally {
      signalPostgres('SIGCONT');
    }
  }, 60_000);
});
