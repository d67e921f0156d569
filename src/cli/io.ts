/** @module The streams and environment a CLI run uses, injectable so tests can run `main` in-process. */

export type OutputStream = NodeJS.WritableStream & {
  readonly isTTY?: boolean | undefined;
  readonly columns?: number | undefined;
};

export interface CliIo {
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  readonly stdin: NodeJS.ReadableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Ends long-running work such as `logs --follow` cleanly; Ctrl-C does the same. */
  readonly interrupt?: AbortSignal | undefined;
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

export function isTty(stream: OutputStream): boolean {
  return stream.isTTY === true;
}

/** Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org) or TERM is dumb. */
export function wantsColour(stream: OutputStream, env: CliIo['env']): boolean {
  return isTty(stream) && env.NO_COLOR === undefined && env.TERM !== 'dumb';
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

/**
 * An AbortSignal that fires on Ctrl-C or on `interrupt`, for commands that run until stopped. While it is
 * installed, Ctrl-C no longer kills the process, so the command can finish its output and exit 0.
 */
export function interruptSignal(io: CliIo): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  const onInterrupt = (): void => controller.abort();
  io.interrupt?.addEventListener('abort', onInterrupt, { once: true });
  if (io.interrupt?.aborted === true) controller.abort();
  return {
    signal: controller.signal,
    dispose() {
      process.removeListener('SIGINT', onSigint);
      io.interrupt?.removeEventListener('abort', onInterrupt);
    },
  };
}
