/** @module Runs a one-shot command (a dependency install) with a timeout, streaming its output by line. */

import { type ChildProcess, type IOType, spawn } from 'node:child_process';
import type { BuildCommand, BuildOutcome } from '../index.js';

const TAIL_LINES = 40;

export function runConfined(
  command: string,
  args: readonly string[],
  options: Pick<BuildCommand, 'env' | 'timeoutMs' | 'onOutput' | 'signal'> & {
    cwd?: string;
    /** Descriptors from 3 on (a confining wrapper's side channels). */
    extraStdio?: readonly (IOType | number)[];
    /** Runs once the child exists; if it fails, the child is killed and the build fails with its message. */
    onSpawn?: (child: ChildProcess) => Promise<void>;
  },
): Promise<BuildOutcome> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe', ...(options.extraStdio ?? [])],
      env: { ...options.env },
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    const tail: string[] = [];
    let partial = '';
    const onData = (chunk: Buffer): void => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        options.onOutput(line);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    let aborted: string | undefined;
    const onAbort = (): void => {
      aborted = String(options.signal?.reason ?? 'stopped');
      child.kill('SIGKILL');
    };
    if (options.signal?.aborted === true) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (exitCode: number | null, reason?: string): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (partial.trim() !== '') tail.push(partial);
      if (timedOut) tail.push(`timed out after ${Math.round(options.timeoutMs / 1000)}s`);
      if (reason !== undefined) tail.push(reason);
      if (aborted !== undefined) tail.push(aborted);
      resolve({ ok: exitCode === 0 && !timedOut && aborted === undefined, exitCode, tail: tail.join('\n') });
    };
    let setUpFailure: string | undefined;
    child.once('error', (error) => finish(null, error.message));
    child.once('close', (code) => finish(code, setUpFailure));
    options.onSpawn?.(child).catch((error: unknown) => {
      setUpFailure = (error as Error).message;
      child.kill('SIGKILL');
    });
  });
}
