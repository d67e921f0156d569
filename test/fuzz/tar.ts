/**
 * @module tar archives written by hand for the fuzz suites: every header field under the test's control
 * (the `tar` package refuses to write hostile entries), odd entries as fast-check arbitraries, and byte
 * edits below and above the gzip layer.
 */

import { gzipSync } from 'node:zlib';
import fc from 'fast-check';

// --- tar written by hand ----------------------------------------------------------------------------------

export interface Entry {
  readonly name: string;
  readonly type: string;
  readonly content: Uint8Array;
  /** The size the header claims; the content's length when undefined. */
  readonly declared: number | undefined;
  readonly linkname: string;
  readonly mode: number;
  /** How a name longer than the header's 100 bytes travels: a pax record, a GNU long name, or cut. */
  readonly longName: 'pax' | 'gnu' | 'cut';
  readonly badChecksum: boolean;
}

function header(name: string, type: string, size: number, fields: Partial<Entry> = {}): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 100, 'utf8');
  block.write(`${(fields.mode ?? 0o644).toString(8).padStart(7, '0').slice(-7)}\0`, 100, 'ascii');
  block.write('0000000\0', 108, 'ascii');
  block.write('0000000\0', 116, 'ascii');
  block.write(`${size.toString(8).padStart(11, '0').slice(-11)}\0`, 124, 'ascii');
  block.write('00000000000\0', 136, 'ascii');
  block.write('        ', 148, 'ascii');
  block.write(type.slice(0, 1), 156, 'latin1');
  block.write(fields.linkname ?? '', 157, 100, 'utf8');
  block.write('ustar\0', 257, 'ascii');
  block.write('00', 263, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  if (fields.badChecksum === true) sum += 1;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

function padded(data: Uint8Array): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

/** A pax record `"<len> key=value\n"`, whose length counts its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length += 1;
  return `${length}${body}`;
}

export function tarOf(entries: readonly Entry[], endBlocks: number): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const long = Buffer.byteLength(entry.name) > 100;
    if (long && entry.longName === 'pax') {
      const records = Buffer.from(paxRecord('path', entry.name));
      blocks.push(header('PaxHeader', 'x', records.length), padded(records));
    } else if (long && entry.longName === 'gnu') {
      const name = Buffer.from(`${entry.name}\0`);
      blocks.push(header('././@LongLink', 'L', name.length), padded(name));
    }
    const size = entry.declared ?? entry.content.length;
    blocks.push(header(entry.name, entry.type, size, entry), padded(entry.content));
  }
  blocks.push(Buffer.alloc(512 * endBlocks));
  return Buffer.concat(blocks);
}

const NAMES = [
  'hearth.yaml',
  'index.mjs',
  'dir/',
  'dir/file.txt',
  './a',
  '.',
  '',
  '..',
  '../x',
  'a/../../x',
  '/etc/passwd',
  '/',
  'a\\..\\..\\x',
  'a\0b',
  'é/ü',
  'link',
  'link/inside',
  'CON',
  ' ',
];

const entryName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }) },
  // Long names: over the header's 100 bytes, over a file name's 255, over PATH_MAX (4096).
  { weight: 2, arbitrary: fc.constantFrom(101, 256, 1000, 4097, 6000).map((n) => 'a'.repeat(n)) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 2, max: 300 }).map((n) => Array.from({ length: n }, () => 'd').join('/')),
  },
);

/** An entry as a counterexample prints it: long names by their length, not their 6,000 characters. */
function printed(value: Entry): Entry {
  const name =
    value.name.length > 60
      ? `<${value.name.length} chars: ${value.name.slice(0, 12)}…>`
      : JSON.stringify(value.name);
  const text = `{name: ${name}, type: ${JSON.stringify(value.type)}, ${value.content.length} bytes, declared: ${value.declared}, linkname: ${JSON.stringify(value.linkname)}, mode: 0o${value.mode.toString(8)}, long: ${value.longName}${value.badChecksum ? ', bad checksum' : ''}}`;
  return Object.assign(value, { [fc.toStringMethod]: () => text });
}

export const entry: fc.Arbitrary<Entry> = fc
  .record({
    name: entryName,
    type: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom('0', '5', '2') },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          '1',
          '3',
          '4',
          '6',
          '7',
          'g',
          'x',
          'L',
          'K',
          'S',
          'V',
          'D',
          'M',
          '\0',
          'Z',
        ),
      },
    ),
    content: fc.uint8Array({ maxLength: 1500 }),
    declared: fc.option(fc.oneof(fc.nat({ max: 5000 }), fc.constantFrom(8 ** 11 - 1, 2 ** 20)), {
      nil: undefined,
    }),
    linkname: fc.constantFrom('', 'hearth.yaml', '../x', '/etc', 'dir/../..', 'a'.repeat(99), '.', 'link'),
    mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o7777, 0, 0o1000),
    longName: fc.constantFrom('pax' as const, 'gnu' as const, 'cut' as const),
    badChecksum: fc.boolean(),
  })
  .map(printed);

