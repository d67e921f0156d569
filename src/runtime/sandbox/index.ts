/**
 * @module The `sandbox` isolation class: every guest runs under bubblewrap in new mount, pid, ipc, uts
 * and network namespaces, sees a read-only /usr, its own slot at /code, its runtime's bootstrap at
 * /hearth, a private /tmp, a scrubbed environment, and runs as an unprivileged uid with no capabilities.
 *
 * As root the sandbox is entered privileged (no user namespace) and setpriv drops to `uid` inside it, so
 * the guest's files on the host are really owned by that uid; as a normal user bubblewrap maps the
 * caller's uid through a user namespace instead. Resource limits (cgroups) attach at `start`; egress
 * allow-lists and host aliases are `network.ts` (a filtered namespace per sandbox, rules added at bind).
 * On both paths a seccomp filter (`seccomp.ts`) keeps the guest from creating user namespaces.
 *
 * Dependency builds (`run`) are confined the same way, and get a network namespace of their own whose
 * only way out is to the package registries the build names (slirp4netns plus nftables, as an egress
 * allow-list): never the host's loopback, so never the platform's own API.
 */

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { promisify } from 'node:util';
import { HearthError } from '../../domain/errors.js';
import {
  type BuildCommand,
  type BuildOutcome,
  GUEST_TOKEN,
  type Isolation,
  type LaunchSpec,
  type NetworkMode,
  type NetworkPolicy,
  type ResourceLimits,
  type StartOptions,
  type WallStatus,
} from '../index.js';
import { GuestProcess } from '../ipc/guest-process.js';
import { findExecutable } from '../paths.js';
import { atFunctionPriority } from '../priority.js';
import { runConfined } from '../process/run.js';
import { mountOverlay, type Slot } from '../slots.js';
import { Cgroups, joiningCgroups } from './cgroups.js';
import { holdUntilGo } from './hold.js';
import {
  type FilteredTools,
  probeFilteredTools,
  resolvePolicy,
  resolveRegistries,
  SandboxNetwork,
  SLIRP_DNS,
} from './network.js';
import { sandboxFilter } from './seccomp.js';
import { BOOT_WORD, holdCommand, ZYGOTE_HOLD_FD, Zygote, ZygoteGone } from './zygote.js';

export interface SandboxOptions {
  /** Directory for generated files the sandbox shows (passwd, group, hosts). */
  readonly stateDir: string;
  readonly uid?: number;
  readonly gid?: number;
  /** Size of a stem cell's private /tmp, bytes (a function's `limits.tmp` resizes it at bind). */
  readonly tmpBytes?: number;
  /** Processes a stem cell may have before it is bound (a function's `limits.pids` then applies). */
  readonly pids?: number;
  readonly bwrapPath?: string;
  /** Whether a runtime's fork server may start its guests (config `forkServer`; default: no). */
  readonly forkServers?: boolean;
  /** Config `platformCpuCgroup`: where the platform's process may move to share the CPU (cgroups.ts `start`). */
  readonly platformCpuCgroup?: boolean;
}

const GUEST_DIR = '/hearth/guest';
/** Descriptors bubblewrap reads besides the guest's IPC (fd 3): its info, the seccomp filter, the go-ahead. */
const INFO_FD = 4;
const SECCOMP_FD = 5;
const HOLD_FD = 6;
/**
 * Starts a build's command only once its network is confined. It first says it is running: bubblewrap
 * has then finished setting up the namespace's loopback, which slirp4netns configuring the same
 * namespace at the same moment makes fail (`loopback: Failed RTM_NEWADDR`).
 */
const HOLD_UNTIL_NETWORKED = holdUntilGo(HOLD_FD, 'hearth-build');
const SLOT_DIR = '/code';
/** Times a hung fork server is replaced in a run; past them its runtime's guests boot themselves. */
const ZYGOTE_RESTARTS = 3;
export const DEFAULT_TMP_BYTES = 64 * 1024 ** 2;
export const DEFAULT_PIDS = 256;
/** Processes and threads a dependency build may have at once: compilers run in parallel, a fork bomb stops. */
const BUILD_PIDS = 4096;
const BUILD_ALTERNATIVES = '/etc/alternatives';
const NETWORK_ETC = [
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/nsswitch.conf',
  '/etc/ssl',
  '/etc/ca-certificates',
  '/etc/pki',
];

