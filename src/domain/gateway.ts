/**
 * @module The EventGateway resource (the seed's §2.3 shape): HTTP routes with traffic control, and event
 * protocols (Kafka, MQTT, NATS) routed to functions. Shared by API and CLI.
 */

import { z } from 'zod';
import { describeValue, HearthError } from './errors.js';
import { API_VERSION, metadataSchema, validationError } from './function.js';
import {
  duration,
  kafkaSourceSchema,
  mqttSourceSchema,
  natsSourceSchema,
  rateLimitSchema,
  retrySchema,
} from './triggers.js';

// --- the EventGateway resource ------------------------------------------------------------------------

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const method = z
  .string()
  .transform((m) => m.toUpperCase())
  .refine((m) => m === '*' || m === 'ANY' || (HTTP_METHODS as readonly string[]).includes(m), {
    message: `an HTTP method (${HTTP_METHODS.join(', ')}) or "*"`,
  });

export const RESERVED_PREFIXES = [
  '/function/',
  '/async-function/',
  '/events',
  '/api/v1/',
  '/healthz',
  '/readyz',
  '/metrics',
  '/ui',
  '/2015-03-31/',
];

const routePath = z
  .string()
  .max(1024)
  .regex(
    /^\/([A-Za-z0-9._~!$&'()+,;=@%-]+|:[A-Za-z_][A-Za-z0-9_]*)?(\/([A-Za-z0-9._~!$&'()+,;=@%-]+|:[A-Za-z_][A-Za-z0-9_]*))*(\/\*)?$/,
    'a path such as "/api/orders", "/api/orders/:id" or "/api/*"',
  )
  // HTTP clients remove dot segments before sending ("/a/../b" goes out as "/b", RFC 3986 §5.2.4), so such
  // a route could never match as written; percent-encoded dots count, as clients decode them too.
  .refine((path) => !path.split('/').some((segment) => /^(\.|%2e){1,2}$/i.test(segment)), {
    message: 'a path without "." or ".." segments',
  })
  .refine(
    (path) =>
      !RESERVED_PREFIXES.some((prefix) => {
        const base = prefix.replace(/\/$/, '');
        return path === base || path.startsWith(`${base}/`);
      }),
    {
      message: `a path outside the platform's own (${RESERVED_PREFIXES.join(', ')})`,
    },
  );

const httpProtocolSchema = z.strictObject({
  /** Also listen on this port for this gateway's routes (they are always served on the platform's port). */
  port: z.int().min(1).max(65_535).optional(),
  rateLimit: rateLimitSchema.optional(),
});

export const gatewayProtocolSchema = z.union(
  [
    z.strictObject({ http: httpProtocolSchema }),
    z.strictObject({ kafka: kafkaSourceSchema }),
    z.strictObject({ mqtt: mqttSourceSchema }),
    z.strictObject({ nats: natsSourceSchema }),
  ],
  { message: 'one of {http: …}, {kafka: …}, {mqtt: …}, {nats: …}' },
);

export const gatewayFunctionSchema = z.strictObject({
  name: metadataSchema.shape.name,
  namespace: metadataSchema.shape.name.optional(),
  match: z
    .strictObject({
      path: routePath.optional(),
      method: z.union([method, z.array(method).min(1)]).optional(),
      /** For events: the Kafka topic, MQTT topic filter or NATS subject this function takes. */
      topic: z.string().min(1).optional(),
    })
    .optional(),
  /** Max concurrent instances of the function. */
  concurrency: z.int().min(1).max(1000).optional(),
  /** Queue priority (0-100, higher first) for requests through this route. */
  priority: z.int().min(0).max(100).optional(),
  rateLimit: rateLimitSchema.optional(),
  timeout: duration(1, 15 * 60_000).optional(),
  retry: retrySchema.optional(),
  queue: z
    .strictObject({
      /** The longest a request through this route waits for capacity before a 503. */
      maxWait: duration(0, 15 * 60_000).optional(),
    })
    .optional(),
});

export const gatewaySpecSchema = z.strictObject({
  protocols: z.array(gatewayProtocolSchema).max(32).optional(),
  functions: z.array(gatewayFunctionSchema).max(10_000).optional(),
});

export const gatewayResourceSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { message: `"${API_VERSION}"` }),
  kind: z.literal('EventGateway', { message: '"EventGateway"' }),
  metadata: metadataSchema,
  spec: gatewaySpecSchema,
});

export type GatewayManifest = z.output<typeof gatewayResourceSchema>;
export type GatewayFunctionEntry = z.output<typeof gatewayFunctionSchema>;
export type GatewayProtocol = z.output<typeof gatewayProtocolSchema>;

/**
 * Validates anything as an EventGateway resource; one HearthError names the first offending field, its
 * value and what was expected (`details.problems` lists every one).
 */
export function parseGatewayManifest(input: unknown, origin = 'resource'): GatewayManifest {
  const result = gatewayResourceSchema.safeParse(input);
  if (!result.success) throw validationError(result.error, input, origin);
  const manifest = result.data;
  const ports = new Set<number>();
  for (const [index, protocol] of (manifest.spec.protocols ?? []).entries()) {
    if (!('http' in protocol) || protocol.http.port === undefined) continue;
    if (ports.has(protocol.http.port))
      throw fieldError(origin, `spec.protocols.${index}.http.port`, protocol.http.port, 'a port used once');
    ports.add(protocol.http.port);
  }
  return manifest;
}

export function fieldError(origin: string, field: string, value: unknown, expected: string): HearthError {
  return new HearthError(
    'HEARTH_E_VALIDATION',
    `${origin}: ${field}: got ${describeValue(value)}, expected ${expected}`,
    {
      details: { field, value, expected },
    },
  );
}

/** The methods a route entry matches; undefined = any. */
export function methodsOf(entry: GatewayFunctionEntry): readonly string[] | undefined {
  const given = entry.match?.method;
  if (given === undefined) return undefined;
  const list = Array.isArray(given) ? given : [given];
  return list.some((m) => m === '*' || m === 'ANY') ? undefined : list;
}
