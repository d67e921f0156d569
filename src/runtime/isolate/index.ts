/**
 * @module The `isolate` isolation class (issue 11, density): many Node functions of ONE namespace in one
 * sandboxed host process, each in a V8 isolate of its own (isolated-vm) with its heap capped at its
 * `limits.memory`.
 *
 * Behind the `Isolation` interface like the others, so the scheduler is unchanged: `start` gives a
 * `GuestProcess` whose "child" is a member of a host (`MemberChild`), with a stream of its own that speaks
 * the ordinary frame protocol. The member learns its namespace from its Bind frame; only then is it joined
 * to that namespace's host (started through the sandbox isolation on first use, with a spare kept booted),
 * and its frames travel inside Relay frames on the host's fd 3. The guest side is `guest/isolate-host.mjs`.
 *
 * The walls: the host is a sandboxed guest like any other (bubblewrap namespaces, seccomp, its cgroup);
 * between functions of the host there is only V8's isolate boundary, hence "for trusted code" and one
 * host per namespace, never shared across namespaces.
 */

import { EventEmitter } from 'node:events';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, relative } from 'node:path';
import type { BuildCommand, BuildOutcome, Isolation, LaunchSpec, NetworkMode } from '../index.js';
import { GUEST_TOKEN, ISOLATE_MAX_BODY_BYTES } from '../index.js';
import { GuestProcess } from '../ipc/guest-process.js';
import {
  type BindMessage,
  type BoundMessage,
  CONTROL_FRAME_BYTES,
  FrameType,
  FrameWriter,
} from '../ipc/protocol.js';
import { guestDir, SANDBOX_PATH } from '../paths.js';
import type { Slot, SlotManager } from '../slots.js';

/** Source files shipped to the host at bind (the host's sandbox does not see the function's slot). */
const MAX_SOURCE_FILES = 256;
const MAX_SOURCE_BYTES = 4 * 1024 ** 2;
const SOURCE_FILE = /\.(m?js|cjs|json)$/;
/** The sources kept by code hash (SourceCache), all functions together. */
const SOURCE_CACHE_BYTES = 32 * 1024 ** 2;
/** An `{open}` control whose files are its body, as JSON (the host reads either form). */
const OPEN_FILES_IN_BODY = { open: { files: null } } as const;

/**
 * A kind of host process: which guest it runs and what a member sends it to join. The Node functions' kind
 * (isolated-vm) is built in; `runtime: wasm` adds its own (runtime/wasm/host.ts). A member's kind is the
 * one registered for its runtime's guest directory (LaunchSpec.guestDir), so hosts of two kinds never mix.
 */
export interface HostKind {
  readonly name: string;
  /** Why this kind cannot run here, or undefined. */
  readonly unavailable?: string | undefined;
  /** How a host process of this kind starts (inside the sandbox, like any guest). */
  launch(): LaunchSpec;
  /**
   * The `{open}` control a member sends its host, read on the platform's side (the host does not see the
   * function's slot). `known` is this host's memory of what it was sent before (e.g. module hashes).
   */
  open(bind: BindMessage, known: Set<string>): { meta: unknown; body?: Buffer };
  /**
   * When set, the member answers its Bind itself once it has joined, with this Bound message, instead of
   * waiting for the host's: a cold start saves a round trip where the host's bind cannot fail on what deploy
   * checked (wasm: the module, its export and its memory). The host then answers a failed bind on each
   * invocation instead.
   */
  readonly boundLocally?: (bind: BindMessage) => Record<string, unknown>;
}

export interface IsolateOptions {
  /** The isolation that confines each host process (the sandbox). */
  readonly confine: Isolation;
  readonly slots: SlotManager;
  /** The host process's cgroup memory (all its isolates together); default 1 GiB. */
  readonly hostMemoryBytes?: number;
  readonly onWarning?: (message: string) => void;
  /** Host kinds of other runtimes, by their launch spec's guestDir. */
  readonly kinds?: ReadonlyMap<string, HostKind>;
}