export class SandboxIsolation implements Isolation {
  readonly name = 'sandbox' as const;
  readonly unavailable: string | undefined;
  private readonly bwrap: string;
  private readonly privileged: boolean;
  private readonly setpriv: string | undefined;
  private readonly uid: number;
  private readonly gid: number;
  private readonly baseArgs: readonly string[];
  private readonly ownedCaches = new Set<string>();
  readonly filteredUnavailable: string | undefined;
  private readonly filteredTools: FilteredTools | undefined;
  /** The compiled seccomp filter, or undefined on an architecture it does not know (then `unavailable`). */
  private readonly seccompFile: string | undefined;
  /**
   * Whether the state dir is a tmpfs of its own. Everything a guest is shown from it then appears in its
   * /proc/self/mountinfo by its path inside that tmpfs (`/etc/passwd`, `/guest/…`), not by the host path
   * that would say where the platform keeps its data (a bind mount is listed by its path in the source
   * filesystem, wherever it is bound from).
   */
  private readonly ownMount: boolean;
  /** The last build using each package cache, which the next one waits for (see `run`). */
  private readonly cacheTurns = new Map<string, Promise<void>>();
  /** Copies of the runtimes' guest bootstraps in the state dir, by their path in the checkout. */
  private readonly guestCopies = new Map<string, string>();
  /** Networks of guests that may reach out (`host`, `filtered`); `none` guests have none. */
  private readonly networks = new WeakMap<GuestProcess, { network: SandboxNetwork; hostsFile: string }>();
  /** Resource walls (memory, cpu, pids); undefined where cgroups cannot be used at all (not root). */
  private readonly cgroups: Cgroups | undefined;
  /** Each guest's cgroup name. */
  private readonly cgroupOf = new WeakMap<GuestProcess, string>();
  /** What `init` did with the platform's process under the cpu controller, for `hearth up`'s log. */
  cpuSharing: string | undefined;
  private readonly nsenter: string | undefined;
  /** Fork servers by the guest directory they serve (sandbox/zygote.ts). */
  private readonly zygotes = new Map<string, Zygote>();
  /** Fork servers started again after one hung, by guest directory (at most ZYGOTE_RESTARTS each). */
  private readonly zygoteRestarts = new Map<string, number>();
  readonly walls: readonly WallStatus[];

  constructor(private readonly options: SandboxOptions) {
    this.bwrap = options.bwrapPath ?? findExecutable('bwrap') ?? '';
    this.uid = options.uid ?? 65534;
    this.gid = options.gid ?? 65534;
    this.privileged = process.getuid?.() === 0;
    this.setpriv = this.privileged ? findExecutable('setpriv') : undefined;
    this.ownMount = this.privileged && mountPrivateTmpfs(options.stateDir);
    this.baseArgs = this.rootFilesystemArgs();
    const filter = sandboxFilter();
    this.seccompFile = filter === undefined ? undefined : join(options.stateDir, 'seccomp.bpf');
    if (filter !== undefined && this.seccompFile !== undefined) writeFileSync(this.seccompFile, filter);
    this.unavailable = this.probe();
    const tools = probeFilteredTools(this.privileged);
    this.filteredTools = typeof tools === 'string' ? undefined : tools;
    this.filteredUnavailable = typeof tools === 'string' ? tools : this.unavailable;
    mkdirSync(join(options.stateDir, 'hosts'), { recursive: true });
    this.nsenter = this.privileged ? findExecutable('nsenter') : undefined;
    this.cgroups = this.privileged ? new Cgroups(options.stateDir) : undefined;
    this.walls = this.describeWalls();
  }

  /**
   * Removes what a killed previous run left (its sandboxes' processes and cgroups); returns how many. Then
   * puts the platform's process in its CPU cgroup (cgroups.ts `start`).
   */
  async init(): Promise<number> {
    const removed = (await this.cgroups?.removeAll()) ?? 0;
    // The platform joins a cgroup of its own beside its sandboxes', and hogs are marked idle (cgroups.ts).
    this.cpuSharing = this.cgroups?.start(this.options.platformCpuCgroup);
    return removed;
  }

  private describeWalls(): WallStatus[] {
    const cgroupWalls: WallStatus[] =
      this.cgroups?.status.map((status) => ({ ...status })) ??
      ['memory', 'cpu', 'pids'].map((wall) => ({
        wall,
        inForce: false,
        detail: 'cgroups need the platform to run as root',
      }));
    const tmp: WallStatus =
      this.nsenter !== undefined
        ? { wall: 'tmp', inForce: true, detail: 'a size-capped tmpfs, resized at bind' }
        : {
            wall: 'tmp',
            inForce: false,
            detail: `only the default size (${DEFAULT_TMP_BYTES / 1024 ** 2}Mi) holds: resizing needs root and nsenter (util-linux)`,
          };
    const seccomp: WallStatus =
      this.seccompFile !== undefined
        ? {
            wall: 'seccomp',
            inForce: true,
            detail: 'a filter denying mount, ptrace, bpf, keyctl, raw sockets…',
          }
        : { wall: 'seccomp', inForce: false, detail: `no filter for ${process.arch}` };
    return [...cgroupWalls, tmp, seccomp];
  }

