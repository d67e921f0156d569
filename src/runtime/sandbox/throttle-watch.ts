/**
 * @module The CPU throttle watch (issue 10): marks a bound sandbox that keeps reaching its CPU quota idle
 * (`cpu.idle`), so a neighbour waking up is scheduled before it, and gives it its full weight again once
 * it is calm. `Cgroups` (cgroups.ts) starts it with the cpu controller and tells it each bound sandbox.
 *
 * It reads every watched sandbox's `cpu.stat` every 25 ms or so, on the gateway's thread: the reads are
 * asynchronous (libuv's pool), one outstanding at a time, so a read that waits in the kernel (cgroupfs
 * behind a busy cgroup lock) never stalls a request, and the watch takes one pool thread at the most. The
 * next look is timed from the end of the last, as before. Each file is opened once and re-read from its
 * start (`pread` at 0: cgroupfs makes the text anew) into one buffer: a whole `readFile` is four trips
 * to the pool (open, fstat, read, close), which cost 3.4 times the CPU of the synchronous reads it replaced
 * (200 cells); one `pread` costs about what a synchronous read did.
 */

import { close, open, read, writeFile } from 'node:fs';
import { join } from 'node:path';

/**
 * How often the sandboxes' `cpu.stat` is read for throttling (a file read per bound sandbox): a hog is
 * marked idle within this long of reaching its quota. Every 25 ms while few sandboxes are watched, slower
 * as there are more, so the reads stay at most POLL_READS_PER_SECOND (2000 small reads a second, about 1%
 * of a core: 100 ms at 200 warm sandboxes, the fixed interval this replaced). At 100 ms, the first burst
 * of a hog ran at full weight for 50 ms on average, over 1% of a 4 s window (bench/abuse.mjs).
 */
const MIN_POLL_MS = 25;
const MAX_POLL_MS = 1000;
const POLL_READS_PER_SECOND = 2000;
/**
 * How long a sandbox marked idle must stay under its quota before it competes at full weight again: a
 * second after a blip (a new instance loading its code often reaches its quota once), ten once it has
 * reached it in HOG_POLLS looks. A function that kept at its quota lately is likely to again (a job that
 * runs in bursts, a hog invoked again): at a second, each new burst ran at full weight until the next poll
 * caught it, and a neighbour waking in those first ~100 ms waited behind it (bench/abuse.mjs, every round
 * after the first).
 */
const IDLE_UNTIL_CALM_MS = 1000;
const HOG_IDLE_UNTIL_CALM_MS = 10_000;
const HOG_POLLS = 3;
/**
 * The share of its full use (`Throttling.fullUsePerMs`) over one poll at which a sandbox counts as a hog
 * though not throttled: a quota of every core is never throttled, nor is a hog whose threads other work
 * already holds below its quota, and either kept its full weight against the neighbours it starved.
 */
const BUSY_SHARE = 0.9;
/**
 * Only a hog moves under the top-level idle group (IdleTopMover), not an instance that reached its quota once
 * or twice (a new one loading its code): an idle task holding a kernel lock the platform waits for (a
 * sandbox being set up) runs only when nothing else on the machine wants the CPU; idle-priority boots were
 * taken back for that (docs/architecture.md). A sandbox moved there before goes back at its first hot look:
 * each new burst of a known hog (a CPU hog invoked again) otherwise ran at full weight against the machine
 * for three looks (bench/abuse.mjs).
 */
const IDLE_AT_TOP_POLLS = HOG_POLLS;

/**
 * cgroup v1 only (cgroups.ts, IDLE_TOP_GROUP): moves a hog's processes, for the cpu controller, into a twin
 * cgroup under a top-level group marked `cpu.idle`, and back. Synchronous: it runs for a hog, not each look.
 */
export interface IdleTopMover {
  /** Moves it (again: stragglers) into its twin; the twin's directory, or undefined where it could not. */
  moveToTop(id: string): string | undefined;
  /** Moves it back into its own cgroup and removes the twin. */
  moveBack(id: string): void;
}

