/**
 * @module The autoscaler: the `ScalingPolicy` port, its two implementations (the hybrid autoscaler Hearth runs,
 * and the fixed keep-alive baseline), the stem-cell pool sizer, and the per-function scaling state.
 */

import { FixedKeepAlive } from './fixed.js';
import { HybridAutoscaler } from './hybrid.js';
import { type AutoscalerTiming, DEFAULT_TIMING, type ScalingPolicy } from './policy.js';

export { FixedKeepAlive } from './fixed.js';
export { FunctionScaling, type ScalingAction, type ScalingRecord } from './function-scaling.js';
export { HybridAutoscaler, MIN_IDLE_SAMPLES } from './hybrid.js';
export {
  type AutoscalerTiming,
  DEFAULT_TIMING,
  formatMs,
  type KeepAlive,
  type ScalingDecision,
  type ScalingFigures,
  type ScalingMode,
  type ScalingPolicy,
  type ScalingSample,
  type ScalingSpec,
} from './policy.js';
export type { FunctionLiveStats, NodeLiveStats, ScalingStatus } from './status.js';
export { type SizablePool, type StemCellResize, StemCellSizer } from './stem-cell-sizer.js';

export const POLICIES = ['hybrid', 'fixed'] as const;
export type PolicyName = (typeof POLICIES)[number];

export function createScalingPolicy(
  name: PolicyName,
  timing: AutoscalerTiming = DEFAULT_TIMING,
): ScalingPolicy {
  return name === 'fixed' ? new FixedKeepAlive(timing) : new HybridAutoscaler(timing);
}
