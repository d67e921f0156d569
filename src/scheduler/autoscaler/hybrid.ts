/**
 * @module The autoscaler Hearth runs by default. Two halves:
 * - load: Knative's KPA. Desired instances = in-flight requests ÷ (capacity × (1 − warmPoolRatio)), averaged
 *   over the stable window (60 s), or over the panic window (6 s) while a burst wants at least twice the ready
 *   instances; panic lasts a stable window past the burst and never scales down, so there is no flapping.
 * - the last instance: the hybrid keep-alive of "Serverless in the Wild" (Shahrad et al., USENIX ATC'20). From
 *   a histogram of the function's idle periods it releases the instance at once when the next request is
 *   predicted far off, starts one again shortly before it (5th percentile − 10%), and keeps it until the 99th
 *   percentile + 10%; with too little history it falls back to the fixed keep-alive (`idleTimeout`). It releases
 *   at most once per idleTimeout, as often as the fixed keep-alive can start an instance again.
 */

import { FunctionHistory } from './history.js';
import { HISTOGRAM_RANGE_MS } from './idle-histogram.js';
import {
  type AutoscalerTiming,
  DEFAULT_TIMING,
  formatMs,
  type KeepAlive,
  type ScalingDecision,
  type ScalingPolicy,
  type ScalingSample,
  type ScalingSpec,
} from './policy.js';

/** Idle periods needed before the histogram is trusted (below it, the fixed keep-alive). */
export const MIN_IDLE_SAMPLES = 10;
/** Percentiles and margins of the paper's hybrid policy. */
const PREWARM_PERCENTILE = 0.05;
const KEEP_ALIVE_PERCENTILE = 0.99;
const MARGIN = 0.1;
/** A predicted gap shorter than this many instance starts is not worth a release (see `decide`). */
const RELEASE_GAP_IN_STARTS = 20;
/**
 * An idle instance is held through a keep window only when the idle time it is expected to be held for each
 * request it then serves warm is at most the function's idleTimeout: the user's own figure for how much idle
 * time a request is worth. Otherwise the memory mostly waits for a request that comes after the release
 * anyway (a function called at random twice an hour: under a 10-minute keep-alive three calls in four are cold
 * starts all the same). For random (Poisson) arrivals that figure is the mean gap whatever the window, so it is
 * all or nothing: hold the window, or release at once.
 */
/** Requests expected to arrive during one instance start above which a busy function's last instance is held. */
const WAITING_PER_START_TO_HOLD = 1;
/**
 * Requests expected within one idleTimeout (the long-term rate) from which the last instance is held to
 * idleTimeout rather than to the histogram's tail (its 99th percentile + 10%), which lets one idle period in a
 * hundred end in a cold start. For random arrivals with a mean gap m, holding on from the tail to idleTimeout
 * costs about m of idle time per cold start it saves — the same figure `worth` weighs against idleTimeout —
 * so at 5 or more calls per idleTimeout a saved cold start costs at most a fifth of what the user said one is
 * worth; below that the tail is past idleTimeout anyway. On the trace replay the busiest functions took ~70
 * cold starts at their tail where the fixed keep-alive took 5.
 */
const CALLS_PER_IDLE_TIMEOUT_TO_HOLD = 5;
/**
 * An instance above the desired count stops after a stable window idle (Knative's scale-down). When the
 * function starts one again within idleTimeout of such a stop, the stop only cost a start (and its stem cell's
 * refill): the idle time extra instances are kept grows to bridge that gap, with this margin, up to
 * idleTimeout; it shrinks back by EXTRA_KEEP_DECAY per stable window. On the trace replay a Python function
 * (one request per instance) called at random stopped and started its second and third instances ~7 times as
 * often as under the fixed keep-alive.
 */