/** A valid, small function folder as a tar, to mutate. */
export const VALID: Entry[] = [
  { name: 'hearth.yaml', content: Buffer.from('apiVersion: hearth.dev/v1\nkind: Function\n') },
  { name: 'src/', type: '5' },
  { name: 'src/index.mjs', content: Buffer.from('export default () => "hi";\n') },
  { name: 'current', type: '2', linkname: 'src' },
].map((partial) => ({
  type: '0',
  content: Buffer.alloc(0),
  declared: undefined,
  linkname: '',
  mode: 0o644,
  longName: 'pax' as const,
  badChecksum: false,
  ...partial,
}));

// --- mutations of the bytes -----------------------------------------------------------------------------

type Layer = 'tar' | 'gzip';

const PADDING_BOMB = 32 * 1024 * 1024;

export interface ByteEdit {
  readonly layer: Layer;
  readonly op: 'flip' | 'truncate' | 'append' | 'zeros' | 'insert';
  readonly at: number;
  readonly bytes: Uint8Array;
  readonly count: number;
}

export const byteEdit: fc.Arbitrary<ByteEdit> = fc.record({
  layer: fc.constantFrom('tar' as const, 'gzip' as const),
  op: fc.constantFrom(
    'flip' as const,
    'truncate' as const,
    'append' as const,
    'zeros' as const,
    'insert' as const,
  ),
  at: fc.nat({ max: 1_000_000 }),
  bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  // 32 MiB of zeros after the end-of-archive blocks compress to about 32 KiB: padding that costs the
  // sender nothing and the reader everything unless it stops at the end.
  count: fc.constantFrom(1, 7, 512, 1024, 10_240, 65_536, PADDING_BOMB),
});

function edit(data: Buffer, change: ByteEdit, layer: Layer): Buffer {
  const at = data.length === 0 ? 0 : change.at % data.length;
  switch (change.op) {
    case 'flip': {
      const copy = Buffer.from(data);
      change.bytes.forEach((byte, i) => {
        if (at + i < copy.length) copy[at + i] = (copy[at + i] ?? 0) ^ (byte || 1);
      });
      return copy;
    }
    case 'truncate':
      return data.subarray(0, at);
    case 'append':
      return Buffer.concat([data, change.bytes]);
    case 'zeros':
      // Outside the gzip stream a bomb is just a large upload (refused by size): kept small there.
      return Buffer.concat([
        data,
        Buffer.alloc(layer === 'gzip' ? Math.min(change.count, 65_536) : change.count),
      ]);
    case 'insert':
      return Buffer.concat([data.subarray(0, at), change.bytes, data.subarray(at)]);
  }
}

/** Edits at the tar layer happen before compression, the others after. */
export function build(tar: Buffer, edits: readonly ByteEdit[]): Buffer {
  let inner = tar;
  for (const change of edits) if (change.layer === 'tar') inner = edit(inner, change, 'tar');
  let outer: Buffer = gzipSync(inner);
  for (const change of edits) if (change.layer === 'gzip') outer = edit(outer, change, 'gzip');
  return outer;
}
