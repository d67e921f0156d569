/** @module The Function resource: its schema (shared by API and CLI), defaults, and the resolved spec the platform runs. */

import { z } from 'zod';
import { encryptionSchema, secretRefsSchema } from './compliance.js';
import { describeValue, echoable, HearthError } from './errors.js';
import { rateLimitSchema, triggersSchema } from './triggers.js';
import { parseBytes, parseCpu, parseDuration } from './units.js';

export const API_VERSION = 'hearth.dev/v1';
/**
 * `provided`: an executable `bootstrap` in the function folder speaking the AWS Lambda Runtime API (as
 * Lambda's provided.al2023); `image`: a container image (issue 17), run by the `container` isolation.
 */
export const RUNTIMES = ['node20', 'python3', 'wasm', 'provided', 'image'] as const;
export type RuntimeName = (typeof RUNTIMES)[number];
export const ISOLATIONS = ['sandbox', 'process', 'isolate', 'microvm', 'container'] as const;
export type IsolationName = (typeof ISOLATIONS)[number];

/** How the platform talks to a container function (issue 17). */
export const PROTOCOLS = ['http', 'lambda'] as const;
export type ContainerProtocol = (typeof PROTOCOLS)[number];

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HOST_PORT = /^[A-Za-z0-9.-]+:\d{1,5}$/;
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** The `hostAliases` target that means "this machine", as Docker's `--add-host name:host-gateway`. */
export const HOST_GATEWAY = 'host-gateway';
/** The name a sandbox with network access always has for this machine (like Docker's host.docker.internal). */
export const HOST_GATEWAY_NAME = 'host.hearth.internal';

const name = z
  .string()
  .max(63)
  .regex(DNS_LABEL, 'a lower-case DNS label (a-z, 0-9, "-"; at most 63 characters)');

const duration = (min: number, max: number) =>
  z.union([z.string(), z.number()]).refine(
    (v) => {
      const ms = parseDuration(v);
      return ms !== undefined && ms >= min && ms <= max;
    },
    { message: `a duration such as "500ms", "10s" or "5m" between ${min}ms and ${max / 1000}s` },
  );
const size = (min: number, max: number, example: string) =>
  z.union([z.string(), z.number()]).refine(
    (v) => {
      const bytes = parseBytes(v);
      return bytes !== undefined && bytes >= min && bytes <= max;
    },
    { message: `a size such as "${example}" between ${min} and ${max} bytes` },
  );

export const limitsSchema = z.strictObject({
  memory: size(32 * 1024 ** 2, 16 * 1024 ** 3, '128Mi').optional(),
  cpu: z
    .union([z.string(), z.number()])
    .refine((v) => (parseCpu(v) ?? 0) > 0 && (parseCpu(v) ?? 0) <= 64, {
      message: 'CPU cores such as "0.5", 1 or "500m"',
    })
    .optional(),
  timeout: duration(1, 15 * 60_000).optional(),
  maxBody: size(1, 512 * 1024 ** 2, '6Mi').optional(),
  /** Processes and threads the function may run at once (its cgroup's pids.max). */
  pids: z.int({ message: 'a whole number of processes' }).min(16).max(32768).optional(),
  /** Size of the function's private /tmp. */
  tmp: size(1024 ** 2, 16 * 1024 ** 3, '64Mi').optional(),
});

export const scalingSchema = z
  .strictObject({
    min: z.int().min(0).max(1000).optional(),
    max: z.int().min(1).max(1000).optional(),
    targetConcurrency: z.int().min(1).max(10_000).optional(),
    idleTimeout: duration(0, 24 * 3_600_000).optional(),
    warmPoolRatio: z.number().min(0).max(1).optional(),
  })
  .refine((s) => s.min === undefined || s.max === undefined || s.min <= s.max, {
    message: 'min no greater than max',
    path: ['min'],
  });

/**
 * The platform convention a handler follows: the event it gets and how its return value answers.
 * `auto` (Hearth's event, or a convention the guest detects without doubt: see docs/architecture.md
 * "Bring your functions"), `hearth`, AWS Lambda's `lambda` (= `lambda-v2`, API Gateway HTTP API),
 * `lambda-v1` (API Gateway REST API), `lambda-alb` (an Application Load Balancer target), `lambda-direct`
 * (the JSON body is the event, the return value the JSON answer); `web` (a fetch `Request` in, a
 * `Response` out; module workers' `{ fetch }`), `openfaas` (the node20 and python3-http templates; a
 * one-argument Python `handle(req)` is the classic template), `openfaas-classic`, `gcf` (Google Cloud
 * Functions' Functions Framework), `gcf-cloudevent`, `fission`, `netlify` (v1) and `netlify-v2` (= `web`).
 */
