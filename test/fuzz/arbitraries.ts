/**
 * @module Hostile inputs for the fuzz suites: odd values, mutations of valid resources (as data, as YAML
 * text, as YAML documents with anchors and aliases). Every mutation is a plan of small numbers applied to
 * a copy of a valid base, so fast-check shrinks a failure to the fewest, simplest edits.
 */

import fc from 'fast-check';
import { isCollection, isMap, isSeq, parseDocument, visit } from 'yaml';

/** Nested arrays `depth` deep, built without recursion (JSON.parse and zod may recurse; we must not). */
export function deepArray(depth: number): unknown {
  let value: unknown = [];
  for (let i = 1; i < depth; i++) value = [value];
  return value;
}

/**
 * Stands for `deepArray(depth)` until `materialize` builds it: fast-check prints and shrinks values
 * recursively, and would overflow its own stack on the real thing.
 */
export class Deep {
  constructor(readonly depth: number) {}
  [fc.toStringMethod](): string {
    return `<arrays nested ${this.depth} deep>`;
  }
}

/** The value a generated one stands for (see `Deep`). */
export function materialize(value: unknown): unknown {
  return value instanceof Deep ? deepArray(value.depth) : value;
}

/** `depth` nested arrays as JSON text. */
export function deepJson(depth: number, open = '[', close = ']'): string {
  return `${open.repeat(depth)}${close.repeat(depth)}`;
}

const ODD_STRINGS = [
  '',
  ' ',
  '\u0000',
  '\uFEFF',
  '\uD800',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'null',
  '1e309',
  '-1',
  '0x10',
  'NaN',
  'Infinity',
  '10 s',
  ' 10s ',
  '1m30s',
  '0.0000001s',
  '٣s',
  '１０s',
  '128Mi',
  '1e3Mi',
  `${'9'.repeat(400)}Mi`,
  `${'9'.repeat(40)}s`,
  '500m',
  '0m',
  '1000qps',
  '0qps',
  '1e999qps',
  '*/5 * * * *',
  '* * * * * * *',
  '0 0 31 2 *',
  'Mars/Olympus',
  'host:0',
  'host:99999',
  'host-gateway',
  '999.1.1.1',
  'mqtt://',
  'nats://x y',
  '../../etc/passwd',
  '/etc/passwd',
  'index.handler',
  'a/../../b',
  '%00',
  '$(HOME)',
  '<script>',
  'HEARTH_SECRET',
  'a'.repeat(64),
  'a'.repeat(300),
];

const ODD_NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.5,
  1.5,
  63,
  64,
  65,
  100,
  101,
  1000,
  1001,
  10_000,
  65_535,
  65_536,
  2 ** 31,
  2 ** 53 + 2,
  1e308,
  -1e308,
  5e-324,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
];

/** Strings a resource field might choke on: odd values, any code points, long ones. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...ODD_STRINGS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.nat({ max: 200_000 }).map((n) => 'x'.repeat(n)) },
);

/** Keys an object might choke on: prototype names, dots, empty, long, any code points. */
export const hostileKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    '',
    ' ',
    'a.b',
    '0',
    'spec',
    'runtime',
    'name',
    'HEARTH_X',
    'http',
    'kafka',
    'cron',
  ),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
);

/** Any value JSON (or YAML) can carry, with the odd numbers and strings over-represented. */
export const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 2, arbitrary: hostileString },
  {
    weight: 1,
    arbitrary: fc.constantFrom(...ODD_NUMBERS.filter(Number.isFinite), null, true, false, [], {}),
  },
  // A few fixed depths: fast-check then shrinks one to the smallest that still fails in a few steps.
  { weight: 1, arbitrary: fc.constantFrom(100, 1000, 10_000, 100_000).map((depth) => new Deep(depth)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(hostileKey, fc.jsonValue({ maxDepth: 2 }))
      .map(([key, value]) => ownObject(key, value)),
  },
);

/** What a parsed YAML document may also hold: NaN and ±Infinity (`.nan`, `.inf`). */
export const hostileData: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostileJson },
  { weight: 1, arbitrary: fc.constantFrom(...ODD_NUMBERS) },
);

/** `{ [key]: value }` with `key` an own property even when it is `__proto__`, as JSON.parse makes it. */
function ownObject(key: string, value: unknown): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  return object;
}

// --- mutating data --------------------------------------------------------------------------------------

const DATA_OPS = [
  'replace',
  'delete',
  'addKey',
  'rename',
  'wrap',
  'unwrap',
  'stringify',
  'numberify',
  'repeat',
  'nest',
] as const;

