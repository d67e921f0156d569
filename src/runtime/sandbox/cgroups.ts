/**
 * @module Resource walls for sandboxes: a cgroup per sandbox for memory (hard, no swap), CPU (a CFS
 * quota) and processes (pids.max). Works on cgroup v2 and on v1 or hybrid layouts, where each controller
 * has a hierarchy of its own: each wall uses whichever mount has its controller, v1 first (on a hybrid
 * machine the v2 mount usually holds no controllers).
 *
 * Layout: `<mount>/hearth/<platform>/<cell>` per controller. `<platform>` is derived from the platform's
 * state directory, so several platforms on one machine never touch each other's cgroups, and a platform
 * started again after SIGKILL finds and removes what its previous run left.
 *
 * A sandbox is put in its cgroup before bubblewrap starts (the launcher writes its own pid to
 * `cgroup.procs`, then execs), so every process it ever forks is inside from birth. Limits are written
 * when a stem cell is bound to a function, the first moment they are known.
 *
 * Sharing the CPU (`start`): under the cpu controller the platform's own process joins
 * `<mount>/hearth/<platform>/platform-<pid>`, a sibling of its sandboxes' cgroups with ten times their
 * weight, and a sandbox that runs into its CPU quota is marked `cpu.idle` (throttle-watch.ts) until it has gone a second
 * without doing so (ten once it kept at its quota). The kernel's scheduler (EEVDF) lets an entity that is running finish its slice (a
 * millisecond or more) before a task that wakes gets the CPU; an idle entity it preempts at once. So a
 * function spinning at its limit on every core delays neither the gateway nor a neighbour's instance
 * waking to answer a request by more than a context switch, while it still gets every cycle nobody else
 * wants (up to its quota). Nice values could not do this: they only order processes of one cgroup. On
 * cgroup v1 a hog also moves (cpu only) under the top-level `hearth-idle`, so that tasks outside Hearth's
 * tree preempt it too (IDLE_TOP_GROUP).
 *
 * The platform moves itself only when it was started in the root cgroup (`/`), or when the config says so
 * (`platformCpuCgroup: true`): a platform started by a service manager (a systemd unit's cgroup) stays
 * where it was put, so the unit's `CPUQuota=` and `MemoryMax=` go on holding it; `start` says which.
 *
 * A stem cell booted to refill a pool (`create(…, background)`) boots at the least CPU weight and gets the
 * default one back when a cold start waits for it (`foreground`) or when it is bound: booting an
 * interpreter ahead of demand is background work, and a replacement booting after a kill (a memory bomb's,
 * again and again) must not delay warm instances answering their requests.
 *
 * Helper processes the platform starts for sandboxes are born in a sandbox's cgroup, never in the
 * platform's (ten times a sandbox's weight): a sandbox's slirp4netns, its nft and nsenter commands join
 * that sandbox's cpu cgroup, so a function pushing traffic through slirp pays for it from its own quota;
 * a fork server shared by many sandboxes joins `helpers`, a cgroup of one sandbox's weight
 * (`helperCgroups`, `joiningCgroups`).
 */

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { type IdleTopMover, ThrottleWatch } from './throttle-watch.js';

export type Wall = 'memory' | 'cpu' | 'pids';
const WALLS: readonly Wall[] = ['memory', 'cpu', 'pids'];

export interface CgroupLimits {
  readonly memoryBytes: number;
  readonly cpu: number;
  readonly pids: number;
}

interface Controller {
  readonly wall: Wall;
  readonly version: 1 | 2;
  /** Where the controller's hierarchy is mounted. */
  readonly mount: string;
  /** `<mount>/hearth/<platform>`: this platform's cgroups under this controller. */
  readonly root: string;
}

export interface WallStatus {
  readonly wall: Wall;
  /** How it is held (`cgroup v1 memory at …`), or why it cannot be. */
  readonly detail: string;
  readonly inForce: boolean;
}

