/**
 * @module Cron triggers (croner computes the times, in the trigger's time zone). Each firing goes into the
 * durable queue under a key made of the trigger and the scheduled time, and the time is then persisted as
 * the last fire: a restart never fires a time twice, and a firing accepted before a crash still runs
 * (the queue retries it with backoff, then dead-letters it). Runs missed while the platform was down are
 * skipped, or caught up with one run (`missed: fire-once`).
 */

import { Cron } from 'croner';
import type { CloudEventAttributes } from '../../domain/deployment.js';
import type { CronSource, TriggerStatus } from '../../domain/triggers.js';
import { countersStatus, newCounters, type TriggerCounters } from '../delivery.js';
import type { ClaimOutcome, Trigger, TriggerConfig, TriggerHost } from '../index.js';
import { nextFire, planStart } from './plan.js';

export { type MissedPolicy, nextFire, planStart, type StartPlan } from './plan.js';

/** setTimeout's limit is ~24.8 days; longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A node that did not get a time's claim asks again this long after the holder's lease runs out. */
const RECHECK_SLACK_MS = 500;

export class CronTrigger implements Trigger {
  private readonly cron: Cron;
  private readonly counters: TriggerCounters = newCounters();
  private timer: NodeJS.Timeout | undefined;
  private next: Date | undefined;
  private state: TriggerStatus['state'] = 'connecting';
  private stopped = false;
  private pending: Promise<void> = Promise.resolve();
  /** Cluster mode: times another node holds, to take over should its lease run out with them unqueued. */
  private readonly rechecks = new Set<NodeJS.Timeout>();
  private readonly takeovers = new Set<Promise<void>>();

  constructor(
    private readonly source: CronSource,
    readonly config: TriggerConfig,
    private readonly host: TriggerHost,
    /** The clock, injectable so the restart and missed-run decisions can be tested at chosen times. */
    private readonly clock: () => number = Date.now,
  ) {
    this.cron = new Cron(source.schedule, {
      paused: true,
      ...(source.timezone === undefined ? {} : { timezone: source.timezone }),
    });
  }

  private get stateKey(): string {
    return `cron:${this.config.id}:${this.source.schedule}:${this.source.timezone ?? ''}`;
  }

  async start(): Promise<void> {
    const now = new Date(this.clock());
    const plan = planStart(this.cron, this.lastFire(), now, this.source.missed ?? 'skip');
    if (plan.action === 'fire') {
      this.host.info(`trigger ${this.config.id}: catching up the run missed at ${plan.at.toISOString()}`);
      await this.fire(plan.at);
    } else if (plan.action === 'skip') {
      this.host.info(
        `trigger ${this.config.id}: skipping runs missed while down (last ${plan.at.toISOString()})`,
      );
      this.host.state.set(this.stateKey, plan.at.toISOString());
    }
    this.state = 'running';
    this.schedule(now);
  }

  private lastFire(): Date | undefined {
    const text = this.host.state.get(this.stateKey);
    const last = text === undefined ? undefined : new Date(text);
    return last === undefined || Number.isNaN(last.getTime()) ? undefined : last;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    clearTimeout(this.timer);
    for (const timer of this.rechecks) clearTimeout(timer);
    this.rechecks.clear();
    await Promise.all([this.pending, ...this.takeovers]);
  }

  status(): TriggerStatus {
    return {
      id: this.config.id,
      name: this.config.name,
      kind: 'cron',
      state: this.state,
      lag: 0,
      ...countersStatus(this.counters),
      detail: {
        schedule: this.source.schedule,
        timezone: this.source.timezone ?? 'UTC',
        missed: this.source.missed ?? 'skip',
        nextRun: this.next?.toISOString() ?? null,
        lastRun: this.host.state.get(this.stateKey) ?? null,
      },
    };
  }

  private schedule(after: Date): void {
    if (this.stopped) return;
    const next = nextFire(this.cron, after, this.lastFire());
    this.next = next;
    if (next === undefined) return;
    const arm = (): void => {
      const wait = next.getTime() - this.clock();
      this.timer = setTimeout(
        () => {
          if (this.stopped) return;
          // Timers may fire a little early; firing before the time would let a restart fire it again.
          if (this.clock() < next.getTime()) {
            arm();
            return;
          }
          this.pending = this.fire(next).finally(() => this.schedule(next));
        },
        Math.min(Math.max(0, wait), MAX_TIMER_MS),
      );
      this.timer.unref();
    };
    arm();
  }

