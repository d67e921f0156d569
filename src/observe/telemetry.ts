/**
 * @module The figures behind /metrics, the dashboard and the alerts, fed only by the core's diagnostics
 * channels (`hearth:invocation`, `hearth:instance`, and the traffic and scaling channels). Per invocation
 * it does a few map look-ups and additions into preallocated arrays; everything else (percentiles,
 * ratios, text) is computed when someone asks.
 */

import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type {
  BreakerEvent,
  ClientClosedEvent,
  DeliveryEvent,
  InstanceEvent,
  InvocationEvent,
  QueueDecisionEvent,
  RateLimitEvent,
  ScalingEvent,
} from '../domain/events.js';
import type { FunctionRef } from '../domain/function.js';
import { Histogram, SKETCH_BUCKETS, sketchIndex, sketchQuantile } from './histogram.js';

/** The dashboard's and alerts' short window: 5-second slots over 15 minutes. */
export const SLOT_MS = 5000;
export const SLOTS = 180;
/** The cold-start report's window: hourly slots over a day. */
const HOUR_MS = 3_600_000;
const HOURS = 24;
/** Invocations kept per function for the dashboard's "recent" list. */
const RECENT = 50;
/** Scaling decisions kept for the dashboard. */
const DECISIONS = 100;

/** Where an instance's time goes, for utilisation = busy / provisioned. */
interface InstanceTrack {
  readonly startedAt: number;
  /** End of the last busy interval counted, so overlapping requests are counted once. */
  busyUntil: number;
}

export interface ColdStartStats {
  readonly total: Histogram;
  readonly code: Histogram;
  readonly stemCell: Histogram;
  readonly attach: Histogram;
  readonly load: Histogram;
}

/** A scaling decision as the dashboard lists it. */
export interface ScalingNote {
  readonly at: number;
  readonly function: string;
  readonly action: string;
  readonly from: number | undefined;
  readonly to: number | undefined;
  readonly reason: string;
}

export class FunctionStats {
  readonly key: string;
  /** trigger → status → count. */
  readonly outcomes = new Map<string, Map<number, number>>();
  readonly errors = new Map<string, number>();
  readonly duration = new Histogram();
  readonly queueWait = new Histogram();
  readonly execution = new Histogram();
  invocations = 0;
  coldInvocations = 0;
  instanceStarts = 0;
  instanceFailures = 0;
  /** Instances the kernel killed for passing `limits.memory`. */
  oomKills = 0;
  busyMs = 0;
  /** Provisioned milliseconds of instances already stopped; live ones are added when read. */
  closedProvisionedMs = 0;
  readonly instances = new Map<string, InstanceTrack>();
  /** Slot epochs (`floor(time / SLOT_MS)`) and per-slot figures of the short window. */
  readonly slotEpoch = new Float64Array(SLOTS).fill(-1);
  readonly slotRequests = new Uint32Array(SLOTS);
  readonly slotErrors = new Uint32Array(SLOTS);
  readonly slotCold = new Uint32Array(SLOTS);
  readonly slotBusyMs = new Float64Array(SLOTS);
  readonly slotProvisionedMs = new Float64Array(SLOTS);
  readonly slotLatency = new Uint32Array(SLOTS * SKETCH_BUCKETS);
  readonly hourEpoch = new Float64Array(HOURS).fill(-1);
  readonly hourRequests = new Uint32Array(HOURS);
  readonly hourCold = new Uint32Array(HOURS);
  readonly recent: InvocationEvent[] = [];
  private recentAt = 0;
  readonly queueDecisions = new Map<string, number>();
  /** The autoscaler's decisions (`hearth:scaling`) by action: scale-up, scale-down, evict, prewarm… */
  readonly scalingDecisions = new Map<string, number>();
  rateLimited = 0;
  readonly breakerTransitions = new Map<string, number>();
  /** Breakers open now, by `scope/instance`. */
  readonly openBreakers = new Set<string>();
  readonly deliveries = new Map<string, number>();

