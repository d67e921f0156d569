/**
 * @module `hearth secret set|ls|rm|rotate-key` (issue 13). Values go to the server once, in the request
 * body; nothing here prints them back.
 */

import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { SecretSummary } from '../../compliance/index.js';
import { SECRET_KEY } from '../../domain/compliance.js';
import { CliError } from '../errors.js';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  collect,
  connect,
  type NamespaceOptions,
  namespaceOf,
  type OutputOptions,
  parseLabel,
} from '../options.js';
import { formatAge, renderTable, writeJson } from '../output.js';

interface SetOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly fromLiteral: readonly string[];
  readonly fromFile: readonly string[];
}
interface ListOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {}

export function register(program: Command, context: CommandContext): void {
  const secret = program.command('secret').description('secrets, sealed at rest with SM4 (issue 13)');

  const set = secret
    .command('set')
    .description('create or replace a secret')
    .argument('<name>', 'secret name', (value: string) => parseLabel('secret name', value))
    .option('--from-literal <key=value>', 'a key and its value (repeatable)', collect, [])
    .option('--from-file <key=path>', 'a key and the file holding its value (repeatable)', collect, []);
  addNamespaceOption(set);
  addOutputOption(set);
  addConnectionOptions(set);
  set.action(async (name: string, options: SetOptions) => {
    const data: Record<string, string> = {};
    for (const literal of options.fromLiteral) {
      const [key, value] = splitPair('--from-literal', literal);
      data[key] = Buffer.from(value, 'utf8').toString('base64');
    }
    for (const pair of options.fromFile) {
      const [key, path] = splitPair('--from-file', pair);
      const content = await readFile(path).catch((error: NodeJS.ErrnoException) => {
        throw new CliError(`--from-file ${key}=${path}: cannot read the file (${error.code ?? 'error'})`);
      });
      data[key] = content.toString('base64');
    }
    if (Object.keys(data).length === 0)
      throw new CliError('secret set: give at least one --from-literal KEY=VALUE or --from-file KEY=PATH');
    const client = connect(options, context.io, context.version);
    const namespace = namespaceOf(options);
    const summary = await client.json<SecretSummary>(`/api/v1/namespaces/${namespace}/secrets/${name}`, {
      method: 'PUT',
      json: { data },
    });
    if (options.output === 'json') writeJson(context.io.stdout, summary);
    else context.io.stdout.write(`secret/${name} set (keys: ${summary.keys.join(', ')})\n`);
  });

  const ls = secret
    .command('ls')
    .alias('list')
    .description('list secrets: names and key names, never values');
  addNamespaceOption(ls, 'namespace (default: every namespace)');
  addOutputOption(ls);
  addConnectionOptions(ls);
  ls.action(async (options: ListOptions) => {
    const client = connect(options, context.io, context.version);
    const path =
      options.namespace === undefined ? '/api/v1/secrets' : `/api/v1/namespaces/${options.namespace}/secrets`;
    const { items } = await client.json<{ items: SecretSummary[] }>(path);
    if (options.output === 'json') {
      writeJson(context.io.stdout, { items });
      return;
    }
    context.io.stdout.write(
      renderTable(
        ['NAMESPACE', 'NAME', 'KEYS', 'SEALED', 'UPDATED'],
        items.map((item) => [
          item.namespace,
          item.name,
          item.keys.join(','),
          `${item.algorithm} (key ${item.sealedUnder})`,
          formatAge(item.updatedAt),
        ]),
      ),
    );
  });

  const rm = secret.command('rm').alias('delete').description('delete a secret no function uses');
  rm.argument('<name>', 'secret name', (value: string) => parseLabel('secret name', value));
  addNamespaceOption(rm);
  addConnectionOptions(rm);
  rm.action(async (name: string, options: ConnectionOptions & NamespaceOptions) => {
    const client = connect(options, context.io, context.version);
    await client.json(`/api/v1/namespaces/${namespaceOf(options)}/secrets/${name}`, { method: 'DELETE' });
    context.io.stdout.write(`secret/${name} deleted\n`);
  });

  const rotate = secret
    .command('rotate-key')
    .description('re-seal every secret under a new master key; the old key is kept until all are done');
  addOutputOption(rotate);
  addConnectionOptions(rotate);
  rotate.action(async (options: ConnectionOptions & OutputOptions) => {
    const client = connect(options, context.io, context.version);
    const result = await client.json<{ keyId: string; resealed: number }>('/api/v1/secrets/rotate-key', {
      method: 'POST',
    });
    if (options.output === 'json') writeJson(context.io.stdout, result);
    else
      context.io.stdout.write(
        `master key rotated: ${result.resealed} secret(s) re-sealed under key ${result.keyId}\n`,
      );
  });
}

function splitPair(flag: string, pair: string): [string, string] {
  const at = pair.indexOf('=');
  const key = at < 0 ? '' : pair.slice(0, at);
  if (at < 0 || !SECRET_KEY.test(key))
    throw new CliError(
      `${flag}: expected KEY=${flag === '--from-file' ? 'PATH' : 'VALUE'} with a key of letters, digits, "-", "_" or "." (got a value without one)`,
    );
  return [key, pair.slice(at + 1)];
}
