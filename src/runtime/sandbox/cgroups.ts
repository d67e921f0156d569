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
 * weight, and a sandbox that runs into its CPU quota is marked `cpu.idle` until it has gone a second
 * without doing so. The kernel's scheduler (EEVDF) lets an entity that is running finish its slice (a
 * millisecond or more) before a task that wakes gets the CPU; an idle entity it preempts at once. So a
 * function spinning at its limit on every core delays neither the gateway nor a neighbour's instance
 * waking to answer a request by more than a context switch, while it still gets every cycle nobody else
 * wants (up to its quota). Nice values could not do this: they only order processes of one cgroup.
 */

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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
/** The platform's own cgroup under the cpu controller (`-<pid>`: a killed run's is told from the live one's). */
const PLATFORM_GROUP_PREFIX = 'platform-';
/** The platform's CPU weight against one sandbox's (v1 shares, v2 weight: ten times the default of each). */
const PLATFORM_SHARES = 10_240;
const PLATFORM_WEIGHT = 1000;
/**
 * How often the sandboxes' `cpu.stat` is read for throttling (a file read per bound sandbox). A hog is
 * marked idle within this long of reaching its quota; at 100 ms and 200 warm sandboxes that is 2000 small
 * reads a second, about 1% of a core.
 */
const THROTTLE_POLL_MS = 100;
/** How long a sandbox marked idle must stay under its quota before it competes at full weight again. */
const IDLE_UNTIL_CALM_MS = 1000;

interface Throttling {
  /** `nr_throttled` when last read. */
  periods: number;
  idle: boolean;
  lastThrottledAt: number;
}

export class Cgroups {
  private readonly controllers: readonly Controller[];
  readonly status: readonly WallStatus[];
  /** The platform's own cgroup (cpu controller), once `start` has moved the process there. */
  private platformGroup: { readonly dir: string; readonly home: string } | undefined;
  /** The bound sandboxes whose throttling is watched (those with a CPU quota). */
  private readonly throttling = new Map<string, Throttling>();
  private throttleWatch: NodeJS.Timeout | undefined;

  constructor(stateDir: string, mountinfo = readMountinfo()) {
    const platform = createHash('sha256').update(stateDir).digest('hex').slice(0, 12);
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
   */
  start(): void {
    const cpu = this.controllers.find((controller) => controller.wall === 'cpu');
    if (cpu === undefined || this.throttleWatch !== undefined) return;
    const home = ownCgroup(cpu);
    if (home !== undefined) {
      const dir = join(cpu.root, `${PLATFORM_GROUP_PREFIX}${process.pid}`);
      try {
        mkdirSync(dir, { recursive: true });
        if (cpu.version === 2) write(dir, 'cpu.weight', String(PLATFORM_WEIGHT));
        else write(dir, 'cpu.shares', String(PLATFORM_SHARES));
        write(dir, 'cgroup.procs', String(process.pid));
        this.platformGroup = { dir, home };
      } catch {
        // The platform stays where it was: the walls hold all the same, only its share is the default one.
        rmdirQuietly(dir);
      }
    }
    this.throttleWatch = setInterval(() => this.markThrottledIdle(cpu), THROTTLE_POLL_MS);
    this.throttleWatch.unref();
  }

  /** One look at every watched sandbox: idle while it keeps reaching its quota, normal once it is calm. */
  private markThrottledIdle(cpu: Controller): void {
    const now = Date.now();
    for (const [id, state] of this.throttling) {
      const dir = join(cpu.root, id);
      const stat = readIfThere(join(dir, 'cpu.stat'));
      if (stat === '') {
        this.throttling.delete(id);
        continue;
      }
      const periods = Number(/^nr_throttled (\d+)$/m.exec(stat)?.[1] ?? 0);
      if (periods > state.periods) {
        state.periods = periods;
        state.lastThrottledAt = now;
        if (!state.idle) state.idle = writeQuietly(dir, 'cpu.idle', '1');
      } else if (state.idle && now - state.lastThrottledAt >= IDLE_UNTIL_CALM_MS) {
        state.idle = !writeQuietly(dir, 'cpu.idle', '0');
      }
    }
  }

  /** Creates the cgroups of one sandbox; returns the directories its launcher joins. */
  create(id: string, defaultPids: number): string[] {
    const dirs: string[] = [];
    for (const controller of this.controllers) {
      const dir = join(controller.root, id);
      mkdirSync(dir, { recursive: true });
      // Even an unbound stem cell cannot fork without bound.
      if (controller.wall === 'pids') write(dir, 'pids.max', String(defaultPids));
      dirs.push(dir);
    }
    return dirs;
  }

  /** Sets a bound sandbox's limits; throws naming the file it could not write. */
  apply(id: string, limits: CgroupLimits): void {
    for (const controller of this.controllers) {
      const dir = join(controller.root, id);
      if (controller.wall === 'pids') write(dir, 'pids.max', String(limits.pids));
      else if (controller.wall === 'cpu') {
        const quota = Math.max(MIN_QUOTA_US, Math.round(limits.cpu * CPU_PERIOD_US));
        if (controller.version === 2) write(dir, 'cpu.max', `${quota} ${CPU_PERIOD_US}`);
        else {
          write(dir, 'cpu.cfs_period_us', String(CPU_PERIOD_US));
          write(dir, 'cpu.cfs_quota_us', String(quota));
        }
        if (this.throttleWatch !== undefined && !this.throttling.has(id))
          this.throttling.set(id, { periods: 0, idle: false, lastThrottledAt: 0 });
      } else if (controller.version === 2) {
        write(dir, 'memory.max', String(limits.memoryBytes));
        if (existsSync(join(dir, 'memory.swap.max'))) write(dir, 'memory.swap.max', '0');
      } else {
        // memsw (memory + swap) must never be below the memory limit: set the memory limit first.
        write(dir, 'memory.limit_in_bytes', String(limits.memoryBytes));
        if (existsSync(join(dir, 'memory.memsw.limit_in_bytes')))
          write(dir, 'memory.memsw.limit_in_bytes', String(limits.memoryBytes));
        else write(dir, 'memory.swappiness', '0');
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
    for (const controller of this.controllers) await removeCgroup(join(controller.root, id));
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
    return removed;
  }

  /** Removes this platform's own directories too: nothing of it stays once it has stopped. */
  async close(): Promise<void> {
    if (this.throttleWatch !== undefined) clearInterval(this.throttleWatch);
    this.throttling.clear();
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
 * The cgroup this process is in under `controller`'s hierarchy (from /proc/self/cgroup), as a directory;
 * undefined when it cannot be told, or when it is one of Hearth's own.
 */
function ownCgroup(controller: Controller): string | undefined {
  const mount = controller.mount;
  for (const line of readIfThere('/proc/self/cgroup').split('\n')) {
    const [, controllers = '', path] = line.split(':');
    if (path === undefined) continue;
    const matches =
      controller.version === 2 ? controllers === '' : controllers.split(',').includes(controller.wall);
    if (!matches) continue;
    const dir = join(mount, path);
    return dir.startsWith(join(controller.root, '..')) ? undefined : dir;
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
