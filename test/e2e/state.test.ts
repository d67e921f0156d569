/** @module ctx.state from real sandboxed Node and Python functions, on the embedded store. */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFolder, FIXTURES, type Hearth, invoke, startHearth } from '../support/hearth.js';

let hearth: Hearth;

beforeAll(async () => {
  hearth = await startHearth();
  for (const name of ['node-state', 'py-state', 'py-state-async', 'py-counter']) {
    const { status, body } = await deployFolder(hearth.url, join(FIXTURES, name), { name });
    expect(status, JSON.stringify(body)).toBe(200);
  }
});

afterAll(async () => {
  await hearth?.stop();
});

describe('ctx.state', () => {
  it('gives a Node function get, set with TTL, incr, cas, keys, delete and a shared namespace store', async () => {
    const first = await invoke(hearth.url, 'node-state');
    expect(first.status, first.text).toBe(200);
    const body = first.json() as Record<string, unknown>;
    expect(body).toMatchObject({
      got: { hello: 'world', n: [1, 2] },
      visits: 1,
      first: true,
      second: false,
      swapped: true,
      lock: 'released',
      keys: ['greeting', 'lock', 'visits'],
      shared: 'blue',
      deleted: true,
      missing: null,
    });
    expect(body.error).toEqual({
      name: 'HEARTH_E_VALIDATION',
      message: expect.stringContaining('state.set key: got "", expected a non-empty string') as unknown,
    });
    const second = (await invoke(hearth.url, 'node-state')).json() as { visits: number };
    expect(second.visits).toBe(2);
  });

  it('gives a synchronous Python function the same store, namespaced to it', async () => {
    // node-state shared "team" in the namespace; its own keys stay invisible here.
    await invoke(hearth.url, 'node-state');
    const response = await invoke(hearth.url, 'py-state');
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toMatchObject({
      cart: { items: ['apple'] },
      visits: 2,
      first: true,
      second: false,
      keys: ['cart', 'lock', 'visits'],
      team: 'blue',
      missing: null,
    });
    expect((response.json() as { error: string }).error).toContain('not an integer');
  });

  it('gives a coroutine Python handler awaitable operations that may run together', async () => {
    const response = await invoke(hearth.url, 'py-state-async');
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ seen: true, max: 10, keys: ['parallel'] });
  });

  it('keeps one consistent counter while concurrent instances increment it', async () => {
    const requests = 8;
    const perRequest = 25;
    const answers = await Promise.all(
      Array.from({ length: requests }, () => invoke(hearth.url, 'py-counter', { path: `?n=${perRequest}` })),
    );
    const bodies = answers.map((answer) => {
      expect(answer.status, answer.text).toBe(200);
      return answer.json() as { instance: string; last: number };
    });
    const instances = new Set(bodies.map((body) => body.instance));
    expect(instances.size, 'requests were served by several instances at once').toBeGreaterThanOrEqual(2);
    // Every increment landed once: the highest count seen is exactly the number made.
    expect(Math.max(...bodies.map((body) => body.last))).toBe(requests * perRequest);
    const again = (await invoke(hearth.url, 'py-counter', { path: '?n=1' })).json() as { last: number };
    expect(again.last).toBe(requests * perRequest + 1);
  });
});