const EXTRA_KEEP_MARGIN = 1.5;
const EXTRA_KEEP_DECAY = 0.9;
/**
 * The fixed keep-alive starts a function's last instance again at most once per idleTimeout: only a silence
 * that long releases it. The hybrid releases early, ahead of a predicted request, to save the memory of the
 * gap, and pays a start for each release (the pre-warm, and its stem cell's refill: a sandbox and a runtime
 * booted), CPU that the warm requests running meanwhile share. So it releases the last instance at most once
 * per idleTimeout too: an idle period that begins sooner than that after the previous release is held through,
 * as the keep-alive would hold it. On the trace replay, 5-minute timers (idleTimeout 10 minutes) released and
 * pre-warmed every period made the hybrid start 2.7× the keep-alive's instances, and the warm requests' p99 was
 * 1.7× the keep-alive's. The idle period's start is known only to the tick, and a timer's period jitters: a
 * release counts as due once idleTimeout less this share of it has passed.
 */
const RELEASE_SPACING_SLACK = 0.1;
/** Idle periods needed before a keep window is given up for that reason (the histogram's full use needs more). */
const MIN_SAMPLES_TO_GIVE_UP = 3;
/** Above this share of idle periods beyond the histogram's range, its percentiles mean nothing. */
const MAX_OUT_OF_BOUNDS = 0.5;
/** A warm pool can take at most this share of capacity: at 1, no request could ever use an instance. */
const MAX_WARM_RATIO = 0.9;
/** Rounding slack so that 9.0000001 in flight at 9 per instance asks for 1 instance, not 2. */
const EPSILON = 1e-6;

interface CachedKeepAlive {
  readonly samples: number;
  readonly idleTimeoutMs: number;
  readonly value: KeepAlive;
}

export class HybridAutoscaler implements ScalingPolicy {
  readonly name = 'hybrid';
  private readonly histories = new Map<string, FunctionHistory>();
  private readonly keepAlives = new WeakMap<FunctionHistory, CachedKeepAlive>();

  constructor(private readonly timing: AutoscalerTiming = DEFAULT_TIMING) {}

