/**
 * @module What `hearth import` reads out of another platform's project, whatever the platform, and the
 * conversions the readers share: Lambda runtimes, AWS schedule expressions, API Gateway paths, names.
 */

import { EVENT_FORMATS, type EventFormat, type RuntimeName } from '../../domain/function.js';
import type { TriggerInput } from '../../domain/triggers.js';

export type ProjectFormat = 'serverless' | 'sam' | 'openfaas' | 'netlify';

export const FORMAT_LABELS: Record<ProjectFormat, string> = {
  serverless: 'Serverless Framework',
  sam: 'AWS SAM',
  openfaas: 'OpenFaaS',
  netlify: 'Netlify Functions',
};

/** One HTTP route to the function, as an EventGateway route (`/users/:id`, `/files/*`). */
export interface ImportedRoute {
  readonly path: string;
  /** Undefined: any method. */
  readonly method: string | undefined;
}

/** One function as Hearth will run it. */
export interface ImportedFunction {
  /** The Hearth name (a lower-case DNS label). */
  readonly name: string;
  /** Where it was declared, as the user would find it (`functions.createUser`, `Resources.HelloFn`). */
  readonly origin: string;
  /** The code folder (absolute): what `spec.source` points at. */
  readonly source: string;
  readonly runtime: RuntimeName;
  readonly handler: string;
  readonly env: Readonly<Record<string, string>>;
  readonly memory: string | undefined;
  readonly timeout: string | undefined;
  readonly cpu: string | undefined;
  readonly eventFormat: EventFormat | undefined;
  readonly scaling: { readonly min?: number; readonly max?: number } | undefined;
  readonly triggers: readonly TriggerInput[];
  readonly routes: readonly ImportedRoute[];
}

/** Something in the project that has no Hearth equivalent (yet): one line each for the user. */
export interface Unmapped {
  /** Where, as a path into the file (`functions.createUser.events[1].sqs`). */
  readonly where: string;
  /** What it is and why it was not mapped, saying what to do instead where there is something. */
  readonly what: string;
}

export interface ImportedProject {
  readonly format: ProjectFormat;
  /** The file (or folder) read. */
  readonly file: string;
  /** The project's folder: relative `source` paths are shown from here. */
  readonly projectDir: string;
  /** The service's name, for the EventGateway that holds the routes. */
  readonly service: string;
  readonly functions: readonly ImportedFunction[];
  readonly unmapped: readonly Unmapped[];
}

/** Collects the lines of what could not be mapped, in the order met. */
export class UnmappedList {
  readonly items: Unmapped[] = [];
  add(where: string, what: string): void {
    this.items.push({ where, what });
  }
}

// --- runtimes -------------------------------------------------------------------------------------------

/** AWS Lambda runtime ids Hearth runs: Node 18-22 on its node20 runtime, every Python 3 on python3. */
export function lambdaRuntime(runtime: string): RuntimeName | undefined {
  if (/^nodejs(18|20|22)\.x$/.test(runtime)) return 'node20';
  if (/^python3\.\d+$/.test(runtime)) return 'python3';
  return undefined;
}

// --- event formats ---------------------------------------------------------------------------------------

/**
 * The first of `wanted` this build of Hearth knows: the platform conventions (OpenFaaS, Netlify, ALB…) arrive
 * with the guest adapters, so an import names the exact one when it exists and the closest Lambda shape
 * (or none) before that.
 */
export function firstKnownFormat(...wanted: readonly string[]): EventFormat | undefined {
  return wanted.find((format): format is EventFormat =>
    (EVENT_FORMATS as readonly string[]).includes(format),
  );
}

// --- names -------------------------------------------------------------------------------------------------

/** `createUser`, `hello_world`, `HelloWorldFunction` → `create-user`, `hello-world`, `hello-world-function`. */
export function hearthName(name: string): string {
  const kebab = name
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1-$2')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '');
  return (kebab === '' ? 'fn' : kebab).slice(0, 63).replace(/-$/, '');
}

// --- schedules ----------------------------------------------------------------------------------------------

const RATE_UNITS: Record<string, 'minute' | 'hour' | 'day'> = {
  minute: 'minute',
  minutes: 'minute',
  hour: 'hour',
  hours: 'hour',
  day: 'day',
  days: 'day',
};

