/** @module Platform configuration: defaults, the optional YAML file (`hearth up --config`), validated once, then frozen. */

import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { HearthError } from './domain/errors.js';
import { validationError } from './domain/function.js';
import { parseBytes, parseDuration } from './domain/units.js';

const bytes = z
  .union([z.string(), z.number()])
  .refine((v) => parseBytes(v) !== undefined, { message: 'a size such as "1Gi"' });
const duration = z
  .union([z.string(), z.number()])
  .refine((v) => parseDuration(v) !== undefined, { message: 'a duration such as "5m"' });

export const configFileSchema = z.strictObject({
  port: z.int().min(0).max(65535).optional(),
  host: z.string().min(1).optional(),
  dataDir: z.string().min(1).optional(),
  examples: z.boolean().optional(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional(),
  stemCells: z
    .strictObject({ node20: z.int().min(0).max(64).optional(), python3: z.int().min(0).max(64).optional() })
    .optional(),
  maxInstances: z.int().min(1).max(100_000).optional(),
  queueLimit: z.int().min(0).max(1_000_000).optional(),
  codeCache: bytes.optional(),
  logRecords: z.int().min(1000).optional(),
  buildTimeout: duration.optional(),
  upload: z
    .strictObject({
      maxArchive: bytes.optional(),
      maxUnpacked: bytes.optional(),
      maxFiles: z.int().min(1).optional(),
    })
    .optional(),
  python: z.string().min(1).optional(),
});

export type ConfigFile = z.infer<typeof configFileSchema>;

export interface PlatformConfig {
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  readonly examples: boolean;
  readonly logLevel: string;
  readonly stemCells: { readonly node20: number; readonly python3: number };
  readonly maxInstances: number;
  readonly queueLimit: number;
  readonly codeCacheBytes: number;
  readonly logRecords: number;
  readonly buildTimeoutMs: number;
  readonly upload: {
    readonly maxArchiveBytes: number;
    readonly maxUnpackedBytes: number;
    readonly maxFiles: number;
  };
  readonly python: string | undefined;
}

/** Instances a node keeps at most by default: half the machine's memory at ~64 MiB per instance. */
function defaultMaxInstances(): number {
  return Math.max(16, Math.min(2000, Math.floor(totalmem() / 2 / (64 * 1024 ** 2))));
}

export function loadConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `--config: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text) ?? {};
  } catch (error) {
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `${path}: not valid YAML (${(error as Error).message.split('\n')[0]})`,
    );
  }
  const result = configFileSchema.safeParse(parsed);
  if (!result.success) throw validationError(result.error, parsed, path);
  return result.data;
}

/** Merges defaults < config file < explicit overrides (CLI flags) and freezes the result. */
export function resolveConfig(
  file: ConfigFile,
  overrides: Partial<Omit<ConfigFile, 'stemCells' | 'upload'>> = {},
): PlatformConfig {
  const merged = {
    ...file,
    ...Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined)),
  } as ConfigFile;
  const size = (value: string | number | undefined, fallback: number): number =>
    value === undefined ? fallback : (parseBytes(value) ?? fallback);
  return Object.freeze({
    port: merged.port ?? 8080,
    host: merged.host ?? '127.0.0.1',
    dataDir: resolve(merged.dataDir ?? '.hearth'),
    examples: merged.examples ?? true,
    logLevel: merged.logLevel ?? 'info',
    stemCells: Object.freeze({
      node20: merged.stemCells?.node20 ?? 2,
      python3: merged.stemCells?.python3 ?? 2,
    }),
    maxInstances: merged.maxInstances ?? defaultMaxInstances(),
    queueLimit: merged.queueLimit ?? 10_000,
    codeCacheBytes: size(merged.codeCache, 1024 ** 3),
    logRecords: merged.logRecords ?? 200_000,
    buildTimeoutMs:
      merged.buildTimeout === undefined ? 10 * 60_000 : (parseDuration(merged.buildTimeout) ?? 10 * 60_000),
    upload: Object.freeze({
      maxArchiveBytes: size(merged.upload?.maxArchive, 64 * 1024 ** 2),
      maxUnpackedBytes: size(merged.upload?.maxUnpacked, 256 * 1024 ** 2),
      maxFiles: merged.upload?.maxFiles ?? 20_000,
    }),
    python: merged.python,
  });
}
