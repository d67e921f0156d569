/**
 * @module The sandbox's seccomp filter: system calls no function or dependency build needs, and that
 * would widen what a guest can attack, fail with EPERM:
 *
 * - new user namespaces (`unshare`/`clone` with CLONE_NEWUSER; `clone3`, whose flags sit in memory a
 *   filter cannot read, fails with ENOSYS, which makes glibc fall back to `clone`), and `setns`;
 * - mounts (`mount`, `umount2`, `pivot_root` and the new mount API), kernel modules, kexec, `reboot`,
 *   swap, `acct`;
 * - other processes' memory (`ptrace`, `process_vm_readv`/`writev`), the kernel keyrings (`keyctl`,
 *   `add_key`, `request_key`), `bpf`, `perf_event_open`, `userfaultfd`, `open_by_handle_at`;
 * - raw and packet sockets (`socket` with AF_PACKET, or SOCK_RAW/SOCK_PACKET on AF_INET/AF_INET6);
 *   netlink stays open, as `getifaddrs` and resolvers use it;
 * - io_uring, with ENOSYS so that runtimes (libuv) fall back to their thread pool.
 *
 * Why a filter and not bubblewrap's `--disable-userns`: that option needs the sandbox to run in a user
 * namespace of its own, which the root path does not have (it enters the sandbox privileged and drops to
 * the sandbox uid with setpriv). Most of these calls already need capabilities the guest lacks; the
 * filter keeps them away should a kernel bug make a capability check pass, and refuses the unprivileged
 * ones (ptrace of its own children, keyrings, userfaultfd) outright.
 *
 * The program is classic BPF (8-byte `sock_filter` instructions) assembled here; bubblewrap loads it with
 * `--add-seccomp-fd`, so another filter can be stacked beside it.
 */

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const AND_K = 0x54;
const RET_K = 0x06;

const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
const CLONE_NEWUSER = 0x10000000;
/** x32 system calls are numbered from here under the x86-64 architecture; no guest needs them. */
const X32_SYSCALL_BIT = 0x40000000;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_PACKET = 10;
/** The socket type without SOCK_NONBLOCK and SOCK_CLOEXEC. */
const SOCK_TYPE_MASK = 0xf;

/** `struct seccomp_data`: nr at 0, arch at 4, args[i] at 16 + 8i (their low 32 bits, little-endian). */
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;
const ARG1_LOW = 24;

interface ArchCalls {
  readonly audit: number;
  readonly unshare: number;
  readonly clone: number;
  readonly clone3: number;
  /** `socket`, whose family and type are checked. */
  readonly socket: number;
  /** Refused with EPERM. */
  readonly deny: readonly number[];
  /** Refused with ENOSYS: callers take it as "not on this kernel" and fall back. */
  readonly nosys: readonly number[];
  readonly x32?: boolean;
}

/** io_uring, and the new mount API (open_tree, move_mount, fsopen, fsconfig, fsmount, fspick, mount_setattr). */
const IO_URING = [425, 426, 427];
const MOUNT_API = [428, 429, 430, 431, 432, 433, 442];

/**
 * Per host architecture, the native ABI and the 32-bit one its kernel also runs. Deny lists, in order:
 * mount, umount2, pivot_root, ptrace, kexec_load, kexec_file_load, bpf, keyctl, add_key, request_key,
 * setns, perf_event_open, open_by_handle_at, init_module, finit_module, delete_module, swapon, swapoff,
 * reboot, userfaultfd, process_vm_readv, process_vm_writev, acct (then any calls only that ABI has).
 */
const ARCHES: Readonly<Record<string, readonly ArchCalls[]>> = {
  x64: [
    {
      audit: 0xc000003e,
      unshare: 272,
      clone: 56,
      clone3: 435,
      socket: 41,
      deny: [
        165,
        166,
        155,
        101,
        246,
        320,
        321,
        250,
        248,
        249,
        308,
        298,
        304,
        175,
        313,
        176,
        167,
        168,
        169,
        323,
        310,
        311,
        163,
        ...MOUNT_API,
      ],
      nosys: IO_URING,
      x32: true,
    },
    {
      // i386 (no kexec_file_load); `umount`, and `socketcall`, whose arguments a filter cannot read.
      audit: 0x40000003,
      unshare: 310,
      clone: 120,
      clone3: 435,
      socket: 359,
      deny: [
        21,
        52,
        217,
        26,
        283,
        357,
        288,
        286,
        287,
        346,
        336,
        342,
        128,
        350,
        129,
        87,
        115,
        88,
        374,
        347,
        348,
        51,
        22,
        ...MOUNT_API,
      ],
      nosys: [...IO_URING, 102],
    },
  ],
  arm64: [
    {
      audit: 0xc00000b7,
      unshare: 97,
      clone: 220,
      clone3: 435,
      socket: 198,
      deny: [
        40,
        39,
        41,
        117,
        104,
        294,
        280,
        219,
        217,
        218,
        268,
        241,
        265,
        105,
        273,
        106,
        224,
        225,
        142,
        282,
        270,
        271,
        89,
        ...MOUNT_API,
      ],
      nosys: IO_URING,
    },
    {
      audit: 0x40000028,
      unshare: 337,
      clone: 120,
      clone3: 435,
      socket: 281,
      deny: [
        21,
        52,
        218,
        26,
        347,
        401,
        386,
        311,
        309,
        310,
        375,
        364,
        371,
        128,
        379,
        129,
        87,
        115,
        88,
        388,
        376,
        377,
        51,
        ...MOUNT_API,
      ],
      nosys: IO_URING,
    },
  ],
};

