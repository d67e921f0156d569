/** @module One function instance: a stem cell bound to one function version, with its in-flight accounting. */

import type { DeployedVersion, InvocationRequest } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import { GuestCrashedError, type GuestLog, type GuestResult } from '../runtime/ipc/guest-process.js';
import type { StemCell } from './stem-cells.js';

export type InstanceState = 'starting' | 'ready' | 'draining' | 'stopped';

export interface InstanceLog {
  readonly invocationId: string | undefined;
  readonly stream: 'stdout' | 'stderr';
  readonly text: string;
}

export interface InstanceInfo {
  readonly id: string;
  readonly version: number;
  readonly state: InstanceState;
  readonly inFlight: number;
  readonly capacity: number;
  readonly pid: number;
  readonly startedAt: string;
  readonly lastUsedAt: string;
  readonly served: number;
  readonly isolation: string;
}

let counter = 0;

export class Instance {
  readonly id: string;
  readonly startedAt = Date.now();
  /** When the handler finished loading. */
  readyAt = 0;
  lastUsedAt = Date.now();
  inFlight = 0;
  served = 0;
  state: InstanceState = 'starting';
  /** In-flight invocations this instance takes at once; known once the handler is bound. */
  capacity = 1;
  /** Why it is draining: a timeout or a redeploy; used in logs. */
  drainReason = '';
  private readonly invocations = new Map<number, string>();
  private released = false;

  constructor(
    readonly version: DeployedVersion,
    readonly cell: StemCell,
    readonly isolation: string,
    onLog: (log: InstanceLog) => void,
    private readonly onRelease: () => void,
  ) {
    counter += 1;
    this.id = `${version.ref.name}-${version.version}-${counter.toString(36)}`;
    cell.guest.on('log', (log: GuestLog) =>
      onLog({ invocationId: this.attribute(log.seq), stream: log.stream, text: log.text }),
    );
  }

  get pid(): number {
    return this.cell.guest.pid;
  }

  get hasRoom(): boolean {
    return this.state === 'ready' && this.inFlight < this.capacity;
  }

  /**
   * Runs one invocation. Resolves with the guest's result; rejects with a HearthError for a timeout
   * (the instance is then drained and killed) or a crash.
   */
  run(request: InvocationRequest): Promise<GuestResult> {
    const { seq, result } = this.cell.guest.invoke(
      {
        invocationId: request.invocationId,
        method: request.method,
        path: request.path,
        rawQuery: request.rawQuery,
        headers: request.headers,
        deadline: request.deadline,
        sourceIp: request.sourceIp,
      },
      request.body,
    );
    this.invocations.set(seq, request.invocationId);
    const remaining = request.deadline - Date.now();
    return new Promise<GuestResult>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.cell.guest.abandon(seq);
          this.invocations.delete(seq);
          // The handler may still be running (or spinning); nothing else is sent here, and the process is
          // killed once the other in-flight invocations are done.
          this.drain('timeout');
          reject(
            new HearthError(
              'HEARTH_E_TIMEOUT',
              `the function did not answer within its timeout (${Math.round(this.version.spec.limits.timeoutMs)}ms)`,
            ),
          );
        },
        Math.max(0, remaining),
      );
      result.then(
        (value) => {
          clearTimeout(timer);
          this.invocations.delete(seq);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          this.invocations.delete(seq);
          if (error instanceof GuestCrashedError) {
            reject(
              new HearthError(
                'HEARTH_E_FN_CRASHED',
                `the function's process crashed while serving this request (${error.message})`,
              ),
            );
          } else reject(error);
        },
      );
    });
  }

  drain(reason: string): void {
    if (this.state !== 'ready') return;
    this.state = 'draining';
    this.drainReason = reason;
  }

  /** Stops the process: a graceful shutdown frame first, then SIGKILL after `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    const guest = this.cell.guest;
    if (!guest.exited) {
      guest.shutdown();
      const timer = setTimeout(() => guest.kill('SIGKILL'), graceMs);
      await guest.waitForExit();
      clearTimeout(timer);
    }
    this.releaseResources();
  }

  /** Gives back the code checkout and the slot; idempotent, called once the process is gone. */
  releaseResources(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease();
  }

  info(): InstanceInfo {
    return {
      id: this.id,
      version: this.version.version,
      state: this.state,
      inFlight: this.inFlight,
      capacity: this.capacity,
      pid: this.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      lastUsedAt: new Date(this.lastUsedAt).toISOString(),
      served: this.served,
      isolation: this.isolation,
    };
  }

  /** Output with no invocation tag belongs to the only invocation in flight, when there is one. */
  private attribute(seq: number): string | undefined {
    if (seq > 0) return this.invocations.get(seq);
    if (this.invocations.size === 1) return this.invocations.values().next().value;
    return undefined;
  }
}
