/**
 * @module The seed's three indicators, evaluated in the platform for the dashboard with the same
 * thresholds as `deploy/prometheus/alerts.yml` (which Prometheus evaluates from /metrics):
 * error rate > 1% held for 5 minutes → alert; cold-start ratio > 30% over a day → daily report;
 * utilisation < 20% over 15 minutes with instances to spare → scale-in suggestion.
 */

import type { FunctionRef } from '../domain/function.js';
import type { FunctionStats, Telemetry } from './telemetry.js';

export type AlertName = 'HearthFunctionErrorRateHigh' | 'HearthColdStartRatioHigh' | 'HearthLowUtilisation';
export type AlertState = 'inactive' | 'pending' | 'firing';

export interface AlertRule {
  readonly name: AlertName;
  readonly severity: 'critical' | 'warning' | 'info';
  /** What happens when it fires: page someone, put it in the daily report, suggest scaling in. */
  readonly action: 'alert' | 'daily report' | 'scale-in suggestion';
  readonly summary: string;
  readonly threshold: number;
  /** How long the condition must hold before it fires. */
  readonly forMs: number;
}

export const ALERT_RULES: readonly AlertRule[] = [
  {
    name: 'HearthFunctionErrorRateHigh',
    severity: 'critical',
    action: 'alert',
    summary: 'Error rate (5xx) above 1% for 5 minutes',
    threshold: 0.01,
    forMs: 5 * 60_000,
  },
  {
    name: 'HearthColdStartRatioHigh',
    severity: 'info',
    action: 'daily report',
    summary: 'Cold-start ratio above 30% over the last 24 hours',
    threshold: 0.3,
    forMs: 0,
  },
  {
    name: 'HearthLowUtilisation',
    severity: 'info',
    action: 'scale-in suggestion',
    summary: 'Instances busy less than 20% of the time over 15 minutes: fewer would do',
    threshold: 0.2,
    forMs: 15 * 60_000,
  },
];

export interface AlertStatus {
  readonly alert: AlertName;
  readonly severity: AlertRule['severity'];
  readonly action: AlertRule['action'];
  readonly summary: string;
  readonly namespace: string;
  readonly function: string;
  readonly state: AlertState;
  /** The measured value (a ratio), or null when there is nothing to measure. */
  readonly value: number | null;
  readonly threshold: number;
  /** ISO time the condition became true, when it is. */
  readonly since: string | null;
}

/** Live instances of a function and its configured minimum, for the scale-in suggestion. */
export type InstanceCounter = (ref: FunctionRef) => { live: number; min: number };

const ERROR_WINDOW_SLOTS = 60; // 5 minutes of 5-second slots
const UTILISATION_WINDOW_SLOTS = 180; // 15 minutes

export class AlertEvaluator {
  /** `alert function-key` → when its condition became true. */
  private readonly since = new Map<string, number>();

  constructor(
    private readonly telemetry: Telemetry,
    private readonly instances: InstanceCounter,
    private readonly now: () => number = Date.now,
  ) {}

  /** Every rule for every function with figures; conditions are tracked across calls for `for`. */
  evaluate(): AlertStatus[] {
    const now = this.now();
    const statuses: AlertStatus[] = [];
    for (const stats of this.telemetry.functions()) {
      for (const rule of ALERT_RULES) {
        const value = this.measure(rule, stats, now);
        const key = `${rule.name} ${stats.key}`;
        const holds = value !== null && this.breaches(rule, value, stats);
        let since = this.since.get(key);
        if (!holds) this.since.delete(key);
        else if (since === undefined) {
          since = now;
          this.since.set(key, now);
        }
        const state: AlertState = !holds
          ? 'inactive'
          : now - (since ?? now) >= rule.forMs
            ? 'firing'
            : 'pending';
        statuses.push({
          alert: rule.name,
          severity: rule.severity,
          action: rule.action,
          summary: rule.summary,
          namespace: stats.ref.namespace,
          function: stats.ref.name,
          state,
          value,
          threshold: rule.threshold,
          since: holds && since !== undefined ? new Date(since).toISOString() : null,
        });
      }
    }
    return statuses;
  }

  private measure(rule: AlertRule, stats: FunctionStats, now: number): number | null {
    switch (rule.name) {
      case 'HearthFunctionErrorRateHigh': {
        const window = stats.window(now, ERROR_WINDOW_SLOTS);
        return window.requests === 0 ? null : window.errors / window.requests;
      }
      case 'HearthColdStartRatioHigh': {
        const day = stats.day(now);
        return day.requests === 0 ? null : day.cold / day.requests;
      }
      case 'HearthLowUtilisation': {
        const window = stats.window(now, UTILISATION_WINDOW_SLOTS);
        return window.provisionedMs === 0 ? null : Math.min(1, window.busyMs / window.provisionedMs);
      }
    }
  }

  private breaches(rule: AlertRule, value: number, stats: FunctionStats): boolean {
    if (rule.name !== 'HearthLowUtilisation') return value > rule.threshold;
    // Scaling in needs an instance to spare: more than one live, and more than the configured minimum.
    const { live, min } = this.instances(stats.ref);
    return value < rule.threshold && live > Math.max(1, min);
  }
}
