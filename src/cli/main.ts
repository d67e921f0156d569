/** @module The `hearth` command line: builds the commands, runs one, and turns every failure into one line. */

import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import * as apply from './commands/apply.js';
import * as audit from './commands/audit.js';
import * as deploy from './commands/deploy.js';
import * as describe from './commands/describe.js';
import * as dlq from './commands/dlq.js';
import * as get from './commands/get.js';
import * as importCommand from './commands/import.js';
import * as invoke from './commands/invoke.js';
import * as keys from './commands/keys.js';
import * as logs from './commands/logs.js';
import * as ls from './commands/ls.js';
import * as create from './commands/new.js';
import * as operator from './commands/operator.js';
import * as registry from './commands/registry.js';
import * as rm from './commands/rm.js';
import * as secret from './commands/secret.js';
import * as sign from './commands/sign.js';
import * as top from './commands/top.js';
import { exitCodeOf, failureLine, oneLine } from './errors.js';
import { type CliIo, processIo } from './io.js';
import type { CommandContext } from './options.js';
import type { UpOptions } from './up.js';

/**
 * Runs one command. `argv` holds the user's arguments only (`process.argv.slice(2)`). Resolves with the
 * exit code; never rejects and never prints a stack trace.
 */
export async function main(argv: readonly string[], given: CliIo = processIo()): Promise<number> {
  let exitCode = 0;
  const reader = watchReader(given);
  const io = reader.io;
  const context: CommandContext = {
    io,
    version: cliVersion(),
    setExitCode(code) {
      exitCode = code;
    },
  };
  const program = buildProgram(context);
  if (argv.length === 0) {
    io.stdout.write(program.helpInformation());
    return 0;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return commanderExit(error, io);
    io.stderr.write(`${failureLine(error)}\n`);
    return exitCodeOf(error);
  } finally {
    reader.dispose();
  }
}

/**
 * `hearth logs -f | head` closes stdout under us: treat that as the reader being done (stop following,
 * exit quietly) rather than crashing on the unhandled EPIPE. The listener stays after main returns,
 * because buffered output can still fail once the command is over.
 */
function watchReader(io: CliIo): { io: CliIo; dispose(): void } {
  const stop = new AbortController();
  const onInterrupt = (): void => stop.abort();
  io.interrupt?.addEventListener('abort', onInterrupt, { once: true });
  if (io.interrupt?.aborted === true) stop.abort();
  const onStdoutError = (error: unknown): void => {
    if (error instanceof Error && 'code' in error && error.code === 'EPIPE') stop.abort();
  };
  io.stdout.on('error', onStdoutError);
  return {
    io: { ...io, interrupt: stop.signal },
    dispose() {
      io.interrupt?.removeEventListener('abort', onInterrupt);
    },
  };
}

export function buildProgram(context: CommandContext): Command {
  const { io } = context;
  const program = new Command('hearth')
    .description('Hearth: deploy Node.js and Python functions and invoke them over HTTP')
    .version(context.version, '-V, --version')
    .showSuggestionAfterError(true)
    // Throw instead of calling process.exit, and let main print the one error line itself.
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: () => {},
    });
  registerUp(program, context);
  for (const command of [
    create,
    importCommand,
    deploy,
    apply,
    invoke,
    ls,
    describe,
    get,
    dlq,
    logs,
    top,
    rm,
    keys,
    secret,
    registry,
    audit,
    sign,
    operator,
  ])
    command.register(program, context);
  return program;
}

/** `hearth up`: the platform in the foreground; the implementation lives with the composition root. */
function registerUp(program: Command, context: CommandContext): void {
  program
    .command('up')
    .description('run the Hearth platform in the foreground')
    // No commander defaults here: a flag the user did not give must not override the --config file.
    .option('--port <n>', 'port to listen on (default 8080; 0 picks a free one)', parsePort)
    .option('--host <addr>', 'address to listen on (default 127.0.0.1)')
    .option('--data-dir <dir>', 'where functions, code and logs are kept (default ./.hearth)')
    .option('--config <file>', 'platform configuration file (YAML)')
    .option('--no-examples', 'do not deploy the bundled examples')
    .option(
      '--tls-cert <file>',
      'serve HTTPS with this PEM certificate (with --tls-key; reloaded when it changes)',
    )
    .option('--tls-key <file>', 'the PEM private key of --tls-cert')
    .option(
      '--cluster',
      'join a cluster of nodes (with --postgres, --nats and --redis, or cluster: in --config)',
    )
    .option('--postgres <url>', 'cluster mode: the PostgreSQL that holds functions, versions and code')
    .option('--nats <url>', 'cluster mode: the NATS server for membership and change notices')
    .option('--redis <url>', 'cluster mode: the Redis for ctx.state')
    .option('--node-id <id>', "cluster mode: this node's name (default: made once, kept in the data dir)")
    .option(
      '--advertise <url>',
      'cluster mode: the URL other nodes reach this one at (default: where it listens)',
    )
    .action(async (options: UpOptions) => {
      const { up } = await import('./up.js');
      context.setExitCode(await up(options, context.io));
    });
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new InvalidArgumentError(`expected a port number from 0 to 65535, got "${value}"`);
  }
  return port;
}

/** Help and --version end with exit code 0 and were already written; usage errors become one line. */
function commanderExit(error: CommanderError, io: CliIo): number {
  if (error.exitCode === 0) return 0;
  io.stderr.write(`error: ${oneLine(error.message.replace(/^error:\s*/, ''))}\n`);
  return error.exitCode;
}

let version: string | undefined;

function cliVersion(): string {
  if (version !== undefined) return version;
  try {
    // package.json is two levels up from both src/cli and dist/cli.
    const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
    const parsed: unknown = JSON.parse(text);
    const found =
      parsed !== null && typeof parsed === 'object' && 'version' in parsed ? parsed.version : undefined;
    version = typeof found === 'string' ? found : '0.0.0';
  } catch {
    version = '0.0.0';
  }
  return version;
}