  /** Sets a bound guest's cgroup limits and the size of its /tmp. */
  async limit(guest: GuestProcess, limits: ResourceLimits): Promise<void> {
    const id = this.cgroupOf.get(guest);
    try {
      if (id !== undefined) this.cgroups?.apply(id, limits);
      if (limits.tmpBytes !== (this.options.tmpBytes ?? DEFAULT_TMP_BYTES) && this.nsenter !== undefined)
        await this.resizeTmp(guest, limits.tmpBytes);
    } catch (error) {
      throw new HearthError(
        'HEARTH_E_SANDBOX_UNAVAILABLE',
        `the function's resource limits could not be applied: ${(error as Error).message}`,
        { retryAfter: 5 },
      );
    }
  }

  /** Remounts the guest's /tmp at its function's size, from inside the sandbox's mount namespace. */
  private async resizeTmp(guest: GuestProcess, bytes: number): Promise<void> {
    const inside = sandboxChild(guest.pid);
    if (inside === undefined || this.nsenter === undefined) throw new Error('the sandbox has no process');
    // Born in the sandbox's cpu cgroup, as every helper of a sandbox (cgroups.ts).
    const id = this.cgroupOf.get(guest);
    const command = joiningCgroups(this.cgroups?.helperCgroups(id) ?? [], this.nsenter, [
      '-t',
      String(inside),
      '-m',
      'mount',
      '-o',
      `remount,size=${bytes}`,
      '/tmp',
    ]);
    await run(command.command, [...command.args]);
  }

  guestPathOf(): string {
    return SLOT_DIR;
  }

  /** Lifts a background stem cell's boot to the default CPU weight (a cold start is waiting for it). */
  hasten(guest: GuestProcess): void {
    const id = this.cgroupOf.get(guest);
    if (id !== undefined) this.cgroups?.foreground(id);
  }

  start(launch: LaunchSpec, slot: Slot, network: NetworkMode, options: StartOptions = {}): GuestProcess {
    const zygote = this.zygoteFor(launch);
    const guestCommand = [
      launch.command,
      ...launch.args.map((arg) => arg.replaceAll(GUEST_TOKEN, GUEST_DIR)),
    ];
    // A guest that may reach out gets /etc/hosts of its own, filled in when it is bound (hostAliases).
    const hostsFile = join(this.options.stateDir, 'hosts', slot.id);
    if (network !== 'none') writeFileSync(hostsFile, '127.0.0.1 localhost\n::1 localhost\n');
    // A namespace of its own linked by slirp4netns: an allow-list (`filtered`) or egress allow (`outbound`).
    const linked = network === 'filtered' || network === 'outbound';
    const args = [
      ...this.baseArgs,
      ...(network === 'none'
        ? ['--unshare-net']
        : linked
          ? ['--unshare-net', '--info-fd', String(INFO_FD), ...this.networkFiles(false)]
          : this.networkFiles(true)),
      // `outbound` resolves through slirp4netns's forwarder to the host's resolver.
      ...(network === 'outbound' ? ['--ro-bind', this.slirpResolvConf(), '/etc/resolv.conf'] : []),
      ...(network === 'none' ? [] : ['--ro-bind', hostsFile, '/etc/hosts']),
      ...readOnlyBinds(launch.readOnlyPaths),
      '--perms',
      '0755',
      '--dir',
      '/hearth',
      '--ro-bind',
      this.guestCopy(launch),
      GUEST_DIR,
      '--ro-bind',
      slot.hostDir,
      SLOT_DIR,
      '--chdir',
      '/tmp',
      ...this.seccompArgs(),
      ...this.identityArgs(),
      // As for builds: the guest starts only once slirp4netns has configured its namespace, never while
      // bubblewrap is still setting up its loopback (the race is `bwrap: loopback: Failed RTM_NEWADDR`).
      ...(linked ? HOLD_UNTIL_NETWORKED : []),
      ...(zygote !== undefined ? holdCommand(guestCommand) : guestCommand),
    ];
    const niced = atFunctionPriority(this.bwrap, args);
    const cgroupId = `${slot.id}-${randomBytes(3).toString('hex')}`;
    const cgroupDirs =
      this.cgroups?.create(
        cgroupId,
        this.options.pids ?? DEFAULT_PIDS,
        options.background === true,
        options.memoryBytes,
      ) ?? [];
    // The sandbox is inside its cgroups before it forks.
    const command = joiningCgroups(cgroupDirs, niced.command, niced.args);
    const seccomp = this.openSeccomp();
    let child: ChildProcess;
    try {
      const stdio: ('ignore' | 'pipe' | number)[] = linked
        ? ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', seccomp, 'pipe']
        : ['ignore', 'pipe', 'pipe', 'pipe', 'ignore', seccomp];
      if (zygote !== undefined) stdio.push(...(linked ? [] : ['ignore' as const]), 'pipe');
      child = spawn(command.command, command.args, { stdio, env: { ...launch.env } });
    } finally {
      if (typeof seccomp === 'number') closeSync(seccomp);
    }
    const guest = new GuestProcess(child);
    if (this.cgroups !== undefined && cgroupDirs.length > 0) {
      const cgroups = this.cgroups;
      this.cgroupOf.set(guest, cgroupId);
      guest.outOfMemoryProbe = () => cgroups.oomKills(cgroupId) > 0;
      guest.once('exit', () => void cgroups.remove(cgroupId).catch(() => undefined));
    }
    if (zygote !== undefined) this.forkInto(zygote, child, guest, cgroupDirs, launch.env);
    if (network !== 'none') {
      const stdio = child.stdio as readonly unknown[];
      const info = linked ? (stdio[INFO_FD] as Duplex | null) : null;
      const hold = linked ? (stdio[HOLD_FD] as Duplex | null) : null;
      // The sandbox may die before reading or writing these; its exit tells what happened.
      info?.on('error', () => {});
      hold?.on('error', () => {});
      const sandboxNetwork = new SandboxNetwork(
        network,
        this.filteredTools,
        info ?? undefined,
        hold ?? undefined,
        // Its slirp4netns and nft work for this sandbox alone: on its CPU quota (cgroups.ts).
        this.cgroups?.helperCgroups(cgroupDirs.length > 0 ? cgroupId : undefined) ?? [],
      );
      this.networks.set(guest, { network: sandboxNetwork, hostsFile });
      guest.once('exit', () => {
        sandboxNetwork.close();
        rmSync(hostsFile, { force: true });
      });
      // A stem cell whose network failed is useless: end it, and the pool starts another.
      sandboxNetwork.ready.catch(() => guest.kill('SIGKILL'));
    }
    return guest;
  }

