/**
 * @module Event-sourced state through the real platform (issue 20): `ctx.events` in Node (optimistic
 * concurrency: a typed conflict the handler catches; concurrent writers lose nothing) and in Python (the
 * order example, `examples/orders`, rebuilt on read); and the example's projection, fed by a Trigger, across
 * a SIGKILL of the platform between the appends and the projection: after a restart it catches up, every
 * event applied exactly once (idempotent by event id).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  api,
  deployFolder,
  eventually,
  type Hearth,
  makeFolder,
  ROOT,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

let hearth: Hearth | undefined;
let dataDir: string | undefined;
const folders: TempFolder[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'hearth-es-'));
  hearth = await startHearth({ dataDir });
}, 60_000);

afterAll(async () => {
  await hearth?.stop();
  await Promise.all(folders.map((folder) => folder.cleanup()));
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

async function post(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${hearth?.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

interface Summary {
  readonly status: string;
  readonly items: number;
  readonly totalCents: number;
  readonly applied: readonly string[];
}

const ORDERS = ['o-1', 'o-2', 'o-3', 'o-4', 'o-5'];

describe('ctx.events', () => {
  it('Node: a stale expectedVersion is a typed conflict the handler catches; racing writers that retry lose nothing', {
    timeout: 120_000,
  }, async () => {
    const running = hearth as Hearth;
    const folder = await makeFolder({
      'hearth.yaml':
        'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: tally }\nspec:\n  runtime: node20\n  scaling: { targetConcurrency: 8 }\n',
      'index.mjs': `export default async (event, ctx) => {
  const stream = 'tally';
  if (event.body?.stale) {
    try {
      await ctx.events.append(stream, { type: 'Counted', data: {} }, { expectedVersion: 0 });
      return { conflict: false };
    } catch (error) {
      return { conflict: error instanceof ctx.events.ConflictError, name: error.name, message: error.message };
    }
  }
  for (let attempt = 1; ; attempt++) {
    const version = await ctx.events.version(stream);
    try {
      const appended = await ctx.events.append(stream, [{ type: 'Counted', data: { n: event.body.n } }], { expectedVersion: version });
      return { version: appended.version, attempts: attempt };
    } catch (error) {
      if (!(error instanceof ctx.events.ConflictError)) throw error;
    }
  }
};
`,
    });
    folders.push(folder);
    expect((await deployFolder(running.url, folder.dir, { name: 'tally' })).status).toBe(200);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, n) => post('/function/tally', { n })));
    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
    // Every append took its own version: none was lost or written twice.
    expect(answers.map((answer) => answer.body.version).sort((a, b) => Number(a) - Number(b))).toEqual(
      Array.from({ length: 20 }, (_, n) => n + 1),
    );
    const stale = await post('/function/tally', { stale: true });
    expect(stale.body).toMatchObject({ conflict: true, name: 'StreamConflictError' });
    expect(String(stale.body.message)).toContain('stream "tally" is at version 20, not the expected 0');
  });
});

describe('shared streams', () => {
  it("a stream the spec declares shared is the namespace's; undeclared ones stay each function's own", {
    timeout: 120_000,
  }, async () => {
    const running = hearth as Hearth;
    const source = `export default async (event, ctx) => {
  if (event.body.append) await ctx.events.append(event.body.stream, { type: 'Counted', data: { by: ctx.functionName } });
  return (await ctx.events.read(event.body.stream)).map((e) => e.data.by);
};
`;
    for (const [name, spec] of [
      ['stock-writer', 'streams: { shared: ["inventory", "stock-*"] }'],
      ['stock-reader', 'streams: { shared: ["inventory"] }'],
    ] as const) {
      const folder = await makeFolder({
        'hearth.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec:\n  runtime: node20\n  ${spec}\n`,
        'index.mjs': source,
      });
      folders.push(folder);
      expect((await deployFolder(running.url, folder.dir, { name })).status).toBe(200);
    }
    for (const stream of ['inventory', 'stock-tea', 'private'])
      expect((await post('/function/stock-writer', { append: true, stream })).status).toBe(200);
    expect((await post('/function/stock-reader', { stream: 'inventory' })).body).toEqual(['stock-writer']);
    // Declared by the writer only: the reader's `stock-tea` is its own (empty), as is `private`.
    expect((await post('/function/stock-reader', { stream: 'stock-tea' })).body).toEqual([]);
    expect((await post('/function/stock-reader', { stream: 'private' })).body).toEqual([]);
    expect((await post('/function/stock-writer', { stream: 'private' })).body).toEqual(['stock-writer']);
  });
});

describe('ctx.events in Python', () => {
  it('an async handler appends, catches ctx.events.ConflictError, reads, and keeps a snapshot', {
    timeout: 120_000,
  }, async () => {
    const running = hearth as Hearth;
    const folder = await makeFolder({
      'hearth.yaml':
        'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: py-ledger }\nspec: { runtime: python3 }\n',
      'main.py': `async def handler(event, ctx):
    first = await ctx.events.append("ledger", [{"type": "Opened", "data": {"by": "ada"}}], expected_version=0)
    try:
        await ctx.events.append("ledger", {"type": "Opened", "data": {}}, expected_version=0)
        conflict = None
    except ctx.events.ConflictError as error:
        conflict = str(error)
    events = await ctx.events.read("ledger", start=1, limit=10)
    await ctx.events.snapshot("ledger", 1, {"open": True})
    return {"version": first["version"], "conflict": conflict, "events": [[e["type"], e["data"], e["version"]] for e in events], "snapshot": await ctx.events.latest_snapshot("ledger")}
`,
    });
    folders.push(folder);
    expect((await deployFolder(running.url, folder.dir, { name: 'py-ledger' })).status).toBe(200);
    const answer = await post('/function/py-ledger', {});
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body).toMatchObject({
      version: 1,
      events: [['Opened', { by: 'ada' }, 1]],
      snapshot: { version: 1, state: { open: true } },
    });
    expect(String(answer.body.conflict)).toContain('stream "ledger" is at version 1, not the expected 0');
  });
});

describe('the order example (examples/orders)', () => {
  it('rebuilds orders on read, and its projection catches up after a SIGKILL with nothing lost or applied twice', {
    timeout: 240_000,
  }, async () => {
    const running = hearth as Hearth;
    // The example's app.yaml, with the projection slowed so the kill lands while it is behind.
    const app = await makeFolder({
      'app.yaml': `apiVersion: hearth.dev/v1
kind: Function
metadata: { name: orders }
spec: { runtime: python3, handler: main.handler, source: ${join(ROOT, 'examples', 'orders')} }
---
apiVersion: hearth.dev/v1
kind: Function
metadata: { name: order-summary }
spec: { runtime: node20, source: ${join(ROOT, 'examples', 'order-summary')}, env: { DELAY_MS: "150" } }
---
apiVersion: hearth.dev/v1
kind: Trigger
metadata: { name: order-summary }
spec:
  filter: { attributes: { source: /streams/default/orders } }
  subscriber: { function: order-summary }
  startFrom: earliest
`,
    });
    folders.push(app);
    const applied = await runCli(['apply', '-f', join(app.dir, 'app.yaml')], { url: running.url });
    expect(applied.code, applied.stderr).toBe(0);

    const eventIds = new Map<string, string[]>();
    for (const id of ORDERS) {
      const commands = [
        { type: 'OrderPlaced', customer: `c-${id}` },
        { type: 'ItemAdded', sku: 'tea', priceCents: 450, quantity: 2 },
        { type: 'ItemAdded', sku: 'cake', priceCents: 300 },
        { type: 'OrderPaid' },
      ];
      for (const command of commands) {
        const answer = await post(`/function/orders/${id}`, command);
        expect(answer.status, JSON.stringify(answer.body)).toBe(201);
        eventIds.set(id, [...(eventIds.get(id) ?? []), String(answer.body.event)]);
      }
    }
    // The business rules run against the rebuilt order.
    const late = await post('/function/orders/o-1', { type: 'ItemAdded', sku: 'x', priceCents: 1 });
    expect(late.status).toBe(409);
    expect(late.body.error).toBe('the order is paid; it cannot change');
    const order = await fetch(`${running.url}/function/orders/o-2`).then((response) => response.json());
    expect(order).toMatchObject({ id: 'o-2', status: 'paid', totalCents: 1200, version: 4 });

    // Kill the platform while the projection is behind (20 events at 150 ms each).
    const before = await api<{ streams: { lag: number } }>(
      running.url,
      '/api/v1/namespaces/default/event-triggers/order-summary',
    );
    expect(before.body.streams.lag).toBeGreaterThan(0);
    running.process.kill('SIGKILL');
    await new Promise<void>((resolve) => {
      if (running.process.exitCode !== null || running.process.signalCode !== null) resolve();
      else running.process.once('exit', () => resolve());
    });

    hearth = await startHearth({ dataDir });
    const restarted = hearth;
    const summaries = await eventually(
      'the projection to catch up',
      async () => {
        const response = await fetch(`${restarted.url}/function/order-summary`);
        const { orders } = (await response.json()) as { orders: Record<string, Summary> };
        return ORDERS.every((id) => orders[id]?.applied.length === 4) ? orders : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    for (const id of ORDERS) {
      const summary = summaries[id] as Summary;
      // Each event applied once, in stream order: the ids are the stream's, none twice, none missing.
      expect(summary.applied).toEqual(eventIds.get(id));
      expect(summary).toMatchObject({ status: 'paid', items: 3, totalCents: 1200 });
    }
    const after = await api<{ streams: { lag: number }; delivered: number }>(
      restarted.url,
      '/api/v1/namespaces/default/event-triggers/order-summary',
    );
    expect(after.body.streams.lag).toBe(0);
  });
});
