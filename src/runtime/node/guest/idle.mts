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
 * in flight, once per idle period (a frame starts the next); the per-frame cost is one call that sets a flag.
 * `gc` is taken from a context made while `--expose-gc` is briefly on: the function's own global, and any
 * context it makes, never has one.
 */

import type { EventEmitter } from 'node:events';

/** How long the host must have sent nothing before the guest collects (between this and twice this). */
export const QUIET_MS = 2000;

let collectGarbage: (() => void) | undefined;

/** One full collection (which arms V8's memory reducer), the `gc` function made on first use. */
async function collect(): Promise<void> {
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
  }
  collectGarbage();
}

/**
 * Collects once whenever `channel` (the frames from the host) has been quiet for `quietMs` and `busy()` is
 * false.
 */
export function collectWhenIdle(channel: EventEmitter, busy: () => boolean, quietMs = QUIET_MS): void {
  let heard = false;
  let timer: NodeJS.Timeout | undefined;
  const look = (): void => {
    if (heard || busy()) {
      heard = false;
      timer?.refresh();
      return;
    }
    timer = undefined;
    collect().catch(() => {
      // No collection (flags refused): the heap stays as V8 leaves it, nothing else changes.
    });
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