/** PIDs of a sandbox that exits are gone once its pid namespace has been torn down; a few tries cover that. */
const REMOVE_TRIES = 20;
/**
 * The CFS period a `limits.cpu` quota is counted over. The kernel's default of 100 ms let a function
 * with threads on every core hold all of them for a whole burst (50 ms at `cpu: 1` on two cores) before
 * it was throttled, and a neighbour waking in that burst waited behind it; at 20 ms the longest such
 * burst is 10 ms. Shorter periods cost the kernel a bandwidth timer tick per period per busy cgroup only.
 */
const CPU_PERIOD_US = 20_000;
/** The kernel's least quota (1 ms): at a 20 ms period a `limits.cpu` below 0.05 rounds up to it. */
const MIN_QUOTA_US = 1000;
/**
 * A sandbox booting in the background (a stem-cell refill): the least weight (v1 shares 2, v2 weight 1), so
 * it runs on CPU time nothing else of the platform wants. Measured (issue 11): 100 cold starts at once took
 * ~800 ms each while the pool's refills booted at full weight beside their binds.
 */
const BACKGROUND_SHARES = 2;
const BACKGROUND_WEIGHT = 1;
const DEFAULT_SHARES = 1024;
const DEFAULT_WEIGHT = 100;
/** The platform's own cgroup under the cpu controller (`-<pid>`: a killed run's is told from the live one's). */
const PLATFORM_GROUP_PREFIX = 'platform-';
/** The cgroup of helpers shared by many sandboxes (fork servers): the default weight, one sandbox's. */
const HELPERS_GROUP = 'helpers';
/** The platform's CPU weight against one sandbox's (v1 shares, v2 weight: ten times the default of each). */
const PLATFORM_SHARES = 10_240;
const PLATFORM_WEIGHT = 1000;
/**
 * cgroup v2 only: `memory.high` this far below `memory.max`. Past it the kernel makes the allocating task
 * reclaim and sleep, so a function running into its limit (a memory bomb) slows itself before it is
 * killed instead of spinning in reclaim at full speed. v1 has no such threshold.
 */
const MEMORY_HIGH_FRACTION = 7 / 8;

/**
 * cgroup v1 with the cpu controller in a hierarchy without memory or pids: a sandbox that kept at its quota
 * (`IDLE_AT_TOP_POLLS` looks, throttle-watch.ts) is also moved, processes and all, into `<mount>/hearth-idle/<platform>/<id>`,
 * a twin with the same quota under a top-level cgroup marked `cpu.idle`. The scheduler compares a task
 * waking with the one running at the level where their cgroups meet: `cpu.idle` on the sandbox's own
 * cgroup only counts among its siblings, and against anything outside `/hearth` (a client, a service, the
 * bench, in the root cgroup) the hog ran as part of `/hearth`, a full competitor that a waking task waits
 * behind until the tick (4 ms). Under `hearth-idle` it is idle at the top level: any task waking preempts
 * it at once, while it still gets every cycle nobody wants, up to its quota. Not on v2 (one hierarchy for
 * every controller: a move would take the processes out of their memory and pids walls) nor where cpu
 * shares a v1 hierarchy with them.
 */
const IDLE_TOP_GROUP = 'hearth-idle';
/** Moves of a cgroup's processes to its twin: a process forked meanwhile is born where its parent was. */
const MOVE_PASSES = 4;

/**
 * The command line that starts `command` inside `dirs` (each a cgroup directory, one per hierarchy): a
 * shell writes its own pid to each `cgroup.procs`, then execs the command, so the process and everything
 * it forks are inside from birth. Without dirs, the command as it is.
 */
export function joiningCgroups(
  dirs: readonly string[],
  command: string,
  args: readonly string[],
): { command: string; args: readonly string[] } {
  if (dirs.length === 0) return { command, args };
  return {
    command: '/bin/sh',
    args: [
      '-c',
      // The shell exports PWD (the platform's directory) to what it execs: a fork server's guests would see it.
      'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; done; shift; unset PWD; exec "$@"',
      'hearth-cgroup',
      ...dirs,
      '--',
      command,
      ...args,
    ],
  };
}

/** The name of a platform's cgroups (`<mount>/hearth/<key>`), from its state dir: one per platform on a machine. */
export function platformKey(stateDir: string): string {
  return createHash('sha256').update(stateDir).digest('hex').slice(0, 12);
}