/** Where isolated-vm is installed here, or why not. */
function findIsolatedVm(): { dir: string } | { missing: string } {
  try {
    const require = createRequire(import.meta.url);
    const entry = require.resolve('isolated-vm');
    const dir = realpathSync(dirname(entry));
    if (!existsSync(join(dir, 'out', 'isolated_vm.node')))
      return {
        missing: 'isolated-vm is installed but its native module was not built (npm rebuild isolated-vm)',
      };
    return { dir };
  } catch {
    return { missing: 'isolated-vm is not installed (npm install: it builds with node-gyp)' };
  }
}

export class IsolateIsolation implements Isolation {
  readonly name = 'isolate' as const;
  readonly unavailable: string | undefined;
  private readonly ivmDir: string | undefined;
  /** By kind and namespace. */
  private readonly hosts = new Map<string, Promise<IsolateHost>>();
  /** The same hosts once started. */
  private readonly upHosts = new Map<string, IsolateHost>();
  /**
   * A host of each kind booted ahead, not yet given to a namespace, so a namespace's first function does not
   * wait for Node.
   */
  private readonly spares = new Map<HostKind, Promise<IsolateHost>>();
  private readonly nodeKind: HostKind;
  private readonly sources = new SourceCache(SOURCE_CACHE_BYTES);
  private closed = false;

  constructor(private readonly options: IsolateOptions) {
    const found = findIsolatedVm();
    this.ivmDir = 'dir' in found ? found.dir : undefined;
    this.unavailable =
      'missing' in found
        ? found.missing
        : options.confine.unavailable !== undefined
          ? `isolate hosts run in the sandbox, which is unavailable: ${options.confine.unavailable}`
          : undefined;
    this.nodeKind = {
      name: 'node',
      launch: () => this.nodeLaunch(),
      open: (bind) => ({ meta: OPEN_FILES_IN_BODY, body: this.sources.read(bind) }),
    };
  }

  /** The host reads the code on the platform's side, so paths are host paths. */
  guestPathOf(slot: Slot): string {
    return slot.hostDir;
  }

  /** Its members' code is read here (SourceCache, or the wasm host's module), from the code cache. */
  readonly readsCodeOnPlatform = true;

  /** A member of no host yet: it joins its namespace's host when its Bind frame names the namespace. */
  start(launch: LaunchSpec, _slot: Slot, network: NetworkMode): GuestProcess {
    if (network !== 'none') throw new Error('isolate functions have no network (egress: none)');
    const kind = this.options.kinds?.get(launch.guestDir) ?? this.nodeKind;
    const child = new MemberChild(kind, (namespace) => this.hostFor(kind, namespace));
    const guest = new MemberProcess(child);
    guest.outOfMemoryProbe = () => child.outOfMemory;
    return guest;
  }

  run(build: BuildCommand): Promise<BuildOutcome> {
    // Isolate functions have no dependency layer (deploy refuses one); a build would run in the sandbox.
    return this.options.confine.run(build);
  }

