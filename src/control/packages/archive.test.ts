import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../domain/errors.js';
import { HearthError } from '../../domain/errors.js';
import { receiveArchive, type UnpackLimits } from './index.js';

const MiB = 1024 * 1024;
const LIMITS: UnpackLimits = {
  maxArchiveBytes: MiB,
  maxUnpackedBytes: MiB,
  maxFiles: 100,
  unpackTimeoutMs: 30_000,
};

interface HeaderFields {
  readonly type?: string;
  readonly size?: number;
  readonly linkname?: string;
  readonly mode?: number;
}

/** A raw ustar header, for entries the tar package refuses to create. */
function header(
  name: string,
  { type = '0', size = 0, linkname = '', mode = 0o644 }: HeaderFields = {},
): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 100, 'utf8');
  block.write(`${mode.toString(8).padStart(7, '0')}\0`, 100, 'ascii');
  block.write('0000000\0', 108, 'ascii');
  block.write('0000000\0', 116, 'ascii');
  block.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  block.write('00000000000\0', 136, 'ascii');
  block.write('        ', 148, 'ascii');
  block.write(type, 156, 'ascii');
  block.write(linkname, 157, 100, 'utf8');
  block.write('ustar\0', 257, 'ascii');
  block.write('00', 263, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

function member(name: string, content: string | Buffer = '', fields: HeaderFields = {}): Buffer {
  const data = typeof content === 'string' ? Buffer.from(content) : content;
  const padding = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([header(name, { size: data.length, ...fields }), data, padding]);
}

/** A pax extended header ('x', for the next entry; 'g', global) holding `records`. */
function pax(records: Readonly<Record<string, string>>, type: 'x' | 'g' = 'x'): Buffer {
  const lines = Object.entries(records).map(([key, value]) => {
    const rest = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(rest);
    // The length prefix counts its own digits.
    while (String(length).length + Buffer.byteLength(rest) !== length)
      length = String(length).length + Buffer.byteLength(rest);
    return `${length}${rest}`;
  });
  return member('PaxHeader', lines.join(''), { type });
}

function tarGz(...members: Buffer[]): Buffer {
  return gzipSync(Buffer.concat([...members, Buffer.alloc(1024)]));
}

let base: string;
let workDir: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-archive-'));
  workDir = join(base, 'work');
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

function receive(archive: Buffer, limits: Partial<UnpackLimits> = {}) {
  return receiveArchive(Readable.from([archive]), workDir, { ...LIMITS, ...limits });
}

async function failure(promise: Promise<unknown>): Promise<HearthError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(HearthError);
  return error as HearthError;
}

/** The refusal the user sees, and proof that nothing was left in workDir or written beside it. */
async function expectRefused(
  archive: Buffer,
  code: ErrorCode,
  message: string,
  limits: Partial<UnpackLimits> = {},
): Promise<void> {
  const error = await failure(receive(archive, limits));
  expect(error.code).toBe(code);
  expect(error.message).toContain(message);
  expect(await readdir(workDir)).toEqual([]);
  expect(await readdir(base)).toEqual(['work']);
}

async function modeOf(path: string): Promise<number> {
  return (await lstat(path)).mode & 0o7777;
}

describe('receiveArchive: well-formed archives', () => {
  it('unpacks an archive built by tar, keeping content and links and normalising permissions', async () => {
    const source = join(base, 'source');
    await mkdir(join(source, 'src'), { recursive: true });
    await mkdir(join(source, 'bin'));
    await writeFile(join(source, 'hearth.yaml'), 'kind: Function\n');
    await writeFile(join(source, 'src', 'index.js'), 'export const handler = () => 1;\n', { mode: 0o600 });
    await writeFile(join(source, 'bin', 'run.sh'), '#!/bin/sh\n', { mode: 0o700 });
    await symlink('src/index.js', join(source, 'main.js'));
    await chmod(join(source, 'bin'), 0o700);
    const archive = join(base, 'upload.tar.gz');
    await tar.c({ gzip: true, file: archive, cwd: source }, ['.']);

    const tree = await receive(await readFile(archive));

    expect(await readFile(join(tree.dir, 'src', 'index.js'), 'utf8')).toBe(
      'export const handler = () => 1;\n',
    );
    expect(await readFile(join(tree.dir, 'hearth.yaml'), 'utf8')).toBe('kind: Function\n');
    expect(await readlink(join(tree.dir, 'main.js'))).toBe('src/index.js');
    expect(await modeOf(join(tree.dir, 'src', 'index.js'))).toBe(0o644);
    expect(await modeOf(join(tree.dir, 'bin', 'run.sh'))).toBe(0o755);
    expect(await modeOf(join(tree.dir, 'bin'))).toBe(0o755);
    expect(await modeOf(tree.dir)).toBe(0o755);
    expect((await readdir(workDir)).length).toBe(1);

    await tree.cleanup();
    expect(await readdir(workDir)).toEqual([]);
  });

  it('accepts "./" prefixes and strips setuid, setgid and sticky bits', async () => {
    const tree = await receive(
      tarGz(
        member('./', '', { type: '5', mode: 0o777 }),
        member('./app/', '', { type: '5', mode: 0o3777 }),
        member('./app/tool', 'x', { mode: 0o4755 }),
        member('./app/data.txt', 'y', { mode: 0o2666 }),
      ),
    );
    expect(await readdir(tree.dir)).toEqual(['app']);
    expect(await modeOf(join(tree.dir, 'app'))).toBe(0o755);
    expect(await modeOf(join(tree.dir, 'app', 'tool'))).toBe(0o755);
    expect(await modeOf(join(tree.dir, 'app', 'data.txt'))).toBe(0o644);
  });

  it('accepts links that climb with ".." and stay inside the archive', async () => {
    const tree = await receive(
      tarGz(
        member('lib/util.js', 'u'),
        member('app/deep/', '', { type: '5' }),
        member('app/deep/util.js', '', { type: '2', linkname: '../../lib/util.js' }),
      ),
    );
    expect(await readFile(join(tree.dir, 'app', 'deep', 'util.js'), 'utf8')).toBe('u');
  });
});

