/**
 * @module The runtime cache: pools of pre-started, already-isolated generic runtimes ("stem cells"), one
 * pool per runtime and isolation class. A cold start takes one and binds it to a function's code
 * instead of starting a process; the pool refills in the background.
 */

import { availableParallelism } from 'node:os';
import { HearthError } from '../domain/errors.js';
import { DEFAULTS } from '../domain/function.js';
import type { ResolvedImage } from '../domain/image.js';
import { parseBytes } from '../domain/units.js';
import type { GuestProcess, Isolation, NetworkMode, Runtime, Slot, SlotManager } from '../runtime/index.js';
import type { StemCellFloorNow } from './autoscaler/stem-cell-sizer.js';

export interface StemCell {
  readonly guest: GuestProcess;
  readonly slot: Slot;
  readonly bornAt: number;
}

export interface StemCellPoolStats {
  readonly runtime: string;
  readonly isolation: string;
  readonly network: string;
  /** The memory wall its runtimes' heaps are sized for (a runtime with `heapFromMemory`), in MiB. */
  readonly memoryMiB?: number;
  /** For a container function's pool: the image its cells make their container of ahead (its reference). */
  readonly image?: string;
  readonly ready: number;
  readonly starting: number;
  /** What the pool refills to: the larger of its size from starts and its floor (`floor`). */
  readonly target: number;
  /** Cells for the deployed functions with no instance now (`StemCellFloorNow`): each is one cold start away. */
  readonly floor: number;
  readonly taken: number;
  /** Takes that found the pool empty and had to wait for a fresh process. */
  readonly misses: number;
  /** Cells kept ready for the moment beyond `target` because takes come in a burst (see `StemCellBurst`). */
  readonly burst: number;
  /** How long a cell takes to boot here lately (a moving average, ms): how long a take leaves a gap. */
  readonly bootMs: number;
  /** Cells booted, ever: beyond `taken` (and the ready ones), boots let go unused when the target fell. */
  readonly boots: number;
}

/**
 * A pool's own, immediate answer to a burst of takes (the sizer answers per tick, seconds later, when a burst
 * of back-to-back cold starts is long over): while takes come faster than boots finish, the pool refills to
 * as many cells as were taken within the last `windowMs`, up to `limit`, instead of its target; the extra
 * cells are let go once no take has come for `calmMs`. A boot takes 50-100 ms on an idle two-core machine and
 * the refill after a take is held back while the pool still has half its target, so a pool of two emptied by
 * twenty-four calls in a row missed on a third of them (issue 11).
 */
export interface StemCellBurst {
  /** The most cells a burst keeps ready (the sizer's `stemCellsMax`); 0 turns this off. */
  readonly limit: number;
  readonly windowMs: number;
  readonly calmMs: number;
}

export const DEFAULT_STEM_CELL_BURST: StemCellBurst = { limit: 8, windowMs: 1000, calmMs: 10_000 };

/** A pool without a floor: one the sizer has not seen yet, or not a sandbox without network. */
const NO_FLOOR: StemCellFloorNow = { cells: 0, functions: 0, hold: 0 };

const STARTUP_TIMEOUT_MS = 30_000;
/** The memory wall of a function that sets none: what a cell of a pool not sized by memory most likely gets. */
const DEFAULT_MEMORY_BYTES = parseBytes(DEFAULTS.memory) ?? 128 * 1024 ** 2;
/** Tries at starting a stem cell whose sandbox setup failed (see `spawn`). */
const SANDBOX_SETUP_ATTEMPTS = 3;
/** Long enough for a cold start (under 10 ms) to finish before the refill's fork and boot. */
const REFILL_DELAY_MS = 30;
/** The longest a burst of takes postpones its refill (see `refillSoon`). */
const REFILL_POSTPONE_MAX_MS = 250;
/**
 * How long takes must stop before a pool that still holds a cell for each idle function refills the rest (its
 * size from starts, a burst's extra cells): those cells are for later starts, and a Node cell's boot (~80 ms
 * of CPU, forks from the gateway's thread) in the middle of a burst slows the calls around it. Longer than one
 * call of a back-to-back burst on a busy machine, where a 30 ms pause let refills in between calls.
 */