export const EVENT_FORMATS = [
  'auto',
  'hearth',
  'lambda',
  'lambda-v2',
  'lambda-v1',
  'lambda-alb',
  'lambda-direct',
  'web',
  'openfaas',
  'openfaas-classic',
  'gcf',
  'gcf-cloudevent',
  'fission',
  'netlify',
  'netlify-v2',
] as const;
export type EventFormat = (typeof EVENT_FORMATS)[number];

/**
 * `host[:port]/repo[:tag|@sha256:…]` or `oci-archive:NAME@sha256:…` (checked fully by images/reference.ts when
 * deployed; `hearth deploy` uploads an `oci-archive:FILE` without a digest and puts the digest in).
 */
const IMAGE_REFERENCE = /^(oci-archive:\S{1,400}|[a-z0-9][a-zA-Z0-9._:/@[\]-]{0,511})$/;
const argv = z.array(z.string().max(4096)).max(256);

const functionSpecFields = z.strictObject({
  runtime: z.enum(RUNTIMES, { message: `one of ${RUNTIMES.join(', ')}` }).optional(),
  /** An OCI image to run instead of source (issue 17): `runtime` is then omitted or `image`. */
  image: z
    .string()
    .regex(
      IMAGE_REFERENCE,
      'an image reference such as registry.example.com:5000/team/api:1.2 or …@sha256:<digest>',
    )
    .optional(),
  /** Replaces the image's Entrypoint, as a Kubernetes container's `command` does. */
  command: argv.optional(),
  /** Replaces the image's Cmd, as a Kubernetes container's `args` does. */
  args: argv.optional(),
  handler: z
    .string()
    .regex(/^[A-Za-z0-9_][A-Za-z0-9_./-]*$/, 'MODULE or MODULE.EXPORT, e.g. "index.handler"')
    .refine((h) => !h.split('/').includes('..'), { message: 'a path inside the function folder' })
    .optional(),
  source: z.string().min(1).optional(),
  env: z
    .record(
      z.string().regex(ENV_NAME, 'an environment variable name ([A-Za-z_][A-Za-z0-9_]*)'),
      z.union([z.string(), z.number(), z.boolean()]).transform(String),
    )
    .refine((env) => Object.keys(env).every((k) => !k.startsWith('HEARTH_')), {
      message: 'names that do not start with HEARTH_ (reserved for the platform)',
    })
    .optional(),
  limits: limitsSchema.optional(),
  scaling: scalingSchema.optional(),
  isolation: z.enum(ISOLATIONS, { message: 'sandbox, process, isolate, microvm or container' }).optional(),
  /** How Hearth talks to a container: `http` (it serves `$PORT`, the default) or `lambda` (the Lambda Runtime API). */
  protocol: z.enum(PROTOCOLS, { message: 'http or lambda' }).optional(),
  egress: z
    .union(
      [
        z.enum(['none', 'allow']),
        z
          .array(
            z
              .string()
              .regex(HOST_PORT, 'host:port')
              .refine((v) => validPort(v.slice(v.lastIndexOf(':') + 1)), {
                message: 'host:port, port 1-65535',
              }),
          )
          .min(1),
      ],
      {
        message: 'none, allow, or a list of host:port',
      },
    )
    .optional(),
  hostAliases: z
    .record(
      z.string().regex(HOST_NAME, 'a host name such as "redis-master"'),
      z.string().refine((v) => v === HOST_GATEWAY || IPV4.test(v), {
        message: `"${HOST_GATEWAY}" (this machine) or an IPv4 address`,
      }),
    )
    .optional(),
  priority: z.int().min(0).max(100).optional(),
  eventFormat: z
    .enum(EVENT_FORMATS, { message: EVENT_FORMATS.join(', ').replace(/, ([^,]*)$/, ' or $1') })
    .optional(),
  /** Event sources that invoke the function (Kafka, MQTT, NATS, cron); see domain/triggers.ts. */
  triggers: triggersSchema.optional(),
  /** Token-bucket limit on every invocation of the function (`1000qps`, or `{rate, burst, perClient}`). */
  rateLimit: rateLimitSchema.optional(),
  /**
   * `ctx.events` streams the namespace shares (issue 20): names, or prefixes ending in `*`; every other
   * stream is the function's own.
   */
  streams: z
    .strictObject({
      shared: z
        .array(
          z
            .string()
            .regex(
              /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}\*?$/,
              'a stream name, or a prefix ending in * (letters, digits, . _ : @ / -)',
            ),
        )
        .min(1)
        .max(64),
    })
    .optional(),
  /** The dependency build: `scripts: true` lets npm run packages' install scripts (off by default). */
  build: z.strictObject({ scripts: z.boolean({ message: 'true or false' }).optional() }).optional(),
  /** Who may invoke it (issue 10, src/security): anyone, an API key with `invoker`, or a JWT (`jwt` below). */
  auth: z.enum(['public', 'key', 'jwt'], { message: 'public, key or jwt' }).optional(),
  /** For `auth: jwt`: the JWKS (https URL or absolute file path) and the accepted issuer and audience. */
  jwt: z
    .strictObject({
      jwks: z.string().refine((v) => /^(https?|file):\/\//.test(v) || v.startsWith('/'), {
        message: 'an http(s):// or file:// URL, or an absolute path',
      }),
      issuer: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
      audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    })
    .optional(),
  /** Secrets the function receives as env or files (issue 13; domain/compliance.ts). */
  secrets: secretRefsSchema.optional(),
  /** Request and response bodies sealed with SM4-GCM, opened in the sandbox (issue 13). */
  encryption: encryptionSchema.optional(),
});

