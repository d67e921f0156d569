/**
 * @module The `container` isolation class and the runtimes that bring their own process (issue 17):
 *
 * - `image`: a container image run by crun (runc as the fallback) behind the sandbox's walls;
 * - `provided`: an executable `bootstrap` in the function folder (Lambda's provided.al2023), which runs in
 *   the ordinary `sandbox` class.
 *
 * Both start the Node guest with a built-in module standing in for the handler, so the scheduler and the
 * gateway see an ordinary guest speaking Hearth's protocol on fd 3: the container supervisor
 * (node/guest/container.mts) or the Lambda Runtime API (node/guest/lambda-runtime-api.mts).
 *
 * A container guest (the supervisor) runs on the host as root, the way the sandbox's launcher does, in:
 * the instance's cgroups (joined before anything starts, so the container's processes count against
 * `limits.memory`, `cpu` and `pids`); a pid namespace whose end kills the container with it; a private
 * mount namespace where the cgroup2 mount beside the v1 controllers is unmounted (crun refuses "hybrid"
 * cgroups otherwise) and a tmpfs holds crun's state and the bundle, so nothing of it is left on the host;
 * and a network namespace of its own, which the container shares (the proxy and the Runtime API reach it on
 * 127.0.0.1), set up as the sandbox's (sandbox/network.ts): empty but for its loopback for egress `none`;
 * linked to the host by slirp4netns for `allow` (`outbound`: never the host's loopback) and for an
 * allow-list (`filtered`: nftables rules in the namespace let only the list through). Only an operator's
 * `egressAllow: host` shares the host's network.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, realpathSync, rmdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { HearthError } from '../../domain/errors.js';
import type { RuntimeName } from '../../domain/function.js';
import type { ResolvedImage } from '../../domain/image.js';
import {
  type BuildCommand,
  type BuildOutcome,
  type BuildStep,
  type ContainerRun,
  type DependencyManifest,
  GUEST_TOKEN,
  type Isolation,
  type LaunchSpec,
  type NetworkMode,
  type NetworkPolicy,
  type ResourceLimits,
  type Runtime,
  type WallStatus,
} from '../index.js';
import { GuestProcess } from '../ipc/guest-process.js';
import { findExecutable, guestDir, SANDBOX_PATH } from '../paths.js';
import { atFunctionPriority } from '../priority.js';
import { Cgroups } from '../sandbox/cgroups.js';
import { waitForGo } from '../sandbox/hold.js';
import { type FilteredTools, probeFilteredTools, resolvePolicy, SandboxNetwork } from '../sandbox/network.js';
import type { Slot } from '../slots.js';
import { ociConfig, preparedConfig } from './oci.js';

export { resolveLocalImage } from './local-image.js';
export { containerArgv, containerEnv, ociConfig, seccompProfile } from './oci.js';

const DEFAULT_PIDS = 256;
/** How long a container has to open its port or ask for its first invocation. */
const READY_TIMEOUT_MS = 10_000;
/** Joins the cgroups named before `--`, then execs the rest (as the sandbox's launcher). */
const JOIN_CGROUPS = [
  '-c',
  'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; done; shift; exec "$@"',
  'hearth-cgroup',
];
/** The descriptor a linked guest says it started on, and reads its go from (as the sandbox's hold). */
const HOLD_FD = 4;
/**
 * Run inside the new namespaces before the guest: the cgroup2 mount crun would see beside the v1
 * controllers goes (only from this mount namespace), a private tmpfs takes crun's state and the bundle,
 * and an empty network namespace gets its loopback.
 */
const SETUP = [
  '-c',
  'umount /sys/fs/cgroup/unified 2>/dev/null; mount -t tmpfs -o size=8m,mode=0755 hearth-container "$0" || exit 125; if [ "$1" != host ]; then "$2" link set lo up || exit 125; fi; ' +
    // A linked namespace: say it exists (slirp4netns then joins it), wait until its link and rules are in.
    `if [ "$1" = linked ]; then ${waitForGo(HOLD_FD)} && exec ${HOLD_FD}<&- || exit 125; fi; shift 2; exec "$@"`,
];

export interface ContainerOptions {
  /** A directory of the platform's own (the cgroups are named after it). */
  readonly stateDir: string;
  /** Where each guest mounts its private tmpfs, in its own mount namespace (an empty folder on the host). */
  readonly runDir?: string;
  /** The OCI runtime the operator chose (config `containerRuntime`); by default crun, else runc. */
  readonly ociRuntime?: 'crun' | 'runc';
}