describe('receiveArchive: refusals name the entry and leave nothing behind', () => {
  it('refuses a ".." path segment', async () => {
    await expectRefused(
      tarGz(member('ok.txt', 'fine'), member('../../../evil.txt', 'pwned')),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "../../../evil.txt": ".." path segments are not allowed',
    );
  });

  it('refuses an absolute path', async () => {
    const target = join(base, 'absolute-evil.txt');
    await expectRefused(
      tarGz(member(target, 'pwned')),
      'HEARTH_E_ARCHIVE_INVALID',
      `archive entry "${target}": absolute paths are not allowed`,
    );
  });

  it('refuses a symbolic link out of the root before the file written through it', async () => {
    await expectRefused(
      tarGz(member('link', '', { type: '2', linkname: '../../etc/passwd' }), member('link/x', 'pwned')),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "link": symbolic link target "../../etc/passwd" points outside the archive',
    );
  });

  it('refuses a symbolic link to an absolute path', async () => {
    await expectRefused(
      tarGz(member('passwd', '', { type: '2', linkname: '/etc/passwd' })),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "passwd": symbolic link to an absolute path ("/etc/passwd") is not allowed',
    );
  });

  it('refuses an entry beneath a symbolic link, even one pointing inside', async () => {
    await expectRefused(
      tarGz(
        member('sub/', '', { type: '5' }),
        member('link', '', { type: '2', linkname: 'sub' }),
        member('link/x', 'through'),
      ),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "link/x": lies beneath symbolic link "link"',
    );
  });

  it('refuses ".." after a name in a link target, which only the kernel can resolve', async () => {
    // a/b/up points at the root, so a/b/up/../x would be the root's parent.
    await expectRefused(
      tarGz(
        member('a/b/', '', { type: '5' }),
        member('a/b/up', '', { type: '2', linkname: '../..' }),
        member('escape', '', { type: '2', linkname: 'a/b/up/../x' }),
      ),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "escape": symbolic link target "a/b/up/../x" may use ".." only at its start',
    );
  });

  it('refuses a hard link', async () => {
    await expectRefused(
      tarGz(member('a.txt', 'a'), member('h', '', { type: '1', linkname: 'a.txt' })),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "h": hard links are not allowed',
    );
  });

  it('refuses a character device and a FIFO', async () => {
    await expectRefused(
      tarGz(member('null', '', { type: '3' })),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "null": character devices are not allowed',
    );
    await expectRefused(
      tarGz(member('pipe', '', { type: '6' })),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "pipe": FIFOs are not allowed',
    );
  });

  it('refuses entry types tar would silently skip', async () => {
    await expectRefused(
      tarGz(member('sparse', 'data', { type: 'S' })),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "sparse": SparseFile entries are not allowed',
    );
  });
});

