/**
 * @module The worker threads that do archive work (vetting uploads, hashing, packing and extracting code),
 * so inflating, compressing and hashing never hold the event loop that serves invocations (issue 19).
 */

import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { HearthError } from '../../domain/errors.js';
import { PACKAGE_ROOT } from '../../runtime/paths.js';
import type { ArchiveJob, JobOutcome, JobResults, SerialisedError } from './archive-worker.js';

/** The compiled worker, as the guests are: under the tests too, the build output is what runs. */
const WORKER_URL = pathToFileURL(`${PACKAGE_ROOT}dist/control/packages/archive-worker.js`);

/** Past `ms` the worker is terminated and the job fails with `error()`. */
export interface JobDeadline {
  readonly ms: number;
  readonly error: () => HearthError;
}

/**
 * Runs `job` in a worker thread. One idle worker is kept for IDLE_MS: starting one costs ~50-100 ms, a
 * job on a warm one ~2 ms more than the same work on this thread, and an idle one holds ~19 MiB. A worker past its deadline is terminated before the
 * promise settles, so the caller may delete what it was writing. At most `MAX_RUNNING` jobs run at once
 * (the rest wait their turn, and their deadline starts when they do), so a flood of uploads costs
 * threads and memory in proportion to the cores, not to the requests.
 */
export function runArchiveJob<Job extends ArchiveJob>(
  job: Job,
  deadline?: JobDeadline,
): Promise<JobResults[Job['kind']]> {
  return pool.run(job, deadline) as Promise<JobResults[Job['kind']]>;
}

class WorkerPool {
  private readonly idle: { worker: Worker; timer: NodeJS.Timeout }[] = [];
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly maxRunning: number,
    private readonly keepIdle: number,
  ) {}

  async run(job: ArchiveJob, deadline: JobDeadline | undefined): Promise<unknown> {
    if (this.running >= this.maxRunning) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running += 1;
    try {
      return await this.runNow(job, deadline);
    } finally {
      this.running -= 1;
      this.waiting.shift()?.();
    }
  }

  private runNow(job: ArchiveJob, deadline: JobDeadline | undefined): Promise<unknown> {
    const warm = this.idle.pop();
    if (warm !== undefined) clearTimeout(warm.timer);
    const worker = warm?.worker ?? new Worker(WORKER_URL);
    worker.ref();
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (): boolean => {
        if (done) return false;
        done = true;
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        return true;
      };
      const discard = (error: HearthError): void => {
        void worker.terminate().then(
          () => reject(error),
          () => reject(error),
        );
      };
      const onMessage = (outcome: JobOutcome): void => {
        if (!finish()) return;
        this.release(worker);
        if (outcome.ok) resolve(outcome.value);
        else reject(deserialise(outcome.error));
      };
      const onError = (error: Error): void => {
        if (finish())
          discard(new HearthError('HEARTH_E_INTERNAL', 'the archive worker failed', { cause: error }));
      };
      const onExit = (code: number): void => {
        if (finish()) reject(new HearthError('HEARTH_E_INTERNAL', `the archive worker exited (${code})`));
      };
      const timer =
        deadline === undefined
          ? undefined
          : setTimeout(() => {
              if (finish()) discard(deadline.error());
            }, deadline.ms);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage(job);
    });
  }

  private release(worker: Worker): void {
    if (this.idle.length >= this.keepIdle) {
      void worker.terminate();
      return;
    }
    // An idle worker must not keep a CLI or a test process alive.
    worker.unref();
    const entry = {
      worker,
      timer: setTimeout(() => {
        const at = this.idle.indexOf(entry);
        if (at !== -1) this.idle.splice(at, 1);
        void worker.terminate();
      }, IDLE_MS).unref(),
    };
    this.idle.push(entry);
  }
}

/** Long enough for a burst of deploys (a CI run, the examples at start-up) to share one worker. */
const IDLE_MS = 60_000;
/** One core is left to the event loop, but never fewer than two workers: a cold start's checkout must not wait long behind a deploy. */
const MAX_RUNNING = Math.max(2, availableParallelism() - 1);
const pool = new WorkerPool(MAX_RUNNING, 1);

function deserialise(error: SerialisedError): HearthError {
  return new HearthError(error.code, error.message, {
    ...(error.details === undefined ? {} : { details: error.details }),
    ...(error.internal === undefined ? {} : { cause: new Error(error.internal) }),
  });
}
