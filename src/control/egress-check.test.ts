/** @module What an egress allow-list may not name: the platform's own ports on this machine, another tenant's function. */

import { describe, expect, it } from 'vitest';
import type { HearthError } from '../domain/errors.js';
import type { FunctionManifest } from '../domain/function.js';
import { checkEgressTenancy } from './egress-check.js';

const tenancy = {
  platformPorts: () => [8080, 9090],
  functions: () => [
    { namespace: 'team-a', name: 'mine' },
    { namespace: 'team-b', name: 'theirs' },
  ],
};
const ref = { namespace: 'team-a', name: 'caller' };

function check(egress: string[], hostAliases?: Record<string, string>): HearthError | undefined {
  const spec = { runtime: 'node20', egress, ...(hostAliases === undefined ? {} : { hostAliases }) };
  try {
    checkEgressTenancy('hearth.yaml', ref, spec as FunctionManifest['spec'], tenancy);
    return undefined;
  } catch (error) {
    return error as HearthError;
  }
}

describe('egress allow-lists and tenancy', () => {
  it.each([
    ['host-gateway:8080'],
    ['host.hearth.internal:9090'],
    ['localhost:8080'],
    ['127.0.0.53:8080'],
    ['10.0.2.2:8080'],
  ])('refuses %s, the platform’s own port, naming the entry', (entry) => {
    const error = check(['192.0.2.1:443', entry]);
    expect(error?.code).toBe('HEARTH_E_VALIDATION');
    expect(error?.message).toContain(`spec.egress.1: "${entry}" is the platform's own port`);
    expect(error?.details).toMatchObject({ field: 'spec.egress.1', value: entry });
  });

  it('follows hostAliases to this machine', () => {
    expect(check(['gw:8080'], { gw: 'host-gateway' })?.message).toContain('"gw:8080"');
    expect(check(['db:8080'], { db: '192.0.2.7' })).toBeUndefined();
  });

  it("refuses another namespace's function, not one of its own", () => {
    expect(check(['theirs.team-b:80'])?.message).toContain('names theirs of namespace team-b');
    expect(check(['theirs.team-b.hearth.internal:80'])?.message).toContain('another tenant');
    expect(check(['mine.team-a:80'])).toBeUndefined();
  });

  it('lets other ports of this machine and other hosts through', () => {
    expect(check(['host-gateway:6379', '192.0.2.1:8080', 'db.example.com:8080'])).toBeUndefined();
  });
});
