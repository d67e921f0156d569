/** @module Image references: `host[:port]/repo[:tag|@sha256:…]` and `oci-archive:NAME@sha256:…`, parsed and checked. */

import { HearthError } from '../domain/errors.js';

export interface RegistryReference {
  readonly kind: 'registry';
  /** `host[:port]` as written (`docker.io` when the reference names none). */
  readonly registry: string;
  /** `library/alpine`, `team/api`. */
  readonly repository: string;
  /** The tag, when the reference has no digest (`latest` when it has neither). */
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

export interface ArchiveReference {
  readonly kind: 'archive';
  /** The uploaded file's name, for people. */
  readonly name: string;
  /** The manifest digest the import answered with: the image is looked up by it in the local store. */
  readonly digest: string;
}

export type ImageReference = RegistryReference | ArchiveReference;

export const ARCHIVE_PREFIX = 'oci-archive:';
const DIGEST = /^sha256:[a-f0-9]{64}$/;
// The distribution spec's grammar (github.com/distribution/reference), lower-case path components.
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const HOST =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$/;

export function isDigest(value: string): boolean {
  return DIGEST.test(value);
}

/** Parses `text`, or throws a validation error naming `field`. */
export function parseReference(text: string, field = 'spec.image'): ImageReference {
  const invalid = (expected: string): HearthError =>
    new HearthError('HEARTH_E_VALIDATION', `${field}: got ${JSON.stringify(text)}, expected ${expected}`, {
      details: { field, value: text, expected },
    });
  if (text.length === 0 || text.length > 512) throw invalid('an image reference of 1-512 characters');
  if (text.startsWith(ARCHIVE_PREFIX)) {
    const rest = text.slice(ARCHIVE_PREFIX.length);
    const at = rest.lastIndexOf('@');
    const digest = at < 0 ? '' : rest.slice(at + 1);
    if (!DIGEST.test(digest))
      throw invalid(
        'oci-archive:NAME@sha256:DIGEST (upload the file with hearth deploy --image oci-archive:FILE, which fills in the digest)',
      );
    return { kind: 'archive', name: rest.slice(0, at), digest };
  }
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid('a digest of the form @sha256:<64 hex digits>');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid('a tag of letters, digits, "_", "." and "-" (at most 128)');
  }
  const parts = rest.split('/');
  let registry = 'docker.io';
  const first = parts[0] ?? '';
  // As Docker decides: the first component is a registry host when it has a dot or a port, or is localhost.
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    parts.shift();
    if (!HOST.test(registry)) throw invalid('a registry host such as registry.example.com:5000');
  } else if (parts.length === 1) {
    parts.unshift('library');
  }
  if (parts.length === 0 || !parts.every((part) => COMPONENT.test(part)))
    throw invalid('host[:port]/repository[:tag|@sha256:digest], repository in lower case (a-z, 0-9, . _ -)');
  return {
    kind: 'registry',
    registry,
    repository: parts.join('/'),
    tag: digest === undefined ? (tag ?? 'latest') : tag,
    digest,
  };
}

/** The host a registry's API answers on (Docker Hub's API is not at docker.io). */
export function apiHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}

/** Loopback registries speak plain HTTP, as Docker assumes for localhost; everything else HTTPS. */
export function registryScheme(registry: string): 'http' | 'https' {
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host.startsWith('127.') || host === '::1' ? 'http' : 'https';
}

export function formatReference(ref: ImageReference): string {
  if (ref.kind === 'archive') return `${ARCHIVE_PREFIX}${ref.name}@${ref.digest}`;
  return `${ref.registry}/${ref.repository}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}
