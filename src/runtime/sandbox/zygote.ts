/**
 * @module A runtime's fork server ("zygote", as in SOCK, USENIX ATC'18) for sandboxes: one host process
 * per guest bootstrap that has loaded the guest once and forks a copy into each new sandbox, so a stem
 * cell costs bubblewrap's few milliseconds and a fork instead of a whole interpreter boot (issue 11).
 *
 * The sandbox is made by bubblewrap exactly as for any guest (namespaces, root, /code, /tmp, cgroup,
 * seccomp, uid), with a placeholder shell as its command (`holdCommand`). Once the placeholder runs it
 * says so on fd 7; the zygote is then asked to fork into it: its child joins the sandbox's cgroup and
 * namespaces, takes the placeholder's stdout, stderr and fd 3, and drops to the same uid, capabilities,
 * no-new-privileges and seccomp filter before the guest's code runs (src/runtime/python/guest/hearth_zygote.py).
 * The placeholder stays the sandbox's command: it exits with the guest's status, which the zygote writes
 * on fd 7, and on end-of-file if the zygote dies, so bubblewrap's exit is still the guest's. A fork left
 * unanswered past FORK_TIMEOUT_MS ends the zygote, and the placeholder is told to boot the guest itself.
 *
 * Used only where the platform runs as root (joining another process's namespaces needs it); elsewhere,
 * and for runtimes without one, the sandbox starts the interpreter itself.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { LaunchSpec } from '../index.js';
import { atFunctionPriority } from '../priority.js';
import { joiningCgroups } from './cgroups.js';
import { waitForGo } from './hold.js';

/** The sandbox's descriptor for the placeholder's go-ahead and the guest's exit status. */
export const ZYGOTE_HOLD_FD = 7;
/** Marks the placeholder in its command line, where the zygote looks for it. */
const HOLD_MARK = 'hearth-zygote-hold';
/** What the platform writes to the placeholder, in place of an exit status, for it to boot the guest itself. */
export const BOOT_WORD = 'boot';
/**
 * The sandbox's command while the zygote's child is its guest, followed by the guest's own command: told
 * `boot` instead of an exit status (the fork server hung or died before forking), the placeholder execs that
 * command, and the sandbox boots its guest as it does without a fork server.
 */
export function holdCommand(guest: readonly string[]): string[] {
  return [
    '/bin/sh',
    '-c',
    `${waitForGo(ZYGOTE_HOLD_FD, 'code')}; ` +
      `if [ "$code" = ${BOOT_WORD} ]; then exec "$@" ${ZYGOTE_HOLD_FD}<&-; fi; exit "\${code:-125}"`,
    HOLD_MARK,
    ...guest,
  ];
}
/** Fork failures in a row after which the zygote is given up for this run (the sandbox boots guests). */
const FAILURES_BEFORE_GIVING_UP = 5;
/**
 * How long one fork may wait for its answer. A fork is answered in milliseconds; a server that hangs holds
 * every Python cold start behind it (its requests are served one at a time) until their stem cells' start
 * timeout, so past this it is killed: the sandboxes waiting on it boot their guests themselves, and the next
 * stem cell starts a fresh server (`SandboxIsolation.zygoteFor`).
 */
export const FORK_TIMEOUT_MS = 5_000;
/**
 * The deadline of the forks asked for before the server has answered any: it is still loading the guest
 * (hundreds of milliseconds, seconds on a loaded machine), well within a stem cell's 30 s start timeout.
 */
const FIRST_FORK_TIMEOUT_MS = 20_000;

/**
 * A fork that failed because the server process is gone (killed past FORK_TIMEOUT_MS, or exited): nothing
 * of it can become the sandbox's guest any more (its children die with it, PR_SET_PDEATHSIG), so the
 * sandbox may boot its guest itself once `Zygote.exited` settles.
 */
export class ZygoteGone extends Error {}

export interface ZygoteSettings {
  readonly seccompFile: string;
  readonly uid: number;
  readonly gid: number;
  /** The guest directory copy the sandboxes bind (host path). */
  readonly guestDir: string;
  /** The cgroups the server itself is born in (cgroups.ts `helperCgroups`); not sent to it. */
  readonly cgroupDirs?: readonly string[];
}

export interface ForkRequest {
  /** bubblewrap's pid: the placeholder is its grandchild. */
  readonly sandbox: number;
  /** Our end of the sandbox's hold channel, which the zygote takes over. */
  readonly hold: Socket;
  readonly cgroupDirs: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

interface Reply {
  readonly id: number;
  readonly ok: boolean;
  readonly error?: string;
  /** Set by `end` for a server process that is gone, never by the server. */
  readonly gone?: boolean;
}

export class Zygote {
  private readonly child: ChildProcess;
  private readonly control: Socket;
  private readonly waiting = new Map<number, (reply: Reply) => void>();
  private nextId = 1;
  private failures = 0;
  private buffered = '';
  private ended: string | undefined;
  private stderrTail = '';
  private hung = false;
  /** When the server last answered a fork (`performance.now()`); 0 before its first answer. */
  private lastReplyAt = 0;
  /** Settles once the server process has exited (or never started). */
  readonly exited: Promise<void>;

