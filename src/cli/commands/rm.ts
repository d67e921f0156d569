/** @module `hearth rm NAME`: delete a function, its versions and its instances. */

import type { Command } from 'commander';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  connect,
  type NamespaceOptions,
  namespaceOf,
  type OutputOptions,
  parseLabel,
  resourceArguments,
} from '../options.js';
import { writeJson } from '../output.js';
import { functionPath } from '../upload.js';
import { removeTrigger } from './event-triggers.js';

interface RmOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('rm')
    .alias('delete')
    .description('delete a function (or: rm gateway NAME, rm trigger NAME)')
    .argument('<name>', 'function name (or the kind, `gateway` or `function`, followed by the name)')
    .argument('[name2]', 'the name, when the kind was given first');
  addNamespaceOption(command);
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (first: string, second: string | undefined, options: RmOptions) => {
    const target = resourceArguments(first, second);
    if (target.kind === 'trigger') {
      await removeTrigger(target.name, options, context);
      return;
    }
    if (target.kind === 'gateway') {
      const client = connect(options, context.io, context.version);
      const namespace = namespaceOf(options);
      const gateway = parseLabel('gateway name', target.name);
      await client.json<unknown>(`/api/v1/namespaces/${namespace}/gateways/${gateway}`, { method: 'DELETE' });
      if (options.output === 'json')
        writeJson(context.io.stdout, { namespace, name: gateway, deleted: true });
      else context.io.stdout.write(`gateway/${gateway} deleted\n`);
      return;
    }
    await remove(target.name, options, context);
  });
}

async function remove(name: string, options: RmOptions, { io, version }: CommandContext): Promise<void> {
  const client = connect(options, io, version);
  const namespace = namespaceOf(options);
  await client.json<unknown>(functionPath({ namespace, name }), { method: 'DELETE' });
  if (options.output === 'json') writeJson(io.stdout, { namespace, name, deleted: true });
  else io.stdout.write(`function/${name} deleted\n`);
}
