/**
 * @module A machine without bubblewrap: `hearth up` says in one line how to install it, refuses
 * sandboxed functions with a clear error, and still serves the bundled examples, unsandboxed and said so.
 */

import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployFolder,
  eventually,
  FIXTURES,
  getFunction,
  type Hearth,
  invoke,
  startHearth,
} from '../support/hearth.js';

let hearth: Hearth;
let bin: string;

beforeAll(async () => {
  // A PATH holding only what the platform itself needs: no bwrap (and no python3, which is fine here).
  bin = await mkdtemp(join(tmpdir(), 'hearth-nobwrap-'));
  for (const tool of ['mount', 'umount', 'chown'])
    await symlink(`/usr/bin/${tool}`, join(bin, tool)).catch(() => undefined);
  hearth = await startHearth({ examples: true, env: { PATH: bin } });
});

afterAll(async () => {
  await hearth?.stop();
  await rm(bin, { recursive: true, force: true });
});

describe('without bubblewrap', () => {
  it('says in one line how to install it', async () => {
    // Readiness is announced on stdout; stderr is another pipe, so its line may arrive a moment later.
    const lines = await eventually('the bubblewrap line on stderr', () => {
      const found = hearth
        .stderr()
        .split('\n')
        .filter((line) => line.includes('bubblewrap'));
      return found.length > 0 ? found : undefined;
    });
    expect(lines[0]).toContain('apt-get install bubblewrap');
  });

  it('still answers the bundled hello, and describe says it is not sandboxed', async () => {
    const response = await invoke(hearth.url, 'hello');
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ hello: 'world' });
    const detail = await getFunction(hearth.url, 'hello');
    expect(detail?.isolation).toBe('process');
    expect(detail?.isolationNote).toContain('NOT SANDBOXED');
  });

  it('refuses to deploy a sandboxed function, naming the fix, instead of running it unsandboxed', async () => {
    const { status, body } = await deployFolder(hearth.url, join(FIXTURES, 'node-esm-default'), {
      name: 'node-esm-default',
    });
    expect(status).toBe(503);
    const error = body.error as { code: string; message: string };
    expect(error.code).toBe('HEARTH_E_SANDBOX_UNAVAILABLE');
    expect(error.message).toContain('bubblewrap');
    expect(error.message).toContain('isolation: process');
    expect((await invoke(hearth.url, 'node-esm-default')).status).toBe(404);
  });
});
