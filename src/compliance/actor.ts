/**
 * @module Who made a request, for the audit log. A seam: today it knows the remote address only; once API
 * keys exist (the tenants work) the lead wires `key` to the authenticated key's identity. It never reads
 * the credential itself, so a token cannot end up in an audit record.
 */

import type { IncomingMessage } from 'node:http';

export interface Actor {
  /** The API key's id (not the key), once requests are authenticated. */
  readonly key?: string;
  /** The client's address as the platform saw it. */
  readonly remote: string;
}

/** Resolves the key identity of a request; replaced by the tenants' helper after the merge. */
let keyIdentity: (request: IncomingMessage) => string | undefined = () => undefined;

export function setKeyIdentity(resolve: (request: IncomingMessage) => string | undefined): void {
  keyIdentity = resolve;
}

export function actorOf(request: IncomingMessage): Actor {
  const key = keyIdentity(request);
  const remote = request.socket.remoteAddress ?? 'unknown';
  return key === undefined ? { remote } : { key, remote };
}
