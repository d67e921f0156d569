/** @module `hearth dlq ls|show|redrive`: the dead-letter list of invocations and events whose retries ran out. */

import type { Command } from 'commander';
import type { InvocationRecord, RedriveResponse } from '../../control/api/events-types.js';
import type { ListResponse } from '../../control/api/types.js';
import { CliError } from '../errors.js';
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
import { renderInvocation, renderInvocations } from './events-view.js';

interface DlqOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly function?: string;
  readonly source?: string;
  readonly limit?: string;
  readonly all?: boolean;
}

export function register(program: Command, context: CommandContext): void {
  const dlq = program
    .command('dlq')
    .description('inspect and redrive dead letters (invocations and events that ran out of retries)');
  const ls = dlq
    .command('ls')
    .alias('list')
    .description('list dead letters, newest first')
    .option('--function <name>', 'only this function')
    .option(
      '--source <source>',
      'only this source: async, or kind:trigger such as cron:default/report/nightly',
    )
    .option('--limit <n>', 'at most this many (default 100)');
  const show = dlq
    .command('show')
    .description('show one dead letter: request or event, attempts, last error')
    .argument('<id>');
  const redrive = dlq
    .command('redrive')
    .description('put dead letters back in the queue with fresh attempts')
    .argument('[ids...]', 'dead-letter ids')
    .option('--function <name>', 'every dead letter of this function')
    .option('--source <source>', 'every dead letter from this source')
    .option('--all', 'every dead letter');
  for (const command of [ls, show, redrive]) {
    addNamespaceOption(command);
    addOutputOption(command);
    addConnectionOptions(command);
  }
  ls.action(async (options: DlqOptions) => {
    const client = connect(options, context.io, context.version);
    const list = await client.json<ListResponse<InvocationRecord>>('/api/v1/dlq', {
      query: {
        function: options.function === undefined ? undefined : functionName(options.function),
        namespace: namespaceOf(options),
        source: options.source,
        limit: options.limit,
      },
    });
    if (options.output === 'json') writeJson(context.io.stdout, list);
    else context.io.stdout.write(renderInvocations(list.items, Date.now(), 'The dead-letter list is empty.'));
  });
  show.action(async (id: string, options: DlqOptions) => {
    const client = connect(options, context.io, context.version);
    const record = await client.json<InvocationRecord>(`/api/v1/dlq/${encodeURIComponent(id)}`);
    if (options.output === 'json') writeJson(context.io.stdout, record);
    else context.io.stdout.write(renderInvocation(record, Date.now()));
  });
  redrive.action(async (ids: string[], options: DlqOptions) => {
    const client = connect(options, context.io, context.version);
    const filters = [
      ids.length > 0,
      options.function !== undefined || options.source !== undefined,
      options.all === true,
    ];
    if (filters.filter(Boolean).length !== 1)
      throw new CliError('redrive needs exactly one of: dead-letter ids, --function/--source, or --all');
    const body =
      ids.length > 0
        ? { ids }
        : options.all === true
          ? { all: true }
          : {
              ...(options.function === undefined
                ? {}
                : { function: functionName(options.function), namespace: namespaceOf(options) }),
              ...(options.source === undefined ? {} : { source: options.source }),
            };
    const result = await client.json<RedriveResponse>('/api/v1/dlq/redrive', { method: 'POST', json: body });
    if (options.output === 'json') writeJson(context.io.stdout, result);
    else
      context.io.stdout.write(`${result.redriven} dead letter${result.redriven === 1 ? '' : 's'} redriven\n`);
    if (ids.length > 0 && result.redriven < ids.length) {
      context.io.stderr.write(
        `error: ${ids.length - result.redriven} of the ids are not in the dead-letter list\n`,
      );
      context.setExitCode(1);
    }
  });
}