  decide(key: string, scaling: ScalingSpec, sample: ScalingSample): ScalingDecision {
    const timing = this.timing;
    const history = this.historyOf(key, sample.now);
    history.observe(sample);
    const now = sample.now;
    const perInstance = Math.max(
      EPSILON,
      sample.capacity * (1 - Math.min(MAX_WARM_RATIO, scaling.warmPoolRatio)),
    );
    const stable = history.concurrency.mean();
    const panic = history.concurrency.meanOfLast(history.panicTicks);
    const wantStable = Math.ceil(stable / perInstance - EPSILON);
    const wantPanic = Math.ceil(panic / perInstance - EPSILON);
    if (panic / perInstance / Math.max(1, sample.ready) >= timing.panicThreshold) history.lastPanicAt = now;
    const panicking = now - history.lastPanicAt < timing.stableWindowMs;
    const per = round(perInstance);

    let load: number;
    let reason: string;
    if (panicking) {
      load = Math.max(wantPanic, history.lastLoadDesired);
      reason = `panic: ${round(panic)} in flight over ${formatMs(timing.panicWindowMs)} ÷ ${per} per instance`;
      if (load > wantPanic)
        reason += `; holding ${load} until the burst has been over ${formatMs(timing.stableWindowMs)}`;
    } else {
      load = wantStable;
      reason = `stable: ${round(stable)} in flight over ${formatMs(timing.stableWindowMs)} ÷ ${per} per instance`;
      const floor = Math.ceil(sample.ready / timing.maxScaleDownRate);
      if (sample.ready > 1 && load < floor) {
        load = floor;
        reason += `; scaling down by at most ${timing.maxScaleDownRate}× per tick`;
      }
    }
    history.lastLoadDesired = load;

    let keepAlive = this.keepAliveOf(history, scaling.idleTimeoutMs);
    // Releasing a busy function costs more than one cold start: every request that arrives while its instance
    // starts again waits for it. Where a start would find a request or more waiting (the long-term rate × the
    // node's start time now), the last instance is held to idleTimeout. On the trace replay with starts slowed
    // to seconds by a loaded machine, each release of the busiest function queued hundreds of requests.
    const waitingPerStart = (history.rate * (sample.startMs ?? 0)) / 1000;
    const callsPerIdleTimeout = (history.rate * scaling.idleTimeoutMs) / 1000;
    if (
      keepAlive.prewarmAfterMs === 0 &&
      keepAlive.keepUntilMs > 0 &&
      keepAlive.keepUntilMs < scaling.idleTimeoutMs &&
      (waitingPerStart >= WAITING_PER_START_TO_HOLD || callsPerIdleTimeout >= CALLS_PER_IDLE_TIMEOUT_TO_HOLD)
    )
      keepAlive = {
        ...keepAlive,
        keepUntilMs: scaling.idleTimeoutMs,
        reason:
          waitingPerStart >= WAITING_PER_START_TO_HOLD
            ? `${keepAlive.reason}; held to idleTimeout: ${round(waitingPerStart)} requests would wait for each start`
            : `${keepAlive.reason}; held to idleTimeout: ${round(callsPerIdleTimeout)} requests come in one`,
      };
    if (sample.ready + sample.starting === 0 && history.lastInstances > 0) history.lastReleaseAt = now;
    const extraKeepMs = this.learnExtraKeep(history, sample, scaling.idleTimeoutMs);
    const idleFor = history.idleFor(now);
    let desired = load;
    let releaseNow = false;
    let prewarmInMs: number | undefined;
    // Silence (nothing arriving or in flight) for idleTimeout hands every instance to the keep-alive half,
    // whatever the stable window still averages: that window is for fluctuating load, not for silence. Before
    // this, a 0 → 200 step with idleTimeout 3s kept its instances for the whole 60 s window (issue 11).
    const silentPastIdleTimeout = sample.arrivals === 0 && idleFor >= scaling.idleTimeoutMs;
    if (sample.concurrency === 0 && (load <= 1 || silentPastIdleTimeout)) {
      // Nothing in flight: the keep-alive half owns the last instance. A pre-warm must be ready by the
      // predicted arrival, so it begins a tick and twice the node's recent start time early (on the trace
      // replay, starts slowed by a busy CPU turned pre-warms into cold starts).
      const startMs = sample.startMs ?? 0;
      const lead = timing.tickMs + 2 * startMs;
      const prewarmAt = Math.max(timing.tickMs, keepAlive.prewarmAfterMs - lead);
      // A release is paid for with a start (and the stem cell's refill, a fork and a boot): when the gap is
      // short against the node's start time now and the instance would be back before idleTimeout anyway, it
      // stays. On the trace replay, releasing 5-minute timers on a busy node emptied the stem-cell pools.
      const worthReleasing =
        keepAlive.prewarmAfterMs > 0 &&
        (prewarmAt >= RELEASE_GAP_IN_STARTS * startMs || keepAlive.keepUntilMs > scaling.idleTimeoutMs);
      const spacedOut =
        !worthReleasing ||
        sample.ready + sample.starting === 0 ||
        this.releaseSpacedOut(history, now, scaling.idleTimeoutMs);
      if (!worthReleasing || !spacedOut) {
        desired = idleFor < keepAlive.keepUntilMs ? 1 : 0;
        const why = !worthReleasing
          ? keepAlive.prewarmAfterMs > 0
            ? `; not released: the gap is short against starts of ${formatMs(startMs)} now`
            : ''
          : `; not released: released ${formatMs(now - history.lastReleaseAt)} ago, at most once per idleTimeout ${formatMs(scaling.idleTimeoutMs)}`;
        reason =
          desired === 1
            ? `idle ${formatMs(idleFor)}: kept warm until ${formatMs(keepAlive.keepUntilMs)} idle (${keepAlive.reason})${why}`
            : `idle ${formatMs(idleFor)} ≥ keep-alive ${formatMs(keepAlive.keepUntilMs)} (${keepAlive.reason})`;
      } else if (idleFor < prewarmAt) {
        desired = 0;
        releaseNow = true;
        prewarmInMs = prewarmAt - idleFor;
        reason = `idle ${formatMs(idleFor)}: next request predicted after ${formatMs(keepAlive.prewarmAfterMs)} idle, released until ${formatMs(prewarmAt)} (${keepAlive.reason})`;
      } else if (idleFor < keepAlive.keepUntilMs) {
        desired = 1;
        reason = `idle ${formatMs(idleFor)}: pre-warmed for the next request, predicted by ${formatMs(keepAlive.keepUntilMs)} idle (${keepAlive.reason})`;
      } else {
        desired = 0;
        reason = `idle ${formatMs(idleFor)}: the predicted request did not come by ${formatMs(keepAlive.keepUntilMs)} (${keepAlive.reason})`;
      }
    }
    if (desired < scaling.min) {
      desired = scaling.min;
      reason += `; min ${scaling.min}`;
    }
    if (desired > scaling.max) {
      desired = scaling.max;
      reason += `; capped at max ${scaling.max}`;
    }
    return {
      desired,
      keepIdleMs: releaseNow
        ? 0
        : desired >= 1
          ? Math.min(scaling.idleTimeoutMs, Math.max(timing.stableWindowMs, extraKeepMs))
          : Math.min(timing.stableWindowMs, scaling.idleTimeoutMs),
      mode: panicking ? 'panic' : 'stable',
      reason,
      figures: { concurrency: stable, panicConcurrency: panic, rps: history.stableRps(), idleForMs: idleFor },
      keepAlive,
      ...(prewarmInMs === undefined ? {} : { prewarmInMs }),
    };
  }

