/** @module A deployed function version as the data plane sees it, and the request/response of one invocation. */

import type { Readable } from 'node:stream';
import type { ColdStartPhases } from './events.js';
import type { FunctionManifest, FunctionRef, FunctionSpec } from './function.js';
import type { ResolvedImage } from './image.js';
import type { TraceContext } from './trace.js';

export interface DeployedVersion {
  readonly ref: FunctionRef;
  readonly version: number;
  readonly spec: FunctionSpec;
  readonly manifest: FunctionManifest;
  /** Content hash of the code tree and its size, for the node-local code cache. */
  readonly code: { readonly hash: string; readonly files: number; readonly bytes: number };
  /** The dependency layer, when the function has dependencies. */
  readonly deps: { readonly key: string; readonly mountName: string } | undefined;
  /**
   * For `runtime: image` (issue 17): the image pulled, verified and unpacked at deploy, its manifest digest
   * pinned. What the container isolation runs: rootfs, config (Entrypoint, Cmd, Env…); `spec.command`,
   * `spec.args` and `spec.env` override the config as Kubernetes does.
   */
  readonly image?: ResolvedImage;
  readonly createdAt: string;
}

export interface InvocationRequest {
  readonly invocationId: string;
  readonly method: string;
  /** The path after `/function/<name>`, always starting with `/`. */
  readonly path: string;
  readonly rawQuery: string;
  /** `[name, value, name, value, ...]` as received (Node's rawHeaders). */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
  readonly sourceIp: string;
  /** Epoch milliseconds by which the whole invocation must have answered. */
  readonly deadline: number;
  /** The budget the deadline was set from, and where it came from, for the 504 message. */
  readonly timeoutMs: number;
  readonly timeoutSource: 'limits.timeout' | 'X-Hearth-Timeout' | 'route.timeout';
  /** Queue priority when the function is saturated (higher first); defaults to the function's `priority`. */
  readonly priority?: number;
  /** The longest it may wait for capacity before a 503 (a route's `queue.maxWait`; else the platform's `queue.maxWait`). */
  readonly queueTimeoutMs?: number;
  /** Present when the invocation carries an event (a trigger or async delivery): its CloudEvents attributes; `body` holds the data. */
  readonly event?: CloudEventAttributes;
  /**
   * The trace it continues (a client's `traceparent`, a calling function's). Absent, the invocation is the
   * root of its own trace, with ids derived from `invocationId` (domain/trace.ts) at no cost.
   */
  readonly trace?: TraceContext;
  /**
   * Direct invocation whatever the function's `eventFormat`: the body (JSON) is the event and the return
   * value the JSON answer, errors in Lambda's shape. The Lambda Invoke API sets it (gateway/lambda-invoke.ts).
   */
  readonly direct?: boolean;
  /** Who invoked it, for a function with `auth: key | jwt` (the JWT's claims): the function's `ctx.auth`. */
  readonly auth?: Readonly<Record<string, unknown>> | undefined;
}

export interface InvocationResponse {
  readonly status: number;
  /** Flat `[name, value, ...]`, names lower-case. */
  readonly headers: readonly string[];
  readonly body: Buffer;
  /**
   * A streamed response's body after `body` (Lambda response streaming, a streaming fetch Response): chunks
   * as the function writes them; it errors when the function fails part way. Undefined for a whole answer.
   */
  readonly stream?: Readable | undefined;
  readonly coldStart: boolean;
  readonly version: number;
  readonly instanceId: string;
  /** Milliseconds spent waiting for an instance (queue and cold start). */
  readonly waitMs: number;
  /** When it was served by an instance started for it: where that cold start's time went (part of `waitMs`). */
  readonly coldStartPhases?: ColdStartPhases;
  /** Set when this invocation was the circuit breaker's half-open probe: the state it left the circuit in. */
  readonly circuit?: 'closed' | 'open';
}

/** CloudEvents 1.0 context attributes (https://github.com/cloudevents/spec); the data travels as the body. */
export interface CloudEventAttributes {
  readonly specversion: '1.0';
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly subject?: string;
  readonly time?: string;
  readonly datacontenttype?: string;
  readonly dataschema?: string;
  /** Extension attributes (lower-case alphanumeric names), e.g. `partition`, `traceparent`. */
  readonly extensions?: Readonly<Record<string, string | number | boolean>>;
}

/** The headers a function sees for an event: its binary-mode form, as triggers and the ingress send it. */
export function binaryModeHeaders(event: CloudEventAttributes): string[] {
  const headers = [
    'content-type',
    event.datacontenttype ?? 'application/json',
    'ce-specversion',
    '1.0',
    'ce-id',
    event.id,
    'ce-source',
    event.source,
    'ce-type',
    event.type,
  ];
  if (event.subject !== undefined) headers.push('ce-subject', event.subject);
  if (event.time !== undefined) headers.push('ce-time', event.time);
  return headers;
}
