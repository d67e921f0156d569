/** @module `hearth ls`: the deployed functions of one namespace (or all) as a table. */

import type { Command } from 'commander';
import type { FunctionSummary, ListResponse } from '../../control/api/types.js';
import { API_PREFIX } from '../client.js';
import { CliError } from '../errors.js';
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
} from '../options.js';
import { formatAge, renderTable, writeJson } from '../output.js';
import { listTriggers } from './event-triggers.js';

interface LsOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly allNamespaces?: boolean;
}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('ls')
    .alias('list')
    .description('list deployed functions (or: ls triggers, the Trigger resources)')
    .argument('[kind]', 'functions (default) or triggers')
    .option('-A, --all-namespaces', 'list functions of every namespace');
  addNamespaceOption(command);
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (kind: string | undefined, options: LsOptions) => {
    const wanted = (kind ?? 'functions').toLowerCase();
    if (wanted === 'triggers' || wanted === 'trigger') await listTriggers(options, context);
    else if (['functions', 'function', 'fn'].includes(wanted)) await list(options, context);
    else throw new CliError(`unknown kind "${kind}": expected functions or triggers`);
  });
}

async function list(options: LsOptions, { io, version }: CommandContext): Promise<void> {
  const client = connect(options, io, version);
  const namespace = options.allNamespaces === true ? undefined : namespaceOf(options);
  const response = await client.json<ListResponse<FunctionSummary>>(`${API_PREFIX}/functions`, {
    query: { namespace },
  });
  if (options.output === 'json') {
    writeJson(io.stdout, response);
    return;
  }
  if (response.items.length === 0) {
    io.stdout.write('No functions deployed. Try: hearth deploy ./examples/hello\n');
    return;
  }
  const now = Date.now();
  const rows = response.items.map((fn) => [
    fn.name,
    fn.namespace,
    fn.runtime,
    String(fn.version),
    String(fn.instances),
    fn.isolation,
    formatAge(fn.updatedAt, now),
  ]);
  io.stdout.write(
    renderTable(['NAME', 'NAMESPACE', 'RUNTIME', 'VERSION', 'INSTANCES', 'ISOLATION', 'AGE'], rows),
  );
}