/** Stays an empty folder on the host: each guest mounts its own tmpfs here, seen only by itself. */
export const CONTAINER_RUN_DIR = '/run/hearth-containers';

interface GuestState {
  readonly cgroupId: string | undefined;
  readonly network: NetworkMode;
  readonly id: string;
  /** The config of the container this guest made ahead (JSON), if it made one. */
  readonly prepared: string | undefined;
  /** Its slirp4netns link and rules, for `outbound` and `filtered`. */
  readonly link: SandboxNetwork | undefined;
  /** The /etc/hosts its function's policy gives it (hostAliases, allow-listed names), once configured. */
  hosts?: string;
}

/** The size a prepared container's /tmp is made with; a function with another limits.tmp gets it resized. */
const PREPARED_TMP_BYTES = 64 * 1024 ** 2;

export class ContainerIsolation implements Isolation {
  readonly name = 'container' as const;
  readonly unavailable: string | undefined;
  readonly walls: readonly WallStatus[];
  readonly filteredUnavailable: string | undefined;
  private readonly filteredTools: FilteredTools | undefined;
  private readonly runtime: string | undefined;
  /** runc creates the instance's cgroup path in every controller (see removeRuncCgroups). */
  private readonly runc: boolean;
  private readonly unshare: string | undefined;
  private readonly ip: string | undefined;
  private readonly cgroups: Cgroups | undefined;
  private readonly runDir: string;
  private readonly states = new WeakMap<GuestProcess, GuestState>();
  /** The static busybox a prepared container waits in; without it nothing is made ahead. */
  private readonly helper: string | undefined;

  constructor(options: ContainerOptions) {
    this.runtime =
      options.ociRuntime === undefined
        ? (findExecutable('crun') ?? findSbin('runc'))
        : options.ociRuntime === 'crun'
          ? findExecutable('crun')
          : findSbin('runc');
    this.runc = this.runtime !== undefined && basename(this.runtime) === 'runc';
    this.unshare = findExecutable('unshare');
    this.ip = findSbin('ip');
    this.helper = ['/bin/busybox', '/usr/bin/busybox'].find((path) => existsSync(path));
    const root = process.getuid?.() === 0;
    // Every directory above it must be searchable by the container's unprivileged root: the data dir
    // may not be (0700), so each guest mounts its private tmpfs on this empty host folder instead.
    this.runDir = options.runDir ?? CONTAINER_RUN_DIR;
    this.unavailable = !root
      ? 'container functions need the platform to run as root (crun sets up their namespaces)'
      : this.runtime === undefined
        ? options.ociRuntime === undefined
          ? 'no OCI runtime: install crun (apt-get install crun) or runc'
          : `containerRuntime: ${options.ociRuntime} is not installed (apt-get install ${options.ociRuntime})`
        : this.unshare === undefined
          ? 'unshare (util-linux) is missing'
          : this.ip === undefined
            ? 'ip (iproute2) is missing'
            : undefined;
    if (this.unavailable === undefined) mkdirSync(this.runDir, { recursive: true, mode: 0o755 });
    this.cgroups = root ? new Cgroups(options.stateDir) : undefined;
    const tools = probeFilteredTools(root);
    this.filteredTools = typeof tools === 'string' ? undefined : tools;
    this.filteredUnavailable = typeof tools === 'string' ? tools : this.unavailable;
    this.walls = [
      ...(this.cgroups?.status.map((status) => ({ ...status })) ?? []),
      { wall: 'tmp', inForce: true, detail: 'a size-capped tmpfs in the container' },
      { wall: 'seccomp', inForce: true, detail: 'the sandbox filter, as an OCI seccomp profile' },
    ];
  }

  /** Removes what a killed previous run left (its containers' cgroups); returns how many. */
  async init(): Promise<number> {
    if (this.runc && this.cgroups !== undefined) removeRuncCgroups(this.cgroups, undefined);
    return (await this.cgroups?.removeAll()) ?? 0;
  }

  /**
   * Removes this platform's container cgroups, its own directories included; call once every container has
   * exited. Without it each clean stop left an empty `hearth/<platform>` directory under every controller.
   */
  async closeWalls(): Promise<void> {
    await this.cgroups?.close();
  }

  guestPathOf(slot: Slot): string {
    return slot.hostDir;
  }

