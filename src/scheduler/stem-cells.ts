/**
 * @module The runtime cache: pools of pre-started, already-isolated generic runtimes ("stem cells"), one
 * pool per runtime and isolation class. A cold start takes one and binds it to a function's code
 * instead of starting a process; the pool refills in the background.
 */

import { HearthError } from '../domain/errors.js';
import type { GuestProcess, Isolation, NetworkMode, Runtime, Slot, SlotManager } from '../runtime/index.js';

export interface StemCell {
  readonly guest: GuestProcess;
  readonly slot: Slot;
  readonly bornAt: number;
}

export interface StemCellPoolStats {
  readonly runtime: string;
  readonly isolation: string;
  readonly network: string;
  readonly ready: number;
  readonly starting: number;
  readonly target: number;
  readonly taken: number;
  /** Takes that found the pool empty and had to wait for a fresh process. */
  readonly misses: number;
}

const STARTUP_TIMEOUT_MS = 30_000;
/** Tries at starting a stem cell whose sandbox setup failed (see `spawn`). */
const SANDBOX_SETUP_ATTEMPTS = 3;
/** Long enough for a cold start (under 10 ms) to finish before the refill's fork and boot. */
const REFILL_DELAY_MS = 30;

export class StemCellPool {
  private readonly ready: StemCell[] = [];
  private starting = 0;
  private taken = 0;
  private misses = 0;
  private closed = false;
  private consecutiveFailures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private refillTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly runtime: Runtime,
    readonly isolation: Isolation,
    readonly network: NetworkMode,
    private readonly slots: SlotManager,
    private target: number,
    private readonly onError: (message: string) => void,
  ) {}

  /** A ready stem cell; when the pool is empty, one started now (a slower, "miss" cold start). */
  async take(): Promise<StemCell> {
    this.taken += 1;
    let cell = this.ready.shift();
    while (cell?.guest.exited) {
      void this.slots.release(cell.slot);
      cell = this.ready.shift();
    }
    this.refillSoon();
    if (cell !== undefined) return cell;
    this.misses += 1;
    return this.spawn();
  }

  /**
   * Refills after the cold start that took a cell has finished: spawning blocks the event loop for a
   * fork and the new runtime's boot competes for the CPU, which doubled cold starts when done at once.
   */
  private refillSoon(): void {
    if (this.refillTimer !== undefined) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      this.refill();
    }, REFILL_DELAY_MS);
    this.refillTimer.unref();
  }

  setTarget(target: number): void {
    this.target = Math.max(0, target);
    this.refill();
    while (this.ready.length > this.target) {
      const extra = this.ready.pop();
      if (extra !== undefined) void this.discard(extra);
    }
  }

  stats(): StemCellPoolStats {
    return {
      runtime: this.runtime.name,
      isolation: this.isolation.name,
      network: this.network,
      ready: this.ready.length,
      starting: this.starting,
      target: this.target,
      taken: this.taken,
      misses: this.misses,
    };
  }

  /** Fills the pool to its target; resolves when the cells started now are ready. */
  async warm(): Promise<void> {
    const wanted = Math.max(0, this.target - this.ready.length - this.starting);
    await Promise.all(Array.from({ length: wanted }, () => this.startIntoPool()));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (this.refillTimer !== undefined) clearTimeout(this.refillTimer);
    const cells = this.ready.splice(0);
    await Promise.all(cells.map((cell) => this.discard(cell)));
  }

  async discard(cell: StemCell): Promise<void> {
    cell.guest.kill('SIGKILL');
    await cell.guest.waitForExit();
    await this.slots.release(cell.slot);
  }

  private refill(): void {
    if (this.closed || this.retryTimer !== undefined) return;
    const wanted = this.target - this.ready.length - this.starting;
    for (let i = 0; i < wanted; i++) void this.startIntoPool();
  }

  private async startIntoPool(): Promise<void> {
    try {
      const cell = await this.spawn();
      this.consecutiveFailures = 0;
      if (this.closed) {
        await this.discard(cell);
        return;
      }
      this.ready.push(cell);
      cell.guest.once('exit', () => {
        const index = this.ready.indexOf(cell);
        if (index >= 0) {
          this.ready.splice(index, 1);
          void this.slots.release(cell.slot);
          this.refill();
        }
      });
    } catch (error) {
      this.consecutiveFailures += 1;
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
    }
  }

  /**
   * Starts a stem cell, again when bubblewrap itself failed to set the sandbox up: creating namespaces
   * while other sandboxes are being created can fail transiently (seen: `bwrap: loopback: Failed
   * RTM_NEWADDR` with several platforms starting sandboxes at once), and a second try succeeds.
   */
  /** Starts a cell; a failure is HEARTH_E_START_FAILED naming the cause (a deploy or cold start reports it). */
  private async spawn(): Promise<StemCell> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.spawnOnce();
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

  private async spawnOnce(): Promise<StemCell> {
    this.starting += 1;
    const slot = await this.slots.create();
    try {
      const guest = this.isolation.start(this.runtime.launchSpec(), slot, this.network);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`not ready within ${STARTUP_TIMEOUT_MS / 1000}s`)),
          STARTUP_TIMEOUT_MS,
        );
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
      return { guest, slot, bornAt: Date.now() };
    } catch (error) {
      await this.slots.release(slot);
      throw error;
    } finally {
      this.starting -= 1;
    }
  }
}
