/** @module A function's hearth.yaml, read within a size bound and parsed in the archive worker: YAML parsing is superlinear in its input. */

import { open } from 'node:fs/promises';
import { parse } from 'yaml';
import { yamlNestingProblem } from '../../domain/yaml-nesting.js';

export type YamlFile =
  | { readonly kind: 'missing' }
  | { readonly kind: 'tooLarge'; readonly bytes: number }
  | { readonly kind: 'invalid'; readonly reason: string }
  | { readonly kind: 'parsed'; readonly value: unknown };

/** A 64 KiB mapping took 200 ms to parse, an 8 MiB one 340 s (yaml 2.x, issue 19): hence the bound and the thread. */
export async function readYamlFile(file: string, maxBytes: number): Promise<YamlFile> {
  let text: string;
  try {
    const handle = await open(file, 'r');
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) return { kind: 'missing' };
      if (stats.size > maxBytes) return { kind: 'tooLarge', bytes: stats.size };
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch {
    return { kind: 'missing' };
  }
  return parseYamlText(text);
}

/** The server's reading of a hearth.yaml's text: nesting bounded first, then parsed. */
export function parseYamlText(text: string): YamlFile {
  const nesting = yamlNestingProblem(text);
  if (nesting !== undefined) return { kind: 'invalid', reason: nesting };
  try {
    return { kind: 'parsed', value: parse(text) };
  } catch (error) {
    return { kind: 'invalid', reason: (error as Error).message.split('\n')[0] ?? 'unreadable' };
  }
}
