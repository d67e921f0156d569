/**
 * @module Event triggers (Kafka, MQTT, NATS, cron) as a Function's `spec.triggers` or a gateway's event
 * protocols, and the traffic units they share with gateways (`1000qps` rates, retry policies).
 */

import { Cron } from 'croner';
import { z } from 'zod';
import { parseDuration } from './units.js';

// --- rates ------------------------------------------------------------------------------------------

const RATE = /^(\d+(?:\.\d+)?)\s*(qps|rps|qpm|rpm|\/s|\/m|\/min|\/h|qph)?$/;
const PER_SECOND: Record<string, number> = {
  qps: 1,
  rps: 1,
  '/s': 1,
  qpm: 1 / 60,
  rpm: 1 / 60,
  '/m': 1 / 60,
  '/min': 1 / 60,
  qph: 1 / 3600,
  '/h': 1 / 3600,
};

/** `1000qps`, `1000rps`, `600qpm`, `50/s`, or a bare number (per second) → requests per second. */
export function parseRate(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : undefined;
  const match = RATE.exec(value.trim());
  if (match === null) return undefined;
  const rate = Number(match[1]) * (PER_SECOND[match[2] ?? 'qps'] ?? 1);
  return rate > 0 ? rate : undefined;
}

const rate = z.union([z.string(), z.number()]).refine((v) => parseRate(v) !== undefined, {
  message: 'a rate such as "1000qps", "1000rps" or "600qpm"',
});

/** `rateLimit: 1000qps`, or `{ rate: 1000qps, burst: 100, perClient: 10qps }`. */
export const rateLimitSchema = z.union([
  rate,
  z.strictObject({
    rate: rate.optional(),
    burst: z.int().min(1).max(10_000_000).optional(),
    perClient: rate.optional(),
    clientBurst: z.int().min(1).max(10_000_000).optional(),
  }),
]);
export type RateLimitInput = z.input<typeof rateLimitSchema>;

/** A resolved rate limit: a shared token bucket and/or one bucket per client (API key, else IP). */
export interface RateLimit {
  readonly rate: number | undefined;
  readonly burst: number;
  readonly perClient: number | undefined;
  readonly clientBurst: number;
}

/** Burst defaults to a tenth of a second's worth: a constant overload is then held within ~1% of the rate. */
function defaultBurst(perSecond: number | undefined): number {
  return perSecond === undefined ? 1 : Math.max(1, Math.ceil(perSecond / 10));
}

export function resolveRateLimit(input: RateLimitInput | undefined): RateLimit | undefined {
  if (input === undefined) return undefined;
  if (typeof input === 'string' || typeof input === 'number') {
    const perSecond = parseRate(input);
    return { rate: perSecond, burst: defaultBurst(perSecond), perClient: undefined, clientBurst: 1 };
  }
  const shared = input.rate === undefined ? undefined : parseRate(input.rate);
  const perClient = input.perClient === undefined ? undefined : parseRate(input.perClient);
  if (shared === undefined && perClient === undefined) return undefined;
  return {
    rate: shared,
    burst: input.burst ?? defaultBurst(shared),
    perClient,
    clientBurst: input.clientBurst ?? defaultBurst(perClient),
  };
}

// --- retries ----------------------------------------------------------------------------------------

export const duration = (min: number, max: number) =>
  z.union([z.string(), z.number()]).refine(
    (v) => {
      const ms = parseDuration(v);
      return ms !== undefined && ms >= min && ms <= max;
    },
    { message: `a duration such as "500ms", "10s" or "5m" between ${min}ms and ${max / 1000}s` },
  );

export const retrySchema = z.strictObject({
  /** Deliveries in all, the first included (1 = no retry). */
  attempts: z.int().min(1).max(100).optional(),
  /** The first retry's delay; each later one doubles it (with jitter), up to `maxBackoff`. */
  backoff: duration(0, 3_600_000).optional(),
  maxBackoff: duration(0, 24 * 3_600_000).optional(),
});
export type RetryInput = z.input<typeof retrySchema>;

