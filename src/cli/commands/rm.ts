/** @module `hearth rm NAME`: delete a function, its versions and its instances. */

import type { Command } from 'commander';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  connect,
  functionName,
  type NamespaceOptions,
  namespaceOf,
  type OutputOptions,
} from '../options.js';
import { writeJson } from '../output.js';
import { functionPath } from '../upload.js';

interface RmOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('rm')
    .alias('delete')
    .description('delete a function')
    .argument('<name>', 'function name');
  addNamespaceOption(command);
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (name: string, options: RmOptions) => {
    await remove(functionName(name), options, context);
  });
}

async function remove(name: string, options: RmOptions, { io, version }: CommandContext): Promise<void> {
  const client = connect(options, io, version);
  const namespace = namespaceOf(options);
  await client.json<unknown>(functionPath({ namespace, name }), { method: 'DELETE' });
  if (options.output === 'json') writeJson(io.stdout, { namespace, name, deleted: true });
  else io.stdout.write(`function/${name} deleted\n`);
}