  /**
   * The runtime's fork server, started on first use; undefined where guests boot themselves: a runtime
   * without one, not root (joining a sandbox's namespaces needs it), or one that stopped working.
   */
  private zygoteFor(launch: LaunchSpec): Zygote | undefined {
    if (launch.forkServer === undefined || !this.ownMount || this.seccompFile === undefined) return undefined;
    if (this.options.forkServers !== true) return undefined;
    let zygote = this.zygotes.get(launch.guestDir);
    if (zygote?.restartable === true) {
      const restarts = (this.zygoteRestarts.get(launch.guestDir) ?? 0) + 1;
      if (restarts <= ZYGOTE_RESTARTS) {
        this.zygoteRestarts.set(launch.guestDir, restarts);
        process.emitWarning(
          `sandbox: starting the fork server again (${zygote.unusable}; restart ${restarts} of ${ZYGOTE_RESTARTS})`,
        );
        zygote = undefined;
      }
    }
    if (zygote === undefined) {
      zygote = new Zygote(launch, launch.forkServer, {
        seccompFile: this.seccompFile,
        uid: this.uid,
        gid: this.gid,
        guestDir: this.guestCopy(launch),
        // Shared by the sandboxes it forks into: the helpers' cgroup, at one sandbox's weight (cgroups.ts).
        cgroupDirs: this.cgroups?.helperCgroups() ?? [],
      });
      this.zygotes.set(launch.guestDir, zygote);
    }
    return zygote.unusable === undefined ? zygote : undefined;
  }

  /** Once the sandbox's placeholder runs, has the zygote fork the guest into it; a failure ends the sandbox. */
  private forkInto(
    zygote: Zygote,
    child: ChildProcess,
    guest: GuestProcess,
    cgroupDirs: readonly string[],
    env: Readonly<Record<string, string>>,
  ): void {
    const hold = (child.stdio as readonly unknown[])[ZYGOTE_HOLD_FD] as Socket | null;
    if (hold === null || child.pid === undefined) {
      guest.kill('SIGKILL');
      return;
    }
    const sandbox = child.pid;
    hold.on('error', () => {});
    hold.once('data', () => {
      zygote.fork({ sandbox, hold, cgroupDirs, env }).then(
        // The zygote holds its own copy now: the placeholder reads the guest's exit status from it.
        () => hold.destroy(),
        (error: Error) => {
          if (!(error instanceof ZygoteGone)) {
            process.emitWarning(`sandbox: a guest could not be forked into its sandbox: ${error.message}`);
            guest.kill('SIGKILL');
            return;
          }
          // Nothing of the server is left to become this guest: the placeholder boots it, as without one.
          process.emitWarning(`sandbox: ${error.message}; the guest boots in its sandbox instead`);
          void zygote.exited.then(() => hold.end(`${BOOT_WORD}\n`));
        },
      );
    });
  }

