/**
 * @module The OCI runtime config (config.json, runtime-spec 1.0) of one container function instance: the
 * sandbox's walls in the form crun and runc read. User, pid, mount, IPC and UTS namespaces; the network
 * namespace is the supervisor's (it runs in an empty one for egress `none`, see container/index.ts); a
 * read-only rootfs; a private /tmp tmpfs of `limits.tmp`; no capabilities, no new privileges; the
 * sandbox's seccomp filter by name (sandbox/seccomp.ts lists the same calls by number).
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageConfig, ResolvedImage } from '../../domain/image.js';

export const HOSTNAME = 'hearth';
/** Where a prepared container sees its helper folder (a static busybox, the go fifo, the exec line). */
export const HELPER_MOUNT = '/dev/.hearth';

/** Container root is this host uid/gid (and the next 65,535 ids): ids no host account has. */
export const HOST_ID_BASE = 1_000_000_000;
const ID_RANGE = 65_536;

export interface ContainerProcessSpec {
  readonly image: ResolvedImage;
  /** spec.command: replaces the image's Entrypoint (and drops its Cmd unless `args` is given), as Kubernetes. */
  readonly command?: readonly string[] | undefined;
  /** spec.args: replaces the image's Cmd. */
  readonly args?: readonly string[] | undefined;
  /** The function's env and the platform's Lambda variables; they override the image's Env. */
  readonly env: Readonly<Record<string, string>>;
  readonly tmpBytes: number;
  /** `lambda`: Lambda sets `_HANDLER` to the image's Cmd (the handler), as AWS's clients read it there. */
  readonly protocol?: 'http' | 'lambda';
}

/** The process argv under Kubernetes' rules for command/args over Entrypoint/Cmd. */
export function containerArgv(
  config: ImageConfig,
  command: readonly string[] | undefined,
  args: readonly string[] | undefined,
): string[] {
  if (command !== undefined) return [...command, ...(args ?? [])];
  return [...config.entrypoint, ...(args ?? config.cmd)];
}

/** `KEY=value` entries: the image's, then `env` over them (a later name wins, keeping the first's place). */
export function containerEnv(image: readonly string[], env: Readonly<Record<string, string>>): string[] {
  const merged = new Map<string, string>();
  for (const entry of image) {
    const at = entry.indexOf('=');
    if (at > 0) merged.set(entry.slice(0, at), entry.slice(at + 1));
  }
  if (!merged.has('PATH')) merged.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  for (const [name, value] of Object.entries(env)) merged.set(name, value);
  return [...merged].map(([name, value]) => `${name}=${value}`);
}

/** `_HANDLER` as Lambda sets it for an image: the first element of its (possibly overridden) Cmd. */
function lambdaHandler(
  config: ImageConfig,
  command: readonly string[] | undefined,
  args: readonly string[] | undefined,
): Record<string, string> {
  const cmd = args ?? (command === undefined ? config.cmd : []);
  const handler = cmd[0];
  return handler === undefined || config.env.some((entry) => entry.startsWith('_HANDLER='))
    ? {}
    : { _HANDLER: handler };
}

/** The image's `User` as ids inside the container: numeric, or a name looked up in the rootfs' passwd/group. */
export function containerUser(rootfs: string, user: string): { uid: number; gid: number } {
  if (user === '') return { uid: 0, gid: 0 };
  const [userPart = '', groupPart] = user.split(':');
  const uid = idOf(userPart, join(rootfs, 'etc/passwd'), 2);
  let gid = groupPart === undefined ? undefined : idOf(groupPart, join(rootfs, 'etc/group'), 2);
  if (gid === undefined && groupPart === undefined) gid = primaryGroup(rootfs, uid);
  if (uid === undefined || gid === undefined || uid >= ID_RANGE || gid >= ID_RANGE)
    throw new Error(
      `the image's User "${user}" names no user or group of its rootfs (or one past ${ID_RANGE - 1})`,
    );
  return { uid, gid };
}

function idOf(part: string, file: string, field: number): number | undefined {
  if (/^\d+$/.test(part)) return Number(part);
  for (const line of readLines(file)) {
    const fields = line.split(':');
    if (fields[0] === part) return Number(fields[field]);
  }
  return undefined;
}