export interface RetryPolicy {
  readonly attempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({
  attempts: 3,
  backoffMs: 1000,
  maxBackoffMs: 5 * 60_000,
});

export function resolveRetry(
  input: RetryInput | undefined,
  fallback: RetryPolicy = DEFAULT_RETRY,
): RetryPolicy {
  if (input === undefined) return fallback;
  return Object.freeze({
    attempts: input.attempts ?? fallback.attempts,
    backoffMs: input.backoff === undefined ? fallback.backoffMs : (parseDuration(input.backoff) ?? 0),
    maxBackoffMs:
      input.maxBackoff === undefined ? fallback.maxBackoffMs : (parseDuration(input.maxBackoff) ?? 0),
  });
}

/** Delay before delivery `attempt + 1` (attempt counts from 1): exponential, ±20% jitter, capped. */
export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  const base = Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

// --- triggers (event sources) ----------------------------------------------------------------------

const HOST_PORT = /^[A-Za-z0-9.-]+:\d{1,5}$/;
const triggerName = z
  .string()
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a lower-case DNS label');
const topicName = z
  .string()
  .min(1)
  .max(249)
  .regex(/^[A-Za-z0-9._-]+$/, 'a Kafka topic name (letters, digits, ".", "_", "-")');

export const kafkaSourceSchema = z.strictObject({
  name: triggerName.optional(),
  brokers: z.array(z.string().regex(HOST_PORT, 'host:port')).min(1),
  topic: topicName,
  /** Consumer group; default `hearth.<namespace>.<function>` (or `.gateway.<name>`). */
  group: z.string().min(1).max(255).optional(),
  /** In-flight deliveries at once across partitions. */
  parallelism: z.int().min(1).max(1024).optional(),
  /** What must stay in order: a partition (default), a message key, or nothing. */
  ordering: z.enum(['partition', 'key', 'none'], { message: 'partition, key or none' }).optional(),
  startFrom: z.enum(['earliest', 'latest'], { message: 'earliest or latest' }).optional(),
  retry: retrySchema.optional(),
  /** Where events go once retries are exhausted; default `<topic>.dlq`. */
  deadLetterTopic: topicName.optional(),
});

const MQTT_URL = /^(mqtts?|wss?|tcp|ssl):\/\/[^\s]+$/;
export const mqttSourceSchema = z.strictObject({
  name: triggerName.optional(),
  url: z.string().regex(MQTT_URL, 'an MQTT URL such as "mqtt://127.0.0.1:1883"'),
  topic: z
    .string()
    .min(1)
    .max(65_535)
    .refine(validMqttFilter, { message: 'an MQTT topic filter ("+" and "#" only as whole levels)' }),
  qos: z.union([z.literal(0), z.literal(1)], { message: '0 or 1' }).optional(),
  /** Shared subscription group: the subscription becomes `$share/<shared>/<topic>` (load-balanced). */
  shared: triggerName.optional(),
  clientId: z.string().min(1).max(128).optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  /** Unacknowledged deliveries at once (MQTT 5 receive maximum). */
  parallelism: z.int().min(1).max(65_535).optional(),
  retry: retrySchema.optional(),
});

const NATS_URL = /^(nats|tls|ws|wss):\/\/[^\s]+$/;
const natsName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9_-]+$/, 'a JetStream name (letters, digits, "_", "-")');
export const natsSourceSchema = z.strictObject({
  name: triggerName.optional(),
  url: z.union([
    z.string().regex(NATS_URL, 'a NATS URL such as "nats://127.0.0.1:4222"'),
    z.array(z.string().regex(NATS_URL, 'a NATS URL such as "nats://127.0.0.1:4222"')).min(1),
  ]),
  subject: z
    .string()
    .min(1)
    .regex(/^[^\s]+$/, 'a NATS subject without spaces'),
  /** The JetStream stream; created over `subject` when it does not exist. Default `HEARTH_<subject>`. */
  stream: natsName.optional(),
  /** The durable consumer's name; default `hearth-<namespace>-<function>`. */
  consumer: natsName.optional(),
  parallelism: z.int().min(1).max(65_535).optional(),
  startFrom: z.enum(['earliest', 'latest'], { message: 'earliest or latest' }).optional(),
  retry: retrySchema.optional(),
});

export const cronSourceSchema = z
  .strictObject({
    name: triggerName.optional(),
    schedule: z.string().min(1),
    timezone: z
      .string()
      .refine(validTimeZone, { message: 'an IANA time zone such as "Europe/Paris" or "UTC"' })
      .optional(),
    /** After downtime: `skip` the runs missed (default) or `fire-once` to catch up with one run. */
    missed: z.enum(['skip', 'fire-once'], { message: 'skip or fire-once' }).optional(),
    /** The event's data (JSON). */
    data: z.unknown().optional(),
    retry: retrySchema.optional(),
  })
  .superRefine((value, context) => {
    const problem = cronProblem(value.schedule, value.timezone);
    if (problem !== undefined)
      context.addIssue({ code: 'custom', path: ['schedule'], message: problem, input: value.schedule });
  });