export const functionSpecSchema = functionSpecFields.superRefine((spec, context) => {
  if (spec.image === undefined) {
    if (spec.runtime === undefined)
      context.addIssue({
        code: 'custom',
        path: ['runtime'],
        message: `one of ${RUNTIMES.filter((r) => r !== 'image').join(', ')} (spec.runtime is required unless spec.image names an OCI image)`,
      });
    else if (spec.runtime === 'image')
      context.addIssue({
        code: 'custom',
        path: ['image'],
        message: 'an image reference (runtime: image needs spec.image)',
      });
    for (const field of ['command', 'args'] as const)
      if (spec[field] !== undefined)
        context.addIssue({
          code: 'custom',
          path: [field],
          message: `no ${field} without spec.image (it overrides the image's ${field === 'command' ? 'Entrypoint' : 'Cmd'})`,
        });
  } else if (spec.runtime !== undefined && spec.runtime !== 'image') {
    context.addIssue({
      code: 'custom',
      path: ['runtime'],
      message: '"image" or nothing when spec.image is set (an image brings its own runtime)',
    });
  }
});

export const metadataSchema = z.strictObject({
  name,
  namespace: name.optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

export const functionResourceSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { message: `"${API_VERSION}"` }),
  kind: z.literal('Function', { message: '"Function"' }),
  metadata: metadataSchema,
  spec: functionSpecSchema,
});

export type FunctionSpecInput = z.input<typeof functionSpecSchema>;
export type FunctionManifest = z.output<typeof functionResourceSchema>;

/** The spec with every default applied and every unit resolved; immutable once built. */
export interface FunctionSpec {
  readonly runtime: RuntimeName;
  /** The OCI image reference for `runtime: image` (issue 17); the version pins its digest (`DeployedVersion.image`). */
  readonly image?: string;
  /** Overrides of the image's Entrypoint and Cmd, applied by the container isolation as Kubernetes does. */
  readonly command?: readonly string[];
  readonly args?: readonly string[];
  readonly handler: string;
  readonly env: Readonly<Record<string, string>>;
  readonly limits: {
    readonly memoryBytes: number;
    readonly cpu: number;
    readonly timeoutMs: number;
    readonly maxBodyBytes: number;
    readonly pids: number;
    readonly tmpBytes: number;
  };
  readonly scaling: {
    readonly min: number;
    readonly max: number;
    readonly targetConcurrency: number;
    readonly idleTimeoutMs: number;
    readonly warmPoolRatio: number;
  };
  readonly isolation: IsolationName;
  readonly egress: 'none' | 'allow' | readonly string[];
  /** Extra /etc/hosts names in the sandbox: name → IPv4 address or `host-gateway` (this machine). */
  readonly hostAliases: Readonly<Record<string, string>>;
  readonly priority: number;
  readonly eventFormat: EventFormat;
  /** Whether the dependency build runs packages' install scripts (npm `--ignore-scripts` unless true). */
  readonly build: { readonly scripts: boolean };
  /** Invocation auth (src/security); a namespace with `functionAuth: key` raises `public` to `key`. */
  readonly auth: 'public' | 'key' | 'jwt';
  readonly jwt?: {
    readonly jwks: string;
    readonly issuer: string | readonly string[];
    readonly audience: string | readonly string[];
  };
  /** `http` or `lambda` for `runtime: image`; `lambda` for `runtime: provided`. */
  readonly protocol?: ContainerProtocol;
}