export class Cgroups {
  private readonly controllers: readonly Controller[];
  readonly status: readonly WallStatus[];
  /** The platform's own cgroup (cpu controller), once `start` has moved the process there. */
  private platformGroup: { readonly dir: string; readonly home: string } | undefined;
  /** Marks the bound sandboxes at their CPU quota idle (throttle-watch.ts), once `start` has run. */
  private throttleWatch: ThrottleWatch | undefined;
  /** Sandboxes created in the background whose CPU weight is still the least (`create`, `foreground`). */
  private readonly background = new Set<string>();
  /** v1 sandboxes whose CFS period `create` wrote, so that `apply` writes only the quota on the bind's path. */
  private readonly periodSet = new Set<string>();
  /**
   * What `create` wrote ahead for a sandbox, so that `apply`, on the cold start's path, writes only what the
   * function changes: its pids.max, and whether swap is off. Each cgroup file written is an open, a write and
   * a close on the platform's one thread, ~5 of them per cold start (a CPU profile of 100 at once; issue 11).
   */
  private readonly pidsWritten = new Map<string, number>();
  private readonly swapOff = new Set<string>();
  /** The memory wall `create` wrote ahead (the one its pool's functions most likely have), by sandbox. */
  private readonly memoryWritten = new Map<string, number>();
  /** v1: whether the memory controller has `memory.memsw.*` (swap accounting), once a bind has looked. */
  private memsw: boolean | undefined;
  /** `<cpu mount>/hearth-idle/<platform>` where a hog's twin can be made (see IDLE_TOP_GROUP), else undefined. */
  private readonly idleRoot: string | undefined;
  /** Whether `start` made the top-level idle cgroup, so hogs move there. */
  private idleAtTop = false;
  /**
   * `<mount>/hearth/<platform>` in the v1 hierarchies that hold none of the walls (cpuacct, cpuset, devices,
   * freezer, blkio, name=systemd): an OCI runtime makes each container's cgroup in every hierarchy, and
   * deleting the container leaves the `hearth/<platform>` it made on the way (six dirs a stop left behind).
   */
  private readonly otherRoots: readonly string[];
  /** Sandboxes moved to their twin under IDLE_TOP_GROUP, with their own cgroup's `nr_throttled` then. */
  private readonly atTop = new Set<string>();

  /**
   * `mountinfo` and `selfCgroup` stand for /proc/self/mountinfo and /proc/self/cgroup (tests give layouts
   * this machine does not have).
   */
  constructor(
    stateDir: string,
    mountinfo = readMountinfo(),
    private readonly selfCgroup = (): string => readIfThere('/proc/self/cgroup'),
  ) {
    const platform = platformKey(stateDir);
    const mounts = parseMounts(mountinfo);
    const controllers: Controller[] = [];
    const status: WallStatus[] = [];
    for (const wall of WALLS) {
      const found = findController(wall, mounts);
      if (typeof found === 'string') {
        status.push({ wall, inForce: false, detail: found });
        continue;
      }
      const root = join(found.mount, 'hearth', platform);
      const problem = prepare(found, root, wall);
      if (problem !== undefined) {
        status.push({ wall, inForce: false, detail: problem });
        continue;
      }
      controllers.push({ wall, version: found.version, mount: found.mount, root });
      status.push({ wall, inForce: true, detail: `cgroup v${found.version} at ${root}` });
    }
    this.controllers = controllers;
    this.status = status;
    this.otherRoots = mounts
      .filter(
        (mount) => mount.version === 1 && !controllers.some((controller) => controller.mount === mount.path),
      )
      .map((mount) => join(mount.path, 'hearth', platform));
    const cpu = controllers.find((controller) => controller.wall === 'cpu');
    const cpuMount = mounts.find((mount) => mount.version === 1 && mount.path === cpu?.mount);
    this.idleRoot =
      cpu?.version === 1 && cpuMount?.controllers.every((name) => !['memory', 'pids'].includes(name))
        ? join(cpu.mount, IDLE_TOP_GROUP, platform)
        : undefined;
  }

  /** The directories of this platform's cgroups (one per controller in use), for tests and logs. */
  get roots(): readonly string[] {
    return this.controllers.map((controller) => controller.root);
  }

