/** @module `hearth audit ls|verify` (issue 13): read the audit log, and check its SM3 chain and signed checkpoints. */

import type { Command } from 'commander';
import type { AuditRecord, VerifyResult } from '../../compliance/index.js';
import { CliError } from '../errors.js';
import {
  addConnectionOptions,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  connect,
  type OutputOptions,
  parsePositiveInt,
} from '../options.js';
import { renderTable, writeJson } from '../output.js';

interface LsOptions extends ConnectionOptions, OutputOptions {
  readonly after?: number;
  readonly limit?: number;
}

export function register(program: Command, context: CommandContext): void {
  const audit = program.command('audit').description('the SM3 hash-chained audit log (issue 13)');

  const ls = audit
    .command('ls')
    .description('audit records: the newest, or those after --after SEQ')
    .option('--after <seq>', 'records after this sequence number', parsePositiveInt('--after'))
    .option('--limit <n>', 'how many (default 100, at most 1000)', parsePositiveInt('--limit'));
  addOutputOption(ls);
  addConnectionOptions(ls);
  ls.action(async (options: LsOptions) => {
    const client = connect(options, context.io, context.version);
    const { items } = await client.json<{ items: AuditRecord[] }>('/api/v1/audit', {
      query: {
        after: options.after === undefined ? undefined : String(options.after),
        limit: options.limit === undefined ? undefined : String(options.limit),
      },
    });
    if (options.output === 'json') {
      writeJson(context.io.stdout, { items });
      return;
    }
    context.io.stdout.write(
      renderTable(
        ['SEQ', 'TIME', 'WHO', 'FROM', 'ACTION', 'TARGET', 'OUTCOME'],
        items.map((record) => [
          String(record.seq),
          record.time,
          record.actor.key ?? '-',
          record.actor.remote,
          record.action,
          record.target,
          `${record.outcome}${record.status === undefined ? '' : ` ${record.status}`}`,
        ]),
      ),
    );
  });

  const verify = audit
    .command('verify')
    .description('check every record against the SM3 chain and the Ed25519-signed checkpoints');
  addOutputOption(verify);
  addConnectionOptions(verify);
  verify.action(async (options: ConnectionOptions & OutputOptions) => {
    const client = connect(options, context.io, context.version);
    const result = await client.json<VerifyResult>('/api/v1/audit/verify');
    if (options.output === 'json') writeJson(context.io.stdout, result);
    if (!result.ok) {
      const bad = result.firstBad;
      throw new CliError(
        `audit log does not verify: record ${bad?.seq ?? '?'}: ${bad?.reason ?? 'unknown'} (${result.records} record(s) before it hold)`,
        { exitCode: 2 },
      );
    }
    if (options.output !== 'json')
      context.io.stdout.write(
        `audit log verified: ${result.records} record(s), ${result.checkpoints} signed checkpoint(s)\n`,
      );
  });
}
