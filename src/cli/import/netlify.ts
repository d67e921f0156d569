/**
 * @module Reads a Netlify functions folder (`netlify/functions/`): each `NAME.js|mjs|cjs` file or
 * `NAME/NAME.js|index.js` folder is a function; a `handler` export is Functions 1.0 (the Lambda-shaped
 * event, served at `/.netlify/functions/NAME`), a default export is Functions 2.0 (a web `Request`);
 * `export const config = { path, schedule }` and 1.0's `schedule('…', handler)` become routes and cron.
 */

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative } from 'node:path';
import type { EventFormat } from '../../domain/function.js';
import type { TriggerInput } from '../../domain/triggers.js';
import {
  firstKnownFormat,
  hearthName,
  type ImportedFunction,
  type ImportedProject,
  type ImportedRoute,
  UnmappedList,
} from './model.js';

const JS = ['.js', '.mjs', '.cjs'];
const TS = ['.ts', '.mts', '.cts', '.tsx', '.jsx'];

/** The functions folder inside `dir`: `dir` itself when it holds functions, else `netlify/functions`. */
export function netlifyFunctionsDir(dir: string): string | undefined {
  for (const candidate of [join(dir, 'netlify', 'functions'), dir])
    if (
      statSync(candidate, { throwIfNoEntry: false })?.isDirectory() === true &&
      entries(candidate).length > 0
    )
      return candidate;
  return undefined;
}

function entries(dir: string): { name: string; file: string }[] {
  const found: { name: string; file: string }[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
    const extension = extname(entry.name);
    if (entry.isFile() && [...JS, ...TS].includes(extension))
      found.push({ name: basename(entry.name, extension), file: join(dir, entry.name) });
    else if (entry.isDirectory()) {
      const inner = [...JS, ...TS]
        .flatMap((ext) => [
          join(dir, entry.name, `${entry.name}${ext}`),
          join(dir, entry.name, `index${ext}`),
        ])
        .find((candidate) => statSync(candidate, { throwIfNoEntry: false })?.isFile() === true);
      if (inner !== undefined) found.push({ name: entry.name, file: inner });
    }
  }
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

export function readNetlify(functionsDir: string, projectDir: string): ImportedProject {
  const unmapped = new UnmappedList();
  const functions: ImportedFunction[] = [];
  for (const { name, file } of entries(functionsDir)) {
    const where = relative(projectDir, file);
    if (TS.includes(extname(file))) {
      unmapped.add(
        where,
        'TypeScript and JSX are not compiled by Hearth; build it to .js (esbuild, tsc) and import again',
      );
      continue;
    }
    const text = readFileSync(file, 'utf8');
    const v1 =
      /\bexports\.handler\s*=|\bmodule\.exports\s*=\s*\{[^}]*\bhandler\b|\bexport\s+(const|let|var|async\s+function|function)\s+handler\b|\bexport\s*\{[^}]*\bhandler\b[^}]*\}/.test(
        text,
      );
    const v2 = /\bexport\s+default\b|\bmodule\.exports\s*=/.test(text);
    if (!v1 && !v2) {
      unmapped.add(
        where,
        'exports neither handler (Functions 1.0) nor a default (Functions 2.0); not imported',
      );
      continue;
    }
    const modulePath = relative(functionsDir, file).slice(0, -extname(file).length);
    const routes: ImportedRoute[] = [];
    const triggers: TriggerInput[] = [];
    const config = configOf(text);
    for (const path of config.paths) {
      if (!path.startsWith('/'))
        unmapped.add(`${where}: config.path`, `"${path}": expected a path starting with /`);
      else routes.push({ path, method: undefined });
    }
    if (v1 && config.paths.length === 0)
      routes.push({ path: `/.netlify/functions/${name}`, method: undefined });
    const schedule = config.schedule ?? /\bschedule\(\s*["'`]([^"'`]+)["'`]/.exec(text)?.[1];
    // Netlify schedules are cron or @hourly-style nicknames, in UTC.
    if (schedule !== undefined) triggers.push({ cron: { schedule, timezone: 'UTC' } });
    if (/\bconfig\s*=\s*\{[^}]*\bmethod\s*:/.test(text))
      unmapped.add(`${where}: config.method`, 'routes are imported for every method');
    const wanted = v1 ? ['netlify', 'lambda-v1'] : ['netlify-v2', 'web'];
    const format = firstKnownFormat(...wanted);
    if (format !== wanted[0])
      unmapped.add(
        where,
        format === undefined
          ? `the Netlify Functions 2.0 convention (eventFormat ${wanted[0]}) is not in this Hearth build; written without eventFormat`
          : `the Netlify Functions 1.0 convention (eventFormat ${wanted[0]}) is not in this Hearth build; written as ${format}`,
      );
    functions.push({
      name: hearthName(name),
      origin: where,
      source: functionsDir,
      runtime: 'node20',
      handler: v1 ? `${modulePath}.handler` : modulePath,
      env: {},
      memory: undefined,
      timeout: undefined,
      cpu: undefined,
      scaling: undefined,
      eventFormat: format as EventFormat | undefined,
      triggers,
      routes,
    });
  }
  return {
    format: 'netlify',
    file: functionsDir,
    projectDir,
    service: basename(projectDir),
    functions,
    unmapped: unmapped.items,
  };
}

/**
 * `export const config = { path: "/api/x" | ["/a", "/b"], schedule: "@hourly" }`, read from the text:
 * Netlify reads it statically too (it must be a literal), so no module is run to import it.
 */
function configOf(text: string): { paths: string[]; schedule: string | undefined } {
  const block = /\bconfig\s*(?::\s*Config\s*)?=\s*\{([\s\S]*?)\}\s*;?\s*(?:\n|$)/.exec(text)?.[1];
  if (block === undefined) return { paths: [], schedule: undefined };
  const pathValue = /\bpath\s*:\s*(\[[^\]]*\]|["'`][^"'`]*["'`])/.exec(block)?.[1];
  const paths =
    pathValue === undefined
      ? []
      : [...pathValue.matchAll(/["'`]([^"'`]*)["'`]/g)].map((match) => match[1] as string);
  const schedule = /\bschedule\s*:\s*["'`]([^"'`]+)["'`]/.exec(block)?.[1];
  return { paths, schedule };
}

/** The project folder for a functions folder: two levels up from `…/netlify/functions`. */
export function netlifyProjectDir(functionsDir: string): string {
  return basename(functionsDir) === 'functions' && basename(dirname(functionsDir)) === 'netlify'
    ? dirname(dirname(functionsDir))
    : functionsDir;
}