type Target = string | number;
interface Instruction {
  readonly code: number;
  readonly k: number;
  readonly jt?: Target;
  readonly jf?: Target;
  readonly label?: string;
}

/** The filter for this host's architecture, or undefined where it is not known (the caller says so). */
export function sandboxFilter(arch: string = process.arch): Buffer | undefined {
  const abis = ARCHES[arch];
  if (abis === undefined) return undefined;
  const program: Instruction[] = [{ code: LD_W_ABS, k: ARCH }];
  abis.forEach((abi, index) => {
    program.push({ code: JEQ_K, k: abi.audit, jt: 0, jf: `abi${index + 1}` });
    program.push({ code: LD_W_ABS, k: NR });
    if (abi.x32 === true) program.push({ code: JGE_K, k: X32_SYSCALL_BIT, jt: 'deny', jf: 0 });
    program.push({ code: JEQ_K, k: abi.clone3, jt: 'nosys', jf: 0 });
    program.push({ code: JEQ_K, k: abi.unshare, jt: 'flags', jf: 0 });
    program.push({ code: JEQ_K, k: abi.clone, jt: 'flags', jf: 0 });
    program.push({ code: JEQ_K, k: abi.socket, jt: 'socket', jf: 0 });
    for (const nr of abi.deny) program.push({ code: JEQ_K, k: nr, jt: 'deny', jf: 0 });
    abi.nosys.forEach((nr, at) => {
      program.push({ code: JEQ_K, k: nr, jt: 'nosys', jf: at === abi.nosys.length - 1 ? 'allow' : 0 });
    });
    // The next ABI's first instruction is labelled by the loop's next turn.
    program.push({ code: LD_W_ABS, k: ARCH, label: `abi${index + 1}` });
  });
  // An ABI this host's kernel should not run at all: nothing from it is allowed.
  program.push({ code: RET_K, k: RET_ERRNO | EPERM });
  program.push({ code: LD_W_ABS, k: ARG0_LOW, label: 'flags' });
  program.push({ code: JSET_K, k: CLONE_NEWUSER, jt: 'deny', jf: 'allow' });
  program.push({ code: LD_W_ABS, k: ARG0_LOW, label: 'socket' });
  program.push({ code: JEQ_K, k: AF_PACKET, jt: 'deny', jf: 0 });
  program.push({ code: JEQ_K, k: AF_INET, jt: 'inet', jf: 0 });
  program.push({ code: JEQ_K, k: AF_INET6, jt: 'inet', jf: 'allow' });
  program.push({ code: LD_W_ABS, k: ARG1_LOW, label: 'inet' });
  program.push({ code: AND_K, k: SOCK_TYPE_MASK });
  program.push({ code: JEQ_K, k: SOCK_RAW, jt: 'deny', jf: 0 });
  program.push({ code: JEQ_K, k: SOCK_PACKET, jt: 'deny', jf: 'allow' });
  program.push({ code: RET_K, k: RET_ALLOW, label: 'allow' });
  program.push({ code: RET_K, k: RET_ERRNO | EPERM, label: 'deny' });
  program.push({ code: RET_K, k: RET_ERRNO | ENOSYS, label: 'nosys' });
  return assemble(program);
}

function assemble(program: readonly Instruction[]): Buffer {
  const labels = new Map<string, number>();
  program.forEach((instruction, index) => {
    if (instruction.label !== undefined) labels.set(instruction.label, index);
  });
  const out = Buffer.alloc(program.length * 8);
  program.forEach((instruction, index) => {
    const offset = (target: Target | undefined): number => {
      if (target === undefined) return 0;
      if (typeof target === 'number') return target;
      const at = labels.get(target);
      if (at === undefined || at <= index || at - index - 1 > 255)
        throw new Error(`seccomp: bad jump to ${target}`);
      return at - index - 1;
    };
    out.writeUInt16LE(instruction.code, index * 8);
    out.writeUInt8(offset(instruction.jt), index * 8 + 2);
    out.writeUInt8(offset(instruction.jf), index * 8 + 3);
    out.writeUInt32LE(instruction.k >>> 0, index * 8 + 4);
  });
  return out;
}