  /** The pids of the hosts by `kind/namespace`, for tests and describe. */
  async hostPids(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [key, host] of this.hosts) {
      const settled = await host.catch(() => undefined);
      if (settled !== undefined && !settled.guest.exited) out[key] = settled.guest.pid;
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.hosts.values(), ...this.spares.values()];
    this.hosts.clear();
    this.upHosts.clear();
    this.spares.clear();
    await Promise.all(
      all.map(async (pending) => {
        const host = await pending.catch(() => undefined);
        if (host === undefined) return;
        host.guest.kill('SIGKILL');
        await host.guest.waitForExit();
      }),
    );
  }

  /** The namespace's host: itself once it is up (no promise to wait on in a cold start), else its start. */
  private hostFor(kind: HostKind, namespace: string): IsolateHost | Promise<IsolateHost> {
    const key = `${kind.name}/${namespace}`;
    const up = this.upHosts.get(key);
    if (up !== undefined && !up.guest.exited) return up;
    const known = this.hosts.get(key);
    if (known !== undefined) return known;
    const taken = this.spares.get(kind) ?? this.bootHost(kind);
    this.spares.delete(kind);
    const host = taken.then((h) => {
      if (h.guest.exited) return this.bootHost(kind);
      return h;
    });
    this.hosts.set(key, host);
    void host.then(
      (h) => {
        h.namespace = namespace;
        if (this.hosts.get(key) === host) this.upHosts.set(key, h);
        h.guest.once('exit', () => {
          if (this.hosts.get(key) === host) this.hosts.delete(key);
          if (this.upHosts.get(key) === h) this.upHosts.delete(key);
        });
        // The next namespace's host boots now, off anyone's critical path.
        if (!this.closed && !this.spares.has(kind)) {
          const spare = this.bootHost(kind);
          this.spares.set(kind, spare);
          spare.catch(() => {
            if (this.spares.get(kind) === spare) this.spares.delete(kind);
          });
        }
      },
      () => {
        if (this.hosts.get(key) === host) this.hosts.delete(key);
      },
    );
    return host;
  }

  private nodeLaunch(): LaunchSpec {
    const ivmDir = this.ivmDir;
    if (ivmDir === undefined || this.unavailable !== undefined)
      throw new Error(this.unavailable ?? 'isolated-vm is missing');
    const node = realpathSync(process.execPath);
    return {
      command: node,
      // isolated-vm needs Node's own startup snapshot off on Node 20+ (its README), and the host holds
      // nothing but isolates: a small young generation keeps its own heap small.
      args: ['--no-node-snapshot', '--max-semi-space-size=1', `${GUEST_TOKEN}/isolate-host.mjs`],
      env: {
        PATH: SANDBOX_PATH,
        HOME: '/tmp',
        LANG: 'C.UTF-8',
        NODE_ENV: 'production',
        TMPDIR: '/tmp',
        HEARTH_ISOLATED_VM: ivmDir,
      },
      guestDir: guestDir('isolate'),
      readOnlyPaths: [ivmDir, ...(node.startsWith('/usr/') ? [] : [dirname(dirname(node))])],
    };
  }

  private async bootHost(kind: HostKind): Promise<IsolateHost> {
    if (kind.unavailable !== undefined) throw new Error(kind.unavailable);
    const launch = kind.launch();
    const slot = await this.options.slots.create();
    let guest: GuestProcess;
    try {
      guest = this.options.confine.start(launch, slot, 'none');
    } catch (error) {
      await this.options.slots.release(slot);
      throw error;
    }
    guest.once('exit', () => void this.options.slots.release(slot).catch(() => undefined));
    const stderr: string[] = [];
    const collect = (log: { text: string }): void => {
      if (stderr.length < 20) stderr.push(log.text);
    };
    guest.on('log', collect);
    try {
      await guest.ready;
    } catch (error) {
      throw new Error(
        `the ${kind.name} host did not start: ${(error as Error).message} ${stderr.join('')}`.trim(),
      );
    } finally {
      guest.off('log', collect);
    }
    await this.options.confine.limit?.(guest, {
      memoryBytes: this.options.hostMemoryBytes ?? 1024 ** 3,
      cpu: availableParallelism(),
      pids: 64,
      tmpBytes: 16 * 1024 ** 2,
    });
    guest.acceptRelays(ISOLATE_MAX_BODY_BYTES + CONTROL_FRAME_BYTES);
    return new IsolateHost(guest, (message) => this.options.onWarning?.(message));
  }
}

/** One host process and the members (functions) it runs. */
class IsolateHost {
  namespace: string | undefined;
  /** What its kind has sent it (module hashes, for wasm), so a second member need not send it again. */
  readonly known = new Set<string>();
  private nextId = 1;
  private readonly members = new Map<number, MemberChild>();

  constructor(
    readonly guest: GuestProcess,
    warn: (message: string) => void,
  ) {
    guest.on('relay', (id, meta, body) => {
      const member = this.members.get(id);
      if (member === undefined) return;
      if (meta !== null && typeof meta === 'object' && 'exit' in meta) {
        this.members.delete(id);
        member.ended(exitOf(meta.exit));
      } else member.fromHost(body);
    });
    // Output the host writes itself (not a function's console) goes to the platform's log.
    guest.on('log', (log) => {
      if (log.seq <= 0) warn(`isolate host (pid ${guest.pid}): ${log.text.trimEnd()}`);
    });
    guest.once('exit', (exit) => {
      const members = [...this.members.values()];
      this.members.clear();
      for (const member of members)
        member.ended({ code: exit.code, signal: exit.signal, outOfMemory: exit.outOfMemory === true });
    });
  }