export interface DataEdit {
  readonly op: (typeof DATA_OPS)[number];
  /** Which node: an index into the tree's nodes in depth-first order, modulo their number. */
  readonly at: number;
  readonly key: string;
  readonly value: unknown;
  readonly times: number;
}

export const dataEdit: fc.Arbitrary<DataEdit> = fc.record({
  op: fc.constantFrom(...DATA_OPS),
  at: fc.nat({ max: 10_000 }),
  key: hostileKey,
  value: hostileData,
  times: fc.integer({ min: 2, max: 3000 }),
});

/** 1 to 4 edits of a resource; applied with `applyEdits`. */
export const dataEdits: fc.Arbitrary<DataEdit[]> = fc.array(dataEdit, { minLength: 1, maxLength: 4 });

interface Slot {
  readonly parent: Record<string, unknown> | unknown[] | undefined;
  readonly key: string | number;
  readonly value: unknown;
}

function slots(root: unknown): Slot[] {
  const found: Slot[] = [{ parent: undefined, key: '', value: root }];
  const stack: Slot[] = [found[0] as Slot];
  while (stack.length > 0) {
    const { value } = stack.pop() as Slot;
    if (value === null || typeof value !== 'object') continue;
    const entries = Array.isArray(value)
      ? value.map((item, index) => [index, item] as const).slice(0, 50)
      : Object.entries(value).slice(0, 50);
    for (const [key, item] of entries) {
      const slot = { parent: value as Record<string, unknown>, key, value: item };
      found.push(slot);
      stack.push(slot);
    }
  }
  return found;
}

/** A copy of `base` with `edits` applied in turn; each edit picks its node among the current ones. */
export function applyEdits(base: unknown, edits: readonly DataEdit[]): unknown {
  let root: unknown = structuredClone(base);
  for (const edit of edits) {
    const all = slots(root);
    const slot = all[edit.at % all.length] as Slot;
    const value = slot.value;
    const given = materialize(edit.value);
    try {
      root = applyOne(root, slot, edit, value, given);
    } catch {
      // Stringifying or counting a value nested 100,000 deep overflows the stack: that edit is skipped.
    }
  }
  return root;
}

function applyOne(start: unknown, slot: Slot, edit: DataEdit, value: unknown, given: unknown): unknown {
  let root = start;
  const set = (next: unknown): void => {
    if (slot.parent === undefined) root = next;
    else if (Array.isArray(slot.parent)) slot.parent[slot.key as number] = next;
    else
      Object.defineProperty(slot.parent, slot.key, {
        value: next,
        enumerable: true,
        writable: true,
        configurable: true,
      });
  };
  switch (edit.op) {
    case 'replace':
      set(given);
      break;
    case 'delete':
      if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 1);
      else if (slot.parent !== undefined) delete slot.parent[slot.key as string];
      else root = undefined;
      break;
    case 'addKey':
      if (value !== null && typeof value === 'object' && !Array.isArray(value))
        Object.defineProperty(value, edit.key, {
          value: given,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      else if (Array.isArray(value)) value.push(given);
      else set(ownObject(edit.key, value));
      break;
    case 'rename':
      if (slot.parent !== undefined && !Array.isArray(slot.parent)) {
        delete slot.parent[slot.key as string];
        Object.defineProperty(slot.parent, edit.key, {
          value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      } else set(given);
      break;
    case 'wrap':
      set([value]);
      break;
    case 'unwrap':
      if (Array.isArray(value)) set(value[0]);
      else if (value !== null && typeof value === 'object') set(Object.values(value)[0]);
      else set(undefined);
      break;
    case 'stringify':
      set(typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value)));
      break;
    case 'numberify':
      set(Number(value));
      break;
    case 'repeat':
      if (Array.isArray(value)) set(Array.from({ length: edit.times }, () => value[0]));
      else if (typeof value === 'string')
        set(value.repeat(Math.min(edit.times, 200_000 / Math.max(1, value.length))));
      else set(Array.from({ length: edit.times }, () => value));
      break;
    case 'nest':
      set(ownObject(edit.key, value));
      break;
  }
  return root;
}

// --- mutating YAML text -----------------------------------------------------------------------------------

const YAML_TOKENS = [
  ' ',
  '  ',
  '\t',
  '\n',
  '\r\n',
  '- ',
  ': ',
  ':',
  '{',
  '}',
  '[',
  ']',
  ', ',
  '#',
  '"',
  "'",
  '\\',
  '|',
  '>-',
  '? ',
  '&a ',
  '*a',
  '<<: *a',
  '!!str ',
  '!!int ',
  '!!float ',
  '!!binary ',
  '!!set ',
  '!!omap ',
  '!!timestamp ',
  '!custom ',
  '!<tag:x> ',
  '---\n',
  '...\n',
  '%YAML 1.1\n',
  '%TAG ! tag:x,2000:\n',
  '.nan',
  '.inf',
  '~',
  'null',
  'yes',
  '0o17',
  '0x1F',
  '1e309',
  '\u0000',
  '\uFEFF',
  '\u2028',
  'é',
  '😀',
];

const TEXT_OPS = ['insert', 'delete', 'duplicate', 'swapLines', 'indent', 'replaceChar'] as const;

export interface TextEdit {
  readonly op: (typeof TEXT_OPS)[number];
  readonly at: number;
  readonly length: number;
  readonly token: string;
}

export const textEdit: fc.Arbitrary<TextEdit> = fc.record({
  op: fc.constantFrom(...TEXT_OPS),
  at: fc.nat({ max: 100_000 }),
  length: fc.nat({ max: 40 }),
  token: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...YAML_TOKENS) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
  ),
});

