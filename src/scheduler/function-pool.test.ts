/** @module A function's instance pool: which instance takes a request, what counts as live and idle. */

import { describe, expect, it } from 'vitest';
import type { DeployedVersion } from '../domain/deployment.js';
import { parseFunctionManifest, resolveSpec } from '../domain/function.js';
import { type PooledInstance, PoolsByRef, VersionPool } from './function-pool.js';

function version(runtime: 'node20' | 'python3', targetConcurrency = 5): DeployedVersion {
  const manifest = parseFunctionManifest({
    apiVersion: 'hearth.dev/v1',
    kind: 'Function',
    metadata: { name: 'fn' },
    spec: { runtime, scaling: { targetConcurrency } },
  });
  return {
    ref: { namespace: 'default', name: 'fn' },
    version: 1,
    spec: resolveSpec(manifest.spec),
    manifest,
    code: { hash: 'h', files: 1, bytes: 1 },
    deps: undefined,
    createdAt: new Date().toISOString(),
  };
}

function instance(
  name: string,
  state: PooledInstance['state'],
  inFlight: number,
  capacity = 1,
): PooledInstance & { name: string } {
  return { name, state, inFlight, lastUsedAt: 0, hasRoom: state === 'ready' && inFlight < capacity };
}

describe('VersionPool', () => {
  it('sends a request to the oldest instance with room, so newer ones go idle', () => {
    const pool = new VersionPool<PooledInstance & { name: string }>(version('node20'));
    pool.instances.push(
      instance('full', 'ready', 1),
      instance('draining', 'draining', 0),
      instance('older', 'ready', 0),
      instance('newer', 'ready', 0),
    );
    expect(pool.pick()?.name).toBe('older');
    expect(pool.live).toBe(3);
    expect(pool.idle().map((i) => i.name)).toEqual(['older', 'newer']);
  });

  it('has nothing to pick when every instance is full or starting', () => {
    const pool = new VersionPool<PooledInstance>(version('node20'));
    pool.instances.push(instance('a', 'ready', 1), instance('b', 'starting', 0));
    expect(pool.pick()).toBeUndefined();
    expect(pool.live).toBe(1);
  });

  it('expects one request at a time of a Python instance until one is bound', () => {
    expect(new VersionPool(version('python3', 8)).capacityHint).toBe(1);
    expect(new VersionPool(version('node20', 8)).capacityHint).toBe(8);
  });
});

describe('PoolsByRef', () => {
  it('finds, lists and forgets pools by namespace and name', () => {
    const pools = new PoolsByRef<string>();
    pools.set({ namespace: 'a', name: 'x' }, 'ax');
    pools.set({ namespace: 'b', name: 'x' }, 'bx');
    pools.set({ namespace: 'a', name: 'y' }, 'ay');
    expect(pools.get({ namespace: 'b', name: 'x' })).toBe('bx');
    expect([...pools].map(([key]) => key).sort()).toEqual(['a/x', 'a/y', 'b/x']);
    pools.delete({ namespace: 'b', name: 'x' });
    expect(pools.get({ namespace: 'b', name: 'x' })).toBeUndefined();
    expect([...pools.values()].sort()).toEqual(['ax', 'ay']);
  });
});
