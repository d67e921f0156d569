/**
 * @module The runtime layer's contract: language runtimes (node, python, wasm) say how to start a generic guest
 * and how to build a dependency layer; isolation classes (sandbox, process) say how to confine a process.
 * A third isolation class (a microVM) implements `Isolation` and plugs in without touching the scheduler.
 */

import type { ContainerProtocol, FunctionSpec, IsolationName, RuntimeName } from '../domain/function.js';
import type { ResolvedImage } from '../domain/image.js';
import type { GuestProcess } from './ipc/guest-process.js';
import type { Slot } from './slots.js';

export type { GuestCall, GuestLog, GuestProcess, GuestResult } from './ipc/guest-process.js';
export type { BindMessage, BoundMessage, InvokeMeta } from './ipc/protocol.js';
export { FrameType } from './ipc/protocol.js';
export { SlotTable } from './ipc/slot-table.js';
export type { Slot, SlotManager } from './slots.js';
export { createSlotManager } from './slots.js';

/**
 * The largest `limits.maxBody` a function of `isolation: isolate` may declare: one of its responses travels
 * in one Relay frame from the shared host (runtime/isolate).
 */
export const ISOLATE_MAX_BODY_BYTES = 16 * 1024 ** 2;

/** Stands in a LaunchSpec's args for the directory where the isolation shows the guest bootstrap. */
export const GUEST_TOKEN = '{guest}';

/** How to start one generic guest of a runtime, in paths as seen inside the isolation. */
export interface LaunchSpec {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Host directory holding the guest bootstrap; the isolation decides where the guest sees it. */
  readonly guestDir: string;
  /** Host paths the runtime needs at the same path inside (an interpreter outside /usr, say). */
  readonly readOnlyPaths: readonly string[];
  /**
   * A command (host paths, `GUEST_TOKEN` for the directory) run once on a copy of the guest directory an
   * isolation makes, before any guest starts from it: Python compiles its guest's bytecode there.
   */
  readonly prepareGuest?: { readonly command: string; readonly args: readonly string[] } | undefined;
  /** A container image whose container the guest makes ahead, before a function is bound (issue 17). */
  readonly prepareImage?: ResolvedImage | undefined;
  /**
   * A fork server in the guest directory (its file name) that the sandbox may start once and fork guests
   * from, instead of starting `command` in each sandbox (sandbox/zygote.ts).
   */
  readonly forkServer?: string | undefined;
}

/**
 * `none`: an empty network namespace (egress `none`). `outbound`: a namespace of its own with a user-mode
 * link to the host that reaches anything but the host's loopback (egress `allow`, by default). `host`:
 * the host's network (egress `allow` where the operator chose `egressAllow: host`). `filtered`: a
 * namespace of its own with a user-mode link to the host, where only an allow-list passes.
 */
export type NetworkMode = 'none' | 'outbound' | 'host' | 'filtered';

/** What `egress: allow` gives a sandboxed function on this platform (config `egressAllow`). */
export type AllowNetwork = 'outbound' | 'host';

/** What a bound function may reach: applied to a started guest before its handler loads. */
export interface NetworkPolicy {
  readonly egress: 'none' | 'allow' | readonly string[];
  /** name → IPv4 address or `host-gateway` (this machine), written to the guest's /etc/hosts. */
  readonly hostAliases: Readonly<Record<string, string>>;
}

/**
 * A one-shot command run confined like a function but with network access: a dependency install. The
 * sandbox gives it a network namespace of its own that reaches only `registries`, never the host.
 */
export interface BuildCommand {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /**
   * URLs (scheme, host, port) of the package registries and proxies the command needs, and nothing else;
   * none: no network at all.
   */
  readonly registries?: readonly string[];
  /** Host directory, writable, the command's working directory. */
  readonly workDir: string;
  /** Host directory for the package manager's cache, writable, shared by one namespace's builds only. */
  readonly cacheDir: string;
  readonly readOnlyPaths: readonly string[];
  readonly timeoutMs: number;
  readonly onOutput: (line: string) => void;
  /** Ends the command (SIGKILL) when aborted; its reason, a message, ends the outcome's tail. */
  readonly signal?: AbortSignal;
  /** Memory (hard, no swap) and CPU caps for the whole build, held by a cgroup where the isolation has one. */
  readonly limits?: BuildLimits;
}

