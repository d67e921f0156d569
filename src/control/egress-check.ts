/**
 * @module Tenancy rules for egress allow-lists (issue 10): an allow-list may not name the platform's own
 * ports on this machine (the gateway, the API, EventGateway listeners: a way around every other function's
 * auth and limits from inside the sandbox) nor another namespace's function. Checked at deploy, so the
 * entry is refused with a 400 naming it rather than silently dropped at bind.
 */

import { networkInterfaces } from 'node:os';
import { HearthError } from '../domain/errors.js';
import {
  type FunctionManifest,
  type FunctionRef,
  HOST_GATEWAY,
  HOST_GATEWAY_NAME,
} from '../domain/function.js';

export interface EgressTenancy {
  /** The ports the platform listens on now: its own and every EventGateway listener's. */
  readonly platformPorts: () => readonly number[];
  /** Every deployed function, to recognise `name.namespace` host names. */
  readonly functions: () => readonly FunctionRef[];
}

/** Addresses that are this machine: loopback, the unspecified address, and every interface's own. */
function isThisMachine(host: string): boolean {
  if (host === 'localhost' || host === HOST_GATEWAY || host === HOST_GATEWAY_NAME) return true;
  if (/^127\./.test(host) || host === '0.0.0.0' || host === '10.0.2.2') return true;
  return Object.values(networkInterfaces())
    .flat()
    .some((info) => info?.address === host);
}

export function checkEgressTenancy(
  origin: string,
  ref: FunctionRef,
  spec: FunctionManifest['spec'],
  tenancy: EgressTenancy,
): void {
  if (!Array.isArray(spec.egress)) return;
  const aliases = spec.hostAliases ?? {};
  const ports = new Set(tenancy.platformPorts());
  for (const [index, entry] of (spec.egress as readonly string[]).entries()) {
    const at = entry.lastIndexOf(':');
    const host = entry.slice(0, at).toLowerCase();
    const port = Number(entry.slice(at + 1));
    const target = aliases[host] ?? host;
    const refuse = (why: string, expected: string): never => {
      throw new HearthError('HEARTH_E_VALIDATION', `${origin}: spec.egress.${index}: "${entry}" ${why}`, {
        details: { field: `spec.egress.${index}`, value: entry, expected },
      });
    };
    if (ports.has(port) && isThisMachine(target))
      refuse(
        `is the platform's own port ${port} on this machine; functions call functions with ctx.invoke`,
        'a host:port other than the platform’s own',
      );
    const other = tenancy
      .functions()
      .find(
        (fn) =>
          fn.namespace !== ref.namespace &&
          (host === `${fn.name}.${fn.namespace}` || host === `${fn.name}.${fn.namespace}.hearth.internal`),
      );
    if (other !== undefined)
      refuse(
        `names ${other.name} of namespace ${other.namespace}, another tenant's function`,
        `a host:port outside other namespaces than ${ref.namespace}`,
      );
  }
}