  constructor(
    readonly ref: FunctionRef,
    public runtime: string,
  ) {
    this.key = `${ref.namespace}/${ref.name}`;
  }

  provisionedMs(now: number): number {
    let live = 0;
    for (const track of this.instances.values()) live += now - track.startedAt;
    return this.closedProvisionedMs + live;
  }

  /** The slot for `time`, cleared if it last held an older period. */
  slot(time: number): number {
    const epoch = Math.floor(time / SLOT_MS);
    const index = epoch % SLOTS;
    if (this.slotEpoch[index] !== epoch) {
      this.slotEpoch[index] = epoch;
      this.slotRequests[index] = 0;
      this.slotErrors[index] = 0;
      this.slotCold[index] = 0;
      this.slotBusyMs[index] = 0;
      this.slotProvisionedMs[index] = 0;
      this.slotLatency.fill(0, index * SKETCH_BUCKETS, (index + 1) * SKETCH_BUCKETS);
    }
    return index;
  }

  private hour(time: number): number {
    const epoch = Math.floor(time / HOUR_MS);
    const index = epoch % HOURS;
    if (this.hourEpoch[index] !== epoch) {
      this.hourEpoch[index] = epoch;
      this.hourRequests[index] = 0;
      this.hourCold[index] = 0;
    }
    return index;
  }

  record(event: InvocationEvent, now: number): void {
    const trigger = event.trigger ?? 'http';
    let byStatus = this.outcomes.get(trigger);
    if (byStatus === undefined) {
      byStatus = new Map();
      this.outcomes.set(trigger, byStatus);
    }
    byStatus.set(event.status, (byStatus.get(event.status) ?? 0) + 1);
    this.invocations += 1;
    const failed = event.status >= 500;
    if (event.errorCode !== undefined)
      this.errors.set(event.errorCode, (this.errors.get(event.errorCode) ?? 0) + 1);
    const exemplar = { invocationId: event.invocationId, traceId: event.trace?.traceId };
    this.duration.observe(event.durationMs / 1000, exemplar, now);
    let coldMs = 0;
    if (event.coldStartPhases !== undefined) {
      const p = event.coldStartPhases;
      coldMs = p.code + p.stemCell + p.attach + p.load;
    }
    if (event.execMs !== undefined) {
      this.queueWait.observe(Math.max(0, event.waitMs - coldMs) / 1000);
      this.execution.observe(event.execMs / 1000, exemplar, now);
      if (event.instanceId !== undefined) this.addBusy(event.instanceId, now - event.execMs, now);
    }
    const index = this.slot(now);
    this.slotRequests[index] = (this.slotRequests[index] as number) + 1;
    const latency = index * SKETCH_BUCKETS + sketchIndex(event.durationMs);
    this.slotLatency[latency] = (this.slotLatency[latency] as number) + 1;
    if (failed) this.slotErrors[index] = (this.slotErrors[index] as number) + 1;
    const hour = this.hour(now);
    this.hourRequests[hour] = (this.hourRequests[hour] as number) + 1;
    if (event.coldStart) {
      this.coldInvocations += 1;
      this.slotCold[index] = (this.slotCold[index] as number) + 1;
      this.hourCold[hour] = (this.hourCold[hour] as number) + 1;
    }
    // A ring of the last invocations; the event object itself is kept, nothing is copied.
    if (this.recent.length < RECENT) this.recent.push(event);
    else this.recent[this.recentAt] = event;
    this.recentAt = (this.recentAt + 1) % RECENT;
  }

  /** The last invocations, newest first. */
  recentInvocations(): InvocationEvent[] {
    const ordered =
      this.recent.length < RECENT
        ? [...this.recent]
        : [...this.recent.slice(this.recentAt), ...this.recent.slice(0, this.recentAt)];
    return ordered.reverse();
  }

