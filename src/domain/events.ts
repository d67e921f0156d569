/**
 * @module Named diagnostics channels the core publishes on. `observe/` subscribes and turns them into
 * metrics, logs and traces, so the hot path imports no telemetry SDK (the undici pattern).
 */

import { channel } from 'node:diagnostics_channel';
import type { FunctionRef } from './function.js';

export interface InvocationEvent {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly invocationId: string;
  readonly status: number;
  readonly durationMs: number;
  readonly waitMs: number;
  readonly coldStart: boolean;
  readonly errorCode: string | undefined;
}

/** Where a cold start's time went, in milliseconds. */
export interface ColdStartPhases {
  /** Checking the code out of the node-local cache. */
  readonly code: number;
  /** Taking a pre-started runtime from the pool (or starting one when the pool is empty). */
  readonly stemCell: number;
  /** Binding the code and dependency layer into the runtime's slot. */
  readonly attach: number;
  /** The guest importing the handler module. */
  readonly load: number;
}

export interface InstanceEvent {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly instanceId: string;
  readonly runtime: string;
  readonly phase: 'started' | 'stopped' | 'failed';
  readonly reason: string;
  /** For `started`: milliseconds from taking a stem cell to a bound handler. */
  readonly startMs?: number;
  /** For `started`: where the cold start's time went (code checkout, stem cell, attach, handler load). */
  readonly phases?: ColdStartPhases;
}

export const invocationChannel = channel('hearth:invocation');
export const instanceChannel = channel('hearth:instance');