export const DEFAULT_HANDLER: Record<RuntimeName, string> = {
  node20: 'index',
  python3: 'main.handler',
  wasm: 'main',
  provided: 'bootstrap',
  image: 'image',
};

export const DEFAULTS = {
  memory: '128Mi',
  cpu: '0.5',
  timeout: '30s',
  maxBody: '6Mi',
  pids: 256,
  tmp: '64Mi',
  min: 0,
  max: 50,
  targetConcurrency: 100,
  idleTimeout: '5m',
  warmPoolRatio: 0.1,
} as const;

/** Applies defaults to an already-validated manifest spec. */
export function resolveSpec(spec: FunctionManifest['spec']): FunctionSpec {
  const limits = spec.limits ?? {};
  const scaling = spec.scaling ?? {};
  const must = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('validated value failed to parse');
    return value;
  };
  const runtime: RuntimeName =
    spec.runtime ?? (spec.image === undefined ? must<RuntimeName>(undefined) : 'image');
  // Lambda runs one request at a time in each runtime process: the Runtime API has no way to run two.
  const protocol: ContainerProtocol | undefined =
    runtime === 'provided' ? 'lambda' : runtime === 'image' ? (spec.protocol ?? 'http') : undefined;
  return Object.freeze({
    runtime,
    ...(spec.image === undefined ? {} : { image: spec.image }),
    ...(spec.command === undefined ? {} : { command: Object.freeze([...spec.command]) }),
    ...(spec.args === undefined ? {} : { args: Object.freeze([...spec.args]) }),
    handler: spec.handler ?? DEFAULT_HANDLER[runtime],
    env: Object.freeze({ ...(spec.env ?? {}) }),
    limits: Object.freeze({
      memoryBytes: must(parseBytes(limits.memory ?? DEFAULTS.memory)),
      cpu: must(parseCpu(limits.cpu ?? DEFAULTS.cpu)),
      timeoutMs: must(parseDuration(limits.timeout ?? DEFAULTS.timeout)),
      maxBodyBytes: must(parseBytes(limits.maxBody ?? DEFAULTS.maxBody)),
      pids: limits.pids ?? DEFAULTS.pids,
      tmpBytes: must(parseBytes(limits.tmp ?? DEFAULTS.tmp)),
    }),
    scaling: Object.freeze({
      min: scaling.min ?? DEFAULTS.min,
      max: scaling.max ?? Math.max(DEFAULTS.max, scaling.min ?? 0),
      targetConcurrency:
        scaling.targetConcurrency ?? (protocol === 'lambda' ? 1 : DEFAULTS.targetConcurrency),
      idleTimeoutMs: must(parseDuration(scaling.idleTimeout ?? DEFAULTS.idleTimeout)),
      warmPoolRatio: scaling.warmPoolRatio ?? DEFAULTS.warmPoolRatio,
    }),
    isolation: spec.isolation ?? (runtime === 'image' ? 'container' : 'sandbox'),
    egress: spec.egress ?? 'none',
    hostAliases: Object.freeze({ ...(spec.hostAliases ?? {}) }),
    priority: spec.priority ?? 0,
    // A container's HTTP passes through as it is (`web`); the Runtime API's events are API Gateway v2's.
    eventFormat:
      spec.eventFormat ?? (protocol === 'http' ? 'web' : protocol === 'lambda' ? 'lambda' : 'auto'),
    build: Object.freeze({ scripts: spec.build?.scripts ?? false }),
    auth: spec.auth ?? 'public',
    ...(spec.jwt === undefined ? {} : { jwt: Object.freeze({ ...spec.jwt }) }),
    ...(protocol === undefined ? {} : { protocol }),
  });
}

/**
 * Validates anything (parsed YAML or JSON) as a Function resource. Throws one HearthError naming the
 * first offending field, its value and what was expected; `details.problems` lists all of them.
 */
export function parseFunctionManifest(input: unknown, origin = 'resource'): FunctionManifest {
  const result = functionResourceSchema.safeParse(input);
  if (result.success) return result.data;
  throw validationError(result.error, input, origin);
}

export interface Problem {
  field: string;
  value: unknown;
  expected: string;
}

/** How many problems an error lists; a 10,000-entry list can fail 10,000 times. */
const MAX_PROBLEMS = 20;

