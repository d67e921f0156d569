/** @module Reading Function resources from YAML and validating them with the platform's own schema. */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Document, LineCounter, parseDocument, type YAMLError } from 'yaml';
import { isHearthError } from '../domain/errors.js';
import { type FunctionManifest, parseFunctionManifest } from '../domain/function.js';
import { yamlNestingProblem } from '../domain/yaml-nesting.js';
import { CliError } from './errors.js';
import { MANIFEST_FILE } from './pack.js';

export interface FunctionFolder {
  readonly manifest: FunctionManifest;
  readonly document: Document;
  /** The manifest's path as the user would recognise it, e.g. `echo/hearth.yaml`. */
  readonly file: string;
}

export async function readFunctionFolder(dir: string): Promise<FunctionFolder> {
  const file = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) {
      throw new CliError(
        `${file}: not found; a function folder needs a ${MANIFEST_FILE} (\`hearth new NAME\` creates one)`,
      );
    }
    throw new CliError(`${file}: cannot be read (${errnoCode(error)})`);
  }
  requireShallowYaml(file, text);
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter });
  const syntax = document.errors[0];
  if (syntax !== undefined) throw yamlSyntaxError(file, syntax);
  return { manifest: validateDocument(document, lineCounter, file), document, file };
}

/**
 * Validates one YAML document as a Function resource. The error names the file, the line of the offending
 * field when it can be found, the document (for multi-document files), the field, value and expectation.
 */
export function validateDocument(
  document: Document,
  lineCounter: LineCounter,
  file: string,
  documentLabel?: string,
): FunctionManifest {
  return validateWith(document, lineCounter, file, documentLabel, parseFunctionManifest);
}

/** Validates one YAML document with a resource's parser (Function, EventGateway), locating the error's line. */
export function validateWith<T>(
  document: Document,
  lineCounter: LineCounter,
  file: string,
  documentLabel: string | undefined,
  parse: (input: unknown, origin: string) => T,
): T {
  const origin = documentLabel === undefined ? file : `${file}: ${documentLabel}`;
  let value: unknown;
  try {
    value = document.toJS();
  } catch (error) {
    // Aliases past the parser's count (a "billion laughs" file) or other resource exhaustion.
    throw new CliError(`${origin}: not valid YAML (${(error as Error).message.split('\n')[0]})`);
  }
  try {
    return parse(value, origin);
  } catch (error) {
    if (!isHearthError(error)) throw error;
    const rest = error.message.startsWith(`${origin}: `)
      ? error.message.slice(origin.length + 2)
      : error.message;
    const where = locate(document, lineCounter, file, error.details?.field, documentLabel);
    throw new CliError(`${where}: ${rest}`, { code: error.code, cause: error });
  }
}

/** Refuses YAML nested deeper than the parser can read in reasonable time, naming the file and the line. */
export function requireShallowYaml(file: string, text: string): void {
  const problem = yamlNestingProblem(text);
  if (problem !== undefined) throw new CliError(`${file}: not valid YAML (${problem})`);
}

export function yamlSyntaxError(file: string, error: YAMLError): CliError {
  const summary = (error.message.split('\n')[0] ?? error.message).replace(/:\s*$/, '');
  const line = error.linePos?.[0].line;
  const where = line === undefined || summary.includes('line') ? '' : ` (line ${line})`;
  return new CliError(`${file}: invalid YAML: ${summary}${where}`);
}

/** The document as YAML again (comments kept), with the namespace pinned and/or `spec.source` removed. */
export function renderManifest(
  document: Document,
  edits: { readonly namespace?: string | undefined; readonly dropSource?: boolean },
): string {
  const copy = document.clone();
  if (edits.dropSource === true) copy.deleteIn(['spec', 'source']);
  if (edits.namespace !== undefined) copy.setIn(['metadata', 'namespace'], edits.namespace);
  return copy.toString();
}

/** `file:line: document N (function/x)`, pointing at `field` (or as near to it as the document goes). */
export function locate(
  document: Document,
  lineCounter: LineCounter,
  file: string,
  field: unknown,
  documentLabel?: string,
): string {
  const line = lineOfField(document, lineCounter, field);
  const located = line === undefined ? file : `${file}:${line}`;
  return documentLabel === undefined ? located : `${located}: ${documentLabel}`;
}

/** 1-based line of the deepest node on `field`'s path that exists (a missing field points at its parent). */
function lineOfField(document: Document, lineCounter: LineCounter, field: unknown): number | undefined {
  if (typeof field !== 'string' || field === '(root)') return undefined;
  const path = field.split('.');
  for (let length = path.length; length > 0; length--) {
    const node: unknown = document.getIn(path.slice(0, length), true);
    const start = rangeOf(node)?.[0];
    if (start !== undefined) return lineCounter.linePos(start).line;
  }
  return undefined;
}

function rangeOf(node: unknown): readonly number[] | undefined {
  if (node === null || typeof node !== 'object' || !('range' in node)) return undefined;
  const range: unknown = node.range;
  return Array.isArray(range) && typeof range[0] === 'number' ? (range as number[]) : undefined;
}

export function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && 'code' in error && error.code === code;
}

function errnoCode(error: unknown): string {
  return error instanceof Error && 'code' in error && typeof error.code === 'string'
    ? error.code
    : String(error);
}
