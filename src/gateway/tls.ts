/**
 * @module TLS for the platform's listeners: reads the certificate and key once at start (a bad or missing
 * file stops `hearth up` with one line), and reloads them into every listening server when they change on
 * disk, without a restart (`setSecureContext`; connections already open keep the context they began with).
 */

import { readFileSync, statSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import { HearthError } from '../domain/errors.js';

/** Where the PEM files are (`tls.cert`, `tls.key` in the config; `--tls-cert`, `--tls-key`). */
export interface TlsFiles {
  readonly certPath: string;
  readonly keyPath: string;
}

/** The PEM contents a server is created with. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** How often the files' mtime, size and inode are compared: a renewed certificate is served within this. */
const POLL_MS = 1000;

/**
 * Reads and checks the pair: each file readable, PEM a TLS context accepts, the key matching the
 * certificate. Throws one line naming the file and what is wrong.
 */
export function readTls(files: TlsFiles): TlsMaterial {
  const read = (what: 'cert' | 'key', path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new HearthError(
        'HEARTH_E_VALIDATION',
        `tls.${what}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  };
  const material = { cert: read('cert', files.certPath), key: read('key', files.keyPath) };
  try {
    createSecureContext(material);
  } catch (error) {
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `tls: ${files.certPath} and ${files.keyPath} are not a usable PEM certificate and matching key (${oneLine(error)})`,
    );
  }
  return material;
}

/**
 * The current certificate and key, and the servers that serve them. Polls the files (a watch misses
 * replacements by rename on some filesystems, and certificate renewals do exactly that) and swaps the
 * context of every attached server when both files read as a valid pair again.
 */
export class TlsReloader {
  private material: TlsMaterial;
  private signature: string;
  private readonly servers = new Set<HttpsServer>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly files: TlsFiles,
    private readonly report: {
      readonly reloaded: (message: string) => void;
      readonly failed: (message: string) => void;
    },
  ) {
    this.signature = this.stat();
    this.material = readTls(files);
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.timer.unref();
  }

  current(): TlsMaterial {
    return this.material;
  }

  /** Serves the current pair on `server` from now on, and every later one; detached when it closes. */
  attach(server: HttpsServer): void {
    this.servers.add(server);
    server.once('close', () => this.servers.delete(server));
  }

  close(): void {
    clearInterval(this.timer);
    this.servers.clear();
  }

  /** Compares the files with what was last seen and reloads on a change; exposed for the tests' sake. */
  poll(): void {
    const signature = this.stat();
    if (signature === this.signature) return;
    this.signature = signature;
    let material: TlsMaterial;
    try {
      material = readTls(this.files);
    } catch (error) {
      // A renewal caught half-written: the old pair stays; the next change of either file tries again.
      this.report.failed(
        `TLS files changed but were not reloaded, the previous certificate stays: ${oneLine(error)}`,
      );
      return;
    }
    this.material = material;
    for (const server of this.servers) server.setSecureContext({ ...material });
    this.report.reloaded(`TLS certificate reloaded from ${this.files.certPath}`);
  }

  private stat(): string {
    return [this.files.certPath, this.files.keyPath]
      .map((path) => {
        try {
          const stats = statSync(path);
          return `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  }
}

function oneLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? 'error';
}