/**
 * An EventBridge schedule (`rate(5 minutes)`, `cron(0 12 * * ? *)`) as a 5-field cron schedule, or a
 * string saying why it cannot be one. `rate(n days)` becomes "every n-th day of the month" (cron has no
 * true every-n-days), said in `note`.
 */
export function awsSchedule(expression: string): { cron: string; note?: string } | { problem: string } {
  const text = expression.trim();
  const rate = /^rate\(\s*(\d+)\s+([a-z]+)\s*\)$/i.exec(text);
  if (rate !== null) {
    const n = Number(rate[1]);
    const unit = RATE_UNITS[(rate[2] as string).toLowerCase()];
    if (unit === undefined || n < 1) return { problem: `"${text}": expected rate(N minutes|hours|days)` };
    if (unit === 'minute') {
      if (n === 1) return { cron: '* * * * *' };
      if (n < 60 && 60 % n === 0) return { cron: `*/${n} * * * *` };
      if (n % 60 === 0) return awsSchedule(`rate(${n / 60} hours)`);
      return { cron: `*/${n} * * * *`, note: `every ${n} minutes restarts at each hour in cron` };
    }
    if (unit === 'hour') {
      if (n === 1) return { cron: '0 * * * *' };
      if (n < 24 && 24 % n === 0) return { cron: `0 */${n} * * *` };
      if (n % 24 === 0) return awsSchedule(`rate(${n / 24} days)`);
      return { cron: `0 */${n} * * *`, note: `every ${n} hours restarts at midnight in cron` };
    }
    if (n === 1) return { cron: '0 0 * * *' };
    return { cron: `0 0 */${n} * *`, note: `every ${n} days restarts on the 1st of each month in cron` };
  }
  const cron = /^cron\(\s*(.+?)\s*\)$/i.exec(text);
  if (cron === null) return { problem: `"${text}": expected rate(…) or cron(…)` };
  const fields = (cron[1] as string).split(/\s+/);
  if (fields.length !== 6)
    return { problem: `"${text}": an EventBridge cron has 6 fields (minutes hours day month weekday year)` };
  const [minute, hour, day, month, weekday, year] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (year !== '*') return { problem: `"${text}": a year field other than * has no cron equivalent` };
  // EventBridge numbers weekdays 1-7 from Sunday; cron 0-6. Names (MON-FRI) mean the same in both.
  const shifted = weekday.replace(
    /(^|[,-])(\d+)/g,
    (_match, before: string, digits: string) => `${before}${(Number(digits) + 6) % 7}`,
  );
  const any = (field: string): string => (field === '?' ? '*' : field);
  if ([minute, hour, day, month, weekday].some((field) => /[LW#]/.test(field)))
    return { problem: `"${text}": L, W and # have no 5-field cron equivalent` };
  return { cron: [minute, hour, any(day), month, any(shifted)].join(' ') };
}

// --- paths --------------------------------------------------------------------------------------------------

/**
 * An API Gateway path (`users/{id}`, `/files/{proxy+}`) as an EventGateway route path (`/users/:id`,
 * `/files/*`), or a problem.
 */
export function routePath(path: string): { path: string } | { problem: string } {
  const segments = path
    .trim()
    .replace(/^\/+|\/+$/g, '')
    .split('/')
    .filter((segment) => segment !== '');
  const out: string[] = [];
  for (const [index, segment] of segments.entries()) {
    const greedy = /^\{[A-Za-z_][A-Za-z0-9_]*\+\}$/.test(segment);
    if (greedy) {
      if (index !== segments.length - 1)
        return { problem: `"${path}": a greedy {name+} segment is only possible last` };
      out.push('*');
      continue;
    }
    const parameter = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(segment);
    if (parameter !== null) out.push(`:${parameter[1]}`);
    else if (/[{}]/.test(segment)) return { problem: `"${path}": a segment mixing text and {parameters}` };
    else out.push(segment);
  }
  return { path: `/${out.join('/')}` };
}

/** `GET`, `get`, `any`, `*` → an HTTP method for a route, undefined meaning any. */
export function routeMethod(method: string | undefined): string | undefined {
  if (method === undefined) return undefined;
  const upper = method.trim().toUpperCase();
  return upper === 'ANY' || upper === '*' || upper === '' ? undefined : upper;
}

// --- values -------------------------------------------------------------------------------------------------

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Environment values are strings in Hearth; YAML numbers and booleans are taken as their text. */
export function envValue(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}
