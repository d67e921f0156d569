import { describe, expect, it } from 'vitest';
import { registriesOf } from './registries.js';
import { resolveRegistries, SLIRP_HOST } from './sandbox/network.js';
import { sandboxFilter } from './sandbox/seccomp.js';

describe('where a dependency build may connect', () => {
  it("is the package manager's default registry, or the one its environment names, plus its proxy", () => {
    expect(registriesOf({}, ['npm_config_registry'], ['https://registry.npmjs.org/'])).toEqual([
      'https://registry.npmjs.org/',
    ]);
    const env = { NPM_CONFIG_REGISTRY: 'https://npm.internal:8443/', HTTPS_PROXY: 'http://proxy:3128' };
    expect(registriesOf(env, ['npm_config_registry'], ['https://registry.npmjs.org/'])).toEqual([
      'https://npm.internal:8443/',
      'http://proxy:3128',
    ]);
    expect(
      registriesOf({ PIP_EXTRA_INDEX_URL: 'https://a/simple https://b/simple' }, ['PIP_EXTRA_INDEX_URL'], []),
    ).toEqual(['https://a/simple', 'https://b/simple']);
  });

  it("turns a mirror on this machine's loopback into slirp4netns's address for it, on its port only", async () => {
    const resolved = await resolveRegistries(['http://localhost:4873/', 'https://192.0.2.7/simple']);
    expect(resolved.allow).toEqual([
      { address: SLIRP_HOST, port: 4873 },
      { address: '192.0.2.7', port: 443 },
    ]);
    expect(resolved.hosts).toContain(`${SLIRP_HOST} localhost`);
  });

  it('names a registry that is not a URL', async () => {
    await expect(resolveRegistries(['registry.npmjs.org'])).rejects.toThrow(
      'the package registry "registry.npmjs.org" is not a URL',
    );
  });
});

describe('the seccomp program', () => {
  it('is whole sock_filter instructions for the architectures it knows, and absent for others', () => {
    expect((sandboxFilter('x64')?.length ?? 0) % 8).toBe(0);
    expect(sandboxFilter('arm64')?.length).toBeGreaterThan(0);
    expect(sandboxFilter('riscv64')).toBeUndefined();
  });
});