  expectedIdleMs(key: string, now: number): number {
    const history = this.histories.get(key);
    if (history === undefined) return Number.POSITIVE_INFINITY;
    const idleFor = history.idleFor(now);
    if (idleFor === 0) return 0;
    if (history.idle.samples >= MIN_IDLE_SAMPLES && history.idle.outOfBoundsShare <= MAX_OUT_OF_BOUNDS)
      return history.idle.expectedRemainingMs(idleFor);
    // Too little history for a shape: a Poisson guess from the long-term rate.
    return history.rate > 0 ? 1000 / history.rate : Number.POSITIVE_INFINITY;
  }

  forget(key: string): void {
    this.histories.delete(key);
  }

  private historyOf(key: string, now: number): FunctionHistory {
    let history = this.histories.get(key);
    if (history === undefined) {
      history = new FunctionHistory(this.timing, now);
      this.histories.set(key, history);
    }
    return history;
  }

  /**
   * Whether the idle period under way may release the last instance (see RELEASE_SPACING_SLACK): weighed once,
   * at its first tick, so that a release never comes in its middle, too late to save much.
   */
  private releaseSpacedOut(history: FunctionHistory, now: number, idleTimeoutMs: number): boolean {
    if (history.releaseWeighedFor !== history.lastActiveAt) {
      history.releaseWeighedFor = history.lastActiveAt;
      history.releaseAllowed = now - history.lastReleaseAt >= idleTimeoutMs * (1 - RELEASE_SPACING_SLACK);
    }
    return history.releaseAllowed;
  }

  /**
   * Follows the instances above the first: a stop of one (instances fell, not to zero) and a start again
   * within idleTimeout means the stop saved less idle time than the start cost; the keep for extra instances
   * grows to the gap between them (and what it was), with a margin. It decays by a tenth per stable window.
   */
  private learnExtraKeep(history: FunctionHistory, sample: ScalingSample, idleTimeoutMs: number): number {
    const instances = sample.ready + sample.starting;
    const before = history.lastInstances;
    history.lastInstances = instances;
    const stable = this.timing.stableWindowMs;
    if (history.extraKeepMs > 0) history.extraKeepMs *= EXTRA_KEEP_DECAY ** (this.timing.tickMs / stable);
    if (instances < before && instances >= 1) history.lastShrinkAt = sample.now;
    else if (instances > before && instances >= 2) {
      const sinceStop = sample.now - history.lastShrinkAt;
      if (sinceStop < idleTimeoutMs) {
        const kept = Math.max(stable, history.extraKeepMs);
        history.extraKeepMs = Math.min(idleTimeoutMs, (kept + sinceStop) * EXTRA_KEEP_MARGIN);
        history.lastShrinkAt = Number.NEGATIVE_INFINITY;
      }
    }
    return history.extraKeepMs;
  }

