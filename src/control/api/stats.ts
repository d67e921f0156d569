/** @module GET /api/v1/stats — the node's live figures per function (instances, in-flight, rps, p99, cold starts), for `hearth top`. */

import { invalidField } from '../../domain/errors.js';
import { sendJson } from '../../gateway/index.js';
import { toFunctionStats } from './autoscaling.js';
import type { ApiContext } from './context.js';
import { LatencyTracker } from './latency.js';
import type { Route } from './router.js';
import type { StatsResponse } from './types.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function stats(context: ApiContext): Route {
  const latency = new LatencyTracker();
  return {
    method: 'GET',
    path: '/api/v1/stats',
    summary: 'Live figures per function (?namespace=NS): instances, in-flight, rps, p99, cold-start ratio',
    handle: ({ res, query }) => {
      const namespace = query.get('namespace') ?? undefined;
      if (namespace !== undefined && !DNS_LABEL.test(namespace))
        throw invalidField('namespace', namespace, 'a lower-case DNS label');
      const now = Date.now();
      const live = context.scheduler.liveStats();
      const p99s = latency.p99s(now);
      const body: StatsResponse = {
        time: new Date(now).toISOString(),
        policy: live.policy,
        node: {
          instances: live.instances,
          maxInstances: live.maxInstances,
          memoryBytes: live.memoryBytes,
          maxMemoryBytes: live.maxMemoryBytes,
          stemCells: live.stemCells,
        },
        functions: live.functions
          .filter((fn) => namespace === undefined || fn.ref.namespace === namespace)
          .map((fn) => toFunctionStats(fn, p99s.get(`${fn.ref.namespace}/${fn.ref.name}`)))
          .sort(
            (a, b) => b.rps - a.rps || a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name),
          ),
      };
      sendJson(res, 200, body);
    },
  };
}
