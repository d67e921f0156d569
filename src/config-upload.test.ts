/** @module The upload limits of the platform config: defaults, units, and bad values named. */

import { describe, expect, it } from 'vitest';
import { configFileSchema, resolveConfig } from './config.js';
import { validationError } from './domain/function.js';

describe('upload config', () => {
  it('defaults to 64 MiB uploads, 256 MiB unpacked, 20,000 entries and 30 s to unpack', () => {
    expect(resolveConfig({}).upload).toEqual({
      maxArchiveBytes: 64 * 1024 ** 2,
      maxUnpackedBytes: 256 * 1024 ** 2,
      maxFiles: 20_000,
      unpackTimeoutMs: 30_000,
    });
  });

  it('takes sizes and durations with units', () => {
    const config = resolveConfig(
      configFileSchema.parse({ upload: { maxArchive: '8Mi', unpackTimeout: '5s' } }),
    );
    expect(config.upload.maxArchiveBytes).toBe(8 * 1024 ** 2);
    expect(config.upload.unpackTimeoutMs).toBe(5_000);
  });

  it('names a bad unpack timeout', () => {
    const input = { upload: { unpackTimeout: 'soon' } };
    const result = configFileSchema.safeParse(input);
    expect(result.success).toBe(false);
    if (result.success) return;
    expect(validationError(result.error, input, 'hearth.config.yaml').message).toContain(
      'upload.unpackTimeout',
    );
  });
});