  /** The keep-alive windows change only when an idle period is recorded: computed then, not every tick. */
  private keepAliveOf(history: FunctionHistory, idleTimeoutMs: number): KeepAlive {
    const cached = this.keepAlives.get(history);
    if (
      cached !== undefined &&
      cached.samples === history.idle.samples &&
      cached.idleTimeoutMs === idleTimeoutMs
    )
      return cached.value;
    const value = this.computeKeepAlive(history, idleTimeoutMs);
    this.keepAlives.set(history, { samples: history.idle.samples, idleTimeoutMs, value });
    return value;
  }

  private computeKeepAlive(history: FunctionHistory, idleTimeoutMs: number): KeepAlive {
    const histogram = history.idle;
    const samples = histogram.samples;
    const fixed = (reason: string): KeepAlive => ({
      strategy: 'fixed',
      samples,
      prewarmAfterMs: 0,
      keepUntilMs: idleTimeoutMs,
      reason,
    });
    // Released once the request is over (after the load half's grace of a stable window), no pre-warm.
    const release = (reason: string): KeepAlive => ({
      strategy: 'histogram',
      samples,
      prewarmAfterMs: 0,
      keepUntilMs: 0,
      reason,
    });
    const worth = (fromMs: number, untilMs: number): boolean =>
      histogram.heldPerWarmRequestMs(fromMs, untilMs) <= idleTimeoutMs;
    const perWarm = histogram.heldPerWarmRequestMs(0, idleTimeoutMs);
    const rarelyBack = `${samples} idle periods, ${percent(histogram.shareEndingWithin(0, idleTimeoutMs))} ended within idleTimeout ${formatMs(idleTimeoutMs)}, ${formatMs(perWarm)} idle per warm request: not worth keeping`;
    const keptForNothing = perWarm > idleTimeoutMs;
    if (samples < MIN_IDLE_SAMPLES) {
      if (samples >= MIN_SAMPLES_TO_GIVE_UP && keptForNothing) return release(rarelyBack);
      return fixed(`fixed idleTimeout: ${samples} of ${MIN_IDLE_SAMPLES} idle periods seen`);
    }
    if (histogram.outOfBoundsShare > MAX_OUT_OF_BOUNDS)
      return release(
        `${samples} idle periods, most longer than ${formatMs(HISTOGRAM_RANGE_MS)}: not worth keeping`,
      );
    // Releasing for less than a stable window saves little memory and risks a cold start; keep warm instead.
    const minimumGap = this.timing.stableWindowMs;
    let head = histogram.lowerQuantile(PREWARM_PERCENTILE) * (1 - MARGIN);
    const tail = histogram.upperQuantile(KEEP_ALIVE_PERCENTILE) * (1 + MARGIN);
    if (head < minimumGap) head = 0;
    if (head > 0) {
      // The window is never longer than idleTimeout. Where the percentiles and margins span more (an hourly
      // timer: the bin's lower edge less 10% is ~46 minutes), it is centred on the median instead of starting
      // at the head: [head, head + 10 minutes] ended before the hour, and every call was a cold start.
      if (tail - head > idleTimeoutMs)
        head = Math.max(head, histogram.middleQuantile(0.5) - idleTimeoutMs / 2);
      const keepUntilMs = Math.min(tail, head + idleTimeoutMs);
      // A pre-warm pays a start for the window [head, keepUntil]; spread-out (random) arrivals end few of
      // their idle periods inside it, and the instance would mostly wait there for nothing.
      if (worth(head, keepUntilMs))
        return {
          strategy: 'histogram',
          samples,
          prewarmAfterMs: head,
          keepUntilMs,
          reason: `histogram of ${samples} idle periods, 95% longer than ${formatMs(head / (1 - MARGIN))}`,
        };
    }
    if (keptForNothing) return release(rarelyBack);
    return {
      strategy: 'histogram',
      samples,
      prewarmAfterMs: 0,
      // Never past the function's own idleTimeout: that is the user's word on when to scale to zero.
      keepUntilMs: Math.min(idleTimeoutMs, Math.max(minimumGap, tail)),
      reason: `histogram of ${samples} idle periods, 99% within ${formatMs(tail / (1 + MARGIN))}`,
    };
  }
}

function percent(share: number): string {
  return `${Math.round(share * 100)}%`;
}

function round(value: number): number {
  return Number(value.toFixed(value >= 10 ? 1 : 2));
}