  has(wall: Wall): boolean {
    return this.controllers.some((controller) => controller.wall === wall);
  }

  /**
   * Moves the platform's process into its own cgroup under the cpu controller, weighted above its
   * sandboxes, and starts marking sandboxes at their CPU quota idle (see the module comment). Call once,
   * after `removeAll`; `close` moves the process back. Without a cpu controller it does nothing.
   *
   * `moveOwnProcess` (config `platformCpuCgroup`): undefined moves the process only out of the root
   * cgroup; true moves it from anywhere; false never. Returns one line for `hearth up`'s log saying what
   * it did, or undefined without a cpu controller.
   */
  start(moveOwnProcess?: boolean): string | undefined {
    const cpu = this.controllers.find((controller) => controller.wall === 'cpu');
    if (cpu === undefined || this.throttleWatch !== undefined) return undefined;
    this.idleAtTop = this.prepareIdleTop();
    this.throttleWatch = new ThrottleWatch(
      cpu.root,
      cpu.version,
      this.idleAtTop ? this.idleTopMover(cpu) : undefined,
    );
    this.throttleWatch.start();
    const home = ownCgroup(cpu, this.selfCgroup());
    if (home === undefined) return 'the platform stays in its cpu cgroup (it could not tell which that is)';
    const fromRoot = home.path === '/';
    if (moveOwnProcess === false || (moveOwnProcess === undefined && !fromRoot))
      return `the platform stays in its cpu cgroup ${home.path}${fromRoot ? '' : " (not the root one: limits set on it, a service manager's say, keep holding the platform)"} at its default weight; \`platformCpuCgroup: true\` moves it into one of its own at ten times a sandbox's weight`;
    const dir = join(cpu.root, `${PLATFORM_GROUP_PREFIX}${process.pid}`);
    try {
      mkdirSync(dir, { recursive: true });
      if (cpu.version === 2) write(dir, 'cpu.weight', String(PLATFORM_WEIGHT));
      else write(dir, 'cpu.shares', String(PLATFORM_SHARES));
      write(dir, 'cgroup.procs', String(process.pid));
      this.platformGroup = { dir, home: home.dir };
      return `the platform moved from cpu cgroup ${home.path} into ${dir}, at ten times a sandbox's weight${fromRoot ? '' : ' (platformCpuCgroup: true: limits set on its former cgroup no longer hold it)'}`;
    } catch (error) {
      // The platform stays where it was: the walls hold all the same, only its share is the default one.
      rmdirQuietly(dir);
      return `the platform stays in its cpu cgroup ${home.path} at its default weight: ${(error as Error).message}`;
    }
  }

  /**
  /** Makes `<mount>/hearth-idle` (marked `cpu.idle`) and this platform's directory in it; false where it cannot. */
  private prepareIdleTop(): boolean {
    if (this.idleRoot === undefined) return false;
    const top = join(this.idleRoot, '..');
    try {
      mkdirSync(this.idleRoot, { recursive: true });
    } catch {
      return false;
    }
    return writeQuietly(top, 'cpu.idle', '1');
  }

  /** What the throttle watch calls to move a hog under IDLE_TOP_GROUP and back (rare: a hog, not each look). */
  private idleTopMover(cpu: Controller): IdleTopMover {
    return {
      moveToTop: (id) => this.moveToIdleTop(cpu, id),
      moveBack: (id) => this.moveBackFromIdleTop(cpu, id),
    };
  }

  /**
   * Moves a hog's processes into its twin under IDLE_TOP_GROUP (made with the same CFS quota), or, when it
   * is there already, any that joined its own cgroup since (a helper). Returns the twin, or undefined.
   */
  private moveToIdleTop(cpu: Controller, id: string): string | undefined {
    if (!this.idleAtTop || this.idleRoot === undefined) return undefined;
    const home = join(cpu.root, id);
    const twin = join(this.idleRoot, id);
    if (this.atTop.has(id)) {
      moveProcesses(home, twin);
      return twin;
    }
    if (readPids(home).length === 0) return undefined;
    try {
      mkdirSync(twin, { recursive: true });
      write(twin, 'cpu.cfs_period_us', readIfThere(join(home, 'cpu.cfs_period_us')).trim());
      write(twin, 'cpu.cfs_quota_us', readIfThere(join(home, 'cpu.cfs_quota_us')).trim());
    } catch {
      rmdirQuietly(twin);
      return undefined;
    }
    this.atTop.add(id);
    moveProcesses(home, twin);
    return twin;
  }

