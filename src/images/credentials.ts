/**
 * @module Registry credentials per namespace (`hearth registry login`), sealed at rest by the secrets store
 * (issue 13) as a secret named `registry:HOST` in the namespace: the name cannot clash with a user's secret
 * (those are DNS labels) and no function can reference it. Values never leave the platform through the API.
 */

import type { RegistryCredentials } from './registry.js';

/** The part of compliance's SecretStore used here. */
export interface SealedValues {
  put(namespace: string, name: string, values: ReadonlyMap<string, Buffer>): unknown;
  values(namespace: string, name: string): Map<string, Buffer> | undefined;
  delete(namespace: string, name: string): boolean;
  list(
    namespace?: string,
  ): readonly { readonly namespace: string; readonly name: string; readonly updatedAt: string }[];
}

export interface RegistryLogin {
  readonly namespace: string;
  readonly registry: string;
  readonly username: string;
  readonly updatedAt: string;
}

const PREFIX = 'registry:';

export class RegistryCredentialStore {
  constructor(private readonly sealed: SealedValues) {}

  put(namespace: string, registry: string, credentials: RegistryCredentials): void {
    this.sealed.put(
      namespace,
      `${PREFIX}${registry}`,
      new Map([
        ['username', Buffer.from(credentials.username)],
        ['password', Buffer.from(credentials.password)],
      ]),
    );
  }

  get(namespace: string, registry: string): RegistryCredentials | undefined {
    const values = this.sealed.values(namespace, `${PREFIX}${registry}`);
    const username = values?.get('username')?.toString('utf8');
    const password = values?.get('password')?.toString('utf8');
    return username === undefined || password === undefined ? undefined : { username, password };
  }

  delete(namespace: string, registry: string): boolean {
    return this.sealed.delete(namespace, `${PREFIX}${registry}`);
  }

  list(namespace: string): RegistryLogin[] {
    return this.sealed
      .list(namespace)
      .filter((secret) => secret.name.startsWith(PREFIX))
      .map((secret) => {
        const registry = secret.name.slice(PREFIX.length);
        return {
          namespace: secret.namespace,
          registry,
          username: this.get(namespace, registry)?.username ?? '',
          updatedAt: secret.updatedAt,
        };
      });
  }
}
