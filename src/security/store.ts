/** @module What the security part keeps durably; the control store (SQLite) implements it. */

import type { NamespaceManifest } from './namespace.js';
import type { Role } from './roles.js';

export interface StoredKey {
  /** Public: 12 hex digits, also the key's prefix (`hth_<id>_…`). */
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly namespaces: readonly string[];
  /** Hex SHA-256 of the secret part (credentials.ts says why that hash). */
  readonly hash: string;
  readonly createdAt: string;
  readonly revokedAt: string | null;
}

export interface StoredNamespace {
  readonly name: string;
  readonly manifest: NamespaceManifest;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface SecurityStore {
  listKeys(): StoredKey[];
  insertKey(key: StoredKey): void;
  /** Marks the key revoked; false when no active key has that id. */
  revokeKey(id: string, at: string): boolean;
  listNamespaces(): StoredNamespace[];
  putNamespace(manifest: NamespaceManifest): StoredNamespace;
  deleteNamespace(name: string): boolean;
  /** The secret tokens are signed with: made once, kept so tokens outlive a restart. */
  tokenSecret(): Buffer;
}
