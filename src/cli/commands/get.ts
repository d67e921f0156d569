/**
 * @module `hearth get KIND [NAME]`: gateways, functions, invocations and triggers as tables (or `-o json`),
 * kubectl-style; `hearth get gateway NAME` is the same as `hearth describe gateway NAME`.
 */

import type { Command } from 'commander';
import type {
  GatewayDetail,
  GatewaySummary,
  InvocationRecord,
  TriggerStatus,
} from '../../control/api/events-types.js';
import type { FunctionSummary, ListResponse } from '../../control/api/types.js';
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
  parseLabel,
} from '../options.js';
import { formatAge, renderTable, writeJson } from '../output.js';
import {
  renderGateway,
  renderGatewayList,
  renderInvocation,
  renderInvocations,
  renderTriggers,
} from './events-view.js';

interface GetOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly allNamespaces?: boolean;
  readonly function?: string;
  readonly state?: string;
  readonly limit?: string;
}

const KINDS: Record<string, 'gateways' | 'functions' | 'invocations' | 'triggers'> = {
  gateway: 'gateways',
  gateways: 'gateways',
  gw: 'gateways',
  eventgateway: 'gateways',
  eventgateways: 'gateways',
  function: 'functions',
  functions: 'functions',
  fn: 'functions',
  invocation: 'invocations',
  invocations: 'invocations',
  inv: 'invocations',
  trigger: 'triggers',
  triggers: 'triggers',
};

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('get')
    .description('list resources: gateways, functions, invocations (async), triggers; or show one by NAME/ID')
    .argument('<kind>', 'gateways | functions | invocations | triggers')
    .argument('[name]', 'a gateway name or an invocation id')
    .option('-A, --all-namespaces', 'every namespace (gateways, functions)')
    .option('--function <name>', 'invocations of one function')
    .option('--state <state>', 'invocations in one state: queued, running, succeeded, failed, dead')
    .option('--limit <n>', 'at most this many invocations (default 100)');
  addNamespaceOption(command);
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (kind: string, name: string | undefined, options: GetOptions) => {
    await get(kind, name, options, context);
  });
}

async function get(
  kindArg: string,
  name: string | undefined,
  options: GetOptions,
  context: CommandContext,
): Promise<void> {
  const { io } = context;
  const kind = KINDS[kindArg.toLowerCase()];
  if (kind === undefined)
    throw new CliError(`unknown kind "${kindArg}": expected gateways, functions, invocations or triggers`);
  const client = connect(options, io, context.version);
  const now = Date.now();
  const namespace = namespaceOf(options);
  const json = options.output === 'json';
  if (kind === 'gateways') {
    if (name !== undefined) {
      const detail = await client.json<GatewayDetail>(
        `/api/v1/namespaces/${namespace}/gateways/${parseLabel('gateway name', name)}`,
      );
      if (json) writeJson(io.stdout, detail);
      else io.stdout.write(renderGateway(detail, now));
      return;
    }
    const list = await client.json<ListResponse<GatewaySummary>>(
      options.allNamespaces === true ? '/api/v1/gateways' : `/api/v1/namespaces/${namespace}/gateways`,
    );
    if (json) writeJson(io.stdout, list);
    else io.stdout.write(renderGatewayList(list.items, now));
    return;
  }
  if (kind === 'functions') {
    const list = await client.json<ListResponse<FunctionSummary>>(
      options.allNamespaces === true ? '/api/v1/functions' : `/api/v1/namespaces/${namespace}/functions`,
    );
    if (json) writeJson(io.stdout, list);
    else
      io.stdout.write(
        list.items.length === 0
          ? 'No functions.\n'
          : renderTable(
              ['NAMESPACE', 'NAME', 'RUNTIME', 'VERSION', 'INSTANCES', 'AGE'],
              list.items.map((f) => [
                f.namespace,
                f.name,
                f.runtime,
                String(f.version),
                String(f.instances),
                formatAge(f.updatedAt, now),
              ]),
            ),
      );
    return;
  }
  if (kind === 'invocations') {
    if (name !== undefined) {
      const record = await client.json<InvocationRecord>(`/api/v1/invocations/${encodeURIComponent(name)}`);
      if (json) writeJson(io.stdout, record);
      else io.stdout.write(renderInvocation(record, now));
      return;
    }
    const list = await client.json<ListResponse<InvocationRecord>>('/api/v1/invocations', {
      query: {
        function: options.function,
        namespace: options.function === undefined ? undefined : namespace,
        state: options.state,
        limit: options.limit,
      },
    });
    if (json) writeJson(io.stdout, list);
    else io.stdout.write(renderInvocations(list.items, now, 'No async invocations.'));
    return;
  }
  const list = await client.json<ListResponse<TriggerStatus>>('/api/v1/triggers');
  if (json) writeJson(io.stdout, list);
  else io.stdout.write(`${renderTriggers(list.items, now)}\n`);
}
