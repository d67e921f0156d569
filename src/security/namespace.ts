/**
 * @module The `Namespace` resource: a tenant's policy — whether its functions need a key to be invoked,
 * and its quotas. Validated by one zod schema (the API and `hearth apply` share it), then resolved once.
 */

import { z } from 'zod';
import { API_VERSION, metadataSchema, validationError } from '../domain/function.js';
import { parseBytes } from '../domain/units.js';

const count = z.int({ message: 'a whole number ≥ 0' }).min(0, 'a whole number ≥ 0');
const bytes = z.union([z.string(), z.number()]).refine(
  (value) => {
    const parsed = parseBytes(value);
    return parsed !== undefined && parsed >= 0;
  },
  { message: 'a size such as "512Mi" or "2Gi"' },
);

export const namespaceSpecSchema = z.strictObject({
  /**
   * The least invocation auth of the namespace's functions: `key` makes every `public` function need an
   * API key (or token) with `invoker` in the namespace; `jwt` functions keep their JWT check.
   */
  functionAuth: z.enum(['public', 'key'], { message: 'public or key' }).optional(),
  quotas: z
    .strictObject({
      functions: count.optional(),
      instances: count.optional(),
      memory: bytes.optional(),
      requestsPerSecond: z.number({ message: 'a number > 0' }).positive('a number > 0').optional(),
      queueDepth: count.optional(),
      codeBytes: bytes.optional(),
    })
    .optional(),
});

export const namespaceResourceSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { message: `"${API_VERSION}"` }),
  kind: z.literal('Namespace', { message: '"Namespace"' }),
  metadata: metadataSchema.omit({ namespace: true }),
  spec: namespaceSpecSchema.optional(),
});

export type NamespaceManifest = z.output<typeof namespaceResourceSchema>;

/** Quotas resolved to numbers; an absent quota is no limit. */
export interface Quotas {
  readonly functions?: number;
  readonly instances?: number;
  readonly memoryBytes?: number;
  readonly requestsPerSecond?: number;
  readonly queueDepth?: number;
  readonly codeBytes?: number;
}

export interface NamespacePolicy {
  readonly name: string;
  readonly functionAuth: 'public' | 'key';
  readonly quotas: Quotas;
}

export function parseNamespaceManifest(input: unknown, origin = 'resource'): NamespaceManifest {
  const result = namespaceResourceSchema.safeParse(input);
  if (result.success) return result.data;
  throw validationError(result.error, input, origin);
}

export function resolveNamespace(manifest: NamespaceManifest): NamespacePolicy {
  const quotas = manifest.spec?.quotas ?? {};
  const resolved: { -readonly [K in keyof Quotas]: Quotas[K] } = {};
  if (quotas.functions !== undefined) resolved.functions = quotas.functions;
  if (quotas.instances !== undefined) resolved.instances = quotas.instances;
  if (quotas.memory !== undefined) resolved.memoryBytes = parseBytes(quotas.memory);
  if (quotas.requestsPerSecond !== undefined) resolved.requestsPerSecond = quotas.requestsPerSecond;
  if (quotas.queueDepth !== undefined) resolved.queueDepth = quotas.queueDepth;
  if (quotas.codeBytes !== undefined) resolved.codeBytes = parseBytes(quotas.codeBytes);
  return Object.freeze({
    name: manifest.metadata.name,
    functionAuth: manifest.spec?.functionAuth ?? 'public',
    quotas: Object.freeze(resolved),
  });
}