export function validationError(error: z.ZodError, input: unknown, origin: string): HearthError {
  const problems = error.issues.map((issue) => describeIssue(issue, input));
  const first = problems[0] ?? { field: '(root)', value: input, expected: 'a valid resource' };
  const listed = problems
    .slice(0, MAX_PROBLEMS)
    .map((problem) => ({ ...problem, value: echoable(problem.value) }));
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  return new HearthError(
    'HEARTH_E_VALIDATION',
    `${origin}: ${first.field}: got ${describeValue(first.value)}, expected ${first.expected}${more}`,
    {
      details: {
        field: first.field,
        value: first.value,
        expected: first.expected,
        problems: listed,
        ...(problems.length > MAX_PROBLEMS ? { moreProblems: problems.length - MAX_PROBLEMS } : {}),
      },
    },
  );
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): Problem {
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    const field = [...path, key].join('.');
    return {
      field,
      value: valueAt(input, [...path, key]),
      expected: `no field "${key}" here (unknown field)`,
    };
  }
  if (issue.code === 'invalid_key') {
    // zod puts the key at the end of the path and the reason in the key schema's own issues.
    const key = path.at(-1) ?? '';
    const parent = path.slice(0, -1);
    const reason = issue.issues[0];
    return {
      field: parent.length > 0 ? parent.join('.') : '(root)',
      value: key,
      expected: `keys that are ${reason === undefined ? 'valid' : expectationOf(reason)} (the key ${JSON.stringify(key)} is not)`,
    };
  }
  const field = path.length > 0 ? path.join('.') : '(root)';
  const value = valueAt(input, path);
  if (issue.code === 'invalid_type' && value === undefined)
    return { field, value, expected: `a value (${field} is required)` };
  return { field, value, expected: expectationOf(issue) };
}

/**
 * What a field should have been, in our words. zod's own messages ("Invalid input: expected object",
 * "Invalid key in record") are replaced; messages our schemas give (they never start "Invalid") are kept.
 */
function expectationOf(issue: z.core.$ZodIssue): string {
  const ours = !/^Invalid\b/.test(issue.message);
  switch (issue.code) {
    case 'invalid_type':
      return ours ? issue.message : (TYPE_NAMES[issue.expected] ?? `a value of type ${issue.expected}`);
    case 'too_small':
      return `at least ${counted(issue.minimum, issue.origin)}`;
    case 'too_big':
      return `at most ${counted(issue.maximum, issue.origin)}`;
    case 'invalid_format':
      return ours ? issue.message : `the format ${issue.format}`;
    case 'invalid_value':
      return ours ? issue.message : issue.values.map((v) => JSON.stringify(v)).join(' or ');
    case 'invalid_union': {
      if (ours) return issue.message;
      const options = issue.errors.flatMap((alternative) =>
        alternative[0] === undefined ? [] : [expectationOf(alternative[0])],
      );
      return options.length > 0 ? [...new Set(options)].join(', or ') : 'one of the allowed forms';
    }
    case 'invalid_key':
      return issue.issues[0] === undefined
        ? 'a valid key'
        : `keys that are ${expectationOf(issue.issues[0])}`;
    case 'unrecognized_keys':
      return `no fields ${issue.keys.map((key) => JSON.stringify(key)).join(', ')} (unknown fields)`;
    case 'not_multiple_of':
      return `a multiple of ${String(issue.divisor)}`;
    default:
      return ours ? issue.message : 'a valid value';
  }
}

/** zod's type names as a person would say them. */
const TYPE_NAMES: Readonly<Record<string, string>> = {
  object: 'an object',
  record: 'an object',
  map: 'an object',
  array: 'a list',
  tuple: 'a list',
  set: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  bigint: 'a whole number',
  boolean: 'true or false',
  null: 'null',
  undefined: 'nothing',
  date: 'a date',
  literal: 'a fixed value',
  enum: 'one of the allowed values',
};

const UNITS: Readonly<Record<string, string>> = {
  string: 'character',
  array: 'item',
  set: 'item',
  file: 'byte',
};

function counted(bound: number | bigint, origin: string): string {
  const unit = UNITS[origin];
  if (unit === undefined) return String(bound);
  return `${String(bound)} ${unit}${Number(bound) === 1 ? '' : 's'}`;
}

function valueAt(input: unknown, path: readonly string[]): unknown {
  let current: unknown = input;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function validPort(text: string): boolean {
  const port = Number(text);
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

export interface FunctionRef {
  readonly namespace: string;
  readonly name: string;
}

export function functionKey(ref: FunctionRef): string {
  return `${ref.namespace}/${ref.name}`;
}
