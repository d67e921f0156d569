/**
 * @module `hearth keys create|ls|revoke`: API keys with a role per namespace (issue 10). A new key is
 * printed once, by `create`, with its AWS credentials (for SigV4 clients of the Lambda Invoke API); the
 * platform keeps only its hash.
 */

import { type Command, InvalidArgumentError, Option } from 'commander';
import type { ApiKeySummary, CreatedApiKey, ListResponse } from '../../control/api/types.js';
import { API_PREFIX } from '../client.js';
import { CliError } from '../errors.js';
import {
  addConnectionOptions,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  collect,
  connect,
  isValidLabel,
  type OutputOptions,
} from '../options.js';
import { formatAge, renderTable, writeJson } from '../output.js';

const ROLES = ['admin', 'deployer', 'invoker', 'viewer'] as const;

interface CreateOptions extends ConnectionOptions, OutputOptions {
  readonly role: (typeof ROLES)[number];
  readonly namespace: readonly string[];
  readonly name?: string;
}

export function register(program: Command, context: CommandContext): void {
  const keys = program
    .command('keys')
    .description('manage API keys (admin): create, ls, revoke; aws-credentials (the key itself)');

  const create = keys
    .command('create')
    .description('create an API key; it is printed once, here, and stored hashed')
    .addOption(new Option('--role <role>', 'what the key may do').choices(ROLES).makeOptionMandatory())
    .option(
      '-n, --namespace <namespace>',
      'a namespace the role applies in (repeat for several; "*" for all; admin keys have all)',
      (value: string, previous: readonly string[]) => collect(namespaceArgument(value), previous),
      [] as string[],
    )
    .option('--name <name>', 'a name to tell keys apart in `hearth keys ls`');
  addOutputOption(create);
  addConnectionOptions(create);
  create.action(async (options: CreateOptions) => {
    const client = connect(options, context.io, context.version);
    const namespaces = options.role === 'admin' ? ['*'] : options.namespace;
    if (namespaces.length === 0)
      throw new CliError(`--namespace is required for a ${options.role} key (or "*" for all)`);
    const created = await client.json<CreatedApiKey>(`${API_PREFIX}/keys`, {
      method: 'POST',
      json: { role: options.role, namespaces, ...(options.name === undefined ? {} : { name: options.name }) },
    });
    if (options.output === 'json') {
      writeJson(context.io.stdout, created);
      return;
    }
    context.io.stdout.write(`${created.key}\n`);
    context.io.stderr.write(
      `key ${created.id} (${created.role} in ${created.namespaces.join(', ')}) created; it is shown only this once\n` +
        // stdout stays the key alone, for `KEY=$(hearth keys create …)`.
        `AWS credentials of this key, for the AWS SDKs/CLI on the Lambda Invoke API (also shown only once):\n` +
        `  aws_access_key_id = ${created.awsAccessKeyId}\n  aws_secret_access_key = ${created.awsSecretAccessKey}\n`,
    );
  });

  const list = keys.command('ls').alias('list').description('list API keys (never their secrets)');
  addOutputOption(list);
  addConnectionOptions(list);
  list.action(async (options: ConnectionOptions & OutputOptions) => {
    const client = connect(options, context.io, context.version);
    const response = await client.json<ListResponse<ApiKeySummary>>(`${API_PREFIX}/keys`);
    if (options.output === 'json') {
      writeJson(context.io.stdout, response);
      return;
    }
    const now = Date.now();
    const rows = response.items.map((key) => [
      key.id,
      key.name,
      key.role,
      key.namespaces.join(','),
      formatAge(key.createdAt, now),
      key.revokedAt === null ? 'active' : `revoked ${formatAge(key.revokedAt, now)} ago`,
    ]);
    context.io.stdout.write(renderTable(['ID', 'NAME', 'ROLE', 'NAMESPACES', 'AGE', 'STATUS'], rows));
  });

  const aws = keys
    .command('aws-credentials')
    .description(
      'print the AWS credentials of the key given with --api-key / $HEARTH_API_KEY (the key itself, not a token)',
    );
  addOutputOption(aws);
  addConnectionOptions(aws);
  aws.action(async (options: ConnectionOptions & OutputOptions) => {
    const client = connect(options, context.io, context.version);
    const credentials = await client.json<AwsCredentialsAnswer>(`${API_PREFIX}/keys/aws-credentials`, {
      method: 'POST',
      json: {},
    });
    if (options.output === 'json') {
      writeJson(context.io.stdout, credentials);
      return;
    }
    context.io.stdout.write(
      `aws_access_key_id = ${credentials.awsAccessKeyId}\naws_secret_access_key = ${credentials.awsSecretAccessKey}\n`,
    );
  });

  const revoke = keys
    .command('revoke')
    .description('revoke an API key (and the tokens derived from it) at once')
    .argument('<id>', 'the key id shown by `hearth keys ls` (or the whole key)');
  addOutputOption(revoke);
  addConnectionOptions(revoke);
  revoke.action(async (given: string, options: ConnectionOptions & OutputOptions) => {
    const id = /^hth_([0-9a-f]{12})_/.exec(given)?.[1] ?? given;
    if (!/^[0-9a-f]{12}$/.test(id))
      throw new CliError(`"${given.slice(0, 40)}" is not a key id: expected 12 hex digits`);
    const client = connect(options, context.io, context.version);
    await client.json<unknown>(`${API_PREFIX}/keys/${id}`, { method: 'DELETE' });
    if (options.output === 'json') writeJson(context.io.stdout, { revoked: id });
    else context.io.stdout.write(`key ${id} revoked\n`);
  });
}

interface AwsCredentialsAnswer {
  readonly id: string;
  readonly awsAccessKeyId: string;
  readonly awsSecretAccessKey: string;
}

function namespaceArgument(value: string): string {
  if (value === '*' || isValidLabel(value)) return value;
  throw new InvalidArgumentError(
    `"${value}" is not a valid namespace: expected a lower-case DNS label, or "*" for all`,
  );
}