describe('receiveArchive: path lengths, and no server path in any refusal', () => {
  it('refuses an entry whose path is too long, naming the entry and the limit', async () => {
    const long = `${'dir/'.repeat(1499)}file`;
    const error = await failure(receive(tarGz(pax({ path: long }), member('short-name', 'x'))));
    expect(error.code).toBe('HEARTH_E_ARCHIVE_INVALID');
    expect(error.message).toBe(
      `archive entry "${long.slice(0, 200)}...": path is 6000 bytes long; the limit is 1024 bytes`,
    );
    expect(error.message).not.toContain(base);
    expect(error.message).not.toContain('/tmp');
    expect(await readdir(workDir)).toEqual([]);
  });

  it('refuses a path segment longer than a file name may be', async () => {
    const name = 'n'.repeat(300);
    await expectRefused(
      tarGz(pax({ path: `src/${name}.js` }), member('short-name', 'x')),
      'HEARTH_E_ARCHIVE_INVALID',
      `archive entry "src/${name.slice(0, 196)}...": path segment "${name.slice(0, 200)}..." is 303 bytes long; the limit is 255 bytes per segment`,
    );
  });

  it('refuses a symbolic link target that is too long', async () => {
    await expectRefused(
      tarGz(pax({ linkpath: 'a/'.repeat(600) }), member('link', '', { type: '2', linkname: 'x' })),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive entry "link": symbolic link target is 1200 bytes long; the limit is 1024 bytes',
    );
  });

  it('names the entry, not the server directory, when the file system refuses it', async () => {
    const error = await failure(receive(tarGz(member('a', 'file'), member('a/b', 'beneath a file'))));
    expect(error.code).toBe('HEARTH_E_ARCHIVE_INVALID');
    expect(error.message).toMatch(/^archive entry "a\/b": could not be unpacked \(E[A-Z]+\)$/);
    expect(JSON.stringify(error.details)).not.toContain(base);
    expect(await readdir(workDir)).toEqual([]);
  });
});

describe('receiveArchive: hostile padding is refused without blocking the event loop (issue 19)', () => {
  /** Runs `work` and reports the longest the event loop was kept from running meanwhile. */
  async function withLoopDelay<T>(work: () => Promise<T>): Promise<{ result: T; maxDelayMs: number }> {
    const histogram = monitorEventLoopDelay({ resolution: 5 });
    histogram.enable();
    try {
      return { result: await work(), maxDelayMs: histogram.max / 1e6 };
    } finally {
      histogram.disable();
    }
  }

  it('stops at the end-of-archive marker and refuses 32 MiB of zeros after it at once', async () => {
    const valid = tarGz(member('hearth.yaml', 'kind: Function\n'), member('index.js', 'export {}'));
    const hostile = Buffer.concat([valid, gzipSync(Buffer.alloc(32 * MiB))]);
    expect(hostile.length).toBeLessThan(LIMITS.maxArchiveBytes);
    const started = performance.now();
    const { result: error, maxDelayMs } = await withLoopDelay(() => failure(receive(hostile)));
    expect(error.code).toBe('HEARTH_E_ARCHIVE_INVALID');
    expect(error.message).toBe(
      `archive continues for more than ${MiB} bytes after its end-of-archive marker`,
    );
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(maxDelayMs).toBeLessThan(100);
    expect(await readdir(workDir)).toEqual([]);
  });

  it('accepts the zero padding tar writers put after the marker', async () => {
    const record = gzipSync(
      Buffer.concat([member('hearth.yaml', 'kind: Function\n'), Buffer.alloc(1024), Buffer.alloc(9 * 1024)]),
    );
    const tree = await receive(record);
    expect(await readFile(join(tree.dir, 'hearth.yaml'), 'utf8')).toBe('kind: Function\n');
  });

  it('refuses data after the marker rather than dropping it', async () => {
    const joined = Buffer.concat([
      gzipSync(Buffer.concat([member('a.txt', 'a'), Buffer.alloc(1024), Buffer.alloc(64 * 1024)])),
      tarGz(member('b.txt', 'b')),
    ]);
    await expectRefused(
      joined,
      'HEARTH_E_ARCHIVE_INVALID',
      'archive has data after its end-of-archive marker',
    );
  });

  it('bounds the inflated tar stream, metadata included', async () => {
    // Global pax records are no entry and hold no file bytes: only the inflated-bytes bound sees them.
    const record = pax({ comment: 'x'.repeat(900 * 1024) }, 'g');
    const limits = { maxUnpackedBytes: 64 * 1024, maxFiles: 2 };
    const bound = 64 * 1024 + 2 * 8 * 1024 + MiB;
    const { result: error, maxDelayMs } = await withLoopDelay(() =>
      failure(receive(tarGz(record, record, record, member('a.txt', 'a')), limits)),
    );
    expect(error.code).toBe('HEARTH_E_ARCHIVE_TOO_LARGE');
    expect(error.message).toContain(`archive inflates to more than ${bound} bytes of tar stream`);
    expect(error.details).toEqual({ limit: bound });
    expect(maxDelayMs).toBeLessThan(100);
    expect(await readdir(workDir)).toEqual([]);
  });

  it('refuses a tar.gz inside the gzip stream, whose inflation tar would do uncounted', async () => {
    await expectRefused(
      gzipSync(tarGz(member('a.txt', 'a'))),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive is compressed twice',
    );
  });

  it('stops unpacking at upload.unpackTimeout and leaves nothing behind', async () => {
    const files = Array.from({ length: 3000 }, (_, index) => member(`f/${index}.txt`, 'x'));
    const error = await failure(receive(tarGz(...files), { maxFiles: 5000, unpackTimeoutMs: 20 }));
    expect(error.code).toBe('HEARTH_E_ARCHIVE_TOO_LARGE');
    expect(error.message).toBe(
      'archive took longer than 0.02s to unpack (upload.unpackTimeout); send fewer or smaller files',
    );
    expect(await readdir(workDir)).toEqual([]);
  });
});

