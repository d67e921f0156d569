/**
 * @module `hearth apply -f FILE`: Function and EventGateway resources from multi-document YAML, validated
 * here, then applied all or nothing by one `POST /api/v1/apply` (source folders uploaded and staged first).
 */

import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { type Document, LineCounter, parseAllDocuments } from 'yaml';
import type { GatewayDetail } from '../../control/api/events-types.js';
import type { ApplyDocumentOutcome, DeploymentSummary, FunctionDetail } from '../../control/api/types.js';
import { type EventTriggerManifest, parseEventTriggerManifest } from '../../domain/eventing.js';
import type { FunctionManifest } from '../../domain/function.js';
import { type GatewayManifest, parseGatewayManifest } from '../../domain/gateway.js';
import { type NamespaceManifest, parseNamespaceManifest } from '../../security/namespace.js';
import { API_PREFIX, hearthErrorOf, parseJson } from '../client.js';
import { CliError } from '../errors.js';
import { type CliIo, readAll } from '../io.js';
import {
  isErrno,
  locate,
  renderManifest,
  requireShallowYaml,
  validateDocument,
  validateWith,
  yamlSyntaxError,
} from '../manifest.js';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  connect,
  DEFAULT_NAMESPACE,
  isValidLabel,
  type NamespaceOptions,
  type OutputOptions,
} from '../options.js';
import { writeJson } from '../output.js';
import { checkFolder, packDirectory } from '../pack.js';
import { stageFunction } from '../upload.js';

interface ApplyOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly filename: string;
  readonly wait: boolean;
}

/** One validated EventGateway document, ready to apply. */
interface PlannedGateway {
  readonly kind: 'gateway';
  readonly position: string;
  readonly label: string;
  readonly resource: string;
  readonly manifest: GatewayManifest;
  readonly namespace: string;
}

/** One validated Trigger document (issue 20), ready to apply. */
interface PlannedTrigger {
  readonly kind: 'trigger';
  readonly position: string;
  readonly label: string;
  readonly resource: string;
  readonly manifest: EventTriggerManifest;
  readonly namespace: string;
}

/** One Secret document (issue 13): sent as written; the server validates it without echoing values. */
interface PlannedSecret {
  readonly kind: 'secret';
  readonly position: string;
  readonly label: string;
  readonly resource: string;
  readonly manifest: { readonly metadata: { readonly name: string } } & Record<string, unknown>;
  readonly namespace: string;
}

/** One validated Namespace document (issue 10): a tenant's policy and quotas. */
interface PlannedNamespace {
  readonly kind: 'namespace';
  readonly position: string;
  readonly label: string;
  readonly resource: string;
  readonly manifest: NamespaceManifest;
  readonly namespace: string;
}

/** One validated document, ready to apply. */
type Planned = PlannedFunction | PlannedGateway | PlannedTrigger | PlannedSecret | PlannedNamespace;

interface PlannedFunction {
  readonly kind: 'function';
  /** `document 2`, counting every document in the file. */
  readonly position: string;
  /** `document 2 (function/echo)`. */
  readonly label: string;
  readonly resource: string;
  readonly document: Document;
  readonly manifest: FunctionManifest;
  readonly namespace: string;
  /** Set when the flag overrides the document's own namespace, which must then be rewritten. */
  readonly pinNamespace: string | undefined;
  /** Absolute folder of `spec.source`, when given. */
  readonly source: string | undefined;
}

interface Applied {
  readonly namespace: string;
  readonly name: string;
  readonly version: number;
  readonly function: FunctionDetail | null;
  readonly deployment: DeploymentSummary | null;
  /** The server found nothing to change (config-only changes say so). */
  readonly unchanged: boolean;
  /** For an EventGateway: the gateway as applied. */
  readonly gateway?: GatewayDetail;
}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('apply')
    .description(
      'apply Function, EventGateway and Trigger resources from a YAML file (deploying spec.source folders)',
    )
    .requiredOption('-f, --filename <file>', 'YAML file of one or more resources, or - for stdin')
    .option('--no-wait', 'ignored: apply always waits, since every document applies together or none does');
  addNamespaceOption(
    command,
    'namespace for every resource (default: each metadata.namespace, else "default")',
  );
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (options: ApplyOptions) => {
    await apply(options, context);
  });
}

