/** @module The density part of the platform config (issue 11): memory overcommit, the instance cap's default, the isolate host's memory. */

import { totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import { configFileSchema, resolveConfig } from './config.js';
import { validationError } from './domain/function.js';

describe('density config', () => {
  it('reserves a quarter of limits.memory per instance unless told otherwise', () => {
    expect(resolveConfig({}).memoryOvercommit).toBe(4);
    expect(resolveConfig(configFileSchema.parse({ memoryOvercommit: 1 })).memoryOvercommit).toBe(1);
    expect(resolveConfig(configFileSchema.parse({ memoryOvercommit: 2.5 })).memoryOvercommit).toBe(2.5);
  });

  it('names an overcommit below 1', () => {
    const input = { memoryOvercommit: 0.5 };
    const result = configFileSchema.safeParse(input);
    expect(result.success).toBe(false);
    if (!result.success)
      expect(validationError(result.error, input, 'hearth.config.yaml').message).toContain(
        'memoryOvercommit',
      );
  });

  it('caps instances at half of RAM at 16 MiB each by default (between 16 and 2000)', () => {
    const expected = Math.max(16, Math.min(2000, Math.floor(totalmem() / 2 / (16 * 1024 ** 2))));
    expect(resolveConfig({}).maxInstances).toBe(expected);
  });

  it("gives a namespace's isolate host 1 GiB unless told otherwise", () => {
    expect(resolveConfig({}).isolateHostMemoryBytes).toBe(1024 ** 3);
    expect(
      resolveConfig(configFileSchema.parse({ isolate: { hostMemory: '256Mi' } })).isolateHostMemoryBytes,
    ).toBe(256 * 1024 ** 2);
  });

  it('keeps a stem cell per idle function up to a tenth of RAM unless told otherwise, as a share or a size', () => {
    expect(resolveConfig({}).stemCellFloor).toEqual({
      perIdleFunction: 1,
      memoryBytes: Math.floor((totalmem() * 0.1) / 1024 ** 2) * 1024 ** 2,
    });
    expect(
      resolveConfig(configFileSchema.parse({ stemCellFloor: { perIdleFunction: 0.5, memory: '5%' } }))
        .stemCellFloor,
    ).toEqual({ perIdleFunction: 0.5, memoryBytes: Math.floor((totalmem() * 0.05) / 1024 ** 2) * 1024 ** 2 });
    expect(
      resolveConfig(configFileSchema.parse({ stemCellFloor: { memory: '512Mi' } })).stemCellFloor,
    ).toEqual({
      perIdleFunction: 1,
      memoryBytes: 512 * 1024 ** 2,
    });
  });

  it('names a stem-cell floor memory that is neither a share nor a size', () => {
    const input = { stemCellFloor: { memory: '150%' } };
    const result = configFileSchema.safeParse(input);
    expect(result.success).toBe(false);
    if (!result.success)
      expect(validationError(result.error, input, 'hearth.config.yaml').message).toContain(
        'stemCellFloor.memory',
      );
  });
});
