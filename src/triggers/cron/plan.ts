/** @module A cron trigger's decisions as pure functions of the schedule, the persisted last fire and the clock. */

import type { Cron } from 'croner';

export type MissedPolicy = 'skip' | 'fire-once';

/** What a (re)starting trigger does about the runs that fell due while the platform was down. */
export type StartPlan =
  /** Nothing fell due since the last fire (or there is none): just wait for the next run. */
  | { readonly action: 'none' }
  /** `fire-once`: run once, for the newest missed time, then go on. */
  | { readonly action: 'fire'; readonly at: Date }
  /** `skip`: record the newest missed time as the last fire without running it. */
  | { readonly action: 'skip'; readonly at: Date };

/**
 * The newest run at or before `now` is the only one that matters: `skip` records it, `fire-once` runs it.
 * Found with one `previousRuns` step rather than by walking forward from `last`, which for a
 * per-second schedule after a week down would be 600,000 steps on the event loop at start-up.
 */
export function planStart(cron: Cron, last: Date | undefined, now: Date, policy: MissedPolicy): StartPlan {
  // No last fire: a new trigger (or a new schedule) starts from now; nothing was missed.
  if (last === undefined || Number.isNaN(last.getTime())) return { action: 'none' };
  // previousRuns excludes a run exactly at its reference; one due exactly now was missed too (the next
  // timer is armed strictly after now).
  const newest = cron.previousRuns(1, new Date(now.getTime() + 1))[0];
  if (newest === undefined || newest.getTime() <= last.getTime()) return { action: 'none' };
  return policy === 'fire-once' ? { action: 'fire', at: newest } : { action: 'skip', at: newest };
}

/**
 * The next time to fire: strictly after both `now` and the last fire. Taking the later of the two means
 * a time already fired (persisted) is never fired again, even if the clock stepped back across a restart.
 */
export function nextFire(cron: Cron, now: Date, last: Date | undefined): Date | undefined {
  const after = last !== undefined && last.getTime() > now.getTime() ? last : now;
  return cron.nextRun(after) ?? undefined;
}
