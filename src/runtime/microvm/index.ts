/**
 * @module The `microvm` isolation class: every guest runs in a virtual machine of its own, QEMU's `microvm`
 * machine type (no PCI, no firmware, virtio-mmio devices only) booting Debian's cloud kernel and the image
 * `image.ts` builds. The VM has no network device at all; the guest speaks the usual protocol on fd 3,
 * which init wires to a virtio-serial port whose host end is the launcher's fd 3, so the scheduler's
 * `GuestProcess` reads and writes it exactly as it does a sandbox's. The guest's stdout and stderr are
 * ports of their own, wired to the launcher's stdout and stderr (the per-invocation logs' raw output);
 * the slot is shared read-only through virtiofs (`virtiofsd`, one per VM, started by the launcher).
 *
 * Walls: the VM's RAM is the memory wall (the VM boots with `MAX_GUEST_MEMORY` and, once bound, a
 * virtio-balloon takes back all but the function's `limits.memory` plus the guest kernel's share); the
 * QEMU process and its virtiofsd sit in a cgroup of their own (the sandbox's `Cgroups`) for CPU and as a
 * backstop for memory; the deadline kill is a SIGKILL of QEMU. QEMU runs as `nobody` under its own
 * seccomp filter (`-sandbox on`).
 *
 * Accelerator: KVM where it boots a stock kernel; QEMU's TCG (a full software CPU, slower) where the host's
 * KVM is PVM (`kvm_pvm`, a software hypervisor that runs only kernels built as PVM guests), as on this
 * project's machines: a stock kernel runs there only through KVM's instruction emulator, far slower than TCG,
 * and dies on an instruction it lacks; why no PVM guest kernel is built instead: docs/microvm-kvm-on-pvm.md.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { HearthError } from '../../domain/errors.js';
import {
  type BuildCommand,
  type BuildOutcome,
  GUEST_TOKEN,
  type Isolation,
  type LaunchSpec,
  type NetworkMode,
  type ResourceLimits,
  type WallStatus,
} from '../index.js';
import { GuestProcess } from '../ipc/guest-process.js';
import { findExecutable } from '../paths.js';
import { runConfined } from '../process/run.js';
import { Cgroups } from '../sandbox/cgroups.js';
import type { Slot } from '../slots.js';
import { type BootImage, DEFAULT_IMAGE_CACHE, ensureBootImage } from './image.js';

export interface MicroVmOptions {
  /** Per-VM sockets and the cgroups' key (a directory of its own: several platforms never collide). */
  readonly stateDir: string;
  /** Where boot images are cached by content hash; shared by every platform on the machine by default. */
  readonly cacheDir?: string;
  /** The runtimes' launch specs: their interpreters and guests go into the image. */
  readonly launches: readonly LaunchSpec[];
  /** `kvm`, `tcg`, or undefined to choose (KVM unless it is PVM). */
  readonly accelerator?: 'kvm' | 'tcg';
}

/** Every microVM boots with this much RAM; the balloon gives back all but the function's share once bound. */
export const MAX_GUEST_MEMORY = 512 * 1024 ** 2;
/**
 * The guest kernel, init and the page cache of the interpreter's binary (node's is 95 MiB, read from the
 * root image): added to `limits.memory`, which the balloon could not otherwise reach (measured: a 64Mi
 * Node function's VM would not go below 117 MiB).
 */
const GUEST_KERNEL_MEMORY = 96 * 1024 ** 2;
/** QEMU's own memory beside the guest's RAM (with TCG, its translation cache: `tb-size`). */
const QEMU_OVERHEAD = 192 * 1024 ** 2;
const TCG_CACHE_MIB = 64;
/** QEMU's and virtiofsd's threads: not the function's processes, which live in the VM's own kernel. */
const VM_PIDS = 512;
const SLOT_DIR = '/code';
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const STATUS_FD = 4;
const QMP_FD = 5;

/**
 * Joins the cgroups given before `--`, starts virtiofsd on the slot and waits for its socket, then execs
 * QEMU. A watcher stays behind holding fd 6, whose other end is the platform's: when the platform dies,
 * however (SIGKILL included), the watcher reads EOF and kills QEMU, as bubblewrap's --die-with-parent
 * does for a sandbox (QEMU's own parent-death signal would not survive -runas dropping to nobody).
 */