async function apply(options: ApplyOptions, context: CommandContext): Promise<void> {
  const { io } = context;
  const input = await readInput(options.filename, io);
  const planned = await plan(input, options);
  const client = connect(options, io, context.version);
  // Source folders are uploaded first but only staged: the one apply request below releases them together
  // with every other document, or (when the server refuses any document) none of them.
  const documents: ({ manifest: unknown } | { staged: string } | { staged: string; manifest: unknown })[] =
    [];
  // Functions built from one folder (in one namespace, one runtime) share one upload: the rest of them
  // name the staged package and bring only their manifest (issue 11: 1,000 documents, 1,000 uploads).
  const stagedFolders = new Map<string, string>();
  for (const item of planned) {
    if (item.kind === 'function' && item.source !== undefined) {
      const folder = `${item.source}\0${item.namespace}\0${item.manifest.spec.runtime}`;
      const shared = stagedFolders.get(folder);
      if (shared !== undefined) {
        const body = bodyOf(item) as FunctionManifest;
        // `spec.source` is a path on this machine, dropped as from an uploaded hearth.yaml.
        const { source: _source, ...spec } = body.spec;
        documents.push({ staged: shared, manifest: { ...body, spec } });
        continue;
      }
      io.stderr.write(`${item.resource}: uploading ${item.source}\n`);
      const packed = await packDirectory(item.source, { replaceManifest: archiveManifest(item) });
      const target = { namespace: item.namespace, name: item.manifest.metadata.name };
      try {
        const staged = await stageFunction(client, io, target, packed);
        stagedFolders.set(folder, staged);
        documents.push({ staged });
      } catch (error) {
        throw refused(input, item, error);
      }
    } else if (item.kind === 'function' && item.manifest.spec.image !== undefined) {
      // A container function (issue 17): staged like a folder holding only its manifest, so the image is
      // pulled and verified before the apply releases anything.
      io.stderr.write(`${item.resource}: resolving image ${item.manifest.spec.image}\n`);
      const empty = await mkdtemp(join(tmpdir(), 'hearth-apply-image-'));
      try {
        const packed = await packDirectory(empty, { replaceManifest: archiveManifest(item) });
        const target = { namespace: item.namespace, name: item.manifest.metadata.name };
        documents.push({ staged: await stageFunction(client, io, target, packed) });
      } catch (error) {
        throw refused(input, item, error);
      } finally {
        await rm(empty, { recursive: true, force: true });
      }
    } else documents.push({ manifest: bodyOf(item) });
  }
  const response = await client.request(APPLY_PATH, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ documents }),
  });
  const text = await client.readText(response);
  const body = parseJson(text);
  const failure = hearthErrorOf(body);
  if (!response.ok || failure !== undefined) {
    if (failure === undefined)
      throw new CliError(
        `${input.label}: nothing applied: the server answered HTTP ${response.status} ${response.statusText}: ${text.trim().slice(0, 200)}`,
      );
    const index = failure.details?.document;
    const at =
      index !== null && typeof index === 'object' && 'index' in index && typeof index.index === 'number'
        ? planned[index.index]
        : undefined;
    const reason = typeof failure.details?.reason === 'string' ? failure.details.reason : failure.message;
    throw new CliError(
      at === undefined
        ? `${input.label}: nothing applied: ${failure.message}`
        : `${input.label}: ${at.label}: ${reason} (nothing applied)`,
      { code: failure.code },
    );
  }
  const applied = appliedFrom(body, planned);
  if (options.output === 'json') {
    writeJson(io.stdout, { items: applied });
    return;
  }
  for (const [index, item] of planned.entries()) {
    const result = applied[index];
    if (result === undefined) continue;
    const version = item.kind === 'function' ? ` (version ${result.version})` : '';
    io.stdout.write(`${item.resource} ${result.unchanged ? 'unchanged' : 'configured'}${version}\n`);
  }
}

const APPLY_PATH = `${API_PREFIX}/apply`;

/** The document as the apply request carries it: the namespace the flag chose written into it. */
function bodyOf(item: Planned): unknown {
  if (item.kind === 'gateway' || item.kind === 'trigger' || item.kind === 'namespace') return item.manifest;
  if (item.kind === 'secret')
    return { ...item.manifest, metadata: { ...item.manifest.metadata, namespace: item.namespace } };
  return item.pinNamespace === undefined
    ? item.manifest
    : { ...item.manifest, metadata: { ...item.manifest.metadata, namespace: item.pinNamespace } };
}

