/** @module Uploading a packed folder to the deploy API and rendering its NDJSON progress stream. */

import { Transform } from 'node:stream';
import type { DeployEvent, DeploymentSummary, FunctionDetail } from '../control/api/types.js';
import { API_PREFIX, type ApiClient, errorFromResponse, hearthErrorOf, parseJson } from './client.js';
import { CliError } from './errors.js';
import type { CliIo } from './io.js';
import { createStyle, formatBytes, formatMs, StatusLine, type Style } from './output.js';
import type { PackedFolder } from './pack.js';

export interface FunctionTarget {
  readonly namespace: string;
  readonly name: string;
}

export interface DeployResult {
  readonly function: FunctionDetail;
  readonly deployment: DeploymentSummary;
}

export interface UploadOptions {
  /**
   * False: return once the server has received the archive. The server goes on deploying after the client
   * disconnects, so `--no-wait` simply stops reading the progress stream.
   */
  readonly wait: boolean;
}

export function functionPath(target: FunctionTarget): string {
  return `${API_PREFIX}/namespaces/${encodeURIComponent(target.namespace)}/functions/${encodeURIComponent(target.name)}`;
}

/**
 * `POST …/deploy` with the archive as the body, rendering progress on stderr as events arrive. Resolves
 * with the result (undefined when not waiting); a failed deployment rejects with the server's error.
 */
export function uploadFunction(
  client: ApiClient,
  io: CliIo,
  target: FunctionTarget,
  packed: PackedFolder,
  options: UploadOptions,
): Promise<DeployResult | undefined> {
  return postArchive(client, io, target, packed, undefined, async (response, progress) => {
    if ((response.headers.get('content-type') ?? '').includes('application/json'))
      return resultFromJson(parseJson(await client.readText(response)));
    for await (const event of client.ndjson<DeployEvent>(response)) {
      if (event.event === 'error') throw new CliError(event.error.message, { code: event.error.code });
      if (event.event === 'result') return { function: event.function, deployment: event.deployment };
      progress.event(event);
      // Any phase after the upload means the server holds the whole archive and carries on without us.
      if (!options.wait && event.event === 'progress' && event.phase !== 'upload') return undefined;
    }
    throw new CliError(
      `the server closed the deploy stream of ${target.namespace}/${target.name} without a result; check \`hearth describe ${target.name} -n ${target.namespace}\``,
    );
  });
}

/**
 * `POST …/deploy?stage=true`: uploads and checks the package (progress on stderr as for a deploy) without
 * releasing it; resolves with the id `POST /api/v1/apply` releases it by.
 */
export function stageFunction(
  client: ApiClient,
  io: CliIo,
  target: FunctionTarget,
  packed: PackedFolder,
): Promise<string> {
  return postArchive(client, io, target, packed, { stage: 'true' }, async (response, progress) => {
    for await (const event of client.ndjson<DeployEvent>(response)) {
      if (event.event === 'error') throw new CliError(event.error.message, { code: event.error.code });
      if (event.event === 'staged') return event.staged;
      if (event.event === 'result')
        throw new CliError('the server deployed the package instead of staging it; upgrade the server');
      progress.event(event);
    }
    throw new CliError(`the server closed the upload of ${target.namespace}/${target.name} without a result`);
  });
}

/**
 * Streams the archive to `…/deploy` with upload progress, then lets `read` take the answer; the progress
 * line ends as succeeded exactly when `read` resolves.
 */
async function postArchive<T>(
  client: ApiClient,
  io: CliIo,
  target: FunctionTarget,
  packed: PackedFolder,
  query: Record<string, string> | undefined,
  read: (response: Response, progress: DeployProgress) => Promise<T>,
): Promise<T> {
  const progress = new DeployProgress(io, packed);
  const counter = countBytes((sent) => progress.uploaded(sent));
  packed.stream.on('error', (error) => counter.destroy(error));
  let outcome: 'succeeded' | 'failed' = 'failed';
  try {
    const response = await client.request(`${functionPath(target)}/deploy`, {
      method: 'POST',
      ...(query === undefined ? {} : { query }),
      headers: { 'content-type': 'application/gzip', accept: 'application/x-ndjson' },
      body: packed.stream.pipe(counter),
    });
    if (!response.ok) throw await errorFromResponse(response);
    const result = await read(response, progress);
    outcome = 'succeeded';
    return result;
  } finally {
    progress.stop(outcome);
  }
}

