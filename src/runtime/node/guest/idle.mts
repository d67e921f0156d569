/**
 * @module What the Node guest does once it has been quiet for a while (issue 11, density): one full garbage
 * collection, so that V8 gives back what the last burst of work left.
 *
 * V8 shrinks an idle heap by itself (its memory reducer: ~8 s after a full collection, if the program is
 * still idle, it runs memory-reducing collections that shrink the young generation to one page, flush unused
 * bytecode and release emptied pages), but it only arms that after a full collection. A stem cell's boot and
 * a function's first requests allocate too little for one, so an idle instance kept its young generation and
 * its boot's garbage for good: 7.4 MiB anonymous memory in a ready cell. One full collection once the guest is
 * quiet arms the reducer, and the instance settles at ~6.3 MiB (what a bare `node` holds), measured by
 * `node bench/run.mjs density` and `node bench/idle-pss.mjs`.
 *
 * The collection runs only when no frame has arrived from the host for a whole quiet period and nothing is
 * in flight, and only the first time (after the boot, and again after the bind: loading the function's code
 * allocates) or when V8's heap has grown past what it was at the last collection: a
 * function called every few seconds would otherwise pay a full collection (~3 ms of CPU) per request for
 * nothing, and a heap that grew under load is one V8's own collections arm the reducer for anyway. The
 * per-frame cost is one call that sets a flag; an idle guest has no timer.
 * `gc` is taken from a context made while `--expose-gc` is briefly on: the function's own global, and any
 * context it makes, never has one.
 */

import type { EventEmitter } from 'node:events';

/** How long the host must have sent nothing before the guest collects (between this and twice this). */
export const QUIET_MS = 2000;

let collectGarbage: (() => void) | undefined;

/**
 * One full collection (which arms V8's memory reducer), the `gc` function made on first use; none, and false,
 * if `stale()` says the guest got work while the modules for it loaded.
 */
async function collect(stale: () => boolean): Promise<boolean> {
  if (collectGarbage === undefined) {
    // Loaded on the first idle moment, not during a stem cell's boot.
    const [{ setFlagsFromString }, { runInNewContext }] = await Promise.all([
      import('node:v8'),
      import('node:vm'),
    ]);
    setFlagsFromString('--expose-gc');
    try {
      collectGarbage = runInNewContext('gc') as () => void;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
    if (stale()) return false;
  }
  collectGarbage();
  return true;
}

/** V8's committed heap in bytes; 0 when it cannot be read (then only the first quiet period collects). */
function committedHeap(): number {
  try {
    // process.memoryUsage() also reads the RSS from /proc, which may fail; the heap figures come from V8.
    return process.memoryUsage().heapTotal;
  } catch {
    return 0;
  }
}

/** What the guest tells the idle collection. */
export interface GuestState {
  /** Whether an invocation is in flight. */
  busy(): boolean;
  /** What the guest is bound to (undefined in a stem cell): a change is a new start. */
  bound(): unknown;
}

/**
 * Collects when `channel` (the frames from the host) has been quiet for `quietMs` and the guest is not busy,
 * the first time after the boot and after the bind, later only if the heap grew (see the module's comment).
 */
export function collectWhenIdle(channel: EventEmitter, guest: GuestState, quietMs = QUIET_MS): void {
  let heard = false;
  let timer: NodeJS.Timeout | undefined;
  /** Whether the guest collected since its boot or its bind, and V8's committed heap then (before the reducer). */
  let collected = false;
  let heapAtCollection = 0;
  let boundTo: unknown;
  const look = (): void => {
    if (heard || guest.busy()) {
      heard = false;
      timer?.refresh();
      return;
    }
    timer = undefined;
    if (guest.bound() !== boundTo) {
      boundTo = guest.bound();
      collected = false;
    }
    const heap = committedHeap();
    if (collected && heap <= heapAtCollection) return;
    collected = true;
    heapAtCollection = heap;
    collect(() => heard || timer !== undefined || guest.busy()).then(
      (done) => {
        // Work came in meanwhile: the next quiet period collects instead.
        if (!done) collected = false;
      },
      () => {
        // No collection (flags refused): the heap stays as V8 leaves it, nothing else changes.
      },
    );
  };
  const heardFrame = (): void => {
    if (timer === undefined) {
      timer = setTimeout(look, quietMs);
      timer.unref();
    } else heard = true;
  };
  channel.on('data', heardFrame);
  heardFrame();
}