  join(member: MemberChild, open: { meta: unknown; body?: Buffer }): number {
    const id = this.nextId++;
    this.members.set(id, member);
    this.guest.relay(id, open.meta, open.body);
    return id;
  }

  send(id: number, frames: Buffer, now = false): void {
    this.guest.relay(id, null, frames, now);
  }

  kill(id: number): void {
    if (this.members.has(id)) this.guest.relay(id, { kill: true });
  }
}

interface MemberExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly outOfMemory: boolean;
}

function exitOf(value: unknown): MemberExit {
  const record = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  return {
    code: typeof record.code === 'number' ? record.code : null,
    signal: record.signal === 'SIGKILL' ? 'SIGKILL' : null,
    outOfMemory: record.outOfMemory === true,
  };
}

/**
 * One function in a host, seen by its `GuestProcess` as a child process: fd 3 is a stream of its own,
 * `pid` the host's, `kill` disposes of its isolate. Frames written before it has joined a host (its Bind)
 * wait, then go in order.
 */
class MemberChild extends EventEmitter {
  readonly stdout = null;
  readonly stderr = null;
  readonly stdio: readonly unknown[];
  outOfMemory = false;
  private host: IsolateHost | undefined;
  private id = 0;
  private readonly waiting: Buffer[] = [];
  private joining = false;
  private done = false;
  private readonly channel: MemberChannel;

  constructor(
    private readonly kind: HostKind,
    private readonly hostFor: (namespace: string) => IsolateHost | Promise<IsolateHost>,
  ) {
    super();
    this.channel = new MemberChannel((chunk) => this.toHost(chunk));
    this.stdio = [null, null, null, this.channel];
    const ready = new FrameWriter();
    ready.add(FrameType.Ready, 0, {
      runtime: kind.name === 'node' ? 'isolate' : `${kind.name}-host`,
      pid: 0,
    });
    const bytes = ready.take();
    // Once its GuestProcess, made right after this, listens.
    if (bytes !== undefined) setImmediate(() => this.channel.push(bytes));
  }

  get pid(): number | undefined {
    return this.host?.guest.pid;
  }

  kill(): boolean {
    if (this.done) return false;
    if (this.host !== undefined) this.host.kill(this.id);
    else this.ended({ code: null, signal: 'SIGKILL', outOfMemory: false });
    return true;
  }

  fromHost(frames: Buffer): void {
    if (!this.done) this.channel.push(frames);
  }

  ended(exit: MemberExit): void {
    if (this.done) return;
    this.done = true;
    this.outOfMemory = exit.outOfMemory;
    this.emit('exit', exit.code, exit.signal);
  }

  private toHost(chunk: Buffer): void {
    if (this.done) return;
    if (this.host !== undefined) {
      this.host.send(this.id, chunk);
      return;
    }
    this.waiting.push(chunk);
  }

  /**
   * Joins the namespace's host its Bind names (MemberProcess calls this once the Bind is written, and
   * waiting here): at once when the host is up, which is every bind but a namespace's first.
   */
  join(bind: BindMessage): void {
    if (this.joining) return;
    this.joining = true;
    const host = this.hostFor(bind.namespace);
    if (!(host instanceof Promise)) {
      this.joined(host, bind);
      return;
    }
    host.then(
      (started) => this.joined(started, bind),
      (error: unknown) => this.fail(`no ${this.kind.name} host: ${(error as Error).message}`),
    );
  }

  private joined(host: IsolateHost, bind: BindMessage): void {
    if (this.done) return;
    let open: { meta: unknown; body?: Buffer };
    try {
      open = this.kind.open(bind, host.known);
    } catch (error) {
      this.fail((error as Error).message);
      return;
    }
    this.host = host;
    this.id = host.join(this, open);
    // The member's Bind (and whatever followed it) leaves at once: a cold start waits on it.
    const waiting = this.waiting.splice(0);
    if (waiting.length > 0)
      host.send(this.id, waiting.length === 1 ? (waiting[0] as Buffer) : Buffer.concat(waiting), true);
    if (this.kind.boundLocally !== undefined) {
      const writer = new FrameWriter();
      writer.add(FrameType.Bound, 0, this.kind.boundLocally(bind));
      const bytes = writer.take();
      if (bytes !== undefined) this.channel.push(bytes);
    }
  }