interface Throttling {
  /** `nr_throttled` when last read. */
  periods: number;
  idle: boolean;
  lastThrottledAt: number;
  /** Looks in which it was at its quota since it was last made a full competitor again. */
  hotPolls: number;
  /** CPU time used (µs) when last read, where the kernel tells it (v2; v1 with cpuacct beside cpu). */
  usageUs: number | undefined;
  lookedAt: number;
  /** µs of CPU per ms of wall time the sandbox uses when it runs flat out: its quota, at most every core. */
  readonly fullUsePerMs: number;
  /** Its `cpu.stat`, open (undefined until the first look). */
  statFd: number | undefined;
  /** v1: its `cpuacct.usage`, open; null where there is none (cpuacct mounted apart from cpu). */
  usageFd: number | null | undefined;
  /** Its twin under the top-level idle group while it is there (IdleTopMover), whose files are read then. */
  twin: string | undefined;
  /** `nr_throttled` of its own cgroup when it moved to its twin, whose counters start from nothing. */
  periodsAtHome: number;
  /** Whether it was moved to its twin before: a hog once, it goes back there at its first hot look. */
  wasAtTop: boolean;
}

/** Larger than any cgroup's `cpu.stat` (a few hundred bytes); one, as one read is outstanding at a time. */
const READ_BUFFER_BYTES = 4096;

export class ThrottleWatch {
  private readonly watched = new Map<string, Throttling>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly buffer = Buffer.alloc(READ_BUFFER_BYTES);

  /** `root`: the platform's directory under the cpu controller, each sandbox's cgroup a folder in it. */
  constructor(
    private readonly root: string,
    private readonly version: 1 | 2,
    private readonly idleTop?: IdleTopMover,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(MIN_POLL_MS);
  }

  /** Watches a bound sandbox with a CPU quota of `quotaCores` (on a machine of `cores`). */
  watch(id: string, quotaCores: number, cores: number): void {
    if (!this.running || this.watched.has(id)) return;
    this.watched.set(id, {
      periods: 0,
      idle: false,
      lastThrottledAt: 0,
      hotPolls: 0,
      usageUs: undefined,
      lookedAt: Date.now(),
      fullUsePerMs: 1000 * Math.min(quotaCores, cores),
      statFd: undefined,
      usageFd: undefined,
      twin: undefined,
      periodsAtHome: 0,
      wasAtTop: false,
    });
  }

  /** Stops; a read under way finishes and is dropped. */
  close(): void {
    this.running = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    for (const id of [...this.watched.keys()]) this.drop(id);
  }

  /** Its cgroup is being removed: no longer watched (a cell made again under its id starts afresh). */
  forget(id: string): void {
    this.drop(id);
  }