/** `build.memory` and `build.cpu` in the platform config. */
export interface BuildLimits {
  readonly memoryBytes: number;
  /** CPU cores, as a CFS quota. */
  readonly cpu: number;
}

/**
 * The build's scratch space inside its work dir, given to the package manager as TMPDIR: on disk, under
 * the build's own disk cap (`build.maxDisk`), not in the sandbox's small /tmp where pip stages wheels.
 */
export const BUILD_TMP = '.tmp';

export type BuildStep = Pick<BuildCommand, 'command' | 'args' | 'env' | 'readOnlyPaths' | 'registries'>;

export interface BuildOptions {
  /** Run packages' install scripts (npm `preinstall`/`install`/`postinstall`); pip's setup.py always runs. */
  readonly scripts: boolean;
}

export interface BuildOutcome {
  readonly ok: boolean;
  readonly exitCode: number | null;
  readonly tail: string;
  /** The kernel killed a process of the build at its memory cap (`BuildCommand.limits`). */
  readonly outOfMemory?: boolean;
}

/** What a bound function may use: the walls an isolation puts around its guest (see `Isolation.limit`). */
export interface ResourceLimits {
  readonly memoryBytes: number;
  /** CPU cores, as a CFS quota. */
  readonly cpu: number;
  /** Processes and threads at once. */
  readonly pids: number;
  /** Size of the private /tmp. */
  readonly tmpBytes: number;
}

/** What a container function's bind needs beyond an ordinary one: its image and how to run it. */
export interface ContainerRun {
  readonly image: ResolvedImage;
  /** spec.command and spec.args, over the image's Entrypoint and Cmd as Kubernetes does. */
  readonly command?: readonly string[] | undefined;
  readonly args?: readonly string[] | undefined;
  readonly protocol: ContainerProtocol;
  /** The function's env and the platform's variables, over the image's Env. */
  readonly env: Readonly<Record<string, string>>;
  readonly tmpBytes: number;
}

/** One resource wall and whether this node holds it (`hearth up` logs them; describe shows them). */
export interface WallStatus {
  readonly wall: string;
  readonly inForce: boolean;
  /** How it is held, or why it cannot be. */
  readonly detail: string;
}

export interface StartOptions {
  /**
   * A stem cell booted ahead for the pool (a refill), not for a cold start waiting on it: it boots at the
   * least CPU weight where the isolation can set one, so refills never slow the cold starts and invocations
   * running meanwhile (issue 11); `hasten` or `limit` lift it.
   */
  readonly background?: boolean;
  /**
   * The memory wall the cell will most likely be bound under (its pool's): an isolation that sets it per
   * sandbox may set it now, off the bind's path, and again at `limit` only if the function's differs.
   */
  readonly memoryBytes?: number;
}