const COVERED_REFILL_CALM_MS = 150;
/** A stem cell's boot on an idle two-core machine (bench/RESULTS.md), until the pool has timed its own. */
const INITIAL_BOOT_MS = 100;
/**
 * Runtimes one pool boots at once; more wait their turn, takes that found the pool empty first. Booting a
 * burst's worth at once (100 functions called at the same moment) made every boot take the whole burst's
 * time on two cores, so the first waiting request had its cell no sooner than the last (issue 11).
 */
const PARALLEL_BOOTS = 4 * availableParallelism();

/** A take that found the pool empty, waiting for the next cell that is ready. */
interface CellWaiter {
  resolve(cell: StemCell): void;
  reject(error: unknown): void;
}

export class StemCellPool {
  private readonly ready: StemCell[] = [];
  /** Takes that found the pool empty, oldest first: each boot that finishes serves the oldest. */
  private readonly waiters: CellWaiter[] = [];
  /** Boots under way for waiting takes (the rest of `starting` are refills). */
  private waiterBoots = 0;
  private starting = 0;
  private taken = 0;
  private misses = 0;
  private boots = 0;
  private closed = false;
  /** Evicted (`retire`): boots only for the takes still waiting, keeps no cell, closes once they are served. */
  private retiring: (() => void) | undefined;
  private retired: Promise<void> | undefined;
  private consecutiveFailures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private refillTimer: NodeJS.Timeout | undefined;
  /** When the refill now pending was first postponed by a take (`performance.now()`). */
  private refillPostponedSince = 0;
  private calmTimer: NodeJS.Timeout | undefined;
  /** A moving average of boot times (ms); the guess before the first boot is the figure on an idle machine. */
  private bootMs = INITIAL_BOOT_MS;
  /** When recent takes happened (ms, `performance.now()`), oldest first, at most `burst.limit` of them. */
  private readonly recentTakes: number[] = [];
  /** Refills booting at the least CPU weight (`StartOptions.background`), until a take waits for them. */
  private readonly backgroundBoots = new Set<GuestProcess>();
  /** The floor of the last tick (`StemCellFloorNow`), and the idle functions left of it since. */
  private floor: StemCellFloorNow = NO_FLOOR;
  private idleFunctions = 0;
  /** Starts of idle functions announced (`noteIdleStart`) whose take has not come yet. */
  private coveredTakes = 0;
  /** When the last take came (`performance.now()`). */
  private lastTakeAt = Number.NEGATIVE_INFINITY;
  /** Starts on their way to a take (`reserve`): a trim keeps a ready cell for each. */
  private reserved = 0;

  constructor(
    readonly runtime: Runtime,
    readonly isolation: Isolation,
    readonly network: NetworkMode,
    private readonly slots: SlotManager,
    private target: number,
    private readonly onError: (message: string) => void,
    /** The memory wall its cells will be bound under, for a runtime that sizes its heap from it. */
    readonly memoryBytes?: number,
    private readonly burst: StemCellBurst = DEFAULT_STEM_CELL_BURST,
    /** For a container function's pool (issue 17): the image its cells make their container of ahead. */
    readonly image?: ResolvedImage,
  ) {}

  /**
   * The cells to keep ready now: the target, or during a burst the takes of the last `burst.windowMs` (a pool
   * the operator turned off, target 0, stays off).
   */
  private wanted(): number {
    const level = this.refillLevel();
    if (this.target === 0 || this.burst.limit === 0) return level;
    const since = performance.now() - this.burst.windowMs;
    while (this.recentTakes.length > 0 && (this.recentTakes[0] ?? 0) < since) this.recentTakes.shift();
    return Math.max(level, Math.min(this.burst.limit, this.recentTakes.length));
  }