function resultFromJson(body: unknown): DeployResult {
  const error = hearthErrorOf(body);
  if (error !== undefined) throw new CliError(error.message, { code: error.code });
  if (body !== null && typeof body === 'object' && 'deployment' in body && 'function' in body) {
    if (body.function !== null && typeof body.function === 'object') return body as DeployResult;
  }
  throw new CliError('the server answered the deploy with an unexpected JSON body');
}

function countBytes(onProgress: (sent: number) => void): Transform {
  let sent = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sent += chunk.length;
      onProgress(sent);
      callback(null, chunk);
    },
  });
}

interface RunningPhase {
  readonly phase: string;
  readonly message: string;
  /** The server's clock (ms since the deploy began), for the finished line. */
  readonly serverStartMs: number;
  /** Ours, for the live timer. */
  readonly localStart: number;
}

/**
 * Renders deploy events. The server reports each phase twice, once as it begins and once as it ends
 * (the archive's `upload` begins and ends as `unpack`); lone notes are shown when the next one arrives.
 */
export class DeployProgress {
  private readonly status: StatusLine;
  private readonly style: Style;
  private running: RunningPhase | undefined;
  /** Once the server has spoken, an idle moment between phases shows no status line. */
  private started = false;
  /** Off a terminal the running phase is printed once, just before its first output line. */
  private announced = false;
  private sent = 0;

  constructor(
    io: CliIo,
    private readonly packed: Pick<PackedFolder, 'files' | 'bytes'>,
  ) {
    this.status = new StatusLine(io.stderr);
    this.style = createStyle(io.stderr, io.env);
    this.redraw();
  }

  uploaded(sent: number): void {
    this.sent = sent;
    this.redraw();
  }

  event(event: DeployEvent): void {
    if (event.event === 'progress') this.progress(event.phase, event.message, event.elapsedMs);
    else if (event.event === 'output') this.output(event.line);
    else if (event.event === 'disk')
      this.output(`build disk ${formatBytes(event.bytes)} of ${formatBytes(event.maxBytes)}`);
  }

  /** Settles the status line: a phase still open was a note (success) or where it broke (failure). */
  stop(outcome: 'succeeded' | 'failed'): void {
    const running = this.running;
    this.running = undefined;
    this.status.clear();
    if (running === undefined) return;
    const mark = outcome === 'succeeded' ? this.style.dim('•') : this.style.red('✗');
    this.status.print(
      `${mark} ${running.phase.padEnd(12)} ${''.padStart(6)}  ${this.style.dim(running.message)}`,
    );
  }

  private progress(phase: string, message: string, elapsedMs: number): void {
    this.started = true;
    const running = this.running;
    const closes =
      running !== undefined &&
      (running.phase === phase || (running.phase === 'upload' && phase === 'unpack'));
    let finished: string | undefined;
    if (running !== undefined) {
      const ms = elapsedMs - running.serverStartMs;
      finished = closes
        ? this.finishLine(phase, message, ms)
        : this.finishLine(running.phase, running.message, ms);
    }
    this.running = closes ? undefined : { phase, message, serverStartMs: elapsedMs, localStart: Date.now() };
    this.announced = false;
    // Status first, then the finished line above it, so a stale status is never drawn.
    this.redraw();
    if (finished !== undefined) this.status.print(finished);
  }

  private output(line: string): void {
    const text = line.replace(/\r?\n$/, '');
    if (this.status.interactive) {
      this.status.print(this.style.dim(`    ${text}`));
      return;
    }
    if (this.running !== undefined && !this.announced) {
      this.status.print(`  ${this.running.phase.padEnd(12)}  ${this.running.message}`);
      this.announced = true;
    }
    this.status.print(`  | ${text}`);
  }

  private finishLine(phase: string, message: string, ms: number): string {
    const took = formatMs(Math.max(0, ms)).padStart(6);
    return `${this.style.green('✓')} ${phase.padEnd(12)} ${took}  ${this.style.dim(message)}`;
  }

  private redraw(): void {
    const running = this.running;
    if (running !== undefined) {
      this.status.set(() => {
        const sent = running.phase === 'upload' ? `, ${formatBytes(this.sent)} sent` : '';
        const elapsed = formatMs(Date.now() - running.localStart);
        return `${running.phase}  ${running.message}${sent}  ${this.style.dim(elapsed)}`;
      });
    } else if (this.started) this.status.clear();
    else {
      this.status.set(
        () =>
          `upload  ${this.packed.files} files (${formatBytes(this.packed.bytes)}), ${formatBytes(this.sent)} sent`,
      );
    }
  }
}
