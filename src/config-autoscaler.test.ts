/** @module The autoscaler's and the node budget's part of the platform config: defaults, and bad values named. */

import { describe, expect, it } from 'vitest';
import { configFileSchema, resolveConfig } from './config.js';
import { validationError } from './domain/function.js';

function problem(input: unknown): string {
  const result = configFileSchema.safeParse(input);
  if (result.success) throw new Error('expected a validation error');
  return validationError(result.error, input, 'hearth.config.yaml').message;
}

describe('autoscaler config', () => {
  it("defaults to the hybrid policy with Knative's windows and ¾ of the machine's memory", () => {
    const config = resolveConfig({});
    expect(config.autoscaler).toEqual({
      policy: 'hybrid',
      tickMs: 500,
      stableWindowMs: 60_000,
      panicWindowMs: 6_000,
      panicThreshold: 2,
      maxScaleDownRate: 2,
      stemCellsMax: 8,
    });
    expect(config.maxMemoryBytes).toBeGreaterThan(0);
    expect(Object.isFrozen(config.autoscaler)).toBe(true);
  });

  it('takes units as everywhere else', () => {
    const config = resolveConfig(
      configFileSchema.parse({
        maxMemory: '2Gi',
        autoscaler: {
          policy: 'fixed',
          tick: '20ms',
          stableWindow: '333ms',
          panicWindow: '40ms',
          stemCellsMax: 0,
        },
      }),
    );
    expect(config.maxMemoryBytes).toBe(2 * 1024 ** 3);
    expect(config.autoscaler).toMatchObject({
      policy: 'fixed',
      tickMs: 20,
      stableWindowMs: 333,
      panicWindowMs: 40,
      stemCellsMax: 0,
    });
  });

  it('names the field, the value and what was expected', () => {
    expect(problem({ autoscaler: { policy: 'magic' } })).toBe(
      'hearth.config.yaml: autoscaler.policy: got "magic", expected hybrid or fixed',
    );
    expect(problem({ autoscaler: { stableWindow: '1s', panicWindow: '5s' } })).toBe(
      'hearth.config.yaml: autoscaler.panicWindow: got "5s", expected a panicWindow no longer than stableWindow',
    );
    expect(problem({ autoscaler: { tick: '7s' } })).toBe(
      'hearth.config.yaml: autoscaler.tick: got "7s", expected a tick no longer than panicWindow',
    );
    expect(problem({ maxMemory: 'lots' })).toMatch(
      /^hearth\.config\.yaml: maxMemory: got "lots", expected a size/,
    );
    expect(problem({ autoscaler: { windows: 3 } })).toMatch(
      /autoscaler\.windows: got 3, expected no field "windows"/,
    );
  });
});