  /** The cells for the functions idle now: the tick's floor, less the cells of those started since. */
  private floorNow(): number {
    const { cells, functions } = this.floor;
    if (functions === 0 || this.target === 0) return 0;
    return Math.min(cells, Math.ceil((this.idleFunctions * cells) / functions));
  }

  /** What the pool refills to outside bursts: its size from starts, or its floor. */
  private refillLevel(): number {
    return Math.max(this.target, this.floorNow());
  }

  /** Whether every function one cold start away still has its ready cell here. */
  private coversIdleFunctions(): boolean {
    return this.ready.length >= this.floorNow();
  }

  /**
   * A function with no instance is starting one from this pool: the cell it takes was its floor cell, so the
   * floor falls by one (until the next tick counts anew) and the take is not a burst's (`StemCellBurst`): the
   * functions still idle keep theirs, and nothing needs booting. Refilling to the floor as it stood before a
   * burst booted a Node cell (~80 ms of CPU) for each function the burst had started, while it went on (24 idle
   * functions called back to back: up to 10 boots during the 24 calls; issue 11).
   */
  noteIdleStart(): void {
    if (this.idleFunctions === 0) return;
    this.idleFunctions -= 1;
    this.coveredTakes += 1;
  }

  private noteTake(): void {
    this.lastTakeAt = performance.now();
    if (this.coveredTakes > 0) {
      // A take of an idle function's floor cell: the floor foresaw it, the burst window must not refill it.
      this.coveredTakes -= 1;
      return;
    }
    if (this.burst.limit === 0) return;
    this.recentTakes.push(performance.now());
    if (this.recentTakes.length > this.burst.limit) this.recentTakes.shift();
    // Once takes stop, the cells a burst added go (each is a runtime's memory, ~13 MiB).
    if (this.calmTimer !== undefined) clearTimeout(this.calmTimer);
    this.calmTimer = setTimeout(() => {
      this.calmTimer = undefined;
      this.recentTakes.length = 0;
      this.trim();
    }, this.burst.calmMs);
    this.calmTimer.unref();
  }