  /** Writes the function's /etc/hosts and, for an allow-list, lets its destinations through. */
  async configureNetwork(guest: GuestProcess, _slot: Slot, policy: NetworkPolicy): Promise<void> {
    const entry = this.networks.get(guest);
    if (entry === undefined) return;
    const { hosts, allow } = await resolvePolicy(policy, entry.network.mode);
    await writeFile(entry.hostsFile, hosts);
    if (entry.network.mode !== 'filtered') return;
    try {
      await entry.network.allow(allow);
    } catch (error) {
      throw new HearthError(
        'HEARTH_E_SANDBOX_UNAVAILABLE',
        `the egress allow-list could not be applied: ${(error as Error).message}`,
        { retryAfter: 5 },
      );
    }
  }

  async run(build: BuildCommand): Promise<BuildOutcome> {
    if (!this.ownMount) return this.runBuild(build);
    // Two overlays over one upper dir see each other's writes late (the kernel warns it is undefined):
    // builds sharing a cache (one namespace, one runtime) take turns.
    const previous = this.cacheTurns.get(build.cacheDir) ?? Promise.resolve();
    const turn = previous.then(() => this.runBuild(build));
    const settled = turn.then(
      () => undefined,
      () => undefined,
    );
    this.cacheTurns.set(build.cacheDir, settled);
    try {
      return await turn;
    } finally {
      if (this.cacheTurns.get(build.cacheDir) === settled) this.cacheTurns.delete(build.cacheDir);
    }
  }

  private async runBuild(build: BuildCommand): Promise<BuildOutcome> {
    const registries = build.registries ?? [];
    // Its own network namespace always; a way out to the registries only where nftables can hold it to them.
    const confined = this.filteredTools !== undefined;
    const hostsFile = join(this.options.stateDir, 'hosts', `build-${randomBytes(6).toString('hex')}`);
    let allow: { address: string; port: number }[] = [];
    if (confined && registries.length > 0) {
      try {
        const resolved = await resolveRegistries(registries);
        allow = resolved.allow;
        await writeFile(hostsFile, resolved.hosts);
      } catch (error) {
        return { ok: false, exitCode: null, tail: (error as Error).message };
      }
    }
    const filtered = confined && registries.length > 0;
    const network = filtered
      ? [
          '--unshare-net',
          '--info-fd',
          String(INFO_FD),
          ...this.networkFiles(false),
          '--ro-bind',
          hostsFile,
          '/etc/hosts',
        ]
      : confined || registries.length === 0
        ? ['--unshare-net']
        : this.networkFiles(true);
    if (this.privileged) {
      // The build runs as the sandbox uid; it must own what it writes.
      await chownTree(build.workDir, this.uid, this.gid);
      if (!this.ownedCaches.has(build.cacheDir)) {
        await chownTree(build.cacheDir, this.uid, this.gid);
        this.ownedCaches.add(build.cacheDir);
      }
    }
    const views = await this.buildViews(build.workDir, build.cacheDir);
    const args = [
      ...this.baseArgs,
      ...network,
      ...readOnlyBinds(build.readOnlyPaths),
      // `cc`, `c++` and friends are links through here on Debian: a native module compiled from source
      // (node-gyp, an sdist) needs them. Only links to programs under /usr, which the build sees anyway.
      ...(existsSync(BUILD_ALTERNATIVES) ? ['--ro-bind', BUILD_ALTERNATIVES, BUILD_ALTERNATIVES] : []),
      '--bind',
      views?.work ?? build.workDir,
      '/build',
      '--bind',
      views?.cache ?? build.cacheDir,
      '/cache',
      '--chdir',
      '/build',
      ...this.seccompArgs(),
      ...this.identityArgs(),
      ...(filtered ? HOLD_UNTIL_NETWORKED : []),
      build.command,
      ...build.args.map((arg) =>
        arg.replaceAll(build.workDir, '/build').replaceAll(build.cacheDir, '/cache'),
      ),
    ];
    const env = Object.fromEntries(
      Object.entries(build.env).map(([key, value]) => [
        key,
        value.replaceAll(build.workDir, '/build').replaceAll(build.cacheDir, '/cache'),
      ]),
    );
    const seccomp = this.openSeccomp();
    // The build's memory and CPU caps: a cgroup of its own, joined before bubblewrap starts, as a sandbox's.
    const cgroups = build.limits === undefined ? undefined : this.cgroups;
    const cgroupId = `build-${randomBytes(6).toString('hex')}`;
    const cgroupDirs = cgroups?.create(cgroupId, BUILD_PIDS) ?? [];
    if (cgroups !== undefined && build.limits !== undefined && cgroupDirs.length > 0)
      cgroups.apply(cgroupId, { ...build.limits, pids: BUILD_PIDS });
    const joined = joiningCgroups(cgroupDirs, this.bwrap, args);
    const [command, commandArgs] = [joined.command, [...joined.args]];
    let outcome: BuildOutcome;
    let stuck: string | undefined;
    let outOfMemory = false;
    try {
      outcome = await runConfined(command, commandArgs, {
        ...build,
        env,
        extraStdio: filtered ? ['ignore', 'pipe', seccomp, 'pipe'] : ['ignore', 'ignore', seccomp],
        onSpawn: async (child) => {
          if (typeof seccomp === 'number') closeSync(seccomp);
          if (!filtered) return;
          const stdio = child.stdio as readonly unknown[];
          const info = stdio[INFO_FD] as Duplex;
          const hold = stdio[HOLD_FD] as Duplex;
          // The sandbox may die before reading or writing these; its exit code tells what happened.
          info.on('error', () => {});
          hold.on('error', () => {});
          try {
            await inSandbox(hold);
            const sandboxNetwork = new SandboxNetwork(
              'filtered',
              this.filteredTools,
              info,
              undefined,
              this.cgroups?.helperCgroups(cgroupDirs.length > 0 ? cgroupId : undefined) ?? [],
            );
            child.once('close', () => sandboxNetwork.close());
            await sandboxNetwork.allow(allow);
          } catch (error) {
            throw new Error(`the build's network could not be set up: ${(error as Error).message}`);
          }
          hold.end('go\n');
        },
      });
    } finally {
      await rm(hostsFile, { force: true });
      stuck = await views?.close();
      if (cgroups !== undefined && cgroupDirs.length > 0) {
        outOfMemory = cgroups.oomKills(cgroupId) > 0;
        await cgroups.remove(cgroupId).catch(() => undefined);
      }
    }
    if (outOfMemory) outcome = { ...outcome, ok: false, outOfMemory };
    // Its scratch dir is read (and its layer taken) only once no overlay is left over it.
    if (stuck !== undefined)
      return {
        ok: false,
        exitCode: outcome.exitCode,
        tail: [outcome.tail, `the build's scratch dir could not be unmounted: ${stuck}`]
          .filter((line) => line !== '')
          .join('\n'),
      };
    return outcome;
  }

