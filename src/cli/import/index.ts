/**
 * @module `hearth import`'s reading half: finds which platform's project a path is, reads it into
 * `ImportedProject`, and turns that into validated Hearth resources (a Function per function, an
 * EventGateway for the HTTP routes), each thing it cannot map said in one line.
 */

import { readFileSync, statSync } from 'node:fs';
import { basename, join, relative, sep } from 'node:path';
import { parseDocument } from 'yaml';
import { isHearthError } from '../../domain/errors.js';
import { API_VERSION, limitsSchema, parseFunctionManifest, scalingSchema } from '../../domain/function.js';
import { gatewayFunctionSchema, parseGatewayManifest } from '../../domain/gateway.js';
import { triggerSchema } from '../../domain/triggers.js';
import { CliError } from '../errors.js';
import { requireShallowYaml, yamlSyntaxError } from '../manifest.js';
import { cloudFormationTags } from './cloudformation.js';
import { hearthName, type ImportedFunction, type ImportedProject, isRecord, type Unmapped } from './model.js';
import { netlifyFunctionsDir, netlifyProjectDir, readNetlify } from './netlify.js';
import { readOpenFaas } from './openfaas.js';
import { readSam } from './sam.js';
import { readServerless } from './serverless.js';

export {
  awsSchedule,
  FORMAT_LABELS,
  hearthName,
  type ImportedProject,
  lambdaRuntime,
  type ProjectFormat,
  routePath,
  type Unmapped,
} from './model.js';

/** The files a project folder is looked for in, in this order. */
const PROJECT_FILES = [
  'serverless.yml',
  'serverless.yaml',
  'template.yaml',
  'template.yml',
  'stack.yml',
  'stack.yaml',
];

/** Reads the project at `path`: one of PROJECT_FILES, a folder holding one, or a Netlify functions folder. */
export function readProject(path: string): ImportedProject {
  const info = statSync(path, { throwIfNoEntry: false });
  if (info === undefined) throw new CliError(`${path}: not found`);
  if (info.isDirectory()) {
    const file = PROJECT_FILES.map((name) => join(path, name)).find(
      (candidate) => statSync(candidate, { throwIfNoEntry: false })?.isFile() === true,
    );
    if (file !== undefined) return readProjectFile(file);
    const functionsDir = netlifyFunctionsDir(path);
    if (functionsDir !== undefined) return readNetlify(functionsDir, netlifyProjectDir(functionsDir));
    throw new CliError(
      `${path}: no ${PROJECT_FILES.join(', ')} and no netlify/functions folder; expected a Serverless Framework, AWS SAM, OpenFaaS or Netlify project`,
    );
  }
  return readProjectFile(path);
}

function readProjectFile(file: string): ImportedProject {
  const text = readFileSync(file, 'utf8');
  requireShallowYaml(file, text);
  // CloudFormation's short tags (!Ref, !Sub…) appear in SAM templates and in serverless.yml `resources`.
  const document = parseDocument(text, { customTags: cloudFormationTags() });
  const syntax = document.errors[0];
  if (syntax !== undefined) throw yamlSyntaxError(file, syntax);
  let value: unknown;
  try {
    value = document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new CliError(`${file}: not valid YAML (${(error as Error).message.split('\n')[0]})`);
  }
  if (!isRecord(value)) throw new CliError(`${file}: expected a YAML mapping at the top`);
  const resources = isRecord(value.Resources) ? Object.values(value.Resources) : [];
  if (
    value.AWSTemplateFormatVersion !== undefined ||
    String(value.Transform ?? '').startsWith('AWS::Serverless') ||
    resources.some((resource) => isRecord(resource) && resource.Type === 'AWS::Serverless::Function')
  )
    return readSam(file, value);
  const functions = isRecord(value.functions) ? Object.values(value.functions) : [];
  if (
    (isRecord(value.provider) && value.provider.name === 'openfaas') ||
    functions.some((fn) => isRecord(fn) && typeof fn.lang === 'string')
  )
    return readOpenFaas(file, value);
  if (value.service !== undefined || functions.some((fn) => isRecord(fn) && typeof fn.handler === 'string'))
    return readServerless(file, value);
  throw new CliError(
    `${file}: not a Serverless Framework serverless.yml (service, functions), an AWS SAM template (AWS::Serverless::Function resources) or an OpenFaaS stack.yml (functions with lang)`,
  );
}

/** One Function resource to write: the manifest as a plain object, validated. */
export interface PlannedFunction {
  readonly name: string;
  readonly origin: string;
  readonly source: string;
  readonly manifest: Record<string, unknown>;
}

/** One route of the imported EventGateway. */
export interface PlannedRoute {
  readonly name: string;
  readonly namespace?: string;
  readonly match: { readonly path: string; readonly method?: string };
}

/** The EventGateway holding the HTTP routes, as written. */
export interface PlannedGateway {
  readonly apiVersion: typeof API_VERSION;
  readonly kind: 'EventGateway';
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: { readonly functions: readonly PlannedRoute[] };
}

export interface ImportPlan {
  readonly project: ImportedProject;
  readonly functions: readonly PlannedFunction[];
  /** The EventGateway holding the HTTP routes, when there are any. */
  readonly gateway: PlannedGateway | undefined;
  /** What the readers and the validation could not map, one line each. */
  readonly unmapped: readonly Unmapped[];
}

