/** @module Function-to-function calls (ctx.invoke) across runtimes, through the real platform. */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployFolder, FIXTURES, type Hearth, invoke, startHearth } from '../support/hearth.js';

let hearth: Hearth;

beforeAll(async () => {
  hearth = await startHearth();
  for (const name of ['node-caller', 'py-caller', 'py-sync', 'node-esm-default']) {
    const { status, body } = await deployFolder(hearth.url, join(FIXTURES, name), { name });
    expect(status, JSON.stringify(body)).toBe(200);
  }
});

afterAll(async () => {
  await hearth?.stop();
});

describe('ctx.invoke', () => {
  it('lets a Node function call a Python function and get its JSON back', async () => {
    const response = await invoke(hearth.url, 'node-caller');
    expect(response.status).toBe(200);
    const body = response.json() as {
      answer: { statusCode: number; body: { method: string; body: unknown; fn: string } };
    };
    expect(body.answer.statusCode).toBe(200);
    expect(body.answer.body.fn).toBe('py-sync');
    expect(body.answer.body.method).toBe('POST');
    expect(body.answer.body.body).toEqual({ from: 'node-caller', n: 2 });
  });

  it('lets a synchronous Python function call a Node function', async () => {
    const response = await invoke(hearth.url, 'py-caller');
    expect(response.status).toBe(200);
    const body = response.json() as { answer: { statusCode: number; body: { fn: string; body: unknown } } };
    expect(body.answer.statusCode).toBe(200);
    expect(body.answer.body.fn).toBe('node-esm-default');
    expect(body.answer.body.body).toEqual({ from: 'py-caller' });
  });

  it('reports an unknown target as an error the caller can handle', async () => {
    const response = await invoke(hearth.url, 'node-caller', { path: '?target=nobody-here' });
    expect(response.status).toBe(502);
    const body = response.json() as { error: string; type: string };
    expect(body.type).toBe('HEARTH_E_FN_NOT_FOUND');
    expect(body.error).toContain('nobody-here');
  });
});