  /** Enqueues the run for `at` (once per time, whatever happens) and records it as the last fire. */
  private async fire(at: Date): Promise<void> {
    const ref = this.config.route(this.config.id, undefined)?.ref;
    if (ref === undefined) return;
    const time = at.toISOString();
    // In a cluster every node runs the schedule; the node that holds the time's claim fires it.
    const key = `cron:${this.config.id}@${time}`;
    const claims = this.host.claims;
    if (claims !== undefined) {
      let outcome: ClaimOutcome;
      try {
        outcome = claims.claim(key);
      } catch (error) {
        // The claim store is unreachable: the nodes that reach it fire the time.
        this.host.warn(`trigger ${this.config.id}: could not claim the run of ${time}: ${String(error)}`);
        return;
      }
      if (!outcome.held) {
        if (outcome.recheckInMs !== undefined) this.recheck(at, outcome.recheckInMs);
        return;
      }
    }
    const event: CloudEventAttributes = {
      specversion: '1.0',
      id: `${this.config.id}@${time}`,
      source: `hearth://cron/${this.config.id}`,
      type: 'dev.hearth.cron.tick',
      subject: this.config.name,
      time,
      datacontenttype: 'application/json',
      extensions: { schedule: this.source.schedule, timezone: this.source.timezone ?? 'UTC' },
    };
    const data =
      this.source.data === undefined
        ? { schedule: this.source.schedule, scheduledTime: time }
        : this.source.data;
    // A slow enqueue keeps the lease, so no other node takes the time over meanwhile.
    const renewal =
      claims === undefined
        ? undefined
        : setInterval(() => {
            try {
              claims.renew(key);
            } catch (error) {
              this.host.warn(
                `trigger ${this.config.id}: could not renew the claim of ${time}: ${String(error)}`,
              );
            }
          }, claims.renewEveryMs);
    renewal?.unref();
    try {
      await this.host.queue.enqueue({
        ref,
        source: `cron:${this.config.id}`,
        request: {
          method: 'POST',
          path: '/',
          rawQuery: '',
          headers: ['content-type', 'application/json'],
          body: Buffer.from(JSON.stringify(data)),
          event,
        },
        maxAttempts: this.config.retry.attempts,
        backoffMs: this.config.retry.backoffMs,
        maxBackoffMs: this.config.retry.maxBackoffMs,
        dedupeKey: `cron:${this.config.id}@${time}`,
      });
      try {
        claims?.done(key);
      } catch (error) {
        // Queued all the same: a node that takes the time over meets the run's dedupe key.
        this.host.warn(
          `trigger ${this.config.id}: could not mark the run of ${time} queued: ${String(error)}`,
        );
      }
      // A time taken over from a dead node may be older than the last fire another node recorded.
      if ((this.lastFire()?.getTime() ?? Number.NEGATIVE_INFINITY) < at.getTime())
        this.host.state.set(this.stateKey, time);
      this.counters.delivered += 1;
      this.counters.lastDeliveryAt = new Date(this.clock()).toISOString();
      this.host.notifyQueue();
    } catch (error) {
      this.counters.failed += 1;
      const message = error instanceof Error ? error.message : String(error);
      this.counters.lastError = { message, at: new Date(this.clock()).toISOString() };
      this.host.warn(`trigger ${this.config.id}: could not queue the run of ${time}: ${message}`);
    } finally {
      clearInterval(renewal);
    }
  }

  /** Asks for the time's claim again once its holder's lease has run out (it takes over if not done). */
  private recheck(at: Date, inMs: number): void {
    if (this.stopped) return;
    const timer = setTimeout(
      () => {
        this.rechecks.delete(timer);
        if (this.stopped) return;
        const takeover = this.fire(at).finally(() => this.takeovers.delete(takeover));
        this.takeovers.add(takeover);
      },
      Math.min(inMs + RECHECK_SLACK_MS, MAX_TIMER_MS),
    );
    timer.unref();
    this.rechecks.add(timer);
  }
}
