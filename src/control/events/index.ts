/** @module The event gateway's control-plane side: applying EventGateways, and what the API reads from the queue and triggers. */

import type { TriggerStatus } from '../../domain/triggers.js';
import type { Broker } from '../../eventing/index.js';
import type { Queue } from '../../queue/index.js';
import type { GatewayService } from './gateways.js';

export { GatewayService, type GatewayServiceOptions, type PreparedGateway } from './gateways.js';
export { toInvocationRecord } from './present.js';

/** What the `/api/v1` routes for gateways, invocations, dead letters and triggers need. */
export interface EventsApi {
  readonly gateways: GatewayService;
  readonly queue: Queue;
  readonly triggers: {
    statusOf(owner: { kind: 'function' | 'gateway'; namespace: string; name: string }): TriggerStatus[];
    all(): TriggerStatus[];
  };
  /** Trigger resources (issue 20). */
  readonly eventing: Pick<Broker, 'prepare' | 'put' | 'delete' | 'list' | 'detail'>;
  /** Wakes the queue worker (after a redrive). */
  readonly notifyQueue: () => void;
}