  /**
   * The build's scratch and cache dirs as overlays that write straight into them (an empty lower
   * directory): the build's mountinfo then names neither. The scratch dir's overlay is mounted on the
   * scratch dir itself, so the host (which measures its disk use while the build runs) only ever reads
   * it through the overlay, as the build writes it: an overlay's upper dir changed or read behind its
   * back is undefined behaviour. The cache's is mounted in the state tmpfs. `close` unmounts them for
   * good before the upper dirs are touched, and says why if it could not. Undefined where they cannot
   * be mounted (not root, or the dirs on different filesystems): plain binds then.
   */
  private async buildViews(
    workDir: string,
    cacheDir: string,
  ): Promise<{ work: string; cache: string; close(): Promise<string | undefined> } | undefined> {
    if (!this.ownMount) return undefined;
    const at = join(this.options.stateDir, 'builds', randomBytes(6).toString('hex'));
    // Overlay work dirs must be on the upper dir's filesystem: beside the scratch dir, in the data dir.
    const scratch = `${workDir}.overlay`;
    const views = { work: workDir, cache: join(at, 'cache') };
    const mounted: string[] = [];
    const close = async (): Promise<string | undefined> => {
      let stuck: string | undefined;
      for (const target of mounted.reverse())
        stuck =
          (await unmount(target))?.replaceAll(target, target === workDir ? '/build' : '/cache') ?? stuck;
      // A view still mounted (detached lazily) may still be in use: its work dir stays, and `rm -r` of a
      // mount point would go through the mount into what the build wrote.
      if (stuck !== undefined) return stuck;
      await rm(at, { recursive: true, force: true });
      await rm(scratch, { recursive: true, force: true });
      return undefined;
    };
    try {
      for (const dir of [views.cache, join(scratch, 'empty'), join(scratch, 'w1'), join(scratch, 'w2')])
        await mkdir(dir, { recursive: true, mode: 0o755 });
      const empty = [join(scratch, 'empty')];
      await mountOverlay(views.work, { lower: empty, upper: workDir, work: join(scratch, 'w1') });
      mounted.push(views.work);
      await mountOverlay(views.cache, { lower: empty, upper: cacheDir, work: join(scratch, 'w2') });
      mounted.push(views.cache);
      return { ...views, close };
    } catch {
      await close();
      return undefined;
    }
  }