  /** Moves a sandbox that has calmed down back into its own cgroup, and removes its twin. */
  private moveBackFromIdleTop(cpu: Controller, id: string): void {
    if (!this.atTop.delete(id) || this.idleRoot === undefined) return;
    const twin = join(this.idleRoot, id);
    moveProcesses(twin, join(cpu.root, id));
    rmdirQuietly(twin);
  }

  /**
   * Creates the cgroups of one sandbox; returns the directories its launcher joins. A `background` one gets
   * the least CPU weight until `foreground` (or `apply`). `memoryBytes`, the memory wall the sandbox will most
   * likely be bound under, is written now, off the bind's path; `apply` writes it again only if it differs.
   */
  create(id: string, defaultPids: number, background = false, memoryBytes?: number): string[] {
    const dirs: string[] = [];
    for (const controller of this.controllers) {
      const dir = join(controller.root, id);
      mkdirSync(dir, { recursive: true });
      // Even an unbound stem cell cannot fork without bound.
      if (controller.wall === 'pids') {
        write(dir, 'pids.max', String(defaultPids));
        this.pidsWritten.set(id, defaultPids);
      } else if (controller.wall === 'memory') {
        // Swap off now, off the bind's path; `apply` writes it if this did not take.
        if (this.swapOffAhead(dir, controller.version)) this.swapOff.add(id);
        if (memoryBytes !== undefined && this.memoryAhead(dir, controller.version, memoryBytes))
          this.memoryWritten.set(id, memoryBytes);
      } else if (controller.wall === 'cpu') {
        // The period now, off the bind's path (no quota yet: the period alone limits nothing).
        if (controller.version === 1 && writeQuietly(dir, 'cpu.cfs_period_us', String(CPU_PERIOD_US)))
          this.periodSet.add(id);
        if (
          background &&
          writeQuietly(
            dir,
            controller.version === 2 ? 'cpu.weight' : 'cpu.shares',
            String(controller.version === 2 ? BACKGROUND_WEIGHT : BACKGROUND_SHARES),
          )
        )
          this.background.add(id);
      }
      dirs.push(dir);
    }
    return dirs;
  }

  /**
   * The cgroups a helper process joins (`joiningCgroups`), under the cpu controller only: a helper of one
   * sandbox (`sandbox`: its slirp4netns, nft, nsenter) joins that sandbox's, so its CPU counts against
   * the function's quota; one shared by many (a fork server) joins `helpers`, at one sandbox's weight.
   * On cgroup v1 the helper's memory and processes stay outside the sandbox's walls; on v2, where one
   * cgroup holds every controller, they count in them too. [] without a cpu controller.
   */
  helperCgroups(sandbox?: string): string[] {
    const cpu = this.controllers.find((controller) => controller.wall === 'cpu');
    if (cpu === undefined) return [];
    const dir = join(cpu.root, sandbox ?? HELPERS_GROUP);
    if (sandbox === undefined) {
      try {
        mkdirSync(dir, { recursive: true });
      } catch {
        return [];
      }
    }
    return [dir];
  }

  /**
   * Turns swap off for a new sandbox (`apply` did it at bind before): v2 has memory.swap.max where swap is
   * accounted; v1 without swap accounting takes swappiness 0, with it the memsw limit that only `apply` knows.
   */
  private swapOffAhead(dir: string, version: 1 | 2): boolean {
    if (version === 2)
      return existsSync(join(dir, 'memory.swap.max')) && writeQuietly(dir, 'memory.swap.max', '0');
    this.memsw ??= existsSync(join(dir, 'memory.memsw.limit_in_bytes'));
    return !this.memsw && writeQuietly(dir, 'memory.swappiness', '0');
  }

