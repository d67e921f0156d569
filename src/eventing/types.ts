/** @module Wire types of Trigger resources (`/api/v1/…/event-triggers`), shared by server and CLI. */

import type { EventTriggerManifest, TriggerFilter } from '../domain/eventing.js';

export interface EventTriggerSummary {
  readonly namespace: string;
  readonly name: string;
  readonly subscriber: { readonly function: string; readonly namespace: string; readonly deployed: boolean };
  readonly filter: TriggerFilter;
  readonly delivered: number;
  readonly failed: number;
  readonly deadLettered: number;
  readonly lastError: { readonly message: string; readonly at: string } | null;
  readonly updatedAt: string;
}

export interface EventTriggerDetail extends EventTriggerSummary {
  readonly manifest: EventTriggerManifest;
  readonly delivery: {
    readonly attempts: number;
    readonly backoffMs: number;
    readonly maxBackoffMs: number;
    readonly deadLetter: string | null;
  };
  readonly retried: number;
  readonly inFlight: number;
  readonly lastDeliveryAt: string | null;
  /** Event-sourced streams: how far the trigger has read the log, and how far the log goes. */
  readonly streams: { readonly position: number; readonly head: number; readonly lag: number };
  readonly createdAt: string;
}