  /** No longer watched (its cgroup is gone): its files are closed. */
  private drop(id: string): void {
    const state = this.watched.get(id);
    this.watched.delete(id);
    if (state !== undefined) closeFiles(state);
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.look().then(() => {
        if (!this.running) return;
        const pollMs = (1000 * this.watched.size) / POLL_READS_PER_SECOND;
        this.schedule(Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, pollMs)));
      });
    }, ms);
    this.timer.unref();
  }

  /**
   * One look at every watched sandbox, one file at a time: idle while it keeps reaching its quota
   * (throttled, or its CPU time since the last look near all its quota allows), normal once it is calm.
   */
  private async look(): Promise<void> {
    for (const [id, state] of [...this.watched]) {
      const home = join(this.root, id);
      const dir = state.twin ?? home;
      state.statFd ??= await openIfThere(join(dir, 'cpu.stat'));
      const stat = state.statFd === undefined ? '' : await this.readFrom(state.statFd);
      if (!this.running) return;
      if (stat === '') {
        // The cgroup is gone (removed with its sandbox, or never made).
        this.drop(id);
        continue;
      }
      const usageUs = await this.cpuUsageUs(dir, state, stat);
      if (!this.running || !this.watched.has(id)) return;
      const now = Date.now();
      const periods = Number(/^nr_throttled (\d+)$/m.exec(stat)?.[1] ?? 0);
      const busy =
        usageUs !== undefined &&
        state.usageUs !== undefined &&
        usageUs - state.usageUs >= BUSY_SHARE * state.fullUsePerMs * (now - state.lookedAt);
      state.usageUs = usageUs;
      state.lookedAt = now;
      if (periods > state.periods || busy) {
        state.periods = periods;
        state.lastThrottledAt = now;
        state.hotPolls += 1;
        if (!state.idle) state.idle = await writeQuietly(home, 'cpu.idle', '1');
        if (state.idle && (state.wasAtTop || state.hotPolls >= IDLE_AT_TOP_POLLS)) this.moveToTop(id, state);
      } else if (
        state.idle &&
        now - state.lastThrottledAt >=
          (state.hotPolls >= HOG_POLLS ? HOG_IDLE_UNTIL_CALM_MS : IDLE_UNTIL_CALM_MS)
      ) {
        this.moveBack(id, state);
        state.idle = !(await writeQuietly(home, 'cpu.idle', '0'));
        if (!state.idle) state.hotPolls = 0;
      }
    }
  }

  private moveToTop(id: string, state: Throttling): void {
    const twin = this.idleTop?.moveToTop(id);
    if (twin === undefined || state.twin !== undefined) return;
    closeFiles(state);
    state.twin = twin;
    state.periodsAtHome = state.periods;
    // The twin's counters start from nothing.
    state.periods = 0;
    state.usageUs = undefined;
  }

  private moveBack(id: string, state: Throttling): void {
    if (state.twin === undefined) return;
    this.idleTop?.moveBack(id);
    closeFiles(state);
    state.twin = undefined;
    state.periods = state.periodsAtHome;
    state.usageUs = undefined;
    state.wasAtTop = true;
  }

  /**
   * A sandbox's CPU time so far in µs: v2's `usage_usec` in cpu.stat, or v1's `cpuacct.usage` (ns) where
   * cpuacct is mounted with cpu (the usual `cpu,cpuacct`); undefined where neither is there.
   */
  private async cpuUsageUs(dir: string, state: Throttling, stat: string): Promise<number | undefined> {
    if (this.version === 2) {
      const usage = /^usage_usec (\d+)$/m.exec(stat)?.[1];
      return usage === undefined ? undefined : Number(usage);
    }
    if (state.usageFd === undefined) state.usageFd = (await openIfThere(join(dir, 'cpuacct.usage'))) ?? null;
    if (state.usageFd === null) return undefined;
    const nanoseconds = (await this.readFrom(state.usageFd)).trim();
    return nanoseconds === '' ? undefined : Number(nanoseconds) / 1000;
  }

  /** The file's text from its start; '' when it cannot be read (its cgroup removed). */
  private readFrom(fd: number, from: number | null = 0): Promise<string> {
    return new Promise((resolve) =>
      read(fd, this.buffer, 0, READ_BUFFER_BYTES, from, (error, bytes) => {
        // A file that cannot seek (not cgroupfs: the tests' named pipe) is read from where it stands.
        if (error?.code === 'ESPIPE' && from !== null) resolve(this.readFrom(fd, null));
        else resolve(error === null ? this.buffer.toString('utf8', 0, bytes) : '');
      }),
    );
  }
}

function closeFiles(state: Throttling): void {
  if (state.statFd !== undefined) close(state.statFd, () => undefined);
  if (typeof state.usageFd === 'number') close(state.usageFd, () => undefined);
  state.statFd = undefined;
  state.usageFd = undefined;
}

function openIfThere(file: string): Promise<number | undefined> {
  return new Promise((resolve) => open(file, 'r', (error, fd) => resolve(error === null ? fd : undefined)));
}

function writeQuietly(dir: string, file: string, value: string): Promise<boolean> {
  return new Promise((resolve) => writeFile(join(dir, file), value, (error) => resolve(error === null)));
}
