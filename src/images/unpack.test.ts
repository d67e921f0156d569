import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CraftedEntry, craftTar, sha256 } from '../../test/support/oci/craft.js';
import { applyLayers, type LayerToApply } from './unpack.js';

let dir: string;
let root: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hearth-unpack-'));
  root = join(dir, 'rootfs');
  await mkdir(root);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

let count = 0;
async function layer(
  entries: readonly CraftedEntry[],
  compression: 'gzip' | 'zstd' | 'none' = 'gzip',
): Promise<LayerToApply> {
  const tar = craftTar(entries);
  count += 1;
  const file = join(dir, `layer-${count}`);
  if (compression === 'zstd') {
    await writeFile(`${file}.tar`, tar);
    execFileSync('zstd', ['-q', '-f', `${file}.tar`, '-o', file]);
  } else await writeFile(file, compression === 'gzip' ? gzipSync(tar) : tar);
  const suffix = compression === 'none' ? '' : `+${compression}`;
  return {
    file,
    digest: sha256(readFileSync(file)),
    mediaType: `application/vnd.oci.image.layer.v1.tar${suffix}`,
    diffId: sha256(tar),
  };
}

describe('applying layers', () => {
  it('applies whiteouts and opaque directories from later layers', async () => {
    const lower = await layer([
      { name: 'etc/', type: '5' },
      { name: 'etc/keep', content: 'keep' },
      { name: 'etc/drop', content: 'drop' },
      { name: 'cache/', type: '5' },
      { name: 'cache/old', content: 'old' },
    ]);
    const upper = await layer([
      { name: 'etc/.wh.drop' },
      { name: 'cache/', type: '5' },
      { name: 'cache/.wh..wh..opq' },
      { name: 'cache/new', content: 'new' },
    ]);
    await applyLayers(root, [lower, upper], 1 << 20);
    expect(readFileSync(join(root, 'etc/keep'), 'utf8')).toBe('keep');
    expect(existsSync(join(root, 'etc/drop'))).toBe(false);
    expect(existsSync(join(root, 'cache/old'))).toBe(false);
    expect(readFileSync(join(root, 'cache/new'), 'utf8')).toBe('new');
    expect(existsSync(join(root, 'etc/.wh.drop'))).toBe(false);
  });

  it('neutralises absolute paths, drops set-id bits and /dev nodes, keeps links inside the root', async () => {
    const only = await layer(
      [
        { name: '/abs/file', content: 'abs' },
        { name: 'bin/tool', content: '#!/bin/sh\n', mode: 0o6755 },
        { name: 'bin/alias', type: '1', linkname: 'bin/tool' },
        { name: 'bin/sh', type: '2', linkname: '/bin/tool' },
        { name: 'dev/null', type: '3' },
      ],
      'none',
    );
    const stats = await applyLayers(root, [only], 1 << 20);
    expect(readFileSync(join(root, 'abs/file'), 'utf8')).toBe('abs');
    expect(statSync(join(root, 'bin/tool')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(root, 'bin/alias')).ino).toBe(statSync(join(root, 'bin/tool')).ino);
    expect(readlinkSync(join(root, 'bin/sh'))).toBe('/bin/tool');
    expect(lstatSync(join(root, 'dev')).isDirectory()).toBe(true);
    expect(existsSync(join(root, 'dev/null'))).toBe(false);
    expect(stats.dropped).toBe(1);
  });

  it('reads zstd layers and checks the uncompressed digest against the config', async () => {
    const zstd = await layer([{ name: 'z.txt', content: 'zstd' }], 'zstd');
    await applyLayers(root, [zstd], 1 << 20);
    expect(readFileSync(join(root, 'z.txt'), 'utf8')).toBe('zstd');
    const other = await layer([{ name: 'y.txt', content: 'y' }]);
    await mkdir(join(dir, 'none'));
    await expect(
      applyLayers(join(dir, 'none'), [{ ...other, diffId: `sha256:${'0'.repeat(64)}` }], 1 << 20),
    ).rejects.toThrow(/uncompressed digest mismatch/);
  });

  it('refuses a hard link to something outside the image and stops at the size bound', async () => {
    const hard = await layer([{ name: 'passwd', type: '1', linkname: '../../etc/passwd' }]);
    await expect(applyLayers(root, [hard], 1 << 20)).rejects.toThrow(/climbs out of the root/);
    const big = await layer([{ name: 'big', content: 'x'.repeat(2048) }]);
    const fresh = join(dir, 'fresh');
    await mkdir(fresh);
    await expect(applyLayers(fresh, [big], 1024)).rejects.toThrow(/more than 1024 bytes/);
  });
});