  /**
   * Writes a new sandbox's memory wall (and v1's memsw beside it where swap is accounted: a limit never above
   * it); false, with nothing left half-written that `apply` would not write again, if a write failed.
   */
  private memoryAhead(dir: string, version: 1 | 2, bytes: number): boolean {
    if (version === 2)
      return (
        writeQuietly(dir, 'memory.max', String(bytes)) &&
        writeQuietly(dir, 'memory.high', String(Math.floor(bytes * MEMORY_HIGH_FRACTION)))
      );
    this.memsw ??= existsSync(join(dir, 'memory.memsw.limit_in_bytes'));
    // A new cgroup's memsw is unlimited: the memory limit first, then memsw down to it.
    return (
      writeQuietly(dir, 'memory.limit_in_bytes', String(bytes)) &&
      (!this.memsw || writeQuietly(dir, 'memory.memsw.limit_in_bytes', String(bytes)))
    );
  }

  /** Gives a sandbox created in the background the default CPU weight again. */
  foreground(id: string): void {
    const cpu = this.controllers.find((controller) => controller.wall === 'cpu');
    if (cpu === undefined || !this.background.delete(id)) return;
    writeQuietly(
      join(cpu.root, id),
      cpu.version === 2 ? 'cpu.weight' : 'cpu.shares',
      String(cpu.version === 2 ? DEFAULT_WEIGHT : DEFAULT_SHARES),
    );
  }

  /** Sets a bound sandbox's limits; throws naming the file it could not write. */
  apply(id: string, limits: CgroupLimits): void {
    for (const controller of this.controllers) {
      const dir = join(controller.root, id);
      if (controller.wall === 'pids') {
        if (this.pidsWritten.get(id) !== limits.pids) write(dir, 'pids.max', String(limits.pids));
        this.pidsWritten.set(id, limits.pids);
      } else if (controller.wall === 'cpu') {
        // A cell booted in the background competes at the default weight once it serves a function.
        this.foreground(id);
        const quota = Math.max(MIN_QUOTA_US, Math.round(limits.cpu * CPU_PERIOD_US));
        if (controller.version === 2) write(dir, 'cpu.max', `${quota} ${CPU_PERIOD_US}`);
        else {
          // Written at `create` already; again only if that did not take (the quota must not exceed it).
          if (!this.periodSet.has(id)) write(dir, 'cpu.cfs_period_us', String(CPU_PERIOD_US));
          write(dir, 'cpu.cfs_quota_us', String(quota));
        }
        this.throttleWatch?.watch(id, quota / CPU_PERIOD_US, availableParallelism());
      } else if (this.memoryWritten.get(id) === limits.memoryBytes) {
        // Written at `create`, with swap off then or below.
        if (!this.swapOff.has(id) && controller.version === 2 && existsSync(join(dir, 'memory.swap.max')))
          write(dir, 'memory.swap.max', '0');
        else if (!this.swapOff.has(id) && controller.version === 1 && !this.memsw)
          write(dir, 'memory.swappiness', '0');
      } else if (controller.version === 2) {
        this.memoryWritten.delete(id);
        write(dir, 'memory.max', String(limits.memoryBytes));
        writeQuietly(dir, 'memory.high', String(Math.floor(limits.memoryBytes * MEMORY_HIGH_FRACTION)));
        if (!this.swapOff.has(id) && existsSync(join(dir, 'memory.swap.max')))
          write(dir, 'memory.swap.max', '0');
        this.memoryWritten.set(id, limits.memoryBytes);
      } else {
        const ahead = this.memoryWritten.get(id);
        this.memoryWritten.delete(id);
        // Whether swap is accounted is the kernel's, the same for every cgroup: looked up once.
        this.memsw ??= existsSync(join(dir, 'memory.memsw.limit_in_bytes'));
        // memsw (memory + swap) must never be below the memory limit: the memory limit first, unless it
        // rises above the memsw that `create` wrote ahead.
        const memswFirst = this.memsw && ahead !== undefined && limits.memoryBytes > ahead;
        if (memswFirst) write(dir, 'memory.memsw.limit_in_bytes', String(limits.memoryBytes));
        write(dir, 'memory.limit_in_bytes', String(limits.memoryBytes));
        if (this.memsw && !memswFirst) write(dir, 'memory.memsw.limit_in_bytes', String(limits.memoryBytes));
        else if (!this.memsw && !this.swapOff.has(id)) write(dir, 'memory.swappiness', '0');
        this.memoryWritten.set(id, limits.memoryBytes);
      }
    }
  }