export function applyTextEdits(text: string, edits: readonly TextEdit[]): string {
  let out = text;
  for (const edit of edits) {
    const at = out.length === 0 ? 0 : edit.at % (out.length + 1);
    switch (edit.op) {
      case 'insert':
        out = out.slice(0, at) + edit.token + out.slice(at);
        break;
      case 'delete':
        out = out.slice(0, at) + out.slice(at + edit.length);
        break;
      case 'duplicate':
        out = out.slice(0, at + edit.length) + out.slice(at, at + edit.length) + out.slice(at + edit.length);
        break;
      case 'replaceChar':
        out = out.slice(0, at) + edit.token + out.slice(at + 1);
        break;
      case 'swapLines':
      case 'indent': {
        const lines = out.split('\n');
        const line = edit.at % lines.length;
        if (edit.op === 'indent') lines[line] = ' '.repeat(edit.length % 9) + (lines[line] ?? '').trimStart();
        else {
          const other = edit.length % lines.length;
          [lines[line], lines[other]] = [lines[other] ?? '', lines[line] ?? ''];
        }
        out = lines.join('\n');
        break;
      }
    }
  }
  return out;
}

export const textEdits: fc.Arbitrary<TextEdit[]> = fc.array(textEdit, { minLength: 1, maxLength: 6 });

// --- anchors and aliases ------------------------------------------------------------------------------------

export interface AliasEdit {
  /** The node that gets an anchor. */
  readonly target: number;
  /** The collection that gets an alias to it (a cycle when it lies inside the target). */
  readonly into: number;
  readonly key: string;
}

export const aliasEdit: fc.Arbitrary<AliasEdit> = fc.record({
  target: fc.nat({ max: 1000 }),
  into: fc.nat({ max: 1000 }),
  key: fc.constantFrom('labels', 'env', 'x', 'spec', 'runtime', 'name', 'limits', 'match'),
});

/** `text` as a YAML document with aliases added (shared or self-referencing nodes), as text again. */
export function applyAliasEdits(text: string, edits: readonly AliasEdit[]): string {
  const document = parseDocument(text);
  let written = text;
  for (const edit of edits) {
    const collections: unknown[] = [];
    visit(document, {
      Map: (_key, node) => void collections.push(node),
      Seq: (_key, node) => void collections.push(node),
    });
    if (collections.length === 0) break;
    const target = collections[edit.target % collections.length];
    const into = collections[edit.into % collections.length];
    if (!isCollection(target)) continue;
    const alias = document.createAlias(target);
    if (isMap(into)) into.set(edit.key, alias);
    else if (isSeq(into)) into.add(alias);
    try {
      written = document.toString();
    } catch {
      // An alias before its anchor, or one whose anchor this edit replaced, cannot be written: the text
      // stays as the last edit that could be.
      break;
    }
  }
  return written;
}

/** A YAML alias bomb: `levels` of anchors, each listing the previous one `width` times. */
export function aliasBomb(levels: number, width: number): string {
  const lines = ['a0: &a0 [x]'];
  for (let level = 1; level < levels; level++)
    lines.push(`a${level}: &a${level} [${Array.from({ length: width }, () => `*a${level - 1}`).join(', ')}]`);
  return `${lines.join('\n')}\n`;
}