function primaryGroup(rootfs: string, uid: number | undefined): number | undefined {
  if (uid === undefined) return undefined;
  for (const line of readLines(join(rootfs, 'etc/passwd'))) {
    const fields = line.split(':');
    if (Number(fields[2]) === uid) return Number(fields[3]);
  }
  // A numeric user the image does not list runs with its own id as group, as Docker does.
  return uid;
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** Errno values as libseccomp takes them. */
const EPERM = 1;
const ENOSYS = 38;
const CLONE_NEWUSER = 0x10000000;

/** The sandbox filter's calls (sandbox/seccomp.ts), by name, refused with EPERM. */
const DENIED = [
  'mount',
  'umount2',
  'pivot_root',
  'ptrace',
  'kexec_load',
  'kexec_file_load',
  'bpf',
  'keyctl',
  'add_key',
  'request_key',
  'setns',
  'perf_event_open',
  'open_by_handle_at',
  'init_module',
  'finit_module',
  'delete_module',
  'swapon',
  'swapoff',
  'reboot',
  'userfaultfd',
  'process_vm_readv',
  'process_vm_writev',
  'acct',
  'open_tree',
  'move_mount',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'mount_setattr',
];
/** Refused with ENOSYS, so callers fall back (glibc from clone3 to clone, libuv from io_uring to threads). */
const NOT_IMPLEMENTED = ['clone3', 'io_uring_setup', 'io_uring_enter', 'io_uring_register'];

/** The sandbox's seccomp filter as an OCI `linux.seccomp` section. */
export function seccompProfile(): Record<string, unknown> {
  const masked = (index: number, mask: number, value: number) => ({
    index,
    value: mask,
    valueTwo: value,
    op: 'SCMP_CMP_MASKED_EQ',
  });
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [
      { names: DENIED, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      { names: NOT_IMPLEMENTED, action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      // New user namespaces: clone's flags are its first argument on x86-64, unshare's its only one.
      {
        names: ['clone', 'unshare'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [masked(0, CLONE_NEWUSER, CLONE_NEWUSER)],
      },
      // Packet sockets, and raw ones on IPv4 and IPv6 (the type without SOCK_NONBLOCK and SOCK_CLOEXEC).
      {
        names: ['socket'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: 17, op: 'SCMP_CMP_EQ' }],
      },
      ...[2, 10].flatMap((family) =>
        [3, 10].map((type) => ({
          names: ['socket'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: EPERM,
          args: [{ index: 0, value: family, op: 'SCMP_CMP_EQ' }, masked(1, 0xf, type)],
        })),
      ),
    ],
  };
}

/**
 * config.json for one instance. `extraEnv` (PORT, AWS_LAMBDA_RUNTIME_API) is added by the supervisor,
 * which alone knows the ports.
 */
export function ociConfig(spec: ContainerProcessSpec): Record<string, unknown> {
  const { image } = spec;
  const argv = containerArgv(image.config, spec.command, spec.args);
  if (argv.length === 0)
    throw new Error('the image has no Entrypoint or Cmd, and the function gives no spec.command');
  const user = containerUser(image.rootfs, image.config.user);
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user,
      args: argv,
      env: containerEnv(image.config.env, {
        ...(spec.protocol === 'lambda' ? lambdaHandler(image.config, spec.command, spec.args) : {}),
        ...spec.env,
      }),
      cwd: image.config.workingDir === '' ? '/' : image.config.workingDir,
      noNewPrivileges: true,
      capabilities: { bounding: [], effective: [], permitted: [], inheritable: [], ambient: [] },
    },
    root: { path: image.rootfs, readonly: true },
    // The same for every function: a container made ahead of its function (see preparedConfig) has it.
    hostname: HOSTNAME,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'size=65536k'],
      },
      {
        destination: '/tmp',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'mode=1777', `size=${spec.tmpBytes}`],
      },
    ],
    linux: {
      uidMappings: [{ containerID: 0, hostID: HOST_ID_BASE, size: ID_RANGE }],
      gidMappings: [{ containerID: 0, hostID: HOST_ID_BASE, size: ID_RANGE }],
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'user' }],
      seccomp: seccompProfile(),
      maskedPaths: [
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      readonlyPaths: [
        '/proc/asound',
        '/proc/bus',
        '/proc/fs',
        '/proc/irq',
        '/proc/sys',
        '/proc/sysrq-trigger',
      ],
    },
  };
}

/**
 * The config of a container made ahead of its function (a stem cell's): the image's rootfs, user and
 * working dir, every wall, and for process a static busybox that waits for the go signal and then runs the
 * exec line the supervisor writes (the function's env and entrypoint). Equal for every function of an image
 * and network, so `JSON.stringify` of it tells whether a prepared container fits a function.
 */
export function preparedConfig(image: ResolvedImage, tmpBytes: number): Record<string, unknown> {
  const config = ociConfig({ image, command: ['/'], env: {}, tmpBytes });
  const process = config.process as Record<string, unknown>;
  process.args = [
    `${HELPER_MOUNT}/busybox`,
    'sh',
    '-c',
    `read -r _ < ${HELPER_MOUNT}/go && . ${HELPER_MOUNT}/exec`,
  ];
  process.env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
  return config;
}
