/** @module The dependency build part of the platform config: the scratch disk cap, its default and bad values named. */

import { describe, expect, it } from 'vitest';
import { configFileSchema, resolveConfig } from './config.js';
import { validationError } from './domain/function.js';

describe('build config', () => {
  it('caps a build at 4 GiB of scratch disk unless told otherwise', () => {
    expect(resolveConfig({}).buildMaxDiskBytes).toBe(4 * 1024 ** 3);
    expect(resolveConfig(configFileSchema.parse({ build: { maxDisk: '10Gi' } })).buildMaxDiskBytes).toBe(
      10 * 1024 ** 3,
    );
  });

  it('caps a build at 2 GiB of memory and one core unless told otherwise', () => {
    expect(resolveConfig({})).toMatchObject({ buildMemoryBytes: 2 * 1024 ** 3, buildCpu: 1 });
    expect(resolveConfig(configFileSchema.parse({ build: { memory: '512Mi', cpu: '1500m' } }))).toMatchObject(
      {
        buildMemoryBytes: 512 * 1024 ** 2,
        buildCpu: 1.5,
      },
    );
    for (const [field, input] of [
      ['build.memory', { build: { memory: 'plenty' } }],
      ['build.cpu', { build: { cpu: 0 } }],
    ] as const) {
      const result = configFileSchema.safeParse(input);
      expect(result.success).toBe(false);
      if (!result.success)
        expect(validationError(result.error, input, 'hearth.config.yaml').message).toContain(field);
    }
  });

  it('names a bad cap and an unknown field', () => {
    for (const input of [{ build: { maxDisk: 'lots' } }, { build: { maxDisc: '1Gi' } }]) {
      const result = configFileSchema.safeParse(input);
      expect(result.success).toBe(false);
      if (result.success) return;
      expect(validationError(result.error, input, 'hearth.config.yaml').message).toMatch(/build\.maxDis[kc]/);
    }
  });
});
