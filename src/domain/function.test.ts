import { describe, expect, it } from 'vitest';
import { HearthError } from './errors.js';
import { parseFunctionManifest, resolveSpec } from './function.js';

const base = {
  apiVersion: 'hearth.dev/v1',
  kind: 'Function',
  metadata: { name: 'echo' },
  spec: { runtime: 'node20' },
};

function failure(input: unknown): HearthError {
  try {
    parseFunctionManifest(input, 'hearth.yaml');
  } catch (error) {
    if (error instanceof HearthError) return error;
    throw error;
  }
  throw new Error('expected a validation error');
}

describe('Function resource', () => {
  it('accepts runtime alone and fills every default', () => {
    const spec = resolveSpec(parseFunctionManifest(base).spec);
    expect(spec).toMatchObject({
      runtime: 'node20',
      handler: 'index',
      isolation: 'sandbox',
      egress: 'none',
      limits: { memoryBytes: 128 * 1024 ** 2, timeoutMs: 30_000, maxBodyBytes: 6 * 1024 ** 2 },
      scaling: { min: 0, targetConcurrency: 100, idleTimeoutMs: 300_000 },
    });
    expect(resolveSpec(parseFunctionManifest({ ...base, spec: { runtime: 'python3' } }).spec).handler).toBe(
      'main.handler',
    );
  });

  it('names the field, the value and the expectation for a bad duration', () => {
    const error = failure({ ...base, spec: { runtime: 'node20', limits: { timeout: 'ten seconds' } } });
    expect(error.code).toBe('HEARTH_E_VALIDATION');
    expect(error.message).toContain('spec.limits.timeout');
    expect(error.message).toContain('"ten seconds"');
    expect(error.message).toMatch(/expected a duration/);
  });

  it('takes limits.pids and limits.tmp (defaults 256 and 64Mi) and names a bad value', () => {
    expect(resolveSpec(parseFunctionManifest(base).spec).limits).toMatchObject({
      pids: 256,
      tmpBytes: 64 * 1024 ** 2,
    });
    const set = { ...base, spec: { runtime: 'node20', limits: { pids: 64, tmp: '8Mi' } } };
    expect(resolveSpec(parseFunctionManifest(set).spec).limits).toMatchObject({
      pids: 64,
      tmpBytes: 8 * 1024 ** 2,
    });
    for (const [limits, field, expected] of [
      [{ pids: 3 }, 'spec.limits.pids: got 3', 'expected at least 16'],
      [{ pids: 'many' }, 'spec.limits.pids: got "many"', 'expected a whole number of processes'],
      [{ tmp: 'huge' }, 'spec.limits.tmp', 'a size such as "64Mi"'],
    ] as const) {
      const error = failure({ ...base, spec: { runtime: 'node20', limits } });
      expect(error.message).toContain(field);
      expect(error.message).toContain(expected);
    }
  });

  it('runs no install scripts unless build.scripts says true, and names a bad value', () => {
    expect(resolveSpec(parseFunctionManifest(base).spec).build).toEqual({ scripts: false });
    const opted = { ...base, spec: { runtime: 'node20', build: { scripts: true } } };
    expect(resolveSpec(parseFunctionManifest(opted).spec).build).toEqual({ scripts: true });
    const error = failure({ ...base, spec: { runtime: 'node20', build: { scripts: 'yes' } } });
    expect(error.message).toBe('hearth.yaml: spec.build.scripts: got "yes", expected true or false');
  });

  it('rejects unknown fields by name', () => {
    const error = failure({ ...base, spec: { runtime: 'node20', memory: '128Mi' } });
    expect(error.message).toContain('spec.memory');
    expect(error.message).toContain('unknown field');
  });

  it('rejects an unknown runtime listing the valid ones', () => {
    const error = failure({ ...base, spec: { runtime: 'ruby' } });
    expect(error.message).toContain(
      'spec.runtime: got "ruby", expected one of node20, python3, wasm, provided, image',
    );
  });

  it('says a missing field is required', () => {
    expect(failure({ ...base, spec: {} }).message).toContain(
      'spec.runtime: got nothing, expected one of node20, python3, wasm, provided (spec.runtime is required unless spec.image names an OCI image)',
    );
  });

  it('rejects bad sizes, names and env names', () => {
    expect(
      failure({ ...base, spec: { runtime: 'node20', limits: { memory: '12 apples' } } }).message,
    ).toContain('spec.limits.memory');
    expect(failure({ ...base, metadata: { name: 'Bad_Name' } }).message).toContain('metadata.name');
    expect(failure({ ...base, spec: { runtime: 'node20', env: { 'BAD-NAME': 'x' } } }).message).toContain(
      'spec.env',
    );
    expect(failure({ ...base, spec: { runtime: 'node20', scaling: { min: 5, max: 2 } } }).message).toContain(
      'spec.scaling.min',
    );
  });
});