  start(launch: LaunchSpec, slot: Slot, network: NetworkMode): GuestProcess {
    const linked = network === 'filtered' || network === 'outbound';
    if (linked && this.filteredTools === undefined)
      throw new Error(this.filteredUnavailable ?? 'slirp4netns and nftables are missing');
    const id = `${slot.id}-${randomBytes(3).toString('hex')}`;
    const cgroupDirs = this.cgroups?.create(id, DEFAULT_PIDS) ?? [];
    const guestArgs = launch.args.map((arg) => arg.replaceAll(GUEST_TOKEN, launch.guestDir));
    const niced = atFunctionPriority(launch.command, guestArgs);
    const inside = [
      this.unshare as string,
      '--mount',
      '--propagation',
      'private',
      '--pid',
      '--fork',
      '--kill-child',
      // crun finds its children under /proc: it must be this pid namespace's.
      '--mount-proc',
      ...(network === 'host' ? [] : ['--net']),
      '/bin/sh',
      ...SETUP,
      this.runDir,
      network === 'host' ? 'host' : linked ? 'linked' : 'net',
      this.ip as string,
      niced.command,
      ...niced.args,
    ];
    // Stem cells are pooled per image (scheduler/cold-start.ts): a cell makes its image's container ahead, so
    // a cold start only starts the entrypoint.
    const prepared =
      this.helper === undefined || launch.prepareImage === undefined
        ? undefined
        : JSON.stringify(preparedConfig(launch.prepareImage, PREPARED_TMP_BYTES));
    if (prepared !== undefined)
      inside.push(
        JSON.stringify({
          config: JSON.parse(prepared) as unknown,
          runtime: this.runtime,
          stateDir: this.runDir,
          id,
          helper: this.helper,
          network,
        }),
      );
    const command =
      cgroupDirs.length === 0
        ? { command: inside[0] as string, args: inside.slice(1) }
        : { command: '/bin/sh', args: [...JOIN_CGROUPS, ...cgroupDirs, '--', ...inside] };
    const child: ChildProcess = spawn(command.command, command.args, {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', linked ? 'pipe' : 'ignore'],
      // The guest's own temporary files (the secret files it writes at Bind) go to its private tmpfs, never
      // to the host's /tmp.
      env: { ...launch.env, TMPDIR: this.runDir },
      cwd: slot.hostDir,
    });
    const guest = new GuestProcess(child);
    let link: SandboxNetwork | undefined;
    if (linked && child.pid !== undefined) {
      const hold = (child.stdio as readonly unknown[])[HOLD_FD] as Duplex | null;
      // The guest may die before it writes or reads there; its exit tells what happened.
      hold?.on('error', () => {});
      // `unshare` made the namespace in itself before forking the guest (the shell execs it: same pid).
      // Its slirp4netns and nft work for this container alone: on its CPU quota (sandbox/cgroups.ts).
      const helpers = cgroupDirs.length > 0 ? (this.cgroups?.helperCgroups(id) ?? []) : [];
      link = new SandboxNetwork(network, this.filteredTools, child.pid, hold ?? undefined, helpers);
      guest.once('exit', () => link?.close());
      // A stem cell whose network failed is useless: end it, and the pool starts another.
      link.ready.catch(() => guest.kill('SIGKILL'));
    }
    this.states.set(guest, {
      cgroupId: cgroupDirs.length === 0 ? undefined : id,
      network,
      id,
      prepared,
      link,
    });
    const cgroups = this.cgroups;
    if (cgroups !== undefined && cgroupDirs.length > 0) {
      guest.outOfMemoryProbe = () => cgroups.oomKills(id) > 0;
      // runc's folders go once the instance's own are gone: its processes have left every hierarchy then.
      guest.once(
        'exit',
        () =>
          void cgroups
            .remove(id)
            .then(() => (this.runc ? removeRuncCgroups(cgroups, id) : undefined))
            .catch(() => undefined),
      );
    }
    return guest;
  }

  /** Keeps the function's /etc/hosts for its bind and, for an allow-list, lets its destinations through. */
  async configureNetwork(guest: GuestProcess, _slot: Slot, policy: NetworkPolicy): Promise<void> {
    const state = this.states.get(guest);
    if (state === undefined || state.network === 'none') return;
    const { hosts, allow } = await resolvePolicy(policy, state.network);
    state.hosts = hosts;
    if (state.network !== 'filtered' || state.link === undefined) return;
    try {
      await state.link.allow(allow);
    } catch (error) {
      throw new HearthError(
        'HEARTH_E_SANDBOX_UNAVAILABLE',
        `the egress allow-list could not be applied: ${(error as Error).message}`,
        { retryAfter: 5 },
      );
    }
  }