  private addBusy(instanceId: string, start: number, end: number): void {
    const track = this.instances.get(instanceId);
    const from = track === undefined ? start : Math.max(start, track.busyUntil);
    if (end <= from) return;
    this.busyMs += end - from;
    const index = this.slot(end);
    this.slotBusyMs[index] = (this.slotBusyMs[index] as number) + (end - from);
    if (track !== undefined) track.busyUntil = end;
  }

  /** Figures over the last `slots` slots (5 s each) ending now. */
  window(now: number, slots: number): WindowFigures {
    const current = Math.floor(now / SLOT_MS);
    let requests = 0;
    let errors = 0;
    let cold = 0;
    let busyMs = 0;
    let provisionedMs = 0;
    const latency = new Float64Array(SKETCH_BUCKETS);
    for (let epoch = current - slots + 1; epoch <= current; epoch++) {
      const index = epoch % SLOTS;
      if (this.slotEpoch[index] !== epoch) continue;
      requests += this.slotRequests[index] as number;
      errors += this.slotErrors[index] as number;
      cold += this.slotCold[index] as number;
      busyMs += this.slotBusyMs[index] as number;
      provisionedMs += this.slotProvisionedMs[index] as number;
      for (let b = 0; b < SKETCH_BUCKETS; b++)
        latency[b] = (latency[b] as number) + (this.slotLatency[index * SKETCH_BUCKETS + b] as number);
    }
    return {
      requests,
      errors,
      cold,
      busyMs,
      provisionedMs,
      p50: sketchQuantile(latency, 0.5),
      p99: sketchQuantile(latency, 0.99),
    };
  }

  /** Requests and cold starts over the last 24 hours. */
  day(now: number): { requests: number; cold: number } {
    const current = Math.floor(now / HOUR_MS);
    let requests = 0;
    let cold = 0;
    for (let epoch = current - HOURS + 1; epoch <= current; epoch++) {
      const index = epoch % HOURS;
      if (this.hourEpoch[index] !== epoch) continue;
      requests += this.hourRequests[index] as number;
      cold += this.hourCold[index] as number;
    }
    return { requests, cold };
  }

  /** One point per slot over the last `slots` slots, oldest first, for the dashboard's charts. */
  series(now: number, slots: number): SeriesPoint[] {
    const current = Math.floor(now / SLOT_MS);
    const points: SeriesPoint[] = [];
    for (let epoch = current - slots + 1; epoch <= current; epoch++) {
      const index = epoch % SLOTS;
      const live = this.slotEpoch[index] === epoch;
      const requests = live ? (this.slotRequests[index] as number) : 0;
      const latency = live
        ? this.slotLatency.subarray(index * SKETCH_BUCKETS, (index + 1) * SKETCH_BUCKETS)
        : EMPTY_SKETCH;
      points.push({
        t: epoch * SLOT_MS,
        rps: requests / (SLOT_MS / 1000),
        errors: live ? (this.slotErrors[index] as number) : 0,
        cold: live ? (this.slotCold[index] as number) : 0,
        requests,
        p50: sketchQuantile(latency, 0.5) ?? null,
        p99: sketchQuantile(latency, 0.99) ?? null,
      });
    }
    return points;
  }
}

const EMPTY_SKETCH = new Uint32Array(SKETCH_BUCKETS);

export interface WindowFigures {
  readonly requests: number;
  readonly errors: number;
  readonly cold: number;
  readonly busyMs: number;
  readonly provisionedMs: number;
  /** Milliseconds, approximate (see histogram.ts); undefined without requests. */
  readonly p50: number | undefined;
  readonly p99: number | undefined;
}

export interface SeriesPoint {
  readonly t: number;
  readonly rps: number;
  readonly requests: number;
  readonly errors: number;
  readonly cold: number;
  readonly p50: number | null;
  readonly p99: number | null;
}

export interface TelemetryOptions {
  /** The runtime of a deployed function (for cold starts by runtime); undefined once it is gone. */
  readonly runtimeOf: (ref: FunctionRef) => string | undefined;
  readonly now?: () => number;
}

