/** @module `hearth deploy DIR`: validate hearth.yaml, pack the folder, stream the deployment's progress. */

import { resolve } from 'node:path';
import type { Command } from 'commander';
import { type ApiClient, invokeUrl } from '../client.js';
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
import { formatMs, writeJson } from '../output.js';
import { packDirectory } from '../pack.js';
import { type DeployResult, type FunctionTarget, uploadFunction } from '../upload.js';

interface DeployOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly wait: boolean;
}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('deploy')
    .description('package a function folder (with its hearth.yaml) and deploy it')
    .argument('<dir>', 'the function folder')
    .option('--no-wait', 'return once the archive is uploaded instead of waiting for the deployment');
  addNamespaceOption(command, 'namespace (default: metadata.namespace in hearth.yaml, else "default")');
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (dir: string, options: DeployOptions) => {
    await deploy(dir, options, context);
  });
}

async function deploy(dir: string, options: DeployOptions, context: CommandContext): Promise<void> {
  const { io } = context;
  const started = performance.now();
  const folder = await readFunctionFolder(dir);
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
