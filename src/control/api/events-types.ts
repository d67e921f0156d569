/** @module Wire types of the event gateway's API (gateways, async invocations, dead letters, triggers), shared by server and CLI. */

import type { GatewayManifest } from '../../domain/gateway.js';
import type { TriggerStatus } from '../../domain/triggers.js';

export type { TriggerStatus } from '../../domain/triggers.js';

export interface GatewaySummary {
  readonly namespace: string;
  readonly name: string;
  /** Protocol kinds in order, e.g. `["http", "kafka"]`. */
  readonly protocols: readonly string[];
  readonly routes: number;
  readonly functions: number;
  readonly updatedAt: string;
}

export interface GatewayRouteView {
  readonly index: number;
  readonly path: string | null;
  readonly methods: readonly string[] | 'ANY';
  readonly topic: string | null;
  readonly function: string;
  readonly namespace: string;
  /** Whether that function is deployed (a route to a missing function answers 404). */
  readonly deployed: boolean;
  readonly concurrency: number | null;
  readonly priority: number | null;
  readonly rateLimit: string | null;
  readonly timeout: string | null;
}

export interface GatewayDetail extends GatewaySummary {
  readonly manifest: GatewayManifest;
  readonly routeTable: readonly GatewayRouteView[];
  readonly http: {
    readonly rateLimit: string | null;
    /** Extra listeners (`http.port` other than the platform's); routes are always served on the platform's port too. */
    readonly listeners: readonly {
      readonly port: number;
      readonly listening: boolean;
      readonly error: string | null;
    }[];
  };
  readonly triggers: readonly TriggerStatus[];
  readonly createdAt: string;
}

export interface ApplyGatewayResponse {
  readonly unchanged: boolean;
  readonly gateway: GatewayDetail;
}

/** An async invocation (or a queued event) and, once finished, its result. */
export interface InvocationRecord {
  readonly id: string;
  readonly function: string;
  readonly namespace: string;
  /** `async`, or `<kind>:<trigger id>` for events. */
  readonly source: string;
  readonly status: 'queued' | 'running' | 'succeeded' | 'failed' | 'dead';
  readonly attempts: number;
  readonly maxAttempts: number;
  readonly acceptedAt: string;
  readonly nextAttemptAt: string | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly result: {
    readonly statusCode: number;
    readonly headers: Readonly<Record<string, string>>;
    /** UTF-8 text, or base64 when `isBase64Encoded`. */
    readonly body: string;
    readonly isBase64Encoded: boolean;
  } | null;
  readonly callback: {
    readonly url: string;
    readonly state: 'pending' | 'delivered' | 'failed';
    readonly attempts: number;
    readonly error: string | null;
  } | null;
  /** The CloudEvent it carries, for events. */
  readonly event: Readonly<Record<string, unknown>> | null;
  readonly request: { readonly method: string; readonly path: string; readonly bodyBytes: number };
}

export interface AsyncAccepted {
  readonly id: string;
  readonly status: 'queued';
  readonly function: string;
  readonly namespace: string;
  readonly statusUrl: string;
  readonly callbackUrl?: string;
}

export interface RedriveResponse {
  readonly redriven: number;
}