  /** `/etc/resolv.conf` naming slirp4netns's DNS forwarder, written once in the state dir. */
  private slirpResolvConf(): string {
    const file = join(this.options.stateDir, 'etc', 'resolv.conf.slirp');
    if (!existsSync(file)) writeFileSync(file, `nameserver ${SLIRP_DNS}\n`);
    return file;
  }

  /** Sharing the host's network also needs its resolver and CA files (an allow-list has no resolver). */
  private networkFiles(resolver: boolean): string[] {
    return NETWORK_ETC.filter(
      (path) => existsSync(path) && path !== '/etc/hosts' && (resolver || path !== '/etc/resolv.conf'),
    ).flatMap((path) => ['--ro-bind', path, path]);
  }

  /** Removes this platform's cgroups; call once every guest has exited (their processes are killed). */
  async closeWalls(): Promise<void> {
    await this.cgroups?.close();
  }

  /** Unmounts the state dir's tmpfs; sandboxes still running keep their own view of it. */
  close(): void {
    for (const zygote of this.zygotes.values()) zygote.close();
    if (this.ownMount) {
      try {
        execFileSync('umount', ['-l', this.options.stateDir], { stdio: 'ignore' });
      } catch {
        // Already gone: nothing to do.
      }
    }
  }

  /**
   * The guest bootstrap as the sandbox binds it: a copy in the state dir, so the checkout's path stays unseen,
   * prepared once (`LaunchSpec.prepareGuest`). Without the state tmpfs (not root) the checkout's own folder,
   * unprepared: the platform does not write into its installation.
   */
  private guestCopy(launch: LaunchSpec): string {
    const guestDir = launch.guestDir;
    if (!this.ownMount) return guestDir;
    let copy = this.guestCopies.get(guestDir);
    if (copy === undefined) {
      copy = join(this.options.stateDir, 'guest', String(this.guestCopies.size));
      cpSync(guestDir, copy, { recursive: true, dereference: true });
      prepareGuest(launch, copy);
      this.guestCopies.set(guestDir, copy);
    }
    return copy;
  }

  private seccompArgs(): string[] {
    return this.seccompFile === undefined ? [] : ['--add-seccomp-fd', String(SECCOMP_FD)];
  }

  /** A descriptor of its own for each sandbox: bubblewrap reads the filter from its current offset. */
  private openSeccomp(): number | 'ignore' {
    return this.seccompFile === undefined ? 'ignore' : openSync(this.seccompFile, 'r');
  }

  private identityArgs(): string[] {
    if (this.privileged && this.setpriv !== undefined) {
      return [
        '--',
        this.setpriv,
        `--reuid=${this.uid}`,
        `--regid=${this.gid}`,
        '--clear-groups',
        '--no-new-privs',
        '--inh-caps=-all',
        '--bounding-set=-all',
      ];
    }
    return ['--unshare-user', '--uid', String(this.uid), '--gid', String(this.gid), '--disable-userns', '--'];
  }

  private rootFilesystemArgs(): string[] {
    const etc = join(this.options.stateDir, 'etc');
    mkdirSync(etc, { recursive: true });
    writeFileSync(
      join(etc, 'passwd'),
      `root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:${this.uid}:${this.gid}:sandbox:/tmp:/usr/sbin/nologin\n`,
    );
    writeFileSync(join(etc, 'group'), `root:x:0:\nsandbox:x:${this.gid}:\n`);
    writeFileSync(join(etc, 'hosts'), '127.0.0.1 localhost\n::1 localhost\n');
    const args = [
      '--die-with-parent',
      '--new-session',
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-cgroup-try',
    ];
    args.push('--hostname', 'hearth', '--ro-bind', '/usr', '/usr');
    // Merged-/usr systems have /bin, /lib... as symlinks into /usr; others need their own binds.
    for (const top of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
      const stat = lstatSync(top, { throwIfNoEntry: false });
      if (stat === undefined) continue;
      if (stat.isSymbolicLink()) args.push('--symlink', `usr${top}`, top);
      else args.push('--ro-bind', top, top);
    }
    args.push('--perms', '0755', '--dir', '/etc');
    args.push('--ro-bind', join(etc, 'passwd'), '/etc/passwd', '--ro-bind', join(etc, 'group'), '/etc/group');
    args.push('--ro-bind', join(etc, 'hosts'), '/etc/hosts');
    args.push('--proc', '/proc', '--dev', '/dev');
    args.push(
      '--perms',
      '1777',
      '--size',
      String(this.options.tmpBytes ?? DEFAULT_TMP_BYTES),
      '--tmpfs',
      '/tmp',
    );
    return args;
  }