  async limit(guest: GuestProcess, limits: ResourceLimits): Promise<void> {
    const id = this.states.get(guest)?.cgroupId;
    if (id !== undefined) this.cgroups?.apply(id, limits);
  }

  /** The Bind env entry that tells the guest's supervisor which container to run, and how. */
  bindContainer(guest: GuestProcess, run: ContainerRun): Readonly<Record<string, string>> {
    const state = this.states.get(guest);
    if (state === undefined || this.runtime === undefined) throw new Error('not a container guest');
    const prepared = JSON.stringify(preparedConfig(run.image, PREPARED_TMP_BYTES));
    return {
      HEARTH_CONTAINER: JSON.stringify({
        config: ociConfig(run),
        protocol: run.protocol,
        network: state.network,
        ...(state.hosts === undefined ? {} : { hosts: state.hosts }),
        stateDir: this.runDir,
        runtime: this.runtime,
        id: state.id,
        readyTimeoutMs: READY_TIMEOUT_MS,
        usePrepared: state.prepared === prepared,
        ...(run.tmpBytes === PREPARED_TMP_BYTES ? {} : { resizeTmpBytes: run.tmpBytes }),
      }),
    };
  }

  async run(build: BuildCommand): Promise<BuildOutcome> {
    build.onOutput('container functions have no dependency build');
    return { ok: false, exitCode: null, tail: 'container functions have no dependency build' };
  }
}

/**
 * runc, told to join an instance's cgroup (node/guest/container.mts), makes that path in the controllers the
 * platform does not use too (devices, freezer, blkio…), and leaves it when it is killed with the instance:
 * those folders go with the instance (`id`), or all of this platform's at start (`id` undefined). They hold
 * no process by then (the instance's pid namespace is gone).
 */
function removeRuncCgroups(cgroups: Cgroups, id: string | undefined): void {
  const platform = cgroups.roots[0] === undefined ? undefined : basename(cgroups.roots[0]);
  if (platform === undefined) return;
  let controllers: string[];
  try {
    controllers = readdirSync(CGROUP_MOUNTS);
  } catch {
    return;
  }
  for (const controller of controllers) {
    const root = join(CGROUP_MOUNTS, controller, 'hearth', platform);
    if (cgroups.roots.includes(root)) continue;
    let names: string[];
    try {
      names = id === undefined ? readdirSync(root).filter((name) => !name.includes('.')) : [id];
    } catch {
      continue;
    }
    for (const name of names) {
      try {
        rmdirSync(join(root, name));
      } catch {
        // Gone already, or not a cgroup of ours.
      }
    }
  }
}

const CGROUP_MOUNTS = '/sys/fs/cgroup';

function findSbin(name: string): string | undefined {
  return (
    findExecutable(name) ??
    ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].map((dir) => join(dir, name)).find((path) => existsSync(path))
  );
}

/**
 * A runtime whose guest is the Node guest with a built-in module as its handler. It builds no dependency
 * layer: an image carries its own, a `bootstrap` is self-contained.
 */
class BuiltinRuntime implements Runtime {
  readonly unavailable: string | undefined = undefined;
  readonly abi = 'builtin-1';
  readonly layerOutput = 'deps';
  private readonly node = realpathSync(process.execPath);

  constructor(
    readonly name: RuntimeName,
    private readonly module: string,
  ) {}

  launchSpec(options?: { readonly image?: ResolvedImage }): LaunchSpec {
    return {
      ...(options?.image === undefined ? {} : { prepareImage: options.image }),
      command: this.node,
      args: [`${GUEST_TOKEN}/bootstrap.mjs`, `${GUEST_TOKEN}/${this.module}`],
      env: { PATH: SANDBOX_PATH, HOME: '/tmp', LANG: 'C.UTF-8', NODE_ENV: 'production', TMPDIR: '/tmp' },
      guestDir: guestDir('node'),
      readOnlyPaths: this.node.startsWith('/usr/') ? [] : [join(this.node, '..', '..')],
    };
  }

  dependencyManifest(): DependencyManifest | undefined {
    return undefined;
  }

  buildCommand(): BuildStep {
    throw new Error(`${this.name} functions have no dependency build`);
  }
}

/** `runtime: image`: the container supervisor, in the `container` isolation. */
export function createImageRuntime(): Runtime {
  return new BuiltinRuntime('image', 'container.mjs');
}

/** `runtime: provided`: the function folder's `bootstrap` against the Lambda Runtime API, in any isolation. */
export function createProvidedRuntime(): Runtime {
  return new BuiltinRuntime('provided', 'lambda-runtime-api.mjs');
}
