/**
 * @module The OCI distribution API client (https://github.com/opencontainers/distribution-spec): manifests and
 * blobs of one repository, with anonymous, basic and bearer-token auth answered from the registry's
 * `WWW-Authenticate` challenge. Uses Node's bundled undici through `fetch` (no second copy of undici in the
 * platform); redirects to blob storage are followed, and fetch drops `Authorization` on a cross-origin hop.
 */

import { createHash } from 'node:crypto';
import { HearthError } from '../domain/errors.js';
import { apiHost, type RegistryReference, registryScheme } from './reference.js';

export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
} as const;

const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(
  ', ',
);
/** Real manifests are a few KiB; an index of every platform a few tens. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface FetchedManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
}

export class RegistryClient {
  private authorization: string | undefined;
  private readonly base: string;

  constructor(
    private readonly ref: RegistryReference,
    private readonly credentials: RegistryCredentials | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.base = `${registryScheme(ref.registry)}://${apiHost(ref.registry)}/v2/${ref.repository}`;
  }

  /** A manifest by tag or digest, its digest checked against the bytes (and against `expected`, if given). */
  async manifest(reference: string, expected?: string): Promise<FetchedManifest> {
    const response = await this.get(`${this.base}/manifests/${reference}`, MANIFEST_ACCEPT);
    if (response.status === 404)
      throw notFound(`${this.ref.registry}/${this.ref.repository}:${reference}`, await answerOf(response));
    await this.expectOk(response, `manifest ${reference}`);
    const bytes = await readBounded(response, MAX_MANIFEST_BYTES, `manifest ${reference}`);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const announced = response.headers.get('docker-content-digest');
    for (const claimed of [expected, announced ?? undefined]) {
      if (claimed?.startsWith('sha256:') && claimed !== digest)
        throw digestMismatch(`manifest ${reference}`, claimed, digest);
    }
    let declared: string | undefined;
    try {
      declared = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
    } catch {
      throw new HearthError('HEARTH_E_IMAGE_INVALID', `manifest ${reference} is not JSON`, {
        details: { registry: this.ref.registry },
      });
    }
    const mediaType = declared ?? (response.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
    return { digest, mediaType, bytes };
  }

  /**
   * `GET /v2/` with the credentials, answering a challenge as a pull would (`hearth registry login` checks a
   * login this way, as `docker login` does). Construct the client with an empty repository for it.
   */
  async ping(): Promise<void> {
    const response = await this.get(
      `${registryScheme(this.ref.registry)}://${apiHost(this.ref.registry)}/v2/`,
      'application/json',
    );
    await this.expectOk(response, 'the API root /v2/');
  }

  /** The blob's response, its body unread (the caller streams and verifies it). */
  async blob(digest: string): Promise<Response> {
    const response = await this.get(`${this.base}/blobs/${digest}`, '*/*');
    if (response.status === 404)
      throw notFound(
        `${this.ref.registry}/${this.ref.repository}@${digest} (blob)`,
        await answerOf(response),
      );
    await this.expectOk(response, `blob ${digest}`);
    return response;
  }

  private async get(url: string, accept: string): Promise<Response> {
    let response = await this.send(url, accept);
    if (response.status !== 401) return response;
    const challenge = response.headers.get('www-authenticate') ?? '';
    const first = await answerOf(response);
    this.authorization = await this.answerChallenge(challenge, first);
    response = await this.send(url, accept);
    if (response.status === 401 || response.status === 403) throw this.refused(await answerOf(response));
    return response;
  }

  private async send(url: string, accept: string): Promise<Response> {
    try {
      return await fetch(url, {
        headers: {
          accept,
          ...(this.authorization === undefined ? {} : { authorization: this.authorization }),
        },
        signal: this.signal ?? null,
      });
    } catch (error) {
      if (this.signal?.aborted) throw error;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new HearthError(
        'HEARTH_E_REGISTRY_UNAVAILABLE',
        `registry ${this.ref.registry} cannot be reached: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
        { details: { registry: this.ref.registry } },
      );
    }
  }

  private async answerChallenge(challenge: string, firstAnswer: string): Promise<string> {
    const scheme = challenge.split(' ', 1)[0]?.toLowerCase() ?? '';
    const params = challengeParams(challenge);
    if (scheme === 'basic') {
      if (this.credentials === undefined) throw this.needsLogin(firstAnswer);
      return basicHeader(this.credentials);
    }
    if (scheme !== 'bearer' || params.realm === undefined)
      throw new HearthError(
        'HEARTH_E_REGISTRY_AUTH',
        `registry ${this.ref.registry} asks for an authentication scheme Hearth does not speak: ${challenge || '(no WWW-Authenticate)'}`,
        { details: { registry: this.ref.registry, challenge } },
      );
    const tokenUrl = new URL(params.realm);
    if (params.service !== undefined) tokenUrl.searchParams.set('service', params.service);
    const scope =
      params.scope ?? (this.ref.repository === '' ? undefined : `repository:${this.ref.repository}:pull`);
    if (scope !== undefined) tokenUrl.searchParams.set('scope', scope);
    let response: Response;
    try {
      response = await fetch(tokenUrl, {
        headers: this.credentials === undefined ? {} : { authorization: basicHeader(this.credentials) },
        signal: this.signal ?? null,
      });
    } catch (error) {
      throw new HearthError(
        'HEARTH_E_REGISTRY_UNAVAILABLE',
        `the token service of registry ${this.ref.registry} (${tokenUrl.origin}) cannot be reached: ${(error as Error).message}`,
        { details: { registry: this.ref.registry } },
      );
    }
    if (response.status === 401 || response.status === 403) {
      const answer = await answerOf(response);
      throw this.credentials === undefined ? this.needsLogin(answer) : this.refused(answer);
    }
    await this.expectOk(response, 'token');
    const body = (await response.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (token === undefined)
      throw new HearthError(
        'HEARTH_E_REGISTRY_AUTH',
        `the token service of registry ${this.ref.registry} answered without a token`,
        { details: { registry: this.ref.registry } },
      );
    return `Bearer ${token}`;
  }

  private async expectOk(response: Response, what: string): Promise<void> {
    if (response.ok) return;
    const answer = await answerOf(response);
    if (response.status >= 500 || response.status === 429)
      throw new HearthError(
        'HEARTH_E_REGISTRY_UNAVAILABLE',
        `registry ${this.ref.registry} answered ${response.status} for ${what}: ${answer}`,
        { details: { registry: this.ref.registry, status: response.status, answer } },
      );
    throw new HearthError(
      'HEARTH_E_IMAGE_INVALID',
      `registry ${this.ref.registry} answered ${response.status} for ${what}: ${answer}`,
      { details: { registry: this.ref.registry, status: response.status, answer } },
    );
  }

  private needsLogin(answer: string): HearthError {
    return new HearthError(
      'HEARTH_E_REGISTRY_AUTH',
      `registry ${this.ref.registry} asks for credentials (${answer}); store them with: hearth registry login ${this.ref.registry}`,
      { details: { registry: this.ref.registry, answer } },
    );
  }

  private refused(answer: string): HearthError {
    return new HearthError(
      'HEARTH_E_REGISTRY_AUTH',
      `registry ${this.ref.registry} refused the credentials${this.credentials === undefined ? '' : ` of ${this.credentials.username}`}${this.ref.repository === '' ? '' : ` for ${this.ref.repository}`}: ${answer}`,
      { details: { registry: this.ref.registry, answer } },
    );
  }
}

function basicHeader(credentials: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

/** `Bearer realm="…",service="…",scope="…"` → its parameters. */
export function challengeParams(challenge: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const match of challenge.matchAll(/([a-zA-Z_]+)="([^"]*)"/g))
    params[(match[1] ?? '').toLowerCase()] = match[2] ?? '';
  return params;
}

/** The registry's own words: the `errors[].message` of a distribution error body, else the status text. */
async function answerOf(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const messages = (body.errors ?? []).map((error) =>
      [error.code, error.message].filter((part) => part !== undefined).join(': '),
    );
    if (messages.length > 0) return `${response.status} ${messages.join('; ')}`;
  } catch {
    // Not JSON: the status line says enough.
  }
  return `${response.status} ${response.statusText || text.slice(0, 200)}`.trim();
}

async function readBounded(response: Response, max: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > max) throw tooLarge(what, max);
  const bytes = Buffer.from(await response.arrayBuffer());
  if (bytes.length > max) throw tooLarge(what, max);
  return bytes;
}

function tooLarge(what: string, max: number): HearthError {
  return new HearthError('HEARTH_E_IMAGE_INVALID', `${what} is larger than ${max} bytes`, {
    details: { limit: max },
  });
}

function notFound(what: string, answer: string): HearthError {
  return new HearthError(
    'HEARTH_E_IMAGE_NOT_FOUND',
    `image ${what} not found: the registry answered ${answer}`,
    {
      details: { image: what, answer },
    },
  );
}

export function digestMismatch(what: string, expected: string, actual: string): HearthError {
  return new HearthError(
    'HEARTH_E_IMAGE_INVALID',
    `${what}: digest mismatch, expected ${expected} but the content hashes to ${actual}`,
    { details: { expected, actual } },
  );
}
