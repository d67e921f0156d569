/**
 * @module The `process` isolation class: the guest is a plain child process with a scrubbed environment
 * and nothing else between it and the host. For trusted development only; `describe` says so.
 */

import { spawn } from 'node:child_process';
import {
  type BuildCommand,
  type BuildOutcome,
  GUEST_TOKEN,
  type Isolation,
  type LaunchSpec,
} from '../index.js';
import { GuestProcess } from '../ipc/guest-process.js';
import { atFunctionPriority } from '../priority.js';
import type { Slot } from '../slots.js';
import { runConfined } from './run.js';

export class ProcessIsolation implements Isolation {
  readonly name = 'process' as const;
  readonly unavailable = undefined;

  guestPathOf(slot: Slot): string {
    return slot.hostDir;
  }

  /** No network namespace here: `process` isolation always shares the host network. */
  start(launch: LaunchSpec, slot: Slot): GuestProcess {
    const niced = atFunctionPriority(
      launch.command,
      launch.args.map((arg) => arg.replaceAll(GUEST_TOKEN, launch.guestDir)),
    );
    const child = spawn(niced.command, niced.args, {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: { ...launch.env },
      cwd: slot.hostDir,
    });
    return new GuestProcess(child);
  }

  run(build: BuildCommand): Promise<BuildOutcome> {
    return runConfined(build.command, build.args, { ...build, cwd: build.workDir });
  }
}
