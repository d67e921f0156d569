/**
 * @module When an idle instance is released. The core ships a fixed keep-alive (the function's
 * `scaling.idleTimeout`); the autoscaler replaces this policy without touching the scheduler.
 */

import type { DeployedVersion } from '../domain/deployment.js';

export interface InstanceView {
  readonly version: DeployedVersion;
  readonly idleForMs: number;
}

export interface ScalingPolicy {
  /** Instances of this version to keep even when idle. */
  minInstances(version: DeployedVersion): number;
  /** Whether an idle instance should be stopped now. */
  shouldRelease(instance: InstanceView, instancesOfVersion: number): boolean;
}

export class FixedKeepAlive implements ScalingPolicy {
  minInstances(version: DeployedVersion): number {
    return version.spec.scaling.min;
  }

  shouldRelease(instance: InstanceView, instancesOfVersion: number): boolean {
    return (
      instancesOfVersion > instance.version.spec.scaling.min &&
      instance.idleForMs >= instance.version.spec.scaling.idleTimeoutMs
    );
  }
}
