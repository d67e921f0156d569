/** @module Tests of packing: ignore rules, default excludes, manifest replacement, refused links, size cap. */

import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CliError } from './errors.js';
import { checkFolder, packDirectory } from './pack.js';
import { makeFolder, readArchive } from './test-support.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function folder(files: Record<string, string>): Promise<string> {
  const made = await makeFolder(files);
  cleanups.push(made.cleanup);
  return made.dir;
}

async function pack(dir: string, replaceManifest?: string) {
  const packed = await packDirectory(dir, replaceManifest === undefined ? {} : { replaceManifest });
  const chunks: Buffer[] = [];
  for await (const chunk of packed.stream) chunks.push(chunk as Buffer);
  return { packed, archive: await readArchive(Buffer.concat(chunks)) };
}

describe('packDirectory', () => {
  it('packs paths relative to the folder, honouring .hearthignore and the default excludes', async () => {
    const dir = await folder({
      'hearth.yaml': 'manifest',
      'index.mjs': 'code',
      'package.json': '{}',
      'lib/util.js': 'util',
      'lib/debug.log': 'noise',
      'build/out.js': 'generated',
      'keep.log': 'kept by negation',
      '.hearthignore': '# generated\nbuild/\n*.log\n!keep.log\n',
      'node_modules/left-pad/index.js': 'dependency',
      '.git/HEAD': 'ref',
      '.hearth/state.db': 'state',
      '.DS_Store': 'mac',
      '__pycache__/x.pyc': 'bytecode',
      'lib/stale.pyc': 'bytecode',
    });
    const { packed, archive } = await pack(dir);
    expect(archive.paths.sort()).toEqual(
      ['.hearthignore', 'hearth.yaml', 'index.mjs', 'keep.log', 'lib/', 'lib/util.js', 'package.json'].sort(),
    );
    expect(packed.files).toBe(6);
    expect(packed.entries).toEqual(archive.paths);
    expect(archive.files.get('lib/util.js')).toBe('util');
  });

  it('keeps node_modules when there is no package.json (nothing would rebuild it)', async () => {
    const dir = await folder({ 'hearth.yaml': 'm', 'node_modules/x/index.js': 'vendored' });
    const { archive } = await pack(dir);
    expect(archive.paths).toContain('node_modules/x/index.js');
  });

  it('keeps hearth.yaml even when the ignore file would drop it', async () => {
    const dir = await folder({ 'hearth.yaml': 'm', 'a.yaml': 'a', '.hearthignore': '*.yaml\n' });
    const { archive } = await pack(dir);
    expect(archive.paths).toContain('hearth.yaml');
    expect(archive.paths).not.toContain('a.yaml');
  });

  it('replaces hearth.yaml with the given manifest, even when the folder has none', async () => {
    const withManifest = await folder({ 'hearth.yaml': 'old', 'main.py': 'code' });
    const replaced = await pack(withManifest, 'new: manifest\n');
    expect(replaced.archive.files.get('hearth.yaml')).toBe('new: manifest\n');
    expect(replaced.archive.paths.filter((path) => path === 'hearth.yaml')).toHaveLength(1);

    const withoutManifest = await folder({ 'main.py': 'code' });
    const added = await pack(withoutManifest, 'added\n');
    expect(added.archive.files.get('hearth.yaml')).toBe('added\n');
    expect(added.packed.files).toBe(2);
  });

  it('keeps symlinks that stay inside the folder', async () => {
    const dir = await folder({ 'hearth.yaml': 'm', 'real.js': 'code' });
    await symlink('real.js', join(dir, 'alias.js'));
    const { archive } = await pack(dir);
    expect(archive.paths).toContain('alias.js');
  });

  it('refuses a symlink that points outside the folder, naming it', async () => {
    const dir = await folder({ 'hearth.yaml': 'm' });
    await mkdir(join(dir, 'lib'));
    await symlink('../../../etc/passwd', join(dir, 'lib', 'passwd'));
    await expect(packDirectory(dir)).rejects.toThrow(
      /lib\/passwd is a symbolic link to .*outside the function folder/,
    );
  });

  it('refuses a symlink with an absolute target', async () => {
    const dir = await folder({ 'hearth.yaml': 'm' });
    await symlink('/etc/hostname', join(dir, 'host'));
    await expect(packDirectory(dir)).rejects.toThrow(/absolute path/);
  });

  it('refuses a folder over the size limit before producing anything', async () => {
    const dir = await folder({ 'hearth.yaml': 'm' });
    await writeFile(join(dir, 'big.bin'), Buffer.alloc(2048));
    const failure = await checkFolder(dir, { maxBytes: 1024 }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(CliError);
    expect((failure as CliError).message).toMatch(/holds more than 1\.0 KiB of files.*\.hearthignore/);
  });

  it('names a missing folder', async () => {
    await expect(packDirectory('/nonexistent/hearth-fn')).rejects.toThrow(
      '/nonexistent/hearth-fn: no such folder',
    );
  });
});
