/** @module The `secrets:` and `audit:` sections of the platform config (issue 13): schema and resolved form. */

import { join, resolve } from 'node:path';
import { z } from 'zod';
import { SEAL_ALGORITHMS, type SealAlgorithm } from './sealing.js';

const hostPort = z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'host:port');

const publicKey = z
  .string()
  .regex(/^[A-Za-z0-9+/]{43}=$/, 'an Ed25519 public key as hearth keygen prints it (base64 of 32 bytes)');

export const complianceConfigSchema = z.strictObject({
  /** Signed packages: deploys must carry a signature by one of these keys (per namespace, or all). */
  signing: z
    .strictObject({
      requireSignature: z.array(publicKey).optional(),
      namespaces: z.record(z.string(), z.strictObject({ requireSignature: z.array(publicKey) })).optional(),
    })
    .optional(),
  secrets: z
    .strictObject({
      /** The master key file; created 0600 with a random key on first start. `$HEARTH_MASTER_KEY` wins. */
      keyFile: z.string().min(1).optional(),
      algorithm: z.enum(SEAL_ALGORITHMS, { message: SEAL_ALGORITHMS.join(' or ') }).optional(),
    })
    .optional(),
  audit: z
    .strictObject({
      /** Audit every invocation too (function, caller, status, duration, SM3 of the payload). */
      invocations: z.boolean().optional(),
      /** Records between two Ed25519-signed checkpoints. */
      checkpointEvery: z.int().min(1).max(100_000).optional(),
      /** The platform's Ed25519 signing key (PEM); created 0600 on first start. */
      signingKeyFile: z.string().min(1).optional(),
      sinks: z
        .strictObject({
          webhook: z
            .array(
              z.strictObject({
                url: z.string().refine((v) => /^https?:\/\//.test(v) && URL.canParse(v), {
                  message: 'an http(s):// URL',
                }),
                /** The HMAC-SM3 key of the X-Hearth-Signature header. */
                secret: z.string().min(16, 'at least 16 characters'),
              }),
            )
            .optional(),
          syslog: z
            .array(
              z.strictObject({
                address: hostPort,
                /** RFC 5425: syslog over TLS, the receiver's certificate checked against `ca` (PEM file). */
                tls: z.strictObject({ ca: z.string().min(1).optional() }).optional(),
              }),
            )
            .optional(),
          kafka: z
            .array(z.strictObject({ brokers: z.array(hostPort).min(1), topic: z.string().min(1) }))
            .optional(),
        })
        .optional(),
    })
    .optional(),
});

export type ComplianceConfigFile = z.infer<typeof complianceConfigSchema>;

export interface WebhookSinkConfig {
  readonly kind: 'webhook';
  readonly url: string;
  readonly secret: string;
}
export interface SyslogSinkConfig {
  readonly kind: 'syslog';
  readonly address: string;
  readonly tls?: { readonly ca?: string };
}
export interface KafkaSinkConfig {
  readonly kind: 'kafka';
  readonly brokers: readonly string[];
  readonly topic: string;
}
export type SinkConfig = WebhookSinkConfig | SyslogSinkConfig | KafkaSinkConfig;

export interface ComplianceConfig {
  readonly signing: {
    /** The keys a namespace's packages must be signed by; empty: signatures are not required. */
    trustedKeys(namespace: string): readonly string[];
  };
  readonly secrets: { readonly keyFile: string; readonly algorithm: SealAlgorithm };
  readonly audit: {
    readonly invocations: boolean;
    readonly checkpointEvery: number;
    readonly signingKeyFile: string;
    readonly sinks: readonly SinkConfig[];
  };
}

export function resolveCompliance(file: ComplianceConfigFile, dataDir: string): ComplianceConfig {
  const sinks: SinkConfig[] = [
    ...(file.audit?.sinks?.webhook ?? []).map((sink) => ({ kind: 'webhook' as const, ...sink })),
    ...(file.audit?.sinks?.syslog ?? []).map((sink) => ({ kind: 'syslog' as const, ...sink })),
    ...(file.audit?.sinks?.kafka ?? []).map((sink) => ({ kind: 'kafka' as const, ...sink })),
  ];
  const everywhere = Object.freeze([...(file.signing?.requireSignature ?? [])]);
  const perNamespace = new Map(
    Object.entries(file.signing?.namespaces ?? {}).map(([namespace, entry]) => [
      namespace,
      Object.freeze([...entry.requireSignature]),
    ]),
  );
  return Object.freeze({
    signing: Object.freeze({ trustedKeys: (namespace: string) => perNamespace.get(namespace) ?? everywhere }),
    secrets: Object.freeze({
      keyFile: resolve(file.secrets?.keyFile ?? join(dataDir, 'master.key')),
      algorithm: file.secrets?.algorithm ?? 'sm4-cbc-hmac-sm3',
    }),
    audit: Object.freeze({
      invocations: file.audit?.invocations ?? false,
      checkpointEvery: file.audit?.checkpointEvery ?? 100,
      signingKeyFile: resolve(file.audit?.signingKeyFile ?? join(dataDir, 'audit-signing.key')),
      sinks: Object.freeze(sinks),
    }),
  });
}