/** How often provisioned instance time is added to the short window. */
const TICK_MS = 1000;

export class Telemetry {
  private readonly byNamespace = new Map<string, Map<string, FunctionStats>>();
  readonly coldStarts = new Map<string, ColdStartStats>();
  /** Rate-limit refusals by scope (gateway, route, client…), for buckets not tied to one function. */
  readonly rateLimitedByScope = new Map<string, number>();
  /** Requests whose client closed the connection mid-body, by surface (api, function, async, route). */
  readonly clientClosedBySurface = new Map<string, number>();
  readonly scaling: ScalingNote[] = [];
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private lastTick = 0;
  private readonly subscriptions: [string, (message: unknown) => void][];

  constructor(private readonly options: TelemetryOptions) {
    this.now = options.now ?? Date.now;
    this.subscriptions = [
      ['hearth:invocation', (message) => this.onInvocation(message as InvocationEvent)],
      ['hearth:instance', (message) => this.onInstance(message as InstanceEvent)],
      ['hearth:ratelimit', (message) => this.onRateLimit(message as RateLimitEvent)],
      ['hearth:client-closed', (message) => this.onClientClosed(message as ClientClosedEvent)],
      ['hearth:queue', (message) => this.onQueue(message as QueueDecisionEvent)],
      ['hearth:breaker', (message) => this.onBreaker(message as BreakerEvent)],
      ['hearth:delivery', (message) => this.onDelivery(message as DeliveryEvent)],
      ['hearth:scaling', (message) => this.onScaling(message as ScalingEvent)],
    ];
  }