export interface Isolation {
  readonly name: IsolationName;
  /** Why this isolation cannot be used on this node (with how to fix it), or undefined when it can. */
  readonly unavailable: string | undefined;
  /** Where a guest sees its slot (`/code` in the sandbox, the host path for `process`). */
  guestPathOf(slot: Slot): string;
  /**
   * Optional: the platform reads the function's code for its guests, which never see a slot (`isolate`):
   * the code is not attached to the slot, and the Bind's codeDir is the code cache's own folder (host path).
   */
  readonly readsCodeOnPlatform?: boolean;
  /**
   * Starts a generic guest confined to `slot`; fd 3 carries the protocol. `network: 'none'` gives it an
   * empty network namespace (egress `none`); `'host'` shares the host's (egress `allow`).
   */
  start(launch: LaunchSpec, slot: Slot, network: NetworkMode, options?: StartOptions): GuestProcess;
  /**
   * Optional: a guest started in the background (`StartOptions.background`) competes for the CPU at full
   * weight from now on: a cold start waits for it. `limit` does the same at bind.
   */
  hasten?(guest: GuestProcess): void;
  /**
   * Optional: gives a guest started with network `host` or `filtered` its function's policy (host
   * aliases; for `filtered`, the egress allow-list). Isolations without it cannot take such functions.
   */
  configureNetwork?(guest: GuestProcess, slot: Slot, policy: NetworkPolicy): Promise<void>;
  /**
   * Optional: puts a function's limits on a started guest once it is bound to that function; throws when
   * a wall in force cannot be set. Isolations without it hold no resource walls (the `process` class).
   */
  limit?(guest: GuestProcess, limits: ResourceLimits): Promise<void>;
  /**
   * Optional: how long a started guest may take to say it is ready (30 s when unset). A microVM without
   * KVM boots its kernel on an emulated CPU, which takes longer.
   */
  readonly startupTimeoutMs?: number;
  /**
   * Optional: the Bind env entries that give a started guest its container to run (issue 17); only the
   * `container` class has it, and only it takes `runtime: image` functions.
   */
  bindContainer?(guest: GuestProcess, run: ContainerRun): Readonly<Record<string, string>>;
  /** Optional: the resource walls and whether each is in force on this node. */
  readonly walls?: readonly WallStatus[];
  /** Why `filtered` networking (egress allow-lists) cannot work on this node, or undefined when it can. */
  readonly filteredUnavailable?: string | undefined;
  run(build: BuildCommand): Promise<BuildOutcome>;
}

/** What a dependency layer is built from and where it appears to the guest. */
export interface DependencyManifest {
  /** Files (relative to the function folder) whose content keys the layer. */
  readonly files: readonly string[];
  /** Directory inside the slot where the layer is attached (`node_modules`, `deps`). */
  readonly mountName: string;
}

export interface Runtime {
  readonly name: RuntimeName;
  /** Why this runtime cannot run here, or undefined when it can. */
  readonly unavailable: string | undefined;
  /** A string that changes whenever layers built by an older interpreter would not load. */
  readonly abi: string;
  /** How to start a guest; `memoryBytes` is the memory wall it will be bound under (see `heapFromMemory`). */
  launchSpec(options?: { readonly memoryBytes?: number; readonly image?: ResolvedImage }): LaunchSpec;
  /**
   * The guest's heap is sized from the memory wall when it starts (V8's cannot be changed afterwards): its
   * stem cells are then pooled per memory size.
   */
  readonly heapFromMemory?: boolean;
  /** The dependency manifest in a function folder, or undefined when the function has no dependencies. */
  dependencyManifest(codeDir: string): DependencyManifest | undefined;
  /**
   * Installs the dependencies described by the manifest files copied into `workDir`, producing
   * `workDir/<layerOutput>`. Paths in args and env are host paths; an isolation maps them.
   */
  buildCommand(
    workDir: string,
    cacheDir: string,
    manifest: DependencyManifest,
    options: BuildOptions,
  ): BuildStep;
  /** The directory, relative to workDir, that holds the built layer after `buildCommand` succeeds. */
  readonly layerOutput: string;
  /** Optional: compile sources ahead of time so cold starts skip it (Python bytecode). */
  precompileCommand?(dir: string): BuildStep | undefined;
  /**
   * Optional: checks the function's code at deploy, before it is stored (a wasm module's imports, exports and
   * memory); throws a HearthError (4xx) naming the field.
   */
  checkCode?(codeDir: string, spec: FunctionSpec): Promise<void>;
}

export interface RuntimeRegistry {
  readonly runtimes: ReadonlyMap<RuntimeName, Runtime>;
  readonly isolations: ReadonlyMap<IsolationName, Isolation>;
}
