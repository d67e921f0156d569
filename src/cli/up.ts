/** @module `hearth up`: runs the platform in the foreground until Ctrl-C or SIGTERM, then stops it cleanly. */

import { type ConfigFile, configFileSchema, loadConfigFile, resolveConfig } from '../config.js';
import { HearthError } from '../domain/errors.js';
import { startPlatform } from '../platform.js';
import type { CliIo } from './io.js';

export interface UpOptions {
  readonly port?: number | undefined;
  readonly host?: string | undefined;
  readonly dataDir?: string | undefined;
  readonly config?: string | undefined;
  /** False with `--no-examples`: do not deploy the bundled examples on start. */
  readonly examples: boolean;
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  /** Cluster mode (issue 12). */
  readonly cluster?: boolean | undefined;
  readonly postgres?: string | undefined;
  readonly nats?: string | undefined;
  readonly redis?: string | undefined;
  readonly nodeId?: string | undefined;
  readonly advertise?: string | undefined;
}

const CLUSTER_FLAGS = ['postgres', 'nats', 'redis', 'nodeId', 'advertise'] as const;

/** `--cluster` and its URLs over the file's `cluster:`; the flags without `--cluster` are a mistake. */
function clusterOverride(options: UpOptions, file: ConfigFile): ConfigFile['cluster'] {
  const flag = (name: (typeof CLUSTER_FLAGS)[number]): string =>
    `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (options.cluster !== true) {
    const stray = CLUSTER_FLAGS.find((name) => options[name] !== undefined);
    if (stray !== undefined)
      throw new HearthError('HEARTH_E_VALIDATION', `${flag(stray)} goes with --cluster: add --cluster`);
    return undefined;
  }
  const merged = {
    ...file.cluster,
    ...Object.fromEntries(
      CLUSTER_FLAGS.filter((name) => options[name] !== undefined).map((name) => [name, options[name]]),
    ),
  };
  const missing = (['postgres', 'nats', 'redis'] as const).filter((name) => merged[name] === undefined);
  if (missing.length > 0)
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `--cluster needs ${missing.map(flag).join(', ')} (or cluster: in --config)`,
    );
  const checked = configFileSchema.shape.cluster.safeParse(merged);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    const name = String(issue?.path[0] ?? 'cluster');
    const given = (merged as Record<string, unknown>)[name];
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `${flag(name as (typeof CLUSTER_FLAGS)[number])}: expected ${issue?.message ?? 'a valid value'}, got ${JSON.stringify(given)}`,
    );
  }
  return checked.data;
}

export async function up(options: UpOptions, io: CliIo): Promise<number> {
  const file: ConfigFile = options.config === undefined ? {} : loadConfigFile(options.config);
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined))
    throw new HearthError('HEARTH_E_VALIDATION', '--tls-cert and --tls-key go together: give both');
  const config = resolveConfig(file, {
    tls:
      options.tlsCert === undefined || options.tlsKey === undefined
        ? undefined
        : { cert: options.tlsCert, key: options.tlsKey },
    port: options.port,
    host: options.host,
    dataDir: options.dataDir,
    // Only an explicit --no-examples overrides the file.
    examples: options.examples ? undefined : false,
    cluster: clusterOverride(options, file),
  });
  io.stderr.write(`hearth: starting (data in ${config.dataDir})\n`);
  // Listening from the start: a signal while starting would otherwise end the process at once, leaving
  // its sandboxes' mounts and cgroups behind; it stops the platform as soon as it has started instead.
  let stopRequested = false;
  let requestStop = (): void => {
    stopRequested = true;
  };
  const onSignal = (): void => requestStop();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let platform: Awaited<ReturnType<typeof startPlatform>>;
  try {
    platform = await startPlatform(config);
  } catch (error) {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    throw error;
  }
  const lines = [`hearth: listening on ${platform.url}`];
  if (config.examples) lines.push(`  try:       curl ${platform.url}/function/hello`);
  lines.push(`  dashboard: ${platform.url}/ui`);
  if (config.observe.metrics) lines.push(`  metrics:   ${platform.url}/metrics`);
  lines.push(`  API:       ${platform.url}/api/v1/openapi.json`, '  stop:      Ctrl-C');
  for (const notice of platform.notices) lines.push(`  note:      ${notice}`);
  // Printed here once; the platform keeps only its hash, so it can never be shown again.
  if (platform.firstKey !== undefined)
    lines.push(
      `  admin key: ${platform.firstKey}`,
      '             (shown once, stored hashed: keep it, and pass it as --api-key or $HEARTH_API_KEY)',
    );
  io.stderr.write(`${lines.join('\n')}\n`);
  await new Promise<void>((resolve) => {
    requestStop = resolve;
    if (stopRequested) resolve();
  });
  // Stopping is bounded, as a service manager expects: past `stopTimeout`, or at a second Ctrl-C or
  // SIGTERM, it stops waiting for draining and brokers, and does only what must not be skipped (the
  // guests ended, the mounts and cgroups removed, the stores closed). The handlers stay on meanwhile: a
  // second signal killing the process by default would leave all of that behind.
  const seconds = config.stopTimeoutMs / 1000;
  io.stderr.write(`hearth: stopping (at most ${seconds} s; Ctrl-C again stops at once)\n`);
  let giveUp: ((why: string) => void) | undefined;
  const impatience = new Promise<string>((resolve) => {
    giveUp = resolve;
  });
  requestStop = () => giveUp?.('a second signal');
  const deadline = setTimeout(
    () => giveUp?.(`the stop deadline (${seconds} s, stopTimeout)`),
    config.stopTimeoutMs,
  );
  const outcome = await Promise.race([platform.close().then(() => undefined), impatience]);
  clearTimeout(deadline);
  if (outcome === undefined) {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    exitWhenLingering(io);
    return 0;
  }
  const gaveUpOn = await platform.forceClose();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  const line = `stopped at once on ${outcome}${gaveUpOn === undefined ? '' : `, without waiting for ${gaveUpOn}`}; guests ended, mounts and cgroups removed`;
  io.stderr.write(`error: ${line}\n`);
  // What was given up on (a broker's connection, a request's socket) would keep the process alive.
  process.exit(1);
}

/**
 * After a clean stop the process should end by itself; a socket or timer some part forgot would keep it
 * running with nothing left to do (a stopped service that never exits). This ends it, naming what held it.
 */
function exitWhenLingering(io: CliIo): void {
  setTimeout(() => {
    io.stderr.write(
      `hearth: stopped, but ${process.getActiveResourcesInfo().join(', ')} kept the process alive; exiting\n`,
    );
    process.exit(process.exitCode ?? 0);
  }, LINGER_MS).unref();
}

/** How long a stopped `hearth up` may take to end once everything is closed (pending writes, exit hooks). */
const LINGER_MS = 2000;
