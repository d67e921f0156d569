/**
 * @module A seccomp filter that keeps a sandboxed guest from creating user namespaces: `unshare` and
 * `clone` with CLONE_NEWUSER fail with EPERM, and `clone3` (whose flags sit in memory a filter cannot
 * read) fails with ENOSYS, which makes glibc fall back to `clone`.
 *
 * Why a filter and not bubblewrap's `--disable-userns`: that option needs the sandbox to run in a user
 * namespace of its own, which the root path does not have (it enters the sandbox privileged and drops to
 * the sandbox uid with setpriv, so the guest's files are really owned by that uid). A nested user
 * namespace would give the guest root inside it: mounts, and the whole of the kernel's namespaced code to
 * attack. The filter applies on both paths; on the unprivileged path it backs up `--disable-userns`.
 *
 * The program is classic BPF (8-byte `sock_filter` instructions) assembled here; bubblewrap loads it with
 * `--add-seccomp-fd`, so another filter can be stacked beside it.
 */

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;

const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
const CLONE_NEWUSER = 0x10000000;
/** x32 system calls are numbered from here under the x86-64 architecture; no guest needs them. */
const X32_SYSCALL_BIT = 0x40000000;

/** `struct seccomp_data`: nr at 0, arch at 4, args[0] at 16 (its low 32 bits, little-endian). */
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;

interface ArchCalls {
  readonly audit: number;
  readonly unshare: number;
  readonly clone: number;
  readonly clone3: number;
  readonly x32?: boolean;
}

/** Per host architecture, the native ABI and the 32-bit one its kernel also runs. */
const ARCHES: Readonly<Record<string, readonly ArchCalls[]>> = {
  x64: [
    { audit: 0xc000003e, unshare: 272, clone: 56, clone3: 435, x32: true },
    { audit: 0x40000003, unshare: 310, clone: 120, clone3: 435 },
  ],
  arm64: [
    { audit: 0xc00000b7, unshare: 97, clone: 220, clone3: 435 },
    { audit: 0x40000028, unshare: 337, clone: 120, clone3: 435 },
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
export function noUserNamespacesFilter(arch: string = process.arch): Buffer | undefined {
  const abis = ARCHES[arch];
  if (abis === undefined) return undefined;
  const program: Instruction[] = [{ code: LD_W_ABS, k: ARCH }];
  abis.forEach((abi, index) => {
    program.push({ code: JEQ_K, k: abi.audit, jt: 0, jf: `abi${index + 1}` });
    program.push({ code: LD_W_ABS, k: NR });
    if (abi.x32 === true) program.push({ code: JGE_K, k: X32_SYSCALL_BIT, jt: 'deny', jf: 0 });
    program.push({ code: JEQ_K, k: abi.clone3, jt: 'nosys', jf: 0 });
    program.push({ code: JEQ_K, k: abi.unshare, jt: 'flags', jf: 0 });
    program.push({ code: JEQ_K, k: abi.clone, jt: 'flags', jf: 'allow' });
    // The next ABI's first instruction is labelled by the loop's next turn.
    program.push({ code: LD_W_ABS, k: ARCH, label: `abi${index + 1}` });
  });
  // An ABI this host's kernel should not run at all: nothing from it is allowed.
  program.push({ code: RET_K, k: RET_ERRNO | EPERM });
  program.push({ code: LD_W_ABS, k: ARG0_LOW, label: 'flags' });
  program.push({ code: JSET_K, k: CLONE_NEWUSER, jt: 'deny', jf: 'allow' });
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