  /** How many processes of the sandbox the kernel killed for memory (0 without a memory wall). */
  oomKills(id: string): number {
    const controller = this.controllers.find((candidate) => candidate.wall === 'memory');
    if (controller === undefined) return 0;
    const file = controller.version === 2 ? 'memory.events' : 'memory.oom_control';
    try {
      const text = readFileSync(join(controller.root, id, file), 'utf8');
      return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0);
    } catch {
      return 0;
    }
  }

  /** Removes a sandbox's cgroups once its processes are gone, killing any that outlived it. */
  async remove(id: string): Promise<void> {
    this.throttleWatch?.forget(id);
    this.background.delete(id);
    this.periodSet.delete(id);
    this.pidsWritten.delete(id);
    this.swapOff.delete(id);
    this.memoryWritten.delete(id);
    try {
      for (const controller of this.controllers) await removeCgroup(join(controller.root, id));
    } finally {
      // Its twin goes last, whatever the removal of the others did.
      if (this.atTop.delete(id) && this.idleRoot !== undefined) await removeCgroup(join(this.idleRoot, id));
    }
  }

  /**
   * Removes every cgroup of this platform (what a killed run left behind, or on shutdown) but the live
   * process's own.
   */
  async removeAll(): Promise<number> {
    let removed = 0;
    for (const controller of this.controllers) {
      let names: string[] = [];
      try {
        names = readdirSync(controller.root, { withFileTypes: true })
          .filter(
            (entry) => entry.isDirectory() && join(controller.root, entry.name) !== this.platformGroup?.dir,
          )
          .map((entry) => entry.name);
      } catch {
        continue;
      }
      for (const name of names) {
        await removeCgroup(join(controller.root, name));
        removed += 1;
      }
    }
    removed += await this.removeIdleTwins();
    // The same containers' cgroups in the other hierarchies: not counted again.
    for (const root of this.otherRoots) {
      let names: string[] = [];
      try {
        names = readdirSync(root, { withFileTypes: true })
          .filter((entry) => entry.isDirectory())
          .map((entry) => entry.name);
      } catch {
        continue;
      }
      for (const name of names) await removeCgroup(join(root, name));
    }
    return removed;
  }

  /** Removes every twin under IDLE_TOP_GROUP of this platform (a killed run's too). */
  private async removeIdleTwins(): Promise<number> {
    if (this.idleRoot === undefined) return 0;
    this.atTop.clear();
    let names: string[] = [];
    try {
      names = readdirSync(this.idleRoot, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name);
    } catch {
      return 0;
    }
    for (const name of names) await removeCgroup(join(this.idleRoot, name));
    return names.length;
  }

  /** Removes this platform's own directories too: nothing of it stays once it has stopped. */
  async close(): Promise<void> {
    this.throttleWatch?.close();
    this.throttleWatch = undefined;
    this.background.clear();
    this.periodSet.clear();
    this.pidsWritten.clear();
    this.swapOff.clear();
    const platform = this.platformGroup;
    if (platform !== undefined) {
      // Back where it was started, so its own cgroup is empty and can go with the rest.
      writeQuietly(platform.home, 'cgroup.procs', String(process.pid));
      this.platformGroup = undefined;
    }
    await this.removeAll();
    for (const controller of this.controllers) {
      try {
        rmdirSync(controller.root);
      } catch {
        // Still busy or already gone: the next start removes it.
      }
    }
    for (const root of this.otherRoots) rmdirQuietly(root);
    if (this.idleRoot !== undefined) {
      rmdirQuietly(this.idleRoot);
      // The top-level one too, unless another platform on the machine has hogs in it.
      rmdirQuietly(join(this.idleRoot, '..'));
    }
    this.idleAtTop = false;
  }
}

interface Mount {
  readonly version: 1 | 2;
  readonly path: string;
  /** v1: the controllers the hierarchy holds; v2: those enabled at its root (`cgroup.controllers`). */
  readonly controllers: readonly string[];
}

function readMountinfo(): string {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return '';
  }
}