function appliedFrom(body: unknown, planned: readonly Planned[]): Applied[] {
  const items =
    body !== null && typeof body === 'object' && 'items' in body && Array.isArray(body.items)
      ? (body.items as ApplyDocumentOutcome[])
      : undefined;
  if (items === undefined || items.length !== planned.length)
    throw new CliError('the server answered the apply with an unexpected body');
  return items.map((item) => ({
    namespace: item.namespace,
    name: item.name,
    version: item.version ?? 0,
    function: item.function ?? null,
    deployment: item.deployment ?? null,
    unchanged: item.unchanged,
    ...(item.gateway === undefined ? {} : { gateway: item.gateway }),
  }));
}

function refused(input: Input, item: Planned, error: unknown): CliError {
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof CliError ? error.code : undefined;
  return new CliError(`${input.label}: ${item.label}: ${message} (nothing applied)`, { code, cause: error });
}

interface Input {
  readonly text: string;
  readonly label: string;
  /** `spec.source` is relative to the file's folder (the working directory for stdin). */
  readonly baseDir: string;
}

async function readInput(filename: string, io: CliIo): Promise<Input> {
  if (filename === '-')
    return { text: (await readAll(io.stdin)).toString('utf8'), label: '<stdin>', baseDir: process.cwd() };
  try {
    return { text: await readFile(filename, 'utf8'), label: filename, baseDir: dirname(resolve(filename)) };
  } catch (error) {
    if (isErrno(error, 'ENOENT')) throw new CliError(`${filename}: no such file`);
    if (isErrno(error, 'EISDIR'))
      throw new CliError(`${filename} is a folder; apply takes a YAML file (deploy takes a folder)`);
    throw error;
  }
}

/** Validates every document, and every source folder, before anything is sent. */
async function plan(input: Input, options: ApplyOptions): Promise<Planned[]> {
  requireShallowYaml(input.label, input.text);
  const lineCounter = new LineCounter();
  const documents = parseAllDocuments(input.text, { lineCounter });
  const planned: Planned[] = [];
  const seen = new Map<string, string>();
  for (const [index, document] of documents.entries()) {
    const syntax = document.errors[0];
    if (syntax !== undefined) throw yamlSyntaxError(input.label, syntax);
    if (document.contents === null) continue;
    const kind: unknown = document.get('kind');
    const item =
      kind === 'EventGateway'
        ? planGateway(document, lineCounter, input, `document ${index + 1}`, options)
        : kind === 'Trigger'
          ? planTrigger(document, lineCounter, input, `document ${index + 1}`, options)
          : kind === 'Secret'
            ? planSecret(document, input, `document ${index + 1}`, options)
            : kind === 'Namespace'
              ? planNamespace(document, lineCounter, input, `document ${index + 1}`)
              : await planOne(document, lineCounter, input, `document ${index + 1}`, options);
    const key = `${item.kind}:${item.namespace}/${item.manifest.metadata.name}`;
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      throw new CliError(
        `${input.label}: ${item.label} repeats ${item.kind} ${item.namespace}/${item.manifest.metadata.name} from ${earlier}`,
        { code: 'HEARTH_E_VALIDATION' },
      );
    }
    seen.set(key, item.label);
    planned.push(item);
  }
  if (planned.length === 0) throw new CliError(`${input.label}: no resources found`);
  return planned;
}

function planSecret(
  document: Document,
  input: Input,
  position: string,
  options: ApplyOptions,
): PlannedSecret {
  const raw: unknown = document.toJS();
  const metadata =
    raw !== null &&
    typeof raw === 'object' &&
    'metadata' in raw &&
    raw.metadata !== null &&
    typeof raw.metadata === 'object'
      ? (raw.metadata as { name?: unknown; namespace?: unknown })
      : {};
  const name = typeof metadata.name === 'string' ? metadata.name : '';
  const label = `${position} (secret/${name})`;
  if (!isValidLabel(name))
    throw new CliError(`${input.label}: ${label}: metadata.name: expected a lower-case DNS label`, {
      code: 'HEARTH_E_VALIDATION',
    });
  const own = typeof metadata.namespace === 'string' ? metadata.namespace : undefined;
  return {
    kind: 'secret',
    position,
    label,
    resource: `secret/${name}`,
    manifest: raw as PlannedSecret['manifest'],
    namespace: options.namespace ?? own ?? DEFAULT_NAMESPACE,
  };
}