  constructor(launch: LaunchSpec, script: string, settings: ZygoteSettings) {
    // Its source on stdin, its settings on fd 3: a forked guest reading /proc/self/cmdline or environ
    // then sees an interpreter and its own environment, never a host path.
    const niced = atFunctionPriority(launch.command, ['-I', '-S', '-B', '-', '/hearth/guest/bootstrap.py']);
    // Never in the platform's cgroup (ten times a sandbox's weight): the forks it makes are work for sandboxes.
    const { cgroupDirs = [], ...serverSettings } = settings;
    const command = joiningCgroups(cgroupDirs, niced.command, niced.args);
    this.child = spawn(command.command, command.args, {
      stdio: ['pipe', 'ignore', 'pipe', 'pipe'],
      env: { ...launch.env },
    });
    this.child.stdin?.on('error', () => {});
    this.child.stdin?.end(readFileSync(join(launch.guestDir, script)));
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-2000);
    });
    this.control = (this.child.stdio as readonly unknown[])[3] as Socket;
    this.control.on('error', () => {});
    this.control.write(`${JSON.stringify(serverSettings)}\n`);
    this.control.on('data', (chunk: Buffer) => this.onData(chunk));
    let exited: () => void = () => {};
    this.exited = new Promise((resolve) => {
      exited = resolve;
    });
    this.child.once('exit', (code, signal) => {
      const last = this.stderrTail.trim().split('\n').pop() ?? '';
      this.end(`the fork server exited (${signal ?? `code ${code}`})${last === '' ? '' : `: ${last}`}`, true);
      exited();
    });
    this.child.once('error', (error) => {
      this.end(`the fork server did not start: ${error.message}`, true);
      exited();
    });
  }

  /** Why this zygote no longer forks (it exited, or failed too often in a row); undefined while it does. */
  get unusable(): string | undefined {
    return this.ended;
  }

  /** Whether it was ended for hanging: a fresh one may be started in its place. */
  get restartable(): boolean {
    return this.hung;
  }

  /** Forks a guest into the sandbox; rejects (and the sandbox is to be discarded) if that failed. */
  fork(request: ForkRequest): Promise<void> {
    if (this.ended !== undefined) return Promise.reject(new Error(this.ended));
    const holdFd = descriptorOf(request.hold);
    if (holdFd === undefined) return Promise.reject(new Error('the hold channel has no descriptor'));
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      let deadline: NodeJS.Timeout;
      const expire = (): void => {
        // A server that answered another fork within the window is working through a queue, not hung.
        if (performance.now() - this.lastReplyAt < FORK_TIMEOUT_MS) {
          deadline = setTimeout(expire, FORK_TIMEOUT_MS).unref();
          return;
        }
        this.hung = true;
        this.end(`the fork server did not answer a fork within ${FORK_TIMEOUT_MS / 1000}s`, true);
        this.child.kill('SIGKILL');
      };
      deadline = setTimeout(expire, this.lastReplyAt === 0 ? FIRST_FORK_TIMEOUT_MS : FORK_TIMEOUT_MS).unref();
      this.waiting.set(id, (reply) => {
        clearTimeout(deadline);
        if (reply.gone === true) {
          reject(new ZygoteGone(reply.error ?? 'the fork server is gone'));
          return;
        }
        if (reply.ok) {
          this.failures = 0;
          resolve();
          return;
        }
        this.failures++;
        if (this.failures >= FAILURES_BEFORE_GIVING_UP)
          this.end(`the fork server failed ${this.failures} times in a row: ${reply.error}`);
        reject(new Error(reply.error ?? 'the fork server failed'));
      });
      this.control.write(
        `${JSON.stringify({ id, sandbox: request.sandbox, holdFd, cgroups: request.cgroupDirs, env: request.env })}\n`,
      );
    });
  }

  close(): void {
    this.end('the platform is stopping');
    this.child.kill('SIGKILL');
  }

  private onData(chunk: Buffer): void {
    this.buffered += chunk.toString();
    let newline = this.buffered.indexOf('\n');
    while (newline >= 0) {
      let reply: Reply;
      try {
        reply = JSON.parse(this.buffered.slice(0, newline)) as Reply;
      } catch {
        // Not a reply of ours: the server is not to be trusted any more.
        this.end(`the fork server wrote a line that is not JSON: ${this.buffered.slice(0, 80)}`, true);
        this.child.kill('SIGKILL');
        return;
      }
      this.buffered = this.buffered.slice(newline + 1);
      this.lastReplyAt = performance.now();
      const waiter = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      waiter?.(reply);
      newline = this.buffered.indexOf('\n');
    }
  }

  /** No more forks; `gone`: the process is killed or exited, so the forks waiting on it made no guest. */
  private end(why: string, gone = false): void {
    if (this.ended !== undefined) return;
    this.ended = why;
    for (const waiter of this.waiting.values()) waiter({ id: 0, ok: false, error: why, gone });
    this.waiting.clear();
  }
}

/** The descriptor under a socket libuv made for a child's stdio (internal, but stable on Linux). */
function descriptorOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}