  private probe(): string | undefined {
    if (process.platform !== 'linux')
      return 'sandboxed isolation needs Linux (bubblewrap); use isolation: process for development';
    if (this.bwrap === '') {
      return 'bubblewrap (bwrap) is not installed: install it with `apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap`';
    }
    if (this.privileged && this.setpriv === undefined)
      return 'setpriv (util-linux) is not installed: install util-linux';
    if (this.seccompFile === undefined)
      return `no seccomp filter for ${process.arch}: the sandbox cannot keep guests from creating user namespaces here`;
    const seccomp = this.openSeccomp();
    try {
      execFileSync(
        this.bwrap,
        [...this.baseArgs, '--unshare-net', ...this.seccompArgs(), ...this.identityArgs(), '/bin/true'],
        { stdio: ['ignore', 'pipe', 'pipe', 'ignore', 'ignore', seccomp], timeout: 10_000 },
      );
      return undefined;
    } catch (error) {
      const stderr =
        String((error as { stderr?: Buffer }).stderr ?? '')
          .trim()
          .split('\n')[0] ?? '';
      return `bubblewrap cannot create a sandbox here (${stderr || 'unknown error'}); on Debian/Ubuntu enable unprivileged user namespaces or run as root`;
    } finally {
      if (typeof seccomp === 'number') closeSync(seccomp);
    }
  }
}

/**
 * Runs the runtime's preparation of a guest copy. A failure only costs speed (the guest then compiles its code
 * as it starts, as it always did), so it is not an error.
 */
function prepareGuest(launch: LaunchSpec, dir: string): void {
  if (launch.prepareGuest === undefined) return;
  try {
    execFileSync(
      launch.prepareGuest.command,
      launch.prepareGuest.args.map((arg) => arg.replaceAll(GUEST_TOKEN, dir)),
      { stdio: 'ignore', timeout: 30_000 },
    );
  } catch {
    // Slower starts, same behaviour.
  }
}

/** Mounts a fresh tmpfs at `dir` (over one a killed run left behind); false where that fails. */
function mountPrivateTmpfs(dir: string): boolean {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
  } catch {
    // Nothing was mounted there.
  }
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0755,nosuid,nodev,size=64m', 'tmpfs', dir], {
      stdio: 'ignore',
    });
    return true;
  } catch {
    return false;
  }
}

/** A process inside the sandbox's namespaces: bubblewrap's child (bubblewrap itself stays outside). */
function sandboxChild(pid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/);
    const first = Number(children[0]);
    return Number.isInteger(first) && first > 0 ? first : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves once the sandboxed command has written its first byte on `hold`. */
function inSandbox(hold: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    hold.once('data', () => resolve());
    hold.once('end', () => reject(new Error('the build ended before its network was set up')));
  });
}

const run = promisify(execFile);

/** How often an unmount refused as busy (a measurement of the scratch dir in flight) is tried again. */
const UNMOUNT_ATTEMPTS = 20;

/**
 * Unmounts `target` for good (not lazily: a lazily detached overlay lives on while anything holds it),
 * retrying while it is busy; undefined once it is gone, else why not (it is then detached lazily).
 */
async function unmount(target: string): Promise<string | undefined> {
  let why = '';
  for (let attempt = 1; attempt <= UNMOUNT_ATTEMPTS; attempt++) {
    try {
      await run('umount', [target]);
      return undefined;
    } catch (error) {
      why = String((error as { stderr?: unknown }).stderr ?? '').trim() || (error as Error).message;
      if (/not mounted|no mount point/i.test(why)) return undefined;
    }
    await new Promise((resolve) => setTimeout(resolve, 25 * attempt));
  }
  await run('umount', ['-l', target]).catch(() => undefined);
  return why;
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await promisify(execFile)('chown', ['-R', `${uid}:${gid}`, dir]);
}

/**
 * Binds host paths at the same place inside. bubblewrap creates missing parents mode 0700, which the
 * unprivileged guest could not traverse, so each parent is created 0755 first.
 */
function readOnlyBinds(paths: readonly string[]): string[] {
  const args: string[] = [];
  const made = new Set<string>();
  for (const path of paths) {
    const parts = path.split('/').filter((part) => part !== '');
    for (let depth = 1; depth < parts.length; depth++) {
      const parent = `/${parts.slice(0, depth).join('/')}`;
      if (made.has(parent) || parent === '/usr' || parent.startsWith('/usr/')) continue;
      made.add(parent);
      args.push('--perms', '0755', '--dir', parent);
    }
    args.push('--ro-bind', path, path);
  }
  return args;
}
