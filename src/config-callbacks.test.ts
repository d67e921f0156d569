/** @module The callback allow-list in the platform config: empty by default, bad entries named. */

import { describe, expect, it } from 'vitest';
import { configFileSchema, resolveConfig } from './config.js';
import { validationError } from './domain/function.js';

describe('async.callback.allow', () => {
  it('is empty by default: no private destination is allowed', () => {
    expect(resolveConfig({}).events.async.callback.allow).toEqual([]);
  });

  it('takes addresses, CIDRs and host names', () => {
    const allow = ['10.1.2.0/24', '127.0.0.1', 'fd00::/8', 'hooks.internal'];
    const config = resolveConfig(configFileSchema.parse({ async: { callback: { allow } } }));
    expect(config.events.async.callback.allow).toEqual(allow);
  });

  it('names an entry that is none of those', () => {
    const input = { async: { callback: { allow: ['10.0.0.0/8', '10.1.2.0/40'] } } };
    const result = configFileSchema.safeParse(input);
    expect(result.success).toBe(false);
    if (result.success) return;
    expect(validationError(result.error, input, 'hearth.config.yaml').message).toMatch(
      /async\.callback\.allow\.1: got "10\.1\.2\.0\/40", expected an IP address, a CIDR such as "10\.1\.2\.0\/24" or a host name/,
    );
  });
});
