/**
 * @module Reads an OpenFaaS `stack.yml`: each function's template language and handler folder, its
 * environment (and environment_file), limits, timeouts (exec_timeout), scaling labels, and a cron-connector
 * schedule annotation as a cron trigger.
 */

import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { parse } from 'yaml';
import type { EventFormat, RuntimeName } from '../../domain/function.js';
import type { TriggerInput } from '../../domain/triggers.js';
import {
  envValue,
  firstKnownFormat,
  hearthName,
  type ImportedFunction,
  type ImportedProject,
  isRecord,
  UnmappedList,
} from './model.js';

/**
 * The templates Hearth runs and the convention each follows: node templates `handle(event, context)` in
 * handler.js; python3-http `handle(event, context)`; classic python3 and python3-flask `handle(req)` with
 * the body as text (https://github.com/openfaas/templates, https://github.com/openfaas/python-flask-template).
 */
function template(lang: string): { runtime: RuntimeName; handler: string; formats: string[] } | undefined {
  if (/^node\d*(-debian)?$/.test(lang) || lang === 'node')
    return { runtime: 'node20', handler: 'handler', formats: ['openfaas'] };
  if (/^python3-http(-debian)?$/.test(lang))
    return { runtime: 'python3', handler: 'handler.handle', formats: ['openfaas'] };
  if (/^python3(-flask|-debian|-flask-debian)?$/.test(lang))
    return { runtime: 'python3', handler: 'handler.handle', formats: ['openfaas-classic'] };
  return undefined;
}

const MAPPED = new Set([
  'lang',
  'handler',
  'image',
  'environment',
  'environment_file',
  'limits',
  'requests',
  'labels',
  'annotations',
]);
/** faas-netes/faasd timeouts, Go durations; the largest becomes the function's timeout. */
const TIMEOUT_VARIABLES = ['exec_timeout', 'write_timeout', 'read_timeout'];

export function readOpenFaas(file: string, document: unknown): ImportedProject {
  const unmapped = new UnmappedList();
  const root = isRecord(document) ? document : {};
  const functions: ImportedFunction[] = [];
  const declared = isRecord(root.functions) ? root.functions : {};
  for (const [key, fn] of Object.entries(declared)) {
    const where = `functions.${key}`;
    if (!isRecord(fn)) continue;
    const lang = String(fn.lang ?? '');
    const known = template(lang);
    if (known === undefined) {
      unmapped.add(
        `${where}.lang`,
        `"${lang}": Hearth runs the node and python3 templates; function not imported`,
      );
      continue;
    }
    if (typeof fn.handler !== 'string') {
      unmapped.add(`${where}.handler`, 'missing; function not imported');
      continue;
    }
    for (const field of Object.keys(fn))
      if (!MAPPED.has(field))
        unmapped.add(
          `${where}.${field}`,
          field === 'secrets'
            ? 'OpenFaaS secrets are not imported; pass them as spec.env'
            : 'no Hearth equivalent',
        );
    const env: Record<string, string> = {};
    const files = Array.isArray(fn.environment_file) ? fn.environment_file : [];
    for (const envFile of files)
      readEnvironmentFile(
        resolve(dirname(file), String(envFile)),
        `${where}.environment_file`,
        env,
        unmapped,
      );
    if (isRecord(fn.environment))
      for (const [name, raw] of Object.entries(fn.environment)) {
        const text = envValue(raw);
        if (text !== undefined) env[name] = text;
      }
    let timeoutSeconds: number | undefined;
    for (const name of TIMEOUT_VARIABLES) {
      const seconds = env[name] === undefined ? undefined : goDurationSeconds(env[name]);
      if (seconds !== undefined) timeoutSeconds = Math.max(timeoutSeconds ?? 0, seconds);
    }
    const limits = isRecord(fn.limits) ? fn.limits : {};
    const labels = isRecord(fn.labels) ? fn.labels : {};
    const min = Number(labels['com.openfaas.scale.min']);
    const max = Number(labels['com.openfaas.scale.max']);
    const scaling = {
      ...(Number.isInteger(min) && labels['com.openfaas.scale.min'] !== undefined ? { min } : {}),
      ...(Number.isInteger(max) && labels['com.openfaas.scale.max'] !== undefined ? { max } : {}),
    };
    const triggers: TriggerInput[] = [];
    const annotations = isRecord(fn.annotations) ? fn.annotations : {};
    const topic = typeof annotations.topic === 'string' ? annotations.topic : undefined;
    if (topic === 'cron-function' && typeof annotations.schedule === 'string')
      // The cron-connector's schedules are standard 5-field cron, in UTC.
      triggers.push({ cron: { schedule: annotations.schedule, timezone: 'UTC' } });
    else if (topic !== undefined)
      unmapped.add(
        `${where}.annotations.topic`,
        `"${topic}": OpenFaaS connectors deliver topics from a broker Hearth does not know here; add spec.triggers [{kafka|mqtt|nats: …}] with its address`,
      );
    const format = firstKnownFormat(...known.formats);
    if (format === undefined)
      unmapped.add(
        where,
        `the OpenFaaS ${lang} convention (eventFormat ${known.formats[0]}) is not in this Hearth build; written without eventFormat`,
      );
    functions.push({
      name: hearthName(key),
      origin: where,
      source: resolve(dirname(file), fn.handler),
      runtime: known.runtime,
      handler: known.handler,
      env,
      memory: typeof limits.memory === 'string' ? limits.memory : undefined,
      timeout: timeoutSeconds === undefined ? undefined : `${timeoutSeconds}s`,
      cpu: typeof limits.cpu === 'string' || typeof limits.cpu === 'number' ? String(limits.cpu) : undefined,
      scaling: Object.keys(scaling).length === 0 ? undefined : scaling,
      eventFormat: format as EventFormat | undefined,
      triggers,
      routes: [],
    });
  }
  return {
    format: 'openfaas',
    file,
    projectDir: dirname(file),
    service: basename(dirname(file)),
    functions,
    unmapped: unmapped.items,
  };
}

function readEnvironmentFile(
  path: string,
  where: string,
  env: Record<string, string>,
  unmapped: UnmappedList,
): void {
  let document: unknown;
  try {
    document = parse(readFileSync(path, 'utf8'));
  } catch (error) {
    unmapped.add(where, `${path}: cannot be read (${(error as Error).message.split('\n')[0]})`);
    return;
  }
  const variables = isRecord(document) && isRecord(document.environment) ? document.environment : {};
  for (const [name, raw] of Object.entries(variables)) {
    const text = envValue(raw);
    if (text !== undefined) env[name] = text;
  }
}

/** `10s`, `1m30s`, `500ms`, `2h` → whole seconds (rounded up); undefined for anything else. */
function goDurationSeconds(text: string): number | undefined {
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== text.trim()) return undefined;
  const seconds = parts.reduce((sum, [, amount, unit]) => {
    const factor = unit === 'ms' ? 0.001 : unit === 's' ? 1 : unit === 'm' ? 60 : 3600;
    return sum + Number(amount) * factor;
  }, 0);
  return seconds > 0 ? Math.ceil(seconds) : undefined;
}
