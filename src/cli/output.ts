/** @module Output for people (aligned tables, colour, a redrawn status line) and for scripts (`-o json`). */

import { type CliIo, isTty, type OutputStream, wantsColour } from './io.js';

export type OutputFormat = 'text' | 'json';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['text', 'json'];

export function writeJson(stream: OutputStream, value: unknown): void {
  stream.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Columns separated by two spaces, padded to the widest cell; no trailing blanks. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return `${[header, ...rows].map(line).join('\n')}\n`;
}

/** Age in the largest whole unit, like kubectl: `42s`, `5m`, `3h`, `2d`. */
export function formatAge(since: string | number, now = Date.now()): string {
  const then = typeof since === 'number' ? since : Date.parse(since);
  if (!Number.isFinite(then)) return '?';
  const seconds = Math.max(0, Math.floor((now - then) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  return `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}

export interface Style {
  readonly enabled: boolean;
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
}

export function createStyle(stream: OutputStream, env: CliIo['env']): Style {
  const enabled = wantsColour(stream, env);
  const paint =
    (open: number, close: number) =>
    (text: string): string =>
      enabled ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return {
    enabled,
    bold: paint(1, 22),
    dim: paint(2, 22),
    red: paint(31, 39),
    green: paint(32, 39),
    yellow: paint(33, 39),
    cyan: paint(36, 39),
  };
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * One line of stderr that is redrawn in place (with a spinner) while work runs. Off a terminal it draws
 * nothing, so logs and CI output get only the permanent lines written through `print`.
 */
export class StatusLine {
  readonly interactive: boolean;
  private render: (() => string) | undefined;
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly stream: OutputStream) {
    this.interactive = isTty(stream);
  }

  /** `render` is called on every redraw, so elapsed times in it keep ticking. */
  set(render: () => string): void {
    if (!this.interactive) return;
    this.render = render;
    if (this.timer === undefined) {
      this.timer = setInterval(() => {
        this.frame = (this.frame + 1) % SPINNER.length;
        this.draw();
      }, 80);
      // A forgotten spinner must never keep the process alive.
      this.timer.unref();
    }
    this.draw();
  }

  /** Writes a permanent line, keeping the status line (if any) below it. */
  print(line: string): void {
    if (this.interactive && this.render !== undefined) {
      this.stream.write(`\r\x1b[2K${line}\n`);
      this.draw();
    } else this.stream.write(`${line}\n`);
  }

  clear(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    if (this.interactive && this.render !== undefined) this.stream.write('\r\x1b[2K');
    this.render = undefined;
  }

  private draw(): void {
    if (this.render === undefined) return;
    const width = Math.max(20, (this.stream.columns ?? 80) - 1);
    // A line wider than the terminal wraps, and `\r` can then no longer erase it.
    const line = `${SPINNER[this.frame] ?? ''} ${this.render()}`;
    this.stream.write(`\r\x1b[2K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
  }
}
