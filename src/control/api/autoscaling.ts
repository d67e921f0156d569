/** @module Turns the scheduler's scaling state into the API's wire shapes (`describe`'s autoscaling, `/stats`). */

import type { FunctionSpec } from '../../domain/function.js';
import { type FunctionLiveStats, formatMs, type ScalingStatus } from '../../scheduler/index.js';
import type { AutoscalingDetail, FunctionStats } from './types.js';

export function toAutoscaling(
  status: ScalingStatus | undefined,
  spec: FunctionSpec,
): AutoscalingDetail | null {
  if (status === undefined) return null;
  const { keepAlive, recent } = status;
  return {
    policy: status.policy,
    mode: status.mode,
    ready: status.ready,
    starting: status.starting,
    desired: status.desired,
    reason: status.reason,
    load: {
      concurrency: round(status.figures.concurrency),
      panicConcurrency: round(status.figures.panicConcurrency),
      rps: round(status.figures.rps),
    },
    warmPool: {
      idle: status.warmPool.idle,
      target: status.warmPool.target,
      ratio: spec.scaling.warmPoolRatio,
    },
    keepAlive: {
      strategy: keepAlive.strategy,
      idlePeriods: keepAlive.samples,
      prewarmAfter: keepAlive.prewarmAfterMs > 0 ? formatMs(keepAlive.prewarmAfterMs) : null,
      keepUntil: formatMs(keepAlive.keepUntilMs),
      reason: keepAlive.reason,
    },
    coldStarts: {
      window: formatMs(recent.windowMs),
      requests: recent.requests,
      coldStarts: recent.coldStarts,
      ratio: recent.requests === 0 ? null : round(recent.coldStarts / recent.requests, 4),
    },
    decisions: status.decisions.map((record) => ({
      at: new Date(record.at).toISOString(),
      action: record.action,
      from: record.from,
      to: record.to,
      desired: record.desired,
      mode: record.mode,
      reason: record.reason,
      figures: record.figures,
    })),
  };
}

export function toFunctionStats(stats: FunctionLiveStats, p99Ms: number | undefined): FunctionStats {
  return {
    namespace: stats.ref.namespace,
    name: stats.ref.name,
    version: stats.version,
    instances: {
      ready: stats.ready,
      busy: stats.busy,
      idle: stats.idle,
      starting: stats.starting,
      desired: stats.desired,
    },
    mode: stats.mode,
    inFlight: stats.inFlight,
    queued: stats.queued,
    rps: round(stats.rps),
    p99Ms: p99Ms === undefined ? null : round(p99Ms),
    coldStartRatio:
      stats.recentRequests === 0 ? null : round(stats.recentColdStarts / stats.recentRequests, 4),
    memoryBytesPerInstance: stats.memoryBytesPerInstance,
    totals: {
      requests: stats.totalRequests,
      coldStarts: stats.totalColdStarts,
      idleMemoryMiBSeconds: round(stats.idleMemoryMiBSeconds),
    },
  };
}

function round(value: number, digits = 2): number {
  return Number(value.toFixed(digits));
}