export type KafkaSource = z.output<typeof kafkaSourceSchema>;
export type MqttSource = z.output<typeof mqttSourceSchema>;
export type NatsSource = z.output<typeof natsSourceSchema>;
export type CronSource = z.output<typeof cronSourceSchema>;

/** One trigger: a one-key object naming its kind, as the seed writes gateway protocols. */
export const triggerSchema = z.union(
  [
    z.strictObject({ kafka: kafkaSourceSchema }),
    z.strictObject({ mqtt: mqttSourceSchema }),
    z.strictObject({ nats: natsSourceSchema }),
    z.strictObject({ cron: cronSourceSchema }),
  ],
  { message: 'one of {kafka: …}, {mqtt: …}, {nats: …}, {cron: …}' },
);
export type TriggerInput = z.input<typeof triggerSchema>;
export type TriggerSpec = z.output<typeof triggerSchema>;
export type TriggerKind = 'kafka' | 'mqtt' | 'nats' | 'cron';

export function triggerKind(trigger: TriggerSpec): TriggerKind {
  if ('kafka' in trigger) return 'kafka';
  if ('mqtt' in trigger) return 'mqtt';
  if ('nats' in trigger) return 'nats';
  return 'cron';
}

export function triggerSource(trigger: TriggerSpec): KafkaSource | MqttSource | NatsSource | CronSource {
  if ('kafka' in trigger) return trigger.kafka;
  if ('mqtt' in trigger) return trigger.mqtt;
  if ('nats' in trigger) return trigger.nats;
  return trigger.cron;
}

/** A trigger's name within its owner: its own `name`, else `<kind>-<index>`. */
export function triggerNameOf(trigger: TriggerSpec, index: number): string {
  return triggerSource(trigger).name ?? `${triggerKind(trigger)}-${index}`;
}

export const triggersSchema = z
  .array(triggerSchema)
  .max(32)
  .superRefine((triggers, context) => {
    const seen = new Map<string, number>();
    triggers.forEach((trigger, index) => {
      const name = triggerNameOf(trigger, index);
      const earlier = seen.get(name);
      if (earlier !== undefined)
        context.addIssue({
          code: 'custom',
          path: [index, triggerKind(trigger), 'name'],
          message: `a name not used by trigger ${earlier} (trigger names are unique per function)`,
          input: name,
        });
      seen.set(name, index);
    });
  });

function validTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

function cronProblem(schedule: string, timezone: string | undefined): string | undefined {
  try {
    new Cron(schedule, { paused: true, ...(timezone === undefined ? {} : { timezone }) });
    return undefined;
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/^CronPattern: /, '') : String(error);
    return `a cron schedule such as "*/5 * * * *" (5 fields, or 6 with seconds): ${reason}`;
  }
}

function validMqttFilter(filter: string): boolean {
  const levels = filter.split('/');
  return levels.every(
    (level, index) =>
      (level === '#' && index === levels.length - 1) ||
      level === '+' ||
      (!level.includes('#') && !level.includes('+')),
  );
}

// --- status -------------------------------------------------------------------------------------------

/** What `hearth describe` shows for one trigger (a Function's, or an EventGateway's event protocol). */
export interface TriggerStatus {
  /** `<namespace>/<function>/<name>`, or `gateway/<namespace>/<gateway>/<name>`. */
  readonly id: string;
  readonly name: string;
  readonly kind: TriggerKind;
  /** `running`; `connecting` (or reconnecting after an error); `error` while it cannot run; `stopped`. */
  readonly state: 'connecting' | 'running' | 'error' | 'stopped';
  /** Events not yet delivered: Kafka (end offsets minus committed), NATS (pending); null where unknown. */
  readonly lag: number | null;
  readonly delivered: number;
  readonly failed: number;
  readonly retried: number;
  readonly deadLettered: number;
  readonly inFlight: number;
  readonly lastError: { readonly message: string; readonly at: string } | null;
  readonly lastDeliveryAt: string | null;
  /** Source-specific facts: topic and group, subject and stream, schedule and next run. */
  readonly detail: Readonly<Record<string, unknown>>;
}
