/**
 * @module `hearth registry login|ls|logout` (issue 17): credentials a namespace's image pulls use, sealed on
 * the server like secrets. The password is read from stdin (`--password-stdin`), never from the command line.
 */

import type { Command } from 'commander';
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

interface LoginOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly username?: string;
  readonly passwordStdin?: boolean;
  readonly verify: boolean;
}
interface ListOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {}

interface RegistryLogin {
  readonly registry: string;
  readonly username: string;
  readonly updatedAt: string;
}

const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/;

function parseHost(value: string): string {
  if (!HOST.test(value))
    throw new CliError(`registry: got "${value}", expected a host such as registry.example.com:5000`);
  return value;
}

function registryPath(namespace: string, host?: string): string {
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/registries`;
  return host === undefined ? base : `${base}/${encodeURIComponent(host)}`;
}

export function register(program: Command, context: CommandContext): void {
  const registry = program
    .command('registry')
    .description('credentials for pulling container images (spec.image) from a registry');

  const login = registry
    .command('login')
    .description(
      'check credentials against a registry (the platform asks it, as docker login does) and store them, sealed like secrets',
    )
    .argument('<host>', 'registry host[:port]', parseHost)
    .option('-u, --username <user>', 'user name')
    .option('--password-stdin', 'read the password (or token) from stdin')
    .option('--no-verify', 'store the login without checking it against the registry first');
  addNamespaceOption(login);
  addOutputOption(login);
  addConnectionOptions(login);
  login.action(async (host: string, options: LoginOptions) => {
    if (options.username === undefined) throw new CliError('registry login: give --username USER');
    if (options.passwordStdin !== true)
      throw new CliError(
        'registry login: give the password on stdin with --password-stdin (it is never taken from the command line)',
      );
    const password = (await readAll(context.io.stdin)).replace(/\r?\n$/, '');
    if (password === '') throw new CliError('registry login: stdin held no password');
    const namespace = namespaceOf(options);
    const client = connect(options, context.io, context.version);
    await client.json(registryPath(namespace, host), {
      method: 'PUT',
      ...(options.verify ? {} : { query: { verify: 'false' } }),
      json: { username: options.username, password },
    });
    if (options.output === 'json')
      writeJson(context.io.stdout, { namespace, registry: host, username: options.username });
    else
      context.io.stdout.write(
        `login for ${host} stored for namespace ${namespace} (user ${options.username})\n`,
      );
  });

  const list = registry.command('ls').description("list the namespace's registry logins");
  addNamespaceOption(list);
  addOutputOption(list);
  addConnectionOptions(list);
  list.action(async (options: ListOptions) => {
    const namespace = namespaceOf(options);
    const client = connect(options, context.io, context.version);
    const { items } = await client.json<{ items: RegistryLogin[] }>(registryPath(namespace));
    if (options.output === 'json') {
      writeJson(context.io.stdout, { items });
      return;
    }
    context.io.stdout.write(
      renderTable(
        ['REGISTRY', 'USER', 'UPDATED'],
        items.map((item) => [item.registry, item.username, formatAge(item.updatedAt)]),
      ),
    );
  });

  const logout = registry
    .command('logout')
    .description('forget the credentials of a registry')
    .argument('<host>', 'registry host[:port]', parseHost);
  addNamespaceOption(logout);
  addOutputOption(logout);
  addConnectionOptions(logout);
  logout.action(async (host: string, options: ListOptions) => {
    const namespace = namespaceOf(options);
    const client = connect(options, context.io, context.version);
    await client.json(registryPath(namespace, host), { method: 'DELETE' });
    if (options.output === 'json') writeJson(context.io.stdout, { deleted: true, namespace, registry: host });
    else context.io.stdout.write(`login for ${host} removed from namespace ${namespace}\n`);
  });
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}