function planNamespace(
  document: Document,
  lineCounter: LineCounter,
  input: Input,
  position: string,
): PlannedNamespace {
  const name: unknown = document.getIn(['metadata', 'name']);
  const label = typeof name === 'string' && name !== '' ? `${position} (namespace/${name})` : position;
  const manifest = validateWith(document, lineCounter, input.label, label, parseNamespaceManifest);
  return {
    kind: 'namespace',
    position,
    label,
    resource: `namespace/${manifest.metadata.name}`,
    manifest,
    namespace: manifest.metadata.name,
  };
}

function planGateway(
  document: Document,
  lineCounter: LineCounter,
  input: Input,
  position: string,
  options: ApplyOptions,
): PlannedGateway {
  const name: unknown = document.getIn(['metadata', 'name']);
  const label = typeof name === 'string' && name !== '' ? `${position} (gateway/${name})` : position;
  const manifest = validateWith(document, lineCounter, input.label, label, parseGatewayManifest);
  const namespace = options.namespace ?? manifest.metadata.namespace ?? DEFAULT_NAMESPACE;
  return {
    kind: 'gateway',
    position,
    label,
    resource: `gateway/${manifest.metadata.name}`,
    manifest: { ...manifest, metadata: { ...manifest.metadata, namespace } },
    namespace,
  };
}

function planTrigger(
  document: Document,
  lineCounter: LineCounter,
  input: Input,
  position: string,
  options: ApplyOptions,
): PlannedTrigger {
  const name: unknown = document.getIn(['metadata', 'name']);
  const label = typeof name === 'string' && name !== '' ? `${position} (trigger/${name})` : position;
  const manifest = validateWith(document, lineCounter, input.label, label, parseEventTriggerManifest);
  const namespace = options.namespace ?? manifest.metadata.namespace ?? DEFAULT_NAMESPACE;
  return {
    kind: 'trigger',
    position,
    label,
    resource: `trigger/${manifest.metadata.name}`,
    manifest: { ...manifest, metadata: { ...manifest.metadata, namespace } },
    namespace,
  };
}

async function planOne(
  document: Document,
  lineCounter: LineCounter,
  input: Input,
  position: string,
  options: ApplyOptions,
): Promise<PlannedFunction> {
  const name: unknown = document.getIn(['metadata', 'name']);
  const label = typeof name === 'string' && name !== '' ? `${position} (function/${name})` : position;
  const manifest = validateDocument(document, lineCounter, input.label, label);
  const own = manifest.metadata.namespace;
  const namespace = options.namespace ?? own ?? DEFAULT_NAMESPACE;
  const pinNamespace =
    options.namespace !== undefined && own !== options.namespace ? options.namespace : undefined;
  const item = {
    kind: 'function' as const,
    position,
    label,
    resource: `function/${manifest.metadata.name}`,
    document,
    manifest,
    namespace,
    pinNamespace,
  };
  const sourceSpec = manifest.spec.source;
  if (sourceSpec === undefined) return { ...item, source: undefined };
  const source = resolve(input.baseDir, sourceSpec);
  const where = locate(document, lineCounter, input.label, 'spec.source', label);
  const info = await stat(source).catch(() => undefined);
  if (info === undefined || !info.isDirectory()) {
    throw new CliError(
      `${where}: spec.source: got "${sourceSpec}", expected a folder (${source} ${info === undefined ? 'does not exist' : 'is not a folder'})`,
      { code: 'HEARTH_E_VALIDATION' },
    );
  }
  try {
    await checkFolder(source, { replaceManifest: archiveManifest(item) });
  } catch (error) {
    if (error instanceof CliError) throw new CliError(`${where}: ${error.message}`, { code: error.code });
    throw error;
  }
  return { ...item, source };
}

/** The document as it goes into the archive: without `source`, which means nothing on the server. */
function archiveManifest(item: Pick<PlannedFunction, 'document' | 'pinNamespace'>): string {
  return renderManifest(item.document, { namespace: item.pinNamespace, dropSource: true });
}