  /**
   * A start will take a cell soon (its code is being checked out): until it does (or gives up, calling the
   * function returned), a lower target does not let that cell go. The autoscaler sizes the pools in the tick
   * that made its starts, before they take: a pre-warm due had a spare booted for it, and the tick that
   * started it lowered the target and trimmed the spare before the pre-warm took the other cell, leaving the
   * pool empty (and the next cold start a miss) for a boot thrown away.
   */
  reserve(): () => void {
    this.reserved += 1;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.reserved -= 1;
    };
  }

  /** Lets go of ready cells beyond what the pool wants now, and the ones starts on their way will take. */
  private trim(): void {
    // A floor that fell is held (cells kept, not booted) for a stable window: its functions go idle again soon.
    // A retiring pool's starts take from the pool that replaced it.
    const spokenFor = this.retiring === undefined ? this.reserved : 0;
    const wanted = Math.max(this.wanted(), this.target === 0 ? 0 : this.floor.hold) + spokenFor;
    while (this.ready.length > wanted) {
      const extra = this.ready.pop();
      if (extra !== undefined) void this.discard(extra);
    }
  }

  /**
   * A ready stem cell; when the pool is empty, one booted for this take (a slower, "miss" cold start). Boots
   * for takes go before refills when `PARALLEL_BOOTS` are under way, and a refill that finishes while a take
   * still waits for its boot to begin serves that take. A refill does not serve a take whose boot is under way:
   * it goes to the pool, for the next take (measured: serving misses from refills left back-to-back calls
   * missing twice as often).
   */
  take(): Promise<StemCell> {
    this.taken += 1;
    this.noteTake();
    let cell = this.ready.shift();
    while (cell?.guest.exited) {
      void this.slots.release(cell.slot);
      cell = this.ready.shift();
    }
    this.refillSoon();
    if (cell !== undefined) return Promise.resolve(cell);
    this.misses += 1;
    // The refills under way are what the next takes get: they boot at full weight from now on.
    for (const guest of this.backgroundBoots) this.isolation.hasten?.(guest);
    this.backgroundBoots.clear();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      // Its own boot now; the refill waits for `refillSoon`, as after a hit.
      this.boot(false);
    });
  }

  /**
   * Refills after the cold start that took a cell has finished: spawning blocks the event loop for a
   * fork and the new runtime's boot competes for the CPU, which doubled cold starts when done at once.
   */
  private refillSoon(): void {
    // In a burst of takes each take pushes the refill back: a refill's spawns fork the gateway's process on its
    // one thread (~1 ms each, with the cell's slot and cgroups ~1.4 ms), so 100 cold starts at once that
    // refilled meanwhile spent 138 ms of that thread on refills (a CPU profile of the burst; issue 11). Once
    // the pool is down to a quarter of what it wants, for at most REFILL_POSTPONE_MAX_MS since the first
    // postponed take, so that a steady stream of takes keeps refilling.
    // While the pool still holds a cell for each idle function, what a refill would boot is for later starts:
    // it waits until the takes stop, however long the burst (`COVERED_REFILL_CALM_MS`).
    const now = performance.now();
    const covered = this.coversIdleFunctions();
    if (this.refillTimer === undefined) this.refillPostponedSince = now;
    else {
      clearTimeout(this.refillTimer);
      if (
        !covered &&
        this.ready.length * 4 < this.wanted() &&
        now - this.refillPostponedSince >= REFILL_POSTPONE_MAX_MS
      ) {
        this.refillTimer = undefined;
        this.refill();
        return;
      }
    }
    this.refillTimer = setTimeout(
      () => {
        this.refillTimer = undefined;
        this.refill();
      },
      covered ? COVERED_REFILL_CALM_MS : REFILL_DELAY_MS,
    );
    this.refillTimer.unref();
  }

  /**
   * The sizer's tick: `target` cells from the starts it sees (0 keeps the pool off), and the floor for the
   * functions idle now. A pool that covers its idle functions while takes come refills once they stop.
   */
  setTarget(target: number, floor: StemCellFloorNow = NO_FLOOR): void {
    this.target = Math.max(0, target);
    this.floor = floor;
    this.idleFunctions = floor.functions;
    if (this.coversIdleFunctions() && performance.now() - this.lastTakeAt < COVERED_REFILL_CALM_MS) {
      if (this.refillTimer === undefined) this.refillSoon();
    } else this.refill();
    this.trim();
  }

  stats(): StemCellPoolStats {
    const wanted = this.wanted();
    return {
      runtime: this.runtime.name,
      isolation: this.isolation.name,
      network: this.network,
      ...(this.memoryBytes === undefined ? {} : { memoryMiB: Math.round(this.memoryBytes / 1024 ** 2) }),
      ...(this.image === undefined ? {} : { image: this.image.reference }),
      ready: this.ready.length,
      starting: this.starting,
      target: this.refillLevel(),
      floor: this.floorNow(),
      taken: this.taken,
      misses: this.misses,
      burst: wanted - this.refillLevel(),
      bootMs: Math.round(this.bootMs),
      boots: this.boots,
    };
  }

  /** Fills the pool to its target; resolves when the cells started now are ready. */
  async warm(): Promise<void> {
    const wanted = Math.max(0, this.refillLevel() - this.ready.length - this.starting);
    await Promise.all(Array.from({ length: wanted }, () => this.startIntoPool(false)));
  }

  /**
   * Lets the pool go without failing a take that waits on it (an image pool evicted from the LRU, issue 17):
   * its ready cells go now and it refills no more, but each waiting take is still served by the boot under
   * way (or queued) for it. Resolves once the last is served (or its boot failed, as any take's does) and
   * the pool is closed.
   */
  retire(): Promise<void> {
    if (this.retired !== undefined) return this.retired;
    if (this.closed) return Promise.resolve();
    this.target = 0;
    this.floor = NO_FLOOR;
    this.recentTakes.length = 0;
    if (this.waiters.length === 0 && this.starting === 0) {
      this.retired = this.close();
      return this.retired;
    }
    this.retired = new Promise((resolve) => {
      this.retiring = () => {
        this.retiring = undefined;
        void this.close().then(resolve);
      };
      if (this.refillTimer !== undefined) clearTimeout(this.refillTimer);
      this.refillTimer = undefined;
      this.trim();
    });
    return this.retired;
  }

  /** A retiring pool closes once no take waits on it and no boot is under way. */
  private retireIfDone(): void {
    if (this.retiring !== undefined && this.waiters.length === 0 && this.starting === 0) this.retiring();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters.splice(0))
      waiter.reject(
        new HearthError('HEARTH_E_SHUTTING_DOWN', 'the platform is shutting down', { retryAfter: 1 }),
      );
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.refillTimer !== undefined) clearTimeout(this.refillTimer);
    if (this.calmTimer !== undefined) clearTimeout(this.calmTimer);
    const cells = this.ready.splice(0);
    await Promise.all(cells.map((cell) => this.discard(cell)));
  }

  async discard(cell: StemCell): Promise<void> {
    cell.guest.kill('SIGKILL');
    await cell.guest.waitForExit();
    await this.slots.release(cell.slot);
  }

  private refill(): void {
    this.boot();
  }

  /**
   * Boots one runtime per waiting take not yet booted for, then refills to the target (not while refills back
   * off after failures), at most `PARALLEL_BOOTS` at a time; each boot that ends boots the next.
   */
  private boot(refill = true): void {
    if (this.closed) return;
    let room = PARALLEL_BOOTS - this.starting;
    const unbooted = this.waiters.length - this.waiterBoots;
    for (let i = 0; i < unbooted && room > 0; i++, room--) {
      this.waiterBoots += 1;
      void this.startIntoPool(true);
    }
    if (!refill || this.retryTimer !== undefined || this.retiring !== undefined) return;
    const refills = this.wanted() - this.ready.length - (this.starting - this.waiterBoots);
    for (let i = 0; i < refills && room > 0; i++, room--) void this.startIntoPool(false);
  }

  private async startIntoPool(forTake: boolean): Promise<void> {
    let cell: StemCell;
    try {
      cell = await this.spawn(!forTake);
    } catch (error) {
      if (forTake) {
        // The take this boot was for gets the failure, as a take that found the pool empty always did.
        this.waiterBoots -= 1;
        this.waiters.shift()?.reject(error);
        this.boot();
        this.retireIfDone();
        return;
      }
      this.consecutiveFailures += 1;
      if (this.retiring !== undefined) {
        this.boot();
        this.retireIfDone();
        return;
      }
      this.onError(
        `${this.runtime.name}/${this.isolation.name} stem cell failed to start: ${(error as Error).message}`,
      );
      // Back off instead of spinning when the runtime cannot start at all.
      const delay = Math.min(30_000, 500 * 2 ** Math.min(this.consecutiveFailures, 6));
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.refill();
      }, delay);
      this.retryTimer.unref();
      this.boot();
      return;
    }
    if (forTake) this.waiterBoots -= 1;
    else this.consecutiveFailures = 0;
    if (this.closed) {
      await this.discard(cell);
      return;
    }
    // A boot for a take serves the oldest take; a refill only one whose own boot has not begun.
    const waiter = forTake || this.waiters.length > this.waiterBoots ? this.waiters.shift() : undefined;
    if (waiter !== undefined) {
      if (!forTake) this.isolation.hasten?.(cell.guest);
      waiter.resolve(cell);
    } else if (this.retiring !== undefined) await this.discard(cell);
    else this.keep(cell);
    this.boot();
    this.retireIfDone();
  }

  /** Puts a booted cell in the pool, and takes it out again (refilling) if it dies there. */
  private keep(cell: StemCell): void {
    this.ready.push(cell);
    cell.guest.once('exit', () => {
      const index = this.ready.indexOf(cell);
      if (index >= 0) {
        this.ready.splice(index, 1);
        void this.slots.release(cell.slot);
        this.refill();
      }
    });
  }

  /**
   * Starts a stem cell, again when bubblewrap itself failed to set the sandbox up: creating namespaces
   * while other sandboxes are being created can fail transiently (seen: `bwrap: loopback: Failed
   * RTM_NEWADDR` with several platforms starting sandboxes at once), and a second try succeeds.
   */
  /** Starts a cell; a failure is HEARTH_E_START_FAILED naming the cause (a deploy or cold start reports it). */
  private async spawn(background: boolean): Promise<StemCell> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.spawnOnce(background);
      } catch (error) {
        const message = (error as Error).message;
        if (attempt >= SANDBOX_SETUP_ATTEMPTS || !/\bbwrap: /.test(message))
          throw new HearthError(
            'HEARTH_E_START_FAILED',
            `a ${this.runtime.name} runtime process (isolation ${this.isolation.name}) could not be started: ${message}`,
            { retryAfter: 1 },
          );
        this.onError(
          `${this.runtime.name}/${this.isolation.name} sandbox setup failed, trying again: ${message}`,
        );
      }
    }
  }

  private async spawnOnce(background: boolean): Promise<StemCell> {
    this.starting += 1;
    const began = performance.now();
    const slot = await this.slots.create();
    let guest: GuestProcess | undefined;
    try {
      const launch = this.runtime.launchSpec({
        ...(this.memoryBytes === undefined ? {} : { memoryBytes: this.memoryBytes }),
        ...(this.image === undefined ? {} : { image: this.image }),
      });
      // Its pool's memory wall now, off the bind's path (a sandbox's cgroup; see StartOptions).
      guest = this.isolation.start(launch, slot, this.network, {
        background,
        memoryBytes: this.memoryBytes ?? DEFAULT_MEMORY_BYTES,
      });
      if (background) this.backgroundBoots.add(guest);
      let timer: NodeJS.Timeout | undefined;
      const startupMs = this.isolation.startupTimeoutMs ?? STARTUP_TIMEOUT_MS;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not ready within ${startupMs / 1000}s`)), startupMs);
      });
      const output: string[] = [];
      const collect = (log: { text: string }): void => {
        if (output.length < 20) output.push(log.text);
      };
      guest.on('log', collect);
      try {
        await Promise.race([guest.ready, timeout]);
      } catch (error) {
        guest.kill('SIGKILL');
        const detail = output.join('').trim().split('\n').slice(-3).join(' | ');
        throw new Error(detail === '' ? (error as Error).message : `${(error as Error).message}: ${detail}`);
      } finally {
        clearTimeout(timer);
        guest.off('log', collect);
      }
      // A background boot waits for spare CPU by design: only boots at full weight say how long a take waits.
      if (!background || !this.backgroundBoots.has(guest))
        this.bootMs += 0.2 * (performance.now() - began - this.bootMs);
      // Booted: a waiting cell uses no CPU, so its default weight now costs nothing and spares the bind that
      // write (`limit` lifts it otherwise; each cgroup file is an open, a write and a close on this thread).
      else this.isolation.hasten?.(guest);
      this.boots += 1;
      return { guest, slot, bornAt: Date.now() };
    } catch (error) {
      await this.slots.release(slot);
      throw error;
    } finally {
      if (guest !== undefined) this.backgroundBoots.delete(guest);
      this.starting -= 1;
    }
  }
}
