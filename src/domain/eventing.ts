/**
 * @module The `Trigger` resource (Knative Eventing's Trigger, issue 20): a filter on CloudEvents attributes
 * (exact, prefix, suffix; context attributes and extensions), the function it delivers to, and how it
 * retries and dead-letters. It takes events from `POST /events` that name no function, events functions
 * emit, and events appended to event-sourced streams. Pure: schema and matching, shared by API and CLI.
 */

import { z } from 'zod';
import type { CloudEventAttributes } from './deployment.js';
import { API_VERSION, metadataSchema, validationError } from './function.js';
import { DEFAULT_RETRY, duration, type RetryPolicy } from './triggers.js';
import { parseDuration } from './units.js';

/** A CloudEvents attribute name (context attribute or extension): lower-case letters and digits. */
const attributeName = z
  .string()
  .regex(/^[a-z0-9]{1,20}$/, 'a CloudEvents attribute name (lower-case letters and digits, at most 20)');
const attributeValues = z
  .record(attributeName, z.string().min(1).max(1024))
  .refine((value) => Object.keys(value).length <= 32, { message: 'at most 32 attributes' });

const functionName = z
  .string()
  .max(127)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/,
    'a function name, or name.namespace',
  );

export const triggerFilterSchema = z.strictObject({
  /** Knative's filter: every attribute named must equal its value. */
  attributes: attributeValues.optional(),
  /** Every attribute named must start with its value. */
  prefix: attributeValues.optional(),
  /** Every attribute named must end with its value. */
  suffix: attributeValues.optional(),
});

export const eventTriggerSpecSchema = z.strictObject({
  /** Absent or empty: every event. All conditions must hold (AND). */
  filter: triggerFilterSchema.optional(),
  /** The function the matching events go to (`name`, or `name.namespace`; default the trigger's namespace). */
  subscriber: z.strictObject({ function: functionName }),
  delivery: z
    .strictObject({
      /** Retries after the first delivery (Knative's `retry`); 0 = one delivery only. */
      retry: z.int().min(0).max(99).optional(),
      /** The first retry's delay; each later one doubles it (Knative's `exponential` policy) (`500ms`, `2s`; ISO 8601 `PT0.5S` too, as Knative writes it). */
      backoffDelay: z
        .union([z.string(), z.number()])
        .refine((value) => delayMs(value) !== undefined, {
          message: 'a duration such as "500ms", "2s" or "PT0.5S", at most 1h',
        })
        .optional(),
      maxBackoff: duration(0, 24 * 3_600_000).optional(),
      /** A function that receives each event whose retries ran out (it also stays in `hearth dlq`). */
      deadLetter: z.strictObject({ function: functionName }).optional(),
    })
    .optional(),
  /**
   * Where a new trigger starts reading event-sourced streams: `latest` (appends from now on, the default)
   * or `earliest` (every event already in the log: a projection rebuilt from scratch).
   */
  startFrom: z.enum(['latest', 'earliest'], { message: 'latest or earliest' }).optional(),
});

export const eventTriggerResourceSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { message: `"${API_VERSION}"` }),
  kind: z.literal('Trigger', { message: '"Trigger"' }),
  metadata: metadataSchema,
  spec: eventTriggerSpecSchema,
});

export type EventTriggerManifest = z.output<typeof eventTriggerResourceSchema>;
export type TriggerFilter = z.output<typeof triggerFilterSchema>;

export function parseEventTriggerManifest(input: unknown, origin = 'resource'): EventTriggerManifest {
  const result = eventTriggerResourceSchema.safeParse(input);
  if (!result.success) throw validationError(result.error, input, origin);
  return result.data;
}

/** How a Trigger delivers: its retry policy (attempts in all) and where exhausted events go. */
export interface DeliveryPolicy extends RetryPolicy {
  readonly deadLetter: string | undefined;
}

export function deliveryPolicy(manifest: EventTriggerManifest): DeliveryPolicy {
  const delivery = manifest.spec.delivery;
  return {
    attempts: (delivery?.retry ?? DEFAULT_RETRY.attempts - 1) + 1,
    backoffMs: delivery?.backoffDelay === undefined ? 200 : (delayMs(delivery.backoffDelay) ?? 200),
    maxBackoffMs:
      delivery?.maxBackoff === undefined
        ? DEFAULT_RETRY.maxBackoffMs
        : (parseDuration(delivery.maxBackoff) ?? DEFAULT_RETRY.maxBackoffMs),
    deadLetter: delivery?.deadLetter?.function,
  };
}

/** Knative writes delays in ISO 8601 (`PT0.2S`); Hearth's own durations (`200ms`) work too. */
function delayMs(value: string | number): number | undefined {
  if (typeof value === 'string') {
    const iso = /^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$/i.exec(value);
    if (iso !== null && value.length > 2) {
      const ms = (Number(iso[1] ?? 0) * 3600 + Number(iso[2] ?? 0) * 60 + Number(iso[3] ?? 0)) * 1000;
      return ms <= 3_600_000 ? Math.round(ms) : undefined;
    }
  }
  const ms = parseDuration(value);
  return ms !== undefined && ms >= 0 && ms <= 3_600_000 ? ms : undefined;
}

/** A context attribute's or an extension's value as text, as filters compare it; undefined when absent. */
export function attributeText(event: CloudEventAttributes, name: string): string | undefined {
  switch (name) {
    case 'specversion':
      return event.specversion;
    case 'id':
      return event.id;
    case 'source':
      return event.source;
    case 'type':
      return event.type;
    case 'subject':
      return event.subject;
    case 'time':
      return event.time;
    case 'datacontenttype':
      return event.datacontenttype;
    case 'dataschema':
      return event.dataschema;
    default: {
      const value = event.extensions?.[name];
      return value === undefined ? undefined : String(value);
    }
  }
}

/** Whether `event` passes `filter`: every condition holds; an absent attribute fails any condition on it. */
export function filterMatches(filter: TriggerFilter | undefined, event: CloudEventAttributes): boolean {
  if (filter === undefined) return true;
  for (const [name, want] of Object.entries(filter.attributes ?? {}))
    if (attributeText(event, name) !== want) return false;
  for (const [name, want] of Object.entries(filter.prefix ?? {})) {
    const value = attributeText(event, name);
    if (value === undefined || !value.startsWith(want)) return false;
  }
  for (const [name, want] of Object.entries(filter.suffix ?? {})) {
    const value = attributeText(event, name);
    if (value === undefined || !value.endsWith(want)) return false;
  }
  return true;
}