  start(): void {
    for (const [name, handler] of this.subscriptions) subscribe(name, handler);
    this.lastTick = this.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    for (const [name, handler] of this.subscriptions) unsubscribe(name, handler);
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  functions(): FunctionStats[] {
    const all: FunctionStats[] = [];
    for (const names of this.byNamespace.values()) for (const stats of names.values()) all.push(stats);
    return all;
  }

  get(ref: FunctionRef): FunctionStats | undefined {
    return this.byNamespace.get(ref.namespace)?.get(ref.name);
  }

  /** Forgets a removed function's figures (its counters leave /metrics). */
  forget(ref: FunctionRef): void {
    this.byNamespace.get(ref.namespace)?.delete(ref.name);
  }

  private stats(ref: FunctionRef): FunctionStats {
    let names = this.byNamespace.get(ref.namespace);
    if (names === undefined) {
      names = new Map();
      this.byNamespace.set(ref.namespace, names);
    }
    let stats = names.get(ref.name);
    if (stats === undefined) {
      stats = new FunctionStats(ref, this.options.runtimeOf(ref) ?? 'unknown');
      names.set(ref.name, stats);
    }
    return stats;
  }

  private onInvocation(event: InvocationEvent): void {
    // Unknown functions (404s) would let any client create series at will: they are not recorded.
    if (event.errorCode === 'HEARTH_E_FN_NOT_FOUND') return;
    this.stats(event.ref).record(event, this.now());
  }

  private onInstance(event: InstanceEvent): void {
    const stats = this.stats(event.ref);
    stats.runtime = event.runtime;
    const now = this.now();
    if (event.phase === 'failed') {
      stats.instanceFailures += 1;
      return;
    }
    if (event.outOfMemory === true) stats.oomKills += 1;
    if (event.phase === 'started') {
      stats.instanceStarts += 1;
      if (!stats.instances.has(event.instanceId))
        stats.instances.set(event.instanceId, { startedAt: now, busyUntil: 0 });
      if (event.phases !== undefined) {
        let cold = this.coldStarts.get(event.runtime);
        if (cold === undefined) {
          cold = {
            total: new Histogram(),
            code: new Histogram(),
            stemCell: new Histogram(),
            attach: new Histogram(),
            load: new Histogram(),
          };
          this.coldStarts.set(event.runtime, cold);
        }
        const p = event.phases;
        cold.total.observe((p.code + p.stemCell + p.attach + p.load) / 1000);
        cold.code.observe(p.code / 1000);
        cold.stemCell.observe(p.stemCell / 1000);
        cold.attach.observe(p.attach / 1000);
        cold.load.observe(p.load / 1000);
      }
      return;
    }
    const track = stats.instances.get(event.instanceId);
    if (track === undefined) return;
    stats.instances.delete(event.instanceId);
    stats.closedProvisionedMs += now - track.startedAt;
    const index = stats.slot(now);
    stats.slotProvisionedMs[index] =
      (stats.slotProvisionedMs[index] as number) + Math.min(now - track.startedAt, now - this.lastTick);
  }

  private onClientClosed(event: ClientClosedEvent): void {
    const surface = surfaceOf(event.path);
    this.clientClosedBySurface.set(surface, (this.clientClosedBySurface.get(surface) ?? 0) + 1);
  }

  private onRateLimit(event: RateLimitEvent): void {
    this.rateLimitedByScope.set(event.scope, (this.rateLimitedByScope.get(event.scope) ?? 0) + 1);
    if (event.ref !== undefined) this.stats(event.ref).rateLimited += 1;
  }

  private onQueue(event: QueueDecisionEvent): void {
    const stats = this.stats(event.ref);
    const key = `${event.decision}|${event.reason ?? ''}`;
    stats.queueDecisions.set(key, (stats.queueDecisions.get(key) ?? 0) + 1);
  }

  private onBreaker(event: BreakerEvent): void {
    const stats = this.stats(event.ref);
    const key = `${event.scope}|${event.state}`;
    stats.breakerTransitions.set(key, (stats.breakerTransitions.get(key) ?? 0) + 1);
    const which = `${event.scope}/${event.instanceId ?? ''}`;
    if (event.state === 'closed') stats.openBreakers.delete(which);
    else stats.openBreakers.add(which);
  }

  private onDelivery(event: DeliveryEvent): void {
    const stats = this.stats(event.ref);
    const key = `${event.kind}|${event.outcome}`;
    stats.deliveries.set(key, (stats.deliveries.get(key) ?? 0) + 1);
  }

  /** The autoscaler's decisions (`hearth:scaling`), kept for the dashboard. */
  private onScaling(event: ScalingEvent): void {
    if (event.kind === 'function') {
      const counts = this.stats(event.ref).scalingDecisions;
      counts.set(event.action, (counts.get(event.action) ?? 0) + 1);
    }
    const note: ScalingNote =
      event.kind === 'function'
        ? {
            at: this.now(),
            function: `${event.ref.namespace}/${event.ref.name}`,
            action: event.action,
            from: event.from,
            to: event.to,
            reason: event.reason,
          }
        : {
            at: this.now(),
            function: '',
            action: `stem cells ${event.runtime}/${event.isolation}/${event.network}`,
            from: event.from,
            to: event.to,
            reason: event.reason,
          };
    this.scaling.push(note);
    if (this.scaling.length > DECISIONS) this.scaling.shift();
  }

  /** Adds the time live instances were provisioned since the last tick to the short window (every second). */
  tick(): void {
    const now = this.now();
    const elapsed = now - this.lastTick;
    this.lastTick = now;
    for (const stats of this.functions()) {
      if (stats.instances.size === 0) continue;
      let provisioned = 0;
      for (const track of stats.instances.values()) provisioned += Math.min(elapsed, now - track.startedAt);
      const index = stats.slot(now);
      stats.slotProvisionedMs[index] = (stats.slotProvisionedMs[index] as number) + provisioned;
    }
  }
}

/** Which part of the platform a request path is for, as a small fixed label set. */
function surfaceOf(path: string): string {
  if (path.startsWith('/api/')) return 'api';
  if (path.startsWith('/function/')) return 'function';
  if (path.startsWith('/async-function/')) return 'async';
  return 'route';
}
