export interface TestRegistry {
  /** `127.0.0.1:PORT`, the host part of an image reference. */
  readonly host: string;
  /** Where it stores blobs (`docker/registry/v2/blobs/sha256/<2>/<64>/data`), for tampering tests. */
  readonly storage: string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  readonly auth?: { readonly username: string; readonly password: string };
  /** With `auth`: bearer tokens from a token service started alongside, instead of basic auth. */
  readonly token?: boolean;
}

/** Debian's `docker-registry` (distribution v2) on a free loopback port, anonymous or with htpasswd basic auth. */
export function startRegistry(options?: RegistryOptions): Promise<TestRegistry>;
export function freePort(): Promise<number>;