  /** Answers the waiting Bind with the reason, then ends like a process that exited. */
  private fail(message: string): void {
    const writer = new FrameWriter();
    writer.add(FrameType.Bound, 0, { ok: false, error: { type: 'IsolateUnavailable', message } });
    const bytes = writer.take();
    if (bytes !== undefined) this.channel.push(bytes);
    setImmediate(() => this.ended({ code: 1, signal: null, outOfMemory: false }));
  }
}

/**
 * A member's GuestProcess: the host it joins is named by its Bind, taken from the message as it is sent
 * rather than decoded back from the frame just written.
 */
class MemberProcess extends GuestProcess {
  constructor(private readonly member: MemberChild) {
    super(member);
  }

  override bind(message: BindMessage): Promise<BoundMessage> {
    // The Bind is written first: it waits in the member, which sends it as it joins.
    const bound = super.bind(message);
    this.member.join(message);
    return bound;
  }
}

/**
 * The member's fd 3 as its `GuestProcess` uses it (write, 'data', 'error', pause), without a stream's
 * machinery on every frame: what is written goes to the host at once, what the host relays is emitted.
 */
class MemberChannel extends EventEmitter<{ data: [Buffer]; error: [Error] }> {
  private paused = false;

  constructor(private readonly onWrite: (chunk: Buffer) => void) {
    super();
  }

  write(chunk: Buffer): boolean {
    this.onWrite(chunk);
    return true;
  }

  /** Frames from the host (or the member's own Ready and refusals). */
  push(frames: Buffer): void {
    if (!this.paused) this.emit('data', frames);
  }

  pause(): void {
    this.paused = true;
  }
}

/**
 * The Node functions' sources, as the `{open}` control's body, by code hash. A package's files never change
 * under its hash (the code store is content-addressed), so they are read from the function's folder (a
 * readdir, a stat and a read per file, on the gateway's thread, in the cold start's path) once per package,
 * not at every bind; a redeploy with other code has another hash. Bounded by bytes, the least recently used
 * dropped first.
 */
class SourceCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  read(bind: BindMessage): Buffer {
    const hash = bind.codeHash;
    if (hash === undefined) return encodeSources(bind.codeDir);
    const known = this.entries.get(hash);
    if (known !== undefined) {
      // Most recently used last.
      this.entries.delete(hash);
      this.entries.set(hash, known);
      return known;
    }
    const encoded = encodeSources(bind.codeDir);
    this.entries.set(hash, encoded);
    this.bytes += encoded.length;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes || oldest === hash) break;
      this.entries.delete(oldest);
      this.bytes -= entry.length;
    }
    return encoded;
  }
}

function encodeSources(codeDir: string): Buffer {
  return Buffer.from(JSON.stringify(readSources(codeDir)), 'utf8');
}

/** The function's JavaScript and JSON files, by path relative to its folder. */
function readSources(codeDir: string): Record<string, string> {
  const files: Record<string, string> = {};
  let count = 0;
  let bytes = 0;
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') walk(path);
        continue;
      }
      // Regular files only: a symbolic link is never followed out of the function's folder.
      if (!SOURCE_FILE.test(entry.name) || !entry.isFile()) continue;
      count += 1;
      bytes += statSync(path).size;
      if (count > MAX_SOURCE_FILES || bytes > MAX_SOURCE_BYTES)
        throw new Error(
          `an isolate function's code may hold at most ${MAX_SOURCE_FILES} .js/.mjs/.cjs/.json files and ${MAX_SOURCE_BYTES / 1024 ** 2} MiB`,
        );
      files[relative(codeDir, path)] = readFileSync(path, 'utf8');
    }
  };
  walk(codeDir);
  return files;
}
