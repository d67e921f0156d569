/** @module Roles, the actions they allow, and the check of one grant against one action in one namespace. */

export const ROLES = ['admin', 'deployer', 'invoker', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a request asks to do. `read` is listing and describing; `logs` is function output and stored
 * payloads (invocations, dead letters), kept apart from `read` because they carry user data.
 */
export type Action = 'read' | 'logs' | 'deploy' | 'invoke' | 'admin';

/** `*` in a grant's namespaces: every namespace, including ones created later. */
export const ALL_NAMESPACES = '*';

const ALLOWED: Readonly<Record<Role, ReadonlySet<Action>>> = {
  admin: new Set<Action>(['read', 'logs', 'deploy', 'invoke', 'admin']),
  // A deployer reads and tails what it deploys, and may invoke it to try it out.
  deployer: new Set<Action>(['read', 'logs', 'deploy', 'invoke']),
  invoker: new Set<Action>(['invoke']),
  viewer: new Set<Action>(['read']),
};

/** The least role that allows `action`, for naming what a 403 was missing. */
export function leastRoleFor(action: Action): Role {
  if (action === 'read') return 'viewer';
  if (action === 'invoke') return 'invoker';
  if (action === 'admin') return 'admin';
  return 'deployer';
}

export interface Grant {
  readonly role: Role;
  /** Namespaces the role applies in; `["*"]` for all (always so for admin). */
  readonly namespaces: readonly string[];
}

/** `namespace` undefined means the request spans every namespace (a list without `?namespace=`). */
export function permits(grant: Grant, action: Action, namespace: string | undefined): boolean {
  if (!ALLOWED[grant.role].has(action)) return false;
  if (grant.role === 'admin' || grant.namespaces.includes(ALL_NAMESPACES)) return true;
  return namespace !== undefined && grant.namespaces.includes(namespace);
}

/** Whether `narrower` gives nothing `wider` does not: a token derived from a key may only narrow it. */
export function isWithin(narrower: Grant, wider: Grant): boolean {
  const actions = ALLOWED[narrower.role];
  for (const action of actions) if (!ALLOWED[wider.role].has(action)) return false;
  if (wider.role === 'admin' || wider.namespaces.includes(ALL_NAMESPACES)) return true;
  if (narrower.role === 'admin' || narrower.namespaces.includes(ALL_NAMESPACES)) return false;
  return narrower.namespaces.every((namespace) => wider.namespaces.includes(namespace));
}