const LAUNCHER = [
  '-c',
  [
    'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; done; shift',
    'sock=$1 share=$2; shift 2',
    `${VIRTIOFSD} --socket-path="$sock" -o source="$share" -o cache=auto -o sandbox=chroot -o no_posix_lock </dev/null >/dev/null 2>&1 3>&- 4>&- 5>&- 6>&- &`,
    'i=0; while [ ! -S "$sock" ]; do i=$((i+1)); [ $i -gt 500 ] && { echo "virtiofsd did not start" >&2; exit 125; }; sleep 0.01; done',
    'vm=$$; (read -r _ <&6; kill -9 "$vm" 2>/dev/null) </dev/null >/dev/null 2>&1 3>&- 4>&- 5>&- &',
    'exec 6<&-',
    'exec "$@"',
  ].join('\n'),
  'hearth-microvm',
];
const WATCH_FD = 6;

interface VmState {
  readonly id: string;
  readonly socket: string;
  readonly qmp: Qmp | undefined;
  /** `exit=N oom_kill M`, as init reported it before powering off. */
  status: string;
}

export class MicroVmIsolation implements Isolation {
  readonly name = 'microvm' as const;
  private reason: string | undefined = 'the microVM boot image has not been built yet';
  private image: BootImage | undefined;
  private readonly qemu = findExecutable('qemu-system-x86_64') ?? '';
  readonly accelerator: 'kvm' | 'tcg';
  /** Why KVM is not used, when it is not. */
  readonly acceleratorNote: string;
  private readonly cgroups: Cgroups | undefined;
  private readonly vms = new WeakMap<GuestProcess, VmState>();
  /** A kernel and an interpreter started on an emulated CPU (TCG) take tens of seconds on a busy host. */
  readonly startupTimeoutMs: number;

  constructor(private readonly options: MicroVmOptions) {
    mkdirSync(options.stateDir, { recursive: true });
    const pvm = existsSync('/sys/module/kvm_pvm');
    if (options.accelerator !== undefined) {
      this.accelerator = options.accelerator;
      this.acceleratorNote = `${options.accelerator} (configured)`;
    } else if (existsSync('/dev/kvm') && !pvm) {
      this.accelerator = 'kvm';
      this.acceleratorNote = 'kvm';
    } else {
      this.accelerator = 'tcg';
      this.acceleratorNote = pvm
        ? "tcg: this host's KVM is PVM (kvm_pvm), which runs only PVM-built guest kernels, not Debian's"
        : 'tcg: /dev/kvm is missing';
    }
    this.cgroups = process.getuid?.() === 0 ? new Cgroups(options.stateDir) : undefined;
    this.startupTimeoutMs = this.accelerator === 'kvm' ? 30_000 : 180_000;
  }

  get unavailable(): string | undefined {
    return this.reason;
  }

  /** The boot image (built once per content hash) and the clean-up of a killed run's VMs; returns how many. */
  async init(): Promise<number> {
    if (this.qemu === '') {
      this.reason = 'QEMU is not installed: `apt-get install qemu-system-x86`';
      return 0;
    }
    if (!existsSync(VIRTIOFSD)) {
      this.reason = `${VIRTIOFSD} is missing (Debian's qemu-system-common ships it)`;
      return 0;
    }
    if (this.cgroups === undefined) {
      this.reason = 'microVMs need the platform to run as root (virtiofsd, cgroups)';
      return 0;
    }
    try {
      this.image = await ensureBootImage(this.options.cacheDir ?? DEFAULT_IMAGE_CACHE, this.options.launches);
      this.reason = undefined;
    } catch (error) {
      this.reason = `the microVM boot image could not be built: ${(error as Error).message}`;
    }
    const leftovers = await this.cgroups.removeAll();
    // The sockets of a killed run's VMs (whose processes the cgroups' removal has just ended).
    for (const entry of readdirSync(this.options.stateDir))
      if (entry.endsWith('.sock')) rmSync(join(this.options.stateDir, entry), { force: true });
    return leftovers;
  }

  get walls(): readonly WallStatus[] {
    return [
      { wall: 'vm', inForce: this.reason === undefined, detail: `QEMU microvm, ${this.acceleratorNote}` },
      {
        wall: 'memory',
        inForce: true,
        detail: "the VM's RAM (virtio-balloon at bind), a cgroup as backstop",
      },
      ...(this.cgroups?.status.filter((status) => status.wall === 'cpu') ?? []),
      { wall: 'network', inForce: true, detail: 'no network device' },
    ];
  }

  guestPathOf(): string {
    return SLOT_DIR;
  }