describe('validation messages in our words', () => {
  it('name the bad key of a map and what keys must be', () => {
    const error = failure({ ...base, spec: { runtime: 'node20', env: { 'BAD-KEY': 'x' } } });
    expect(error.message).toBe(
      'hearth.yaml: spec.env: got "BAD-KEY", expected keys that are an environment variable name ([A-Za-z_][A-Za-z0-9_]*) (the key "BAD-KEY" is not)',
    );
    expect(error.details).toMatchObject({ field: 'spec.env', value: 'BAD-KEY' });
  });

  it.each([
    [{ runtime: 'node20', limits: 'lots' }, 'spec.limits', 'an object'],
    [{ runtime: 'node20', env: 5 }, 'spec.env', 'an object'],
    [{ runtime: 'node20', triggers: 5 }, 'spec.triggers', 'a list'],
    [{ runtime: 'node20', scaling: { min: 1.5 } }, 'spec.scaling.min', 'a whole number'],
    [{ runtime: 'node20', egress: [] }, 'spec.egress', 'at least 1 item'],
    [{ runtime: 'node20', handler: '' }, 'spec.handler', 'MODULE or MODULE.EXPORT, e.g. "index.handler"'],
  ])('%j: %s expects %s', (spec, field, expected) => {
    const error = failure({ ...base, spec });
    expect(error.details).toMatchObject({ field, expected });
    expect(error.message).not.toMatch(/\ba (object|array|record|int)\b|Invalid/);
  });

  it('lists at most 20 problems, with bounded values', () => {
    const env = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`bad-${i}`, 'x'.repeat(1000)]));
    const error = failure({ ...base, spec: { runtime: 'node20', env } });
    expect(error.details?.problems).toHaveLength(20);
    expect(error.details?.moreProblems).toBe(30);
  });
});

describe('container functions (spec.image)', () => {
  const image = 'registry.example.com:5000/team/api:1.4';

  it('makes runtime image when runtime is omitted, and keeps command and args', () => {
    const spec = resolveSpec(
      parseFunctionManifest({ ...base, spec: { image, command: ['/server'], args: ['-v'] } }).spec,
    );
    expect(spec).toMatchObject({ runtime: 'image', image, command: ['/server'], args: ['-v'] });
    expect(
      resolveSpec(parseFunctionManifest({ ...base, spec: { runtime: 'image', image } }).spec).runtime,
    ).toBe('image');
  });

  it('names the field when runtime and image disagree or one is missing', () => {
    expect(failure({ ...base, spec: { runtime: 'node20', image } }).details?.field).toBe('spec.runtime');
    expect(failure({ ...base, spec: { runtime: 'image' } }).details?.field).toBe('spec.image');
    expect(failure({ ...base, spec: {} }).details?.field).toBe('spec.runtime');
    expect(failure({ ...base, spec: { runtime: 'node20', args: ['x'] } }).details?.field).toBe('spec.args');
    expect(failure({ ...base, spec: { image: 'Not A Reference' } }).details?.field).toBe('spec.image');
  });
});
