import { describe, expect, it } from 'vitest';
import { formatReference, parseReference, registryScheme } from './reference.js';
import { challengeParams } from './registry.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('image references', () => {
  it('splits host, repository, tag and digest as Docker does', () => {
    expect(parseReference('localhost:5000/team/api:1.4')).toEqual({
      kind: 'registry',
      registry: 'localhost:5000',
      repository: 'team/api',
      tag: '1.4',
      digest: undefined,
    });
    expect(parseReference('alpine')).toMatchObject({
      registry: 'docker.io',
      repository: 'library/alpine',
      tag: 'latest',
    });
    expect(parseReference('team/api')).toMatchObject({ registry: 'docker.io', repository: 'team/api' });
    expect(parseReference(`registry.example.com/api@${DIGEST}`)).toMatchObject({
      tag: undefined,
      digest: DIGEST,
    });
    expect(parseReference(`oci-archive:api.tar@${DIGEST}`)).toEqual({
      kind: 'archive',
      name: 'api.tar',
      digest: DIGEST,
    });
    expect(formatReference(parseReference('127.0.0.1:5000/a/b:c'))).toBe('127.0.0.1:5000/a/b:c');
  });

  it('refuses what is not a reference, naming the field', () => {
    for (const bad of [
      '',
      'UPPER/case',
      'host:5000/repo@sha256:short',
      'oci-archive:file.tar',
      'a/b:bad tag',
    ])
      expect(() => parseReference(bad), bad).toThrow(/^spec\.image: got /);
  });

  it('speaks plain HTTP to loopback registries only', () => {
    expect(registryScheme('localhost:5000')).toBe('http');
    expect(registryScheme('127.0.0.1:41234')).toBe('http');
    expect(registryScheme('registry.example.com')).toBe('https');
  });

  it("reads a registry's bearer challenge", () => {
    expect(
      challengeParams(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull"',
      ),
    ).toEqual({
      realm: 'https://auth.example.com/token',
      service: 'registry.example.com',
      scope: 'repository:a/b:pull',
    });
  });
});
