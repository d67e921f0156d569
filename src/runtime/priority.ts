/**
 * @module Function processes run nicer than the platform. The gateway serves every function from one
 * thread; under CPU contention it keeps its share instead of queueing behind a busy function, which would
 * slow every other function too. On an idle machine it changes nothing. Measured in bench/RESULTS.md.
 */

import { findExecutable } from './paths.js';

/** How much nicer than the platform a function's processes run (`nice -n`). */
export const FUNCTION_NICENESS = 5;

const NICE = findExecutable('nice');

/**
 * The command line that starts `command` FUNCTION_NICENESS nicer than the platform. `nice` sets it before
 * exec, so every process and thread the function starts inherits it (setting it on the pid after spawn
 * would race with bubblewrap forking the guest, and would reach only one thread).
 */
export function atFunctionPriority(
  command: string,
  args: readonly string[],
): { command: string; args: readonly string[] } {
  if (NICE === undefined) return { command, args };
  return { command: NICE, args: ['-n', String(FUNCTION_NICENESS), command, ...args] };
}
