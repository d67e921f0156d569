/**
 * @module `hearth deploy DIR`: validate hearth.yaml, pack the folder, stream the deployment's progress.
 * `--image REF` (issue 17) deploys a container image instead: the archive then holds only hearth.yaml, and an
 * `oci-archive:FILE` is uploaded first for a node without a registry.
 */

import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { type Document, parseDocument } from 'yaml';
import { type ApiClient, invokeUrl } from '../client.js';
import { CliError } from '../errors.js';
import { readFunctionFolder, renderManifest } from '../manifest.js';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  connect,
  DEFAULT_NAMESPACE,
  type NamespaceOptions,
  type OutputOptions,
} from '../options.js';
import { formatBytes, formatMs, writeJson } from '../output.js';
import { packDirectory } from '../pack.js';
import { type DeployResult, type FunctionTarget, uploadFunction } from '../upload.js';

interface DeployOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly wait: boolean;
  readonly image?: string;
  readonly name?: string;
  readonly target: string;
  readonly kubeconfig?: string;
  readonly context?: string;
}

const ARCHIVE_PREFIX = 'oci-archive:';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('deploy')
    .description('package a function folder (with its hearth.yaml) and deploy it')
    .argument('[dir]', 'the function folder (optional with --image)')
    .option(
      '--image <ref>',
      'deploy a container image: host[:port]/repo[:tag|@sha256:…], or oci-archive:FILE to upload one',
    )
    .option('--name <name>', 'function name for --image without a folder (default: from the image)')
    .option('--no-wait', 'return once the archive is uploaded instead of waiting for the deployment')
    .option(
      '--target <target>',
      'hearth (the Hearth API, default) or k8s (a ConfigMap and a Function CR the operator deploys)',
      'hearth',
    )
    .option('--kubeconfig <file>', '--target k8s: kubeconfig (default: $KUBECONFIG or ~/.kube/config)')
    .option('--context <name>', '--target k8s: kubeconfig context');
  addNamespaceOption(command, 'namespace (default: metadata.namespace in hearth.yaml, else "default")');
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (dir: string | undefined, options: DeployOptions) => {
    if (dir === undefined && options.image === undefined)
      throw new CliError('deploy: give a function folder, or --image REF');
    if (options.target === 'k8s') {
      if (dir === undefined) throw new CliError('deploy --target k8s: give a function folder');
      await deployToKubernetes(dir, options, context);
      return;
    }
    if (options.target !== 'hearth')
      throw new CliError(`--target: got "${options.target}", expected hearth or k8s`);
    await deploy(dir, options, context);
  });
}

async function deploy(
  dir: string | undefined,
  options: DeployOptions,
  context: CommandContext,
): Promise<void> {
  const { io } = context;
  const started = performance.now();
  const folder = dir === undefined ? undefined : await readFunctionFolder(dir);
  const image = options.image ?? folder?.manifest.spec.image;
  if (image !== undefined) {
    await deployImage(folder?.document, dir, image, options, context, started);
    return;
  }
  if (folder === undefined || dir === undefined) throw new CliError('deploy: give a function folder');
  const client = connect(options, io, context.version);
  const own = folder.manifest.metadata.namespace;
  const target: FunctionTarget = {
    namespace: options.namespace ?? own ?? DEFAULT_NAMESPACE,
    name: folder.manifest.metadata.name,
  };
  // The flag wins over the file; the archive's manifest must then agree, or the server would refuse it.
  const overridden = options.namespace !== undefined && own !== undefined && own !== options.namespace;
  // `spec.source` (as `hearth import` writes it) names the code folder; its archive carries this manifest.
  const source = folder.manifest.spec.source;
  const packed = await packDirectory(
    source === undefined ? dir : resolve(dir, source),
    overridden || source !== undefined
      ? {
          replaceManifest: renderManifest(folder.document, {
            namespace: overridden ? target.namespace : undefined,
            dropSource: source !== undefined,
          }),
        }
      : {},
  );
  const result = await uploadFunction(client, io, target, packed, { wait: options.wait });
  if (result === undefined) reportDetached(target, options, context);
  else reportDeployed(client, result, performance.now() - started, options, context);
}

/**
 * A container function: the manifest (the folder's, or one made from the flags) with `spec.image` set, packed
 * alone; an `oci-archive:FILE` is uploaded first and replaced by the reference the server answers.
 */
async function deployImage(
  document: Document | undefined,
  dir: string | undefined,
  image: string,
  options: DeployOptions,
  context: CommandContext,
  started: number,
): Promise<void> {
  const { io } = context;
  const manifest = document?.clone() ?? parseDocument('apiVersion: hearth.dev/v1\nkind: Function\n');
  const own = manifest.getIn(['metadata', 'namespace']);
  const namespace = options.namespace ?? (typeof own === 'string' ? own : undefined) ?? DEFAULT_NAMESPACE;
  const named = manifest.getIn(['metadata', 'name']);
  const name = typeof named === 'string' ? named : (options.name ?? nameFromImage(image));
  if (!DNS_LABEL.test(name))
    throw new CliError(`deploy: function name "${name}" is not a lower-case DNS label; give --name NAME`);
  const client = connect(options, io, context.version);
  let reference = image;
  if (image.startsWith(ARCHIVE_PREFIX) && !/@sha256:[a-f0-9]{64}$/.test(image)) {
    const file = resolve(dir ?? '.', image.slice(ARCHIVE_PREFIX.length));
    reference = await uploadArchive(client, io, namespace, file);
  }
  manifest.setIn(['metadata', 'name'], name);
  manifest.setIn(['metadata', 'namespace'], namespace);
  manifest.setIn(['spec', 'image'], reference);
  for (const field of ['source', 'handler']) manifest.deleteIn(['spec', field]);
  if (manifest.getIn(['spec', 'runtime']) !== 'image') manifest.deleteIn(['spec', 'runtime']);
  const empty = await mkdtemp(join(tmpdir(), 'hearth-image-deploy-'));
  try {
    const packed = await packDirectory(empty, { replaceManifest: manifest.toString() });
    const result = await uploadFunction(client, io, { namespace, name }, packed, { wait: options.wait });
    if (result === undefined) reportDetached({ namespace, name }, options, context);
    else reportDeployed(client, result, performance.now() - started, options, context);
  } finally {
    await rm(empty, { recursive: true, force: true });
  }
}

