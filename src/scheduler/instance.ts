/** @module One function instance: a stem cell bound to one function version, with its in-flight accounting. */

import type { DeployedVersion, InvocationRequest } from '../domain/deployment.js';
import { HearthError } from '../domain/errors.js';
import type { ColdStartPhases } from '../domain/events.js';
import { formatTraceparent, type TraceContext } from '../domain/trace.js';
import { formatBytes } from '../domain/units.js';
import { SlotTable } from '../runtime/index.js';
import { type GuestLog, type GuestResult, InvalidResponseError } from '../runtime/ipc/guest-process.js';
import type { StemCell } from './stem-cells.js';

/** What an invocation in flight gets when the kernel killed its instance for passing `limits.memory`. */
export function outOfMemoryError(version: DeployedVersion): HearthError {
  const limit = formatBytes(version.spec.limits.memoryBytes);
  return new HearthError('HEARTH_E_FN_OOM', `the function ran out of memory: limits.memory is ${limit}`, {
    details: { limit, limitBytes: version.spec.limits.memoryBytes },
  });
}

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

export type RunCallback = (error: HearthError | undefined, result: GuestResult | undefined) => void;

interface InFlightInvocation {
  readonly invocationId: string;
  /** When the caller gets its answer (504 if nothing came back). */
  readonly answerBy: number;
  /** When the function's own timeout has passed and the instance must be recycled. */
  readonly killAt: number;
  readonly timeoutMs: number;
  readonly timeoutSource: string;
  answered: boolean;
  /** The guest's sequence number for this invocation: it tags the invocation's log frames. */
  guestSeq: number;
  /** The trace it continues, for the calls (ctx.invoke) it makes. */
  readonly trace: TraceContext | undefined;
  readonly respond: RunCallback;
  readonly settled: () => void;
}

let counter = 0;

export class Instance {
  readonly id: string;
  readonly startedAt = Date.now();
  /** When the handler finished loading. */
  readyAt = 0;
  /** Where the cold start's time went, in milliseconds. */
  coldStartPhases: ColdStartPhases | undefined;
  lastUsedAt = Date.now();
  inFlight = 0;
  served = 0;
  state: InstanceState = 'starting';
  /** In-flight invocations this instance takes at once; known once the handler is bound. */
  capacity = 1;
  /** Why it is draining: a timeout or a redeploy; used in logs. */
  drainReason = '';
  /** Keyed by the instance's own slot key; each entry remembers the guest's sequence number. */
  private readonly invocations = new SlotTable<InFlightInvocation>();
  private released = false;

  constructor(
    readonly version: DeployedVersion,
    readonly cell: StemCell,
    readonly isolation: string,
    private readonly onLog: (log: InstanceLog) => void,
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
   * Runs one invocation. `respond` is called exactly once: with the guest's result, or with a HearthError
   * for a crash or a passed deadline. `settled` is called once the invocation no longer occupies the
   * instance: when the guest answers, dies, or runs past the function's own timeout and is killed.
   * A caller's shorter deadline (X-Hearth-Timeout) answers 504 but does not kill a shared instance.
   * Deadlines are checked by the scheduler's sweep rather than a timer per request (bench/RESULTS.md).
   */
  run(request: InvocationRequest, respond: RunCallback, settled: () => void): void {
    const entry: InFlightInvocation = {
      invocationId: request.invocationId,
      answerBy: request.deadline,
      // The function's own timeout is the deadline itself: answer and kill in the same sweep, or the caller's
      // next request could land on the still-spinning instance before a later sweep drains it.
      killAt:
        request.timeoutSource === 'limits.timeout'
          ? request.deadline
          : Math.max(request.deadline, Date.now() + this.version.spec.limits.timeoutMs),
      timeoutMs: request.timeoutMs,
      timeoutSource: request.timeoutSource,
      answered: false,
      guestSeq: 0,
      trace: request.trace,
      respond,
      settled,
    };
    const key = this.invocations.add(entry);
    entry.guestSeq = this.cell.guest.invoke(
      {
        invocationId: request.invocationId,
        method: request.method,
        path: request.path,
        rawQuery: request.rawQuery,
        rawHeaders: request.rawHeaders,
        deadline: request.deadline,
        sourceIp: request.sourceIp,
        // Present even when undefined: one object shape per request keeps the encoder monomorphic.
        event: request.event,
        auth: request.auth,
        traceparent:
          request.trace === undefined
            ? undefined
            : formatTraceparent(request.trace.traceId, request.trace.spanId, request.trace.flags),
        direct: request.direct,
      },
      request.body,
      (error, result) => {
        if (this.invocations.take(key) !== entry) return;
        if (!entry.answered) {
          entry.answered = true;
          if (error instanceof InvalidResponseError) {
            // Refused as a bad gateway refuses a malformed upstream answer; the function's log says why.
            this.onLog({
              invocationId: request.invocationId,
              stream: 'stderr',
              text: `the platform refused this invocation's response: ${error.message}\n`,
            });
            respond(
              new HearthError(
                'HEARTH_E_FN_CRASHED',
                `the function returned an invalid response: ${error.message}`,
              ),
              undefined,
            );
          } else if (error?.exit.outOfMemory === true) {
            respond(outOfMemoryError(this.version), undefined);
          } else if (error !== undefined) {
            respond(
              new HearthError(
                'HEARTH_E_FN_CRASHED',
                error.exit.violation === undefined
                  ? `the function's process crashed while serving this request (${error.message})`
                  : `the function broke the platform's protocol while serving this request, so its process was ended: ${error.exit.violation}`,
              ),
              undefined,
            );
          } else respond(undefined, result);
        }
        settled();
      },
    );
  }

  get hasInvocations(): boolean {
    return this.invocations.size > 0;
  }

  /**
   * Answers 504 for invocations past their deadline, and kills those past the function's own timeout:
   * the handler may be spinning, so the instance takes no more work and stops once the rest are done.
   */
  expire(now: number): void {
    for (const [key, entry] of this.invocations.entries()) {
      if (!entry.answered && entry.answerBy <= now) {
        entry.answered = true;
        entry.respond(
          new HearthError(
            'HEARTH_E_TIMEOUT',
            `the function did not answer within ${entry.timeoutMs}ms (${entry.timeoutSource})`,
            {
              details: { stage: 'execution', timeoutMs: entry.timeoutMs, source: entry.timeoutSource },
            },
          ),
          undefined,
        );
      }
      if (entry.killAt <= now) {
        this.invocations.take(key);
        this.cell.guest.abandon(entry.guestSeq);
        this.drain('timeout');
        entry.settled();
      }
    }
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

  /** The in-flight invocation behind a guest sequence number (for calls the guest makes on its behalf). */
  invocationFor(
    seq: number,
  ): { invocationId: string; deadline: number; trace: TraceContext | undefined } | undefined {
    for (const [, entry] of this.invocations.entries()) {
      if (entry.guestSeq === seq)
        return { invocationId: entry.invocationId, deadline: entry.answerBy, trace: entry.trace };
    }
    return undefined;
  }

  /** Output with no invocation tag belongs to the only invocation in flight, when there is one. */
  private attribute(seq: number): string | undefined {
    if (seq <= 0 && this.invocations.size !== 1) return undefined;
    for (const [, entry] of this.invocations.entries())
      if (seq <= 0 || entry.guestSeq === seq) return entry.invocationId;
    return undefined;
  }
}