/**
 * Turns a project into Hearth resources. Every part is validated with the platform's own schemas: a
 * trigger, limit, scaling setting or route that Hearth refuses is dropped and said, so what is written
 * deploys. `spec.source` is left for the writer (it is relative to where each file goes).
 */
export function planImport(project: ImportedProject, namespace: string | undefined): ImportPlan {
  const unmapped: Unmapped[] = [...project.unmapped];
  const say = (where: string, what: string): void => {
    unmapped.push({ where, what });
  };
  const taken = new Set<string>();
  const functions: PlannedFunction[] = [];
  const routes: PlannedRoute[] = [];
  const seenRoutes = new Set<string>();
  for (const fn of project.functions) {
    let name = fn.name;
    for (let n = 2; taken.has(name); n++) name = `${fn.name.slice(0, 60)}-${n}`;
    taken.add(name);
    const manifest = functionManifest(fn, name, namespace, project, say);
    if (manifest === undefined) continue;
    functions.push({ name, origin: fn.origin, source: fn.source, manifest });
    for (const route of fn.routes) {
      const key = `${route.method ?? '*'} ${route.path}`;
      if (seenRoutes.has(key)) {
        say(fn.origin, `route ${key} is taken by an earlier function; not routed here`);
        continue;
      }
      const entry: PlannedRoute = {
        name,
        ...(namespace === undefined ? {} : { namespace }),
        match: { path: route.path, ...(route.method === undefined ? {} : { method: route.method }) },
      };
      const checked = gatewayFunctionSchema.safeParse(entry);
      if (!checked.success) {
        say(fn.origin, `route ${key}: ${checked.error.issues[0]?.message ?? 'refused'}; not routed`);
        continue;
      }
      seenRoutes.add(key);
      routes.push(entry);
    }
  }
  if (functions.length === 0)
    throw new CliError(
      `${project.file}: no function could be imported${unmapped.length === 0 ? '' : ` (${unmapped.map((item) => `${item.where}: ${item.what}`).join('; ')})`}`,
    );
  let gateway: PlannedGateway | undefined;
  if (routes.length > 0) {
    gateway = {
      apiVersion: API_VERSION,
      kind: 'EventGateway',
      metadata: { name: hearthName(project.service), ...(namespace === undefined ? {} : { namespace }) },
      spec: { functions: routes },
    };
    parseGatewayManifest(gateway, 'the imported EventGateway');
  }
  return { project, functions, gateway, unmapped };
}

function functionManifest(
  fn: ImportedFunction,
  name: string,
  namespace: string | undefined,
  project: ImportedProject,
  say: (where: string, what: string) => void,
): Record<string, unknown> | undefined {
  const limits: Record<string, string> = {};
  for (const [field, value] of [
    ['memory', fn.memory],
    ['timeout', fn.timeout],
    ['cpu', fn.cpu],
  ] as const) {
    if (value === undefined) continue;
    const checked = limitsSchema.safeParse({ [field]: value });
    if (checked.success) limits[field] = value;
    else
      say(
        fn.origin,
        `${field} ${value}: ${checked.error.issues[0]?.message ?? 'refused'}; left at Hearth's default`,
      );
  }
  let scaling = fn.scaling;
  if (scaling !== undefined && !scalingSchema.safeParse(scaling).success) {
    say(fn.origin, `scaling ${JSON.stringify(scaling)}: refused by Hearth's limits; left at the default`);
    scaling = undefined;
  }
  const triggers = fn.triggers.filter((trigger) => {
    const checked = triggerSchema.safeParse(trigger);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      say(
        fn.origin,
        `trigger ${JSON.stringify(trigger)}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'refused'}; dropped`,
      );
    }
    return checked.success;
  });
  const manifest = {
    apiVersion: API_VERSION,
    kind: 'Function',
    metadata: {
      name,
      ...(namespace === undefined ? {} : { namespace }),
      annotations: {
        'hearth.dev/imported-from':
          project.format === 'netlify' ? fn.origin : `${basename(project.file)} ${fn.origin}`,
      },
    },
    spec: {
      runtime: fn.runtime,
      handler: fn.handler,
      ...(fn.eventFormat === undefined ? {} : { eventFormat: fn.eventFormat }),
      ...(Object.keys(fn.env).length === 0 ? {} : { env: fn.env }),
      ...(Object.keys(limits).length === 0 ? {} : { limits }),
      ...(scaling === undefined ? {} : { scaling }),
      ...(triggers.length === 0 ? {} : { triggers }),
    },
  };
  try {
    parseFunctionManifest(manifest, fn.origin);
  } catch (error) {
    if (!isHearthError(error)) throw error;
    say(fn.origin, `${error.message.replace(`${fn.origin}: `, '')}; function not imported`);
    return undefined;
  }
  return manifest;
}

/** `spec.source` for a file written in `fromDir`: relative, with forward slashes, `.` for the folder itself. */
export function sourceFrom(fromDir: string, source: string): string {
  const path = relative(fromDir, source).split(sep).join('/');
  return path === '' ? '.' : path;
}

/** A manifest with its `spec.source` set, the key first in `spec` so a reader sees where the code is. */
export function withSource(manifest: Record<string, unknown>, source: string): Record<string, unknown> {
  const spec = isRecord(manifest.spec) ? manifest.spec : {};
  return { ...manifest, spec: { source, ...spec } };
}