  start(launch: LaunchSpec, slot: Slot, network: NetworkMode): GuestProcess {
    const image = this.image;
    if (image === undefined || this.cgroups === undefined)
      throw new HearthError('HEARTH_E_SANDBOX_UNAVAILABLE', this.reason ?? 'microVMs are unavailable');
    if (network !== 'none')
      throw new HearthError(
        'HEARTH_E_UNSUPPORTED',
        'isolation: microvm has no network yet: set egress: none (or use isolation: sandbox)',
      );
    const id = `${slot.id}-${randomBytes(3).toString('hex')}`;
    const socket = join(this.options.stateDir, `${id}.fs.sock`);
    const guestDir = image.guestDirs.get(launch.guestDir) ?? '/hearth/guest';
    const cgroupDirs = this.cgroups.create(id, VM_PIDS);
    const args = [
      ...LAUNCHER,
      ...cgroupDirs,
      '--',
      socket,
      slot.hostDir,
      this.qemu,
      ...this.qemuArgs(image, socket, kernelCommandLine(launch, guestDir)),
    ];
    const child: ChildProcess = spawn('/bin/sh', args, {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe'],
      env: {},
    });
    const guest = new GuestProcess(child);
    const stdio = child.stdio as readonly unknown[];
    const statusPort = stdio[STATUS_FD] as Duplex | null;
    const qmpStream = stdio[QMP_FD] as Duplex | null;
    qmpStream?.on('error', () => {});
    const state: VmState = {
      id,
      socket,
      qmp: qmpStream === null ? undefined : new Qmp(qmpStream),
      status: '',
    };
    this.vms.set(guest, state);
    statusPort?.setEncoding('utf8');
    statusPort?.on('data', (text: string) => {
      state.status += text;
      // The guest has ended and init is powering off: nothing more can come out of this VM.
      if (state.status.includes('\n')) guest.kill('SIGKILL');
    });
    statusPort?.on('error', () => {});
    const cgroups = this.cgroups;
    guest.outOfMemoryProbe = () => /oom_kill [1-9]/.test(state.status) || cgroups.oomKills(id) > 0;
    const watch = stdio[WATCH_FD] as Duplex | null;
    watch?.on('error', () => {});
    guest.once('exit', () => {
      // The watcher's end: closed now, it ends (its kill finds nothing).
      watch?.destroy();
      rmSync(socket, { force: true });
      void cgroups.remove(id).catch(() => undefined);
    });
    return guest;
  }

  /** Balloons the VM down to the function's memory, and caps QEMU's CPU (and memory, as a backstop). */
  async limit(guest: GuestProcess, limits: ResourceLimits): Promise<void> {
    const state = this.vms.get(guest);
    if (state === undefined) return;
    const guestBytes = limits.memoryBytes + GUEST_KERNEL_MEMORY;
    if (guestBytes > MAX_GUEST_MEMORY)
      throw new HearthError(
        'HEARTH_E_UNSUPPORTED',
        `limits.memory: a microVM holds at most ${(MAX_GUEST_MEMORY - GUEST_KERNEL_MEMORY) / 1024 ** 2}Mi (isolation: sandbox has no such cap)`,
      );
    try {
      this.cgroups?.apply(state.id, {
        memoryBytes: MAX_GUEST_MEMORY + QEMU_OVERHEAD,
        cpu: limits.cpu,
        pids: VM_PIDS,
      });
      if (state.qmp !== undefined) await balloon(state.qmp, guestBytes);
    } catch (error) {
      throw new HearthError(
        'HEARTH_E_SANDBOX_UNAVAILABLE',
        `the function's resource limits could not be applied to its microVM: ${(error as Error).message}`,
        { retryAfter: 5 },
      );
    }
  }

  /** Dependency builds are not functions: they run as `process` does, on the host (see README). */
  run(build: BuildCommand): Promise<BuildOutcome> {
    return runConfined(build.command, build.args, { ...build, cwd: build.workDir });
  }

  /** Removes this platform's cgroups; call once every VM has exited. */
  async closeWalls(): Promise<void> {
    await this.cgroups?.close();
  }

