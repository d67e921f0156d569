/**
 * @module The EventLog contract: one suite (`eventLogContract`) that every log runs — the embedded SQLite
 * log here; a JetStream log (cluster mode, issue 12) is to be run through the same function in this file. Plus the `events.*` calls'
 * checks of what a guest sends.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HearthError } from '../domain/errors.js';
import { createEventCalls, type EventLog, type NewStreamEvent, SqliteEventLog } from './index.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-eventlog-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function events(...types: string[]): NewStreamEvent[] {
  return types.map((type, index) => ({
    id: `${type}-${index}-${Math.random()}`,
    type,
    data: `{"n":${index}}`,
  }));
}

/** Runs the contract against a log; `reopen` gives a new log on the same storage (durability). */
function eventLogContract(
  name: string,
  open: () => Promise<{ log: EventLog; reopen: () => Promise<EventLog> }>,
): void {
  describe(`EventLog contract: ${name}`, () => {
    it('appends in order: versions from 1 per stream, positions increasing across streams', async () => {
      const { log } = await open();
      const first = await log.append('fn:a/orders', 'o-1', events('Placed', 'ItemAdded'), 0);
      expect(first.version).toBe(2);
      expect(first.events.map((event) => event.version)).toEqual([1, 2]);
      const other = await log.append('fn:a/orders', 'o-2', events('Placed'), undefined);
      const more = await log.append('fn:a/orders', 'o-1', events('Paid'), 2);
      expect(more.version).toBe(3);
      const positions = [...first.events, ...other.events, ...more.events].map((event) => event.position);
      expect([...positions].sort((a, b) => a - b)).toEqual(positions);
      expect(await log.version('fn:a/orders', 'o-1')).toBe(3);
      expect(await log.version('fn:a/orders', 'never')).toBe(0);
      expect(await log.head()).toBe(positions.at(-1));
      await log.close();
    });

    it('refuses an append at a stale expectedVersion with a typed conflict, writing nothing', async () => {
      const { log } = await open();
      await log.append('fn:a/x', 's', events('A'), 0);
      const refused = await log.append('fn:a/x', 's', events('B', 'C'), 0).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(HearthError);
      expect((refused as HearthError).code).toBe('HEARTH_E_STREAM_CONFLICT');
      expect((refused as HearthError).details).toMatchObject({ stream: 's', actualVersion: 1, value: 0 });
      expect(await log.version('fn:a/x', 's')).toBe(1);
      // Of two writers that read version 1, exactly one appends.
      const outcomes = await Promise.allSettled([
        log.append('fn:a/x', 's', events('D'), 1),
        log.append('fn:a/x', 's', events('E'), 1),
      ]);
      expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
      expect(await log.version('fn:a/x', 's')).toBe(2);
      await log.close();
    });

    it('reads a stream from a version with a limit; scopes keep streams of the same name apart', async () => {
      const { log } = await open();
      await log.append('fn:a/r', 'same', events('A', 'B', 'C', 'D'), undefined);
      await log.append('fn:a/other', 'same', events('Z'), undefined);
      const page = await log.read('fn:a/r', 'same', 2, 2);
      expect(page.map((event) => [event.version, event.type, event.data])).toEqual([
        [2, 'B', '{"n":1}'],
        [3, 'C', '{"n":2}'],
      ]);
      expect((await log.read('fn:a/other', 'same', 1, 10)).map((event) => event.type)).toEqual(['Z']);
      await log.close();
    });

    it('keeps the newest snapshot; an older one does not replace it', async () => {
      const { log } = await open();
      await log.append('fn:a/s', 'snap', events('A', 'B', 'C'), undefined);
      expect(await log.latestSnapshot('fn:a/s', 'snap')).toBeUndefined();
      await log.snapshot('fn:a/s', 'snap', 3, '{"total":3}');
      await log.snapshot('fn:a/s', 'snap', 2, '{"total":2}');
      expect(await log.latestSnapshot('fn:a/s', 'snap')).toEqual({ version: 3, state: '{"total":3}' });
      await log.close();
    });

    it('follows the whole log after a position (projections), and keeps every append across a reopen', async () => {
      const { log, reopen } = await open();
      const start = await log.head();
      await log.append('fn:a/all', 'p', events('A'), undefined);
      await log.append('ns:a', 'q', events('B'), undefined);
      await log.append('fn:a/all', 'p', events('C'), 1);
      await log.close();
      const again = await reopen();
      const all = await again.readAll(start, 100);
      expect(all.map((event) => `${event.scope}:${event.stream}@${event.version}:${event.type}`)).toEqual([
        'fn:a/all:p@1:A',
        'ns:a:q@1:B',
        'fn:a/all:p@2:C',
      ]);
      expect((await again.readAll(all[0]?.position ?? 0, 1)).map((event) => event.type)).toEqual(['B']);
      await again.close();
    });
  });
}

eventLogContract('embedded (SQLite)', async () => {
  const file = join(dir, `events-${Math.random()}.db`);
  return { log: new SqliteEventLog(file), reopen: async () => new SqliteEventLog(file) };
});

describe('events.* calls from guests', () => {
  const ref = { namespace: 'shop', name: 'orders' };

  it('keeps streams per function, and in the namespace for streams the spec declares shared', async () => {
    const log = new SqliteEventLog(join(dir, 'calls.db'));
    let appended = 0;
    // Both functions declare `inventory` and `stock-*` shared; `orders` stays each one's own.
    const calls = createEventCalls(log, {
      appended: () => appended++,
      sharedStreams: () => ['inventory', 'stock-*'],
    });
    const billing = { namespace: 'shop', name: 'billing' };
    await calls(
      ref,
      'events.append',
      { stream: 'o-1', events: { type: 'Placed', data: { n: 1 } } },
      undefined,
    );
    await calls(ref, 'events.append', { stream: 'inventory', events: [{ type: 'Counted' }] }, undefined);
    await calls(ref, 'events.append', { stream: 'stock-tea', events: [{ type: 'Counted' }] }, undefined);
    const types = async (who: typeof ref, stream: string) =>
      ((await calls(who, 'events.read', { stream }, undefined)) as { type: string }[]).map((e) => e.type);
    expect(await types(ref, 'o-1')).toEqual(['Placed']);
    expect(await types(billing, 'o-1')).toEqual([]);
    expect(await types(billing, 'inventory')).toEqual(['Counted']);
    expect(await types(billing, 'stock-tea')).toEqual(['Counted']);
    const undeclared = createEventCalls(log, { appended: () => undefined, sharedStreams: () => undefined });
    expect(
      ((await undeclared(billing, 'events.read', { stream: 'inventory' }, undefined)) as unknown[]).length,
    ).toBe(0);
    expect(appended).toBe(3);
    await log.close();
  });

  it('names the field of a bad call', async () => {
    const log = new SqliteEventLog(join(dir, 'bad.db'));
    const calls = createEventCalls(log, { appended: () => undefined, sharedStreams: () => undefined });
    await expect(calls(ref, 'events.append', { stream: '', events: [] }, undefined)).rejects.toThrow(
      /events\.append stream/,
    );
    await expect(
      calls(ref, 'events.append', { stream: 's', events: [{ data: 1 }] }, undefined),
    ).rejects.toThrow(/events\[0\]\.type/);
    await expect(
      calls(ref, 'events.append', { stream: 's', events: [{ type: 'A' }], expectedVersion: -1 }, undefined),
    ).rejects.toThrow(/expectedVersion/);
    await expect(
      calls(ref, 'events.snapshot', { stream: 's', version: 1, state: {} }, undefined),
    ).rejects.toThrow(/version/);
    await log.close();
  });
});
