/** @module `hearth up`: runs the platform in the foreground until Ctrl-C or SIGTERM, then stops it cleanly. */

import { type ConfigFile, loadConfigFile, resolveConfig } from '../config.js';
import { startPlatform } from '../platform.js';
import type { CliIo } from './io.js';

export interface UpOptions {
  readonly port?: number | undefined;
  readonly host?: string | undefined;
  readonly dataDir?: string | undefined;
  readonly config?: string | undefined;
  /** False with `--no-examples`: do not deploy the bundled examples on start. */
  readonly examples: boolean;
}

export async function up(options: UpOptions, io: CliIo): Promise<number> {
  const file: ConfigFile = options.config === undefined ? {} : loadConfigFile(options.config);
  const config = resolveConfig(file, {
    port: options.port,
    host: options.host,
    dataDir: options.dataDir,
    // Only an explicit --no-examples overrides the file.
    examples: options.examples ? undefined : false,
  });
  io.stderr.write(`hearth: starting (data in ${config.dataDir})\n`);
  const platform = await startPlatform(config);
  const lines = [`hearth: listening on ${platform.url}`];
  if (config.examples) lines.push(`  try:       curl ${platform.url}/function/hello`);
  lines.push(`  dashboard: ${platform.url}/ui`);
  if (config.observe.metrics) lines.push(`  metrics:   ${platform.url}/metrics`);
  lines.push(`  API:       ${platform.url}/api/v1/openapi.json`, '  stop:      Ctrl-C');
  for (const notice of platform.notices) lines.push(`  note:      ${notice}`);
  io.stderr.write(`${lines.join('\n')}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  io.stderr.write('hearth: stopping\n');
  await platform.close();
  return 0;
}