  private qemuArgs(image: BootImage, socket: string, append: string): string[] {
    const mib = MAX_GUEST_MEMORY / 1024 ** 2;
    const kvm = this.accelerator === 'kvm';
    return [
      '-M',
      'microvm,rtc=on,isa-serial=off,memory-backend=mem',
      // virtiofsd (libvhost-user) serves only virtio 1.0 devices; microvm's virtio-mmio defaults to legacy.
      '-global',
      'virtio-mmio.force-legacy=false',
      '-accel',
      kvm ? 'kvm' : `tcg,tb-size=${TCG_CACHE_MIB}`,
      '-cpu',
      kvm ? 'host' : 'max',
      '-m',
      `${mib}M`,
      '-object',
      `memory-backend-memfd,id=mem,size=${mib}M,share=on`,
      '-smp',
      '1',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-no-reboot',
      '-kernel',
      image.kernel,
      '-initrd',
      image.initramfs,
      '-append',
      // Without KVM's clock the kernel cannot calibrate its timers on microvm (no PIT reference, no HPET):
      // it is told the frequencies instead.
      `quiet loglevel=0 panic=-1 ${kvm ? '' : 'tsc_early_khz=2000000 lpj=4000000 lapic_timer_period=4000000 '}${append}`,
      '-drive',
      `if=none,id=root,file=${image.root},format=raw,readonly=on`,
      '-device',
      'virtio-blk-device,drive=root',
      '-chardev',
      `socket,id=fs,path=${socket}`,
      '-device',
      'vhost-user-fs-device,chardev=fs,tag=slot',
      '-device',
      'virtio-serial-device,max_ports=4',
      '-chardev',
      'socket,id=out,fd=1',
      '-device',
      'virtconsole,chardev=out',
      '-chardev',
      'socket,id=err,fd=2',
      '-device',
      'virtserialport,chardev=err,name=hearth.stderr',
      '-chardev',
      'socket,id=ipc,fd=3',
      '-device',
      'virtserialport,chardev=ipc,name=hearth.ipc',
      '-chardev',
      `socket,id=status,fd=${STATUS_FD}`,
      '-device',
      'virtserialport,chardev=status,name=hearth.status',
      '-chardev',
      `socket,id=qmp,fd=${QMP_FD}`,
      '-mon',
      'chardev=qmp,mode=control',
      '-device',
      'virtio-balloon-device',
      '-sandbox',
      // elevateprivileges stays allowed: -runas drops to nobody after the filter is in place.
      'on,obsolete=deny,spawn=deny,resourcecontrol=deny',
      '-runas',
      'nobody',
    ];
  }
}

/**
 * The guest's command line after `--` (init's argv: `env -i` then the command), and its environment as
 * `KEY=value` words: the kernel splits the line at spaces, so a value with one cannot be passed.
 */
function kernelCommandLine(launch: LaunchSpec, guestDir: string): string {
  const words = [
    ...Object.entries(launch.env).map(([key, value]) => `${key}=${value}`),
    launch.command,
    ...launch.args.map((arg) => arg.replaceAll(GUEST_TOKEN, guestDir)),
  ];
  for (const word of words)
    if (/[\s"]/.test(word)) throw new Error(`a microVM guest cannot be given ${JSON.stringify(word)}`);
  return `-- ${words.join(' ')}`;
}

/** How long a bind waits for the balloon to take the guest down to its function's memory. */
const BALLOON_WAIT_MS = 30_000;

/**
 * A QMP connection (QEMU's JSON monitor) on one of the launcher's descriptors: one command at a time,
 * each answered by a line with `return` or `error` (events, lines with `event`, are skipped).
 */
class Qmp {
  private buffer = '';
  private waiters: ((message: { return?: unknown; error?: { desc?: string } }) => void)[] = [];
  private negotiated: Promise<unknown> | undefined;

  constructor(private readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('utf8');
      let newline = this.buffer.indexOf('\n');
      while (newline >= 0) {
        const line = this.buffer.slice(0, newline).trim();
        this.buffer = this.buffer.slice(newline + 1);
        newline = this.buffer.indexOf('\n');
        if (line === '') continue;
        const message = JSON.parse(line) as { return?: unknown; error?: { desc?: string } };
        if ('return' in message || 'error' in message) this.waiters.shift()?.(message);
      }
    });
  }

  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.negotiated ??= this.send('qmp_capabilities');
    await this.negotiated;
    return this.send(command, args);
  }

  private send(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`QMP ${command} was not answered within 10s`)), 10_000);
      this.waiters.push((message) => {
        clearTimeout(timer);
        if (message.error !== undefined) reject(new Error(message.error.desc ?? `QMP ${command} failed`));
        else resolve(message.return);
      });
      this.stream.write(
        `${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`,
      );
    });
  }
}

/**
 * Sets the balloon so the guest keeps `bytes` of RAM, and waits until it does: the guest gives pages back
 * as it can (fast with KVM, seconds with TCG), and a function must not start with more than its share.
 */
async function balloon(qmp: Qmp, bytes: number): Promise<void> {
  await qmp.execute('balloon', { value: Math.floor(bytes) });
  const until = Date.now() + BALLOON_WAIT_MS;
  for (;;) {
    const { actual } = (await qmp.execute('query-balloon')) as { actual: number };
    if (actual <= bytes) return;
    if (Date.now() > until) throw new Error(`the guest kept ${actual} bytes of RAM, over ${bytes}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