function parseMounts(mountinfo: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (before === undefined || after === undefined) continue;
    const path = (before.split(' ')[4] ?? '').replace(/\\040/g, ' ');
    const [type, , options = ''] = after.split(' ');
    if (type === 'cgroup') mounts.push({ version: 1, path, controllers: options.split(',') });
    else if (type === 'cgroup2') {
      let controllers: string[] = [];
      try {
        controllers = readFileSync(join(path, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
      } catch {
        // Unreadable: no controllers from it.
      }
      mounts.push({ version: 2, path, controllers });
    }
  }
  return mounts;
}

function findController(wall: Wall, mounts: readonly Mount[]): { version: 1 | 2; mount: string } | string {
  const v1 = mounts.find((mount) => mount.version === 1 && mount.controllers.includes(wall));
  if (v1 !== undefined) return { version: 1, mount: v1.path };
  const v2 = mounts.find((mount) => mount.version === 2 && mount.controllers.includes(wall));
  if (v2 !== undefined) return { version: 2, mount: v2.path };
  return `no cgroup ${wall} controller is mounted (neither a v1 hierarchy nor enabled in cgroup v2)`;
}

/** Creates `<mount>/hearth/<platform>`; on v2 enables the controller for the levels below. */
function prepare(found: { version: 1 | 2; mount: string }, root: string, wall: Wall): string | undefined {
  try {
    mkdirSync(root, { recursive: true });
    if (found.version === 2) {
      // A v2 controller reaches a cgroup only when every ancestor enables it for its children.
      for (const dir of [found.mount, join(found.mount, 'hearth'), root]) {
        const enabled = readIfThere(join(dir, 'cgroup.subtree_control')).split(/\s+/);
        if (!enabled.includes(wall)) write(dir, 'cgroup.subtree_control', `+${wall}`);
      }
    }
    return undefined;
  } catch (error) {
    return `cgroup v${found.version} ${wall} cannot be used: ${(error as Error).message}`;
  }
}

/**
 * The cgroup this process is in under `controller`'s hierarchy (from /proc/self/cgroup), as a directory
 * and as the path the kernel gives (`/` for the root); undefined when it cannot be told, or when it is one
 * of Hearth's own.
 */
function ownCgroup(
  controller: Controller,
  selfCgroup: string,
): { readonly dir: string; readonly path: string } | undefined {
  const mount = controller.mount;
  for (const line of selfCgroup.split('\n')) {
    const [, controllers = '', path] = line.split(':');
    if (path === undefined) continue;
    const matches =
      controller.version === 2 ? controllers === '' : controllers.split(',').includes(controller.wall);
    if (!matches) continue;
    const dir = join(mount, path);
    return dir.startsWith(join(controller.root, '..')) ? undefined : { dir, path };
  }
  return undefined;
}

function writeQuietly(dir: string, file: string, value: string): boolean {
  try {
    writeFileSync(join(dir, file), value);
    return true;
  } catch {
    return false;
  }
}

function rmdirQuietly(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // Not there, or not empty: the next start removes it.
  }
}

function readIfThere(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function write(dir: string, file: string, value: string): void {
  try {
    writeFileSync(join(dir, file), value);
  } catch (error) {
    throw new Error(`cannot write ${value} to ${join(dir, file)}: ${(error as NodeJS.ErrnoException).code}`);
  }
}

async function removeCgroup(dir: string): Promise<void> {
  for (let attempt = 1; attempt <= REMOVE_TRIES; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY') throw error;
    }
    // Processes still in it: a sandbox of a killed platform, or one whose pid namespace is being torn down.
    for (const pid of readPids(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 25 * attempt));
  }
}

/**
 * Moves every process of cgroup `from` into `to` (v1 `cgroup.procs`: a process with all its threads), again
 * for those forked meanwhile, a few passes at most. A process that exits meanwhile is skipped.
 */
function moveProcesses(from: string, to: string): void {
  for (let pass = 0; pass < MOVE_PASSES; pass++) {
    const pids = readPids(from);
    if (pids.length === 0) return;
    for (const pid of pids) writeQuietly(to, 'cgroup.procs', String(pid));
  }
}

function readPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map(Number);
  } catch {
    return [];
  }
}