describe('receiveArchive: limits and corrupt input', () => {
  it('stops reading an upload over maxArchiveBytes without destroying the body', async () => {
    const chunk = Buffer.alloc(64 * 1024, 1);
    let produced = 0;
    const body = Readable.from(
      (function* () {
        for (; produced < 64; produced++) yield chunk;
      })(),
    );
    const error = await failure(receiveArchive(body, workDir, LIMITS));
    expect(error.code).toBe('HEARTH_E_ARCHIVE_TOO_LARGE');
    expect(error.message).toBe(`upload exceeds ${MiB} bytes`);
    expect(body.destroyed).toBe(false);
    expect(produced).toBeLessThan(64);
    expect(await readdir(workDir)).toEqual([]);
  });

  it('refuses an archive with more entries than maxFiles', async () => {
    const files = Array.from({ length: 4 }, (_, index) => member(`f${index}.txt`, 'x'));
    await expectRefused(tarGz(...files), 'HEARTH_E_ARCHIVE_TOO_LARGE', 'archive holds more than 3 entries', {
      maxFiles: 3,
    });
  });

  it('counts archive entries, not the parent directories tar creates for them', async () => {
    const tree = await receive(
      tarGz(member('a/b/c.txt', 'c'), member('a/b/d.txt', 'd'), member('a/e.txt', 'e')),
      {
        maxFiles: 3,
      },
    );
    expect(await readFile(join(tree.dir, 'a', 'b', 'd.txt'), 'utf8')).toBe('d');
  });

  it('refuses a gzip bomb whose trailer claims a tiny size, before inflating it', async () => {
    const bomb = tarGz(member('zeros.bin', Buffer.alloc(64 * MiB)));
    bomb.writeUInt32LE(10, bomb.length - 4); // ISIZE: "10 bytes uncompressed"
    expect(bomb.length).toBeLessThan(LIMITS.maxArchiveBytes);
    const started = performance.now();
    await expectRefused(bomb, 'HEARTH_E_ARCHIVE_TOO_LARGE', `archive unpacks to more than ${MiB} bytes`);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('counts every file toward maxUnpackedBytes', async () => {
    const half = Buffer.alloc(MiB / 2 + 1, 7);
    await expectRefused(
      tarGz(member('a.bin', half), member('b.bin', half)),
      'HEARTH_E_ARCHIVE_TOO_LARGE',
      `archive unpacks to more than ${MiB} bytes`,
    );
  });

  it('cannot be beaten by a header that under-declares its data: the rest is read as headers and refused', async () => {
    const declared = header('small.txt', { size: 5 });
    const smuggled = Buffer.alloc(2 * MiB, 'A');
    await expectRefused(
      gzipSync(Buffer.concat([declared, smuggled, Buffer.alloc(1024)])),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive is corrupt',
      { maxArchiveBytes: 4 * MiB },
    );
  });

  it('refuses data that is not gzip', async () => {
    const error = await failure(receive(Buffer.from('PK\u0003\u0004 not a tarball')));
    expect(error.code).toBe('HEARTH_E_ARCHIVE_INVALID');
    expect(error.message).toBe('expected a gzip-compressed tar archive (.tar.gz)');
    expect(await readdir(workDir)).toEqual([]);
  });

  it('refuses a truncated archive with the tar error', async () => {
    const whole = tarGz(member('a.bin', Buffer.alloc(100_000, 3)), member('b.txt', 'b'));
    await expectRefused(
      whole.subarray(0, Math.floor(whole.length / 2)),
      'HEARTH_E_ARCHIVE_INVALID',
      'archive is corrupt: ',
    );
  });

  it('reports an interrupted upload as a bad request', async () => {
    let reads = 0;
    const body = new Readable({
      read() {
        reads += 1;
        if (reads === 1) this.push(Buffer.from([0x1f, 0x8b]));
        else this.destroy(new Error('socket hang up'));
      },
    });
    const error = await failure(receiveArchive(body, workDir, LIMITS));
    expect(error.code).toBe('HEARTH_E_BAD_REQUEST');
    expect(error.message).toContain('socket hang up');
    expect(await readdir(workDir)).toEqual([]);
  });
});