/**
 * `--target k8s`: the folder packed as for Hearth, stored in a ConfigMap, and a Function CR naming it applied;
 * with --wait (the default) until the operator reports this generation.
 */
async function deployToKubernetes(
  dir: string,
  options: DeployOptions,
  context: CommandContext,
): Promise<void> {
  const { io } = context;
  const folder = await readFunctionFolder(dir);
  const { applyFunctionPackage, loadKubeConfig, waitForFunction } = await import('../../k8s/index.js');
  const target = {
    namespace: options.namespace ?? folder.manifest.metadata.namespace ?? DEFAULT_NAMESPACE,
    name: folder.manifest.metadata.name,
  };
  const source = folder.manifest.spec.source;
  const packed = await packDirectory(source === undefined ? dir : resolve(dir, source));
  const chunks: Buffer[] = [];
  for await (const chunk of packed.stream) chunks.push(chunk as Buffer);
  const spec = (folder.document.toJS() as { spec?: Record<string, unknown> }).spec ?? {};
  let kubeConfig: ReturnType<typeof loadKubeConfig>;
  try {
    kubeConfig = loadKubeConfig(options.kubeconfig, options.context);
  } catch (error) {
    throw new CliError(`--kubeconfig: ${(error as Error).message}`);
  }
  const applied = await applyFunctionPackage(kubeConfig, target, spec, Buffer.concat(chunks)).catch(
    (error: unknown) => {
      throw new CliError(`deploy --target k8s: ${kubernetesMessage(error)}`);
    },
  );
  if (!options.wait) {
    io.stdout.write(
      `applied Function ${target.namespace}/${target.name} (generation ${applied.generation})\n`,
    );
    return;
  }
  const resource = await waitForFunction(kubeConfig, applied, 120_000);
  const ready = resource.status?.conditions?.find((c) => c.type === 'Ready');
  if (options.output === 'json')
    writeJson(io.stdout, { ...target, generation: applied.generation, status: resource.status ?? null });
  if (resource.status?.ready !== true || (resource.status.observedGeneration ?? 0) < applied.generation)
    throw new CliError(
      `Function ${target.namespace}/${target.name} not ready: ${ready?.reason ?? 'NotReconciled'}: ${ready?.message ?? 'the operator has not reported this generation yet'}`,
    );
  if (options.output !== 'json')
    io.stdout.write(
      `deployed ${target.namespace}/${target.name} version ${resource.status.version ?? '?'} through Kubernetes: ${resource.status.endpoint ?? ''}\n`,
    );
}

function kubernetesMessage(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message !== undefined) return parsed.message;
    } catch {}
  }
  return error instanceof Error ? error.message : String(error);
}

/** `registry:5000/team/api:1.2` → `api`; `oci-archive:./build/api.tar` → `api`. */
function nameFromImage(image: string): string {
  const path = image.startsWith(ARCHIVE_PREFIX)
    ? basename(image.slice(ARCHIVE_PREFIX.length).replace(/@sha256:.*$/, '')).replace(/\.(tar|oci)$/, '')
    : (image.replace(/@.*$/, '').split('/').at(-1) ?? '').replace(/:[^:]*$/, '');
  return path
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
}

async function uploadArchive(
  client: ApiClient,
  io: CommandContext['io'],
  namespace: string,
  file: string,
): Promise<string> {
  const size = await stat(file).then(
    (info) => info.size,
    () => {
      throw new CliError(`--image oci-archive:${file}: no such file`);
    },
  );
  io.stderr.write(`uploading image archive ${basename(file)} (${formatBytes(size)})\n`);
  const imported = await client.json<{ reference: string; storedBytes: number; manifestDigest: string }>(
    `/api/v1/namespaces/${encodeURIComponent(namespace)}/images`,
    {
      method: 'POST',
      query: { name: basename(file) },
      headers: { 'content-type': 'application/x-tar' },
      body: createReadStream(file),
    },
  );
  io.stderr.write(
    `image ${imported.manifestDigest.slice(0, 19)} imported (${formatBytes(imported.storedBytes)} new on the node)\n`,
  );
  return imported.reference;
}

function reportDetached(target: FunctionTarget, options: OutputOptions, { io }: CommandContext): void {
  if (options.output === 'json') {
    writeJson(io.stdout, { namespace: target.namespace, name: target.name, status: 'running' });
    return;
  }
  io.stdout.write(
    `deploying ${target.namespace}/${target.name} (archive received); check on it with: hearth describe ${target.name} -n ${target.namespace}\n`,
  );
}

function reportDeployed(
  client: ApiClient,
  result: DeployResult,
  elapsedMs: number,
  options: OutputOptions,
  { io }: CommandContext,
): void {
  if (options.output === 'json') {
    writeJson(io.stdout, result);
    return;
  }
  const fn = result.function;
  io.stdout.write(
    `deployed ${fn.namespace}/${fn.name} version ${fn.version} in ${formatMs(elapsedMs)} → ${invokeUrl(client, fn.url)}\n`,
  );
}
