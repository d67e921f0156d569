/**
 * @module The compliance parts of the resource model (issue 13): how a function names the secrets it
 * receives (`spec.secrets`), and the Secret resource. Plain schemas; the sealing lives in src/compliance.
 */

import { z } from 'zod';
import { describeValue, HearthError } from './errors.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A key of a secret: a file name as Kubernetes allows it (`tls.crt`, `password`). */
export const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/;
const MOUNT_NAME = /^[A-Za-z0-9_][-._A-Za-z0-9]{0,62}$/;

const secretName = z.string().max(63).regex(DNS_LABEL, 'the name of a Secret (a lower-case DNS label)');

/**
 * One secret a function receives, shaped like Kubernetes' `env[].valueFrom.secretKeyRef` and a secret
 * volume: `env` maps variables to keys of the secret; `mountPath` writes every key as a file
 * `$HEARTH_SECRETS_DIR/<mountPath>/<key>` in the instance's private tmp.
 */
export const secretRefSchema = z
  .strictObject({
    name: secretName,
    env: z
      .record(
        z
          .string()
          .regex(ENV_NAME, 'an environment variable name ([A-Za-z_][A-Za-z0-9_]*)')
          .refine((k) => !k.startsWith('HEARTH_'), { message: 'a name not starting with HEARTH_' }),
        z.string().regex(SECRET_KEY, 'a key of the secret'),
      )
      .optional(),
    mountPath: z.string().regex(MOUNT_NAME, 'a folder name under $HEARTH_SECRETS_DIR, e.g. "db"').optional(),
  })
  .refine((ref) => ref.env !== undefined || ref.mountPath !== undefined, {
    message: 'env (variables from keys) or mountPath (every key as a file), or both',
  });

/**
 * SM4 on the transaction path: request bodies arrive sealed with SM4-GCM under a key kept in a Secret,
 * are opened only inside the function's sandbox, and answers are sealed back (docs: "Compliance").
 */
export const encryptionSchema = z.strictObject({
  algorithm: z.literal('sm4-gcm', { message: '"sm4-gcm"' }),
  key: z.strictObject({
    secret: secretName,
    key: z.string().regex(SECRET_KEY, 'a key of the secret holding 32 hex digits (128 bits)'),
  }),
});
export type EncryptionSpec = z.output<typeof encryptionSchema>;

export const secretRefsSchema = z.array(secretRefSchema).max(32);
export type SecretRef = z.output<typeof secretRefSchema>;

/** A Secret resource as `hearth apply` and the API take it: `data` base64 values, `stringData` text. */
export interface SecretManifest {
  readonly apiVersion: 'hearth.dev/v1';
  readonly kind: 'Secret';
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly data?: Readonly<Record<string, string>>;
  readonly stringData?: Readonly<Record<string, string>>;
}

/** Most keys a secret holds, and its largest total size (values travel in a Bind frame's env). */
export const MAX_SECRET_KEYS = 64;
export const MAX_SECRET_BYTES = 256 * 1024;

/**
 * Validates a Secret's values into bytes. Hand-written rather than zod because a refusal must never
 * echo a value back (zod's errors, and ours, otherwise quote the bad value).
 */
export function parseSecretData(data: unknown, stringData: unknown, origin = 'Secret'): Map<string, Buffer> {
  const values = new Map<string, Buffer>();
  const take = (field: 'data' | 'stringData', input: unknown): void => {
    if (input === undefined) return;
    if (input === null || typeof input !== 'object' || Array.isArray(input))
      throw secretError(origin, field, `got ${describeValue(input)}, expected an object of key: value`);
    for (const [key, value] of Object.entries(input)) {
      if (!SECRET_KEY.test(key))
        throw secretError(
          origin,
          `${field}.${key.slice(0, 64)}`,
          'expected a key of letters, digits, "-", "_" or "." (at most 253)',
        );
      if (typeof value !== 'string')
        throw secretError(origin, `${field}.${key}`, `got ${typeof value}, expected a string`);
      if (field === 'data' && !/^[A-Za-z0-9+/]*={0,2}$/.test(value))
        throw secretError(origin, `${field}.${key}`, 'expected base64 (use stringData for text)');
      values.set(key, field === 'data' ? Buffer.from(value, 'base64') : Buffer.from(value, 'utf8'));
    }
  };
  take('data', data);
  take('stringData', stringData);
  if (values.size === 0)
    throw secretError(origin, 'data', 'got no keys, expected at least one key in data or stringData');
  if (values.size > MAX_SECRET_KEYS)
    throw secretError(origin, 'data', `got ${values.size} keys, expected at most ${MAX_SECRET_KEYS}`);
  let total = 0;
  for (const value of values.values()) total += value.length;
  if (total > MAX_SECRET_BYTES)
    throw secretError(origin, 'data', `got ${total} bytes, expected at most ${MAX_SECRET_BYTES}`);
  return values;
}

function secretError(origin: string, field: string, reason: string): HearthError {
  // No `value` in the details: this is the one resource whose values must not come back.
  return new HearthError('HEARTH_E_VALIDATION', `${origin}: ${field}: ${reason}`, {
    details: { field, expected: reason },
  });
}

export function isSecretName(value: string): boolean {
  return DNS_LABEL.test(value) && value.length <= 63;
}
