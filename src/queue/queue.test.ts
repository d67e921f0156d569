/**
 * The Queue conformance suite: every implementation (the embedded SQLite queue today, NATS JetStream in
 * cluster mode) must pass it. `reopen` simulates a crash: the old handle is abandoned, a new one opened.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newMessage } from '../../test/support/queue-messages.js';
import type { NewMessage, Queue } from './index.js';
import { SqliteQueue } from './index.js';

interface Harness {
  open(): Queue;
  cleanup(): Promise<void>;
}

const ref = { namespace: 'default', name: 'fn' };
const message = (overrides: Partial<NewMessage> = {}): NewMessage => newMessage(ref, overrides);

export function runQueueConformance(name: string, harness: () => Promise<Harness>): void {
  describe(`Queue conformance: ${name}`, () => {
    let current: Harness | undefined;
    const queues: Queue[] = [];
    const open = async (): Promise<Queue> => {
      current ??= await harness();
      const queue = current.open();
      queues.push(queue);
      return queue;
    };
    afterEach(async () => {
      for (const queue of queues.splice(0)) await queue.close().catch(() => undefined);
      await current?.cleanup();
      current = undefined;
    });

    it('stores a message durably and leases it once', async () => {
      const queue = await open();
      const stored = await queue.enqueue(message());
      expect(stored.state).toBe('queued');
      const [leased, ...rest] = await queue.lease(10, 60_000);
      expect(rest).toHaveLength(0);
      expect(leased?.id).toBe(stored.id);
      expect(leased?.attempts).toBe(1);
      expect(leased?.request.body.toString()).toBe('{"n":1}');
      expect(leased?.request.headers).toEqual(['content-type', 'application/json']);
      expect(await queue.lease(10, 60_000)).toHaveLength(0);
      await queue.complete(stored.id, 'succeeded', {
        status: 200,
        headers: ['content-type', 'text/plain'],
        body: Buffer.from('ok'),
      });
      const done = await queue.get(stored.id);
      expect(done?.state).toBe('succeeded');
      expect(done?.result?.body.toString()).toBe('ok');
    });

    it('redelivers what a crashed process had leased', async () => {
      const first = await open();
      const stored = await first.enqueue(message());
      expect(await first.lease(1, 60_000)).toHaveLength(1);
      // No close: the process died holding the lease.
      const second = await open();
      const again = await second.lease(1, 60_000);
      expect(again.map((m) => m.id)).toEqual([stored.id]);
      expect(again[0]?.attempts).toBe(2);
    });

    it('retries at the given time, then dead-letters, and redrives with fresh attempts', async () => {
      const queue = await open();
      const stored = await queue.enqueue(message({ maxAttempts: 2 }));
      await queue.lease(1, 60_000);
      await queue.retry(stored.id, { code: 'HEARTH_E_FN_ERROR', message: 'boom' }, Date.now() + 200);
      expect(await queue.lease(1, 60_000)).toHaveLength(0);
      const stats = await queue.stats();
      expect(stats.queued).toBe(1);
      expect(stats.nextDueAt).toBeGreaterThan(Date.now());
      await new Promise((resolve) => setTimeout(resolve, 250));
      const [second] = await queue.lease(1, 60_000);
      expect(second?.attempts).toBe(2);
      await queue.deadLetter(stored.id, { code: 'HEARTH_E_FN_ERROR', message: 'boom again' });
      const dead = await queue.list({ state: 'dead' });
      expect(dead.map((m) => [m.id, m.lastError?.message])).toEqual([[stored.id, 'boom again']]);
      expect(await queue.redrive([stored.id])).toBe(1);
      const [redriven] = await queue.lease(1, 60_000);
      expect(redriven?.id).toBe(stored.id);
      expect(redriven?.attempts).toBe(1);
    });

    it('adds a message with a known dedupe key only once', async () => {
      const queue = await open();
      const a = await queue.enqueue(message({ dedupeKey: 'cron:x@1' }));
      const b = await queue.enqueue(message({ dedupeKey: 'cron:x@1' }));
      expect(b.id).toBe(a.id);
      expect((await queue.stats()).queued).toBe(1);
    });

    it('keeps dead letters stored straight from a trigger, and redrives them by function', async () => {
      const queue = await open();
      await queue.enqueue(
        message({
          source: 'mqtt:default/fn/mqtt-0',
          attempts: 3,
          deadLetter: { code: 'HEARTH_E_FN_ERROR', message: 'no' },
        }),
      );
      expect((await queue.list({ state: 'dead', source: 'mqtt:default/fn/mqtt-0' }))[0]?.attempts).toBe(3);
      expect(await queue.redrive({ ref })).toBe(1);
      expect(await queue.lease(5, 60_000)).toHaveLength(1);
    });

    it('hands out callbacks once a message has finished, and records their attempts', async () => {
      const queue = await open();
      const stored = await queue.enqueue(message({ callbackUrl: 'http://127.0.0.1:9/cb' }));
      expect(await queue.leaseCallbacks(5, 60_000)).toHaveLength(0);
      await queue.lease(1, 60_000);
      await queue.complete(stored.id, 'succeeded', { status: 200, headers: [], body: Buffer.alloc(0) });
      const [callback] = await queue.leaseCallbacks(5, 60_000);
      expect(callback?.callback).toMatchObject({
        url: 'http://127.0.0.1:9/cb',
        state: 'pending',
        attempts: 1,
      });
      await queue.callbackAttempt(stored.id, 'delivered', undefined);
      expect((await queue.get(stored.id))?.callback?.state).toBe('delivered');
    });

    it('takes a burst of accepts in few commits and loses none', async () => {
      const queue = await open();
      const ids = await Promise.all(
        Array.from({ length: 500 }, () => queue.enqueue(message()).then((m) => m.id)),
      );
      expect(new Set(ids).size).toBe(500);
      const leased = await queue.lease(1000, 60_000);
      expect(leased).toHaveLength(500);
    });
  });
}

runQueueConformance('embedded SQLite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-queue-'));
  return {
    open: () => new SqliteQueue(join(dir, 'queue.db')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
