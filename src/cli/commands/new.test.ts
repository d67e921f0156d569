/** @module Tests of `hearth new`: both templates, name substitution, refusals. */

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseFunctionManifest } from '../../domain/function.js';
import { main } from '../main.js';
import { captureIo } from '../test-support.js';

let workDir = '';
beforeEach(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'hearth-new-'));
});
afterEach(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('hearth new', () => {
  it.each([
    ['node20', ['hearth.yaml', 'index.mjs', 'package.json'], 'index'],
    ['python3', ['hearth.yaml', 'main.py', 'requirements.txt'], 'main.handler'],
    ['wasm', ['.cargo', '.hearthignore', 'Cargo.toml', 'hearth.yaml', 'src'], 'main'],
  ])('scaffolds a %s function with the name filled in', async (runtime, files, handler) => {
    const target = join(workDir, 'my-fn');
    const out = captureIo();
    expect(await main(['new', 'my-fn', '--runtime', runtime, '--dir', target], out.io)).toBe(0);
    expect(out.stderr()).toBe('');
    expect((await readdir(target)).sort()).toEqual(files);
    const manifest = parseFunctionManifest(parse(await readFile(join(target, 'hearth.yaml'), 'utf8')));
    expect(manifest.metadata).toEqual({ name: 'my-fn', namespace: 'default' });
    expect(manifest.spec).toEqual({ runtime, handler });
    for (const file of files.filter((name) => name !== 'src' && name !== '.cargo'))
      expect(await readFile(join(target, file), 'utf8')).not.toContain('{{');
    expect(out.stdout()).toContain(`hearth deploy ${target}`);
  });

  it('writes the package name into package.json', async () => {
    const target = join(workDir, 'pkg');
    expect(await main(['new', 'pkg', '--dir', target], captureIo().io)).toBe(0);
    expect(JSON.parse(await readFile(join(target, 'package.json'), 'utf8'))).toMatchObject({
      name: 'pkg',
      type: 'module',
    });
  });

  it('refuses a name that is not a DNS label, creating nothing', async () => {
    const out = captureIo();
    expect(await main(['new', 'My_Function', '--dir', join(workDir, 'x')], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([
      expect.stringMatching(/^error: "My_Function" is not a valid function name: /),
    ]);
    expect(await readdir(workDir)).toEqual([]);
  });

  it('refuses a folder that exists and is not empty', async () => {
    await writeFile(join(workDir, 'keep.txt'), 'mine');
    const out = captureIo();
    expect(await main(['new', 'fn', '--dir', workDir], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([
      `error: ${workDir} already exists and is not empty; choose another name or --dir`,
    ]);
    expect(await readdir(workDir)).toEqual(['keep.txt']);
  });

  it('refuses an unknown runtime in one line', async () => {
    const out = captureIo();
    expect(await main(['new', 'fn', '--runtime', 'ruby', '--dir', join(workDir, 'fn')], out.io)).toBe(1);
    expect(out.stderrLines()).toEqual([
      expect.stringMatching(/^error: option .*--runtime.* argument 'ruby' is invalid/),
    ]);
  });
});
