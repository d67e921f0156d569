/**
 * @module Networks for sandboxes that may reach out (egress `allow` or an allow-list) and their
 * `/etc/hosts` (`hostAliases`).
 *
 * An allow-list sandbox (`filtered`) gets a network namespace of its own, linked to the host by
 * slirp4netns (user-mode TCP/IP: no veth, no bridge, no forwarding or NAT on the host), where the host's
 * loopback appears as 10.0.2.2 — `host-gateway`. nftables rules inside that namespace drop everything
 * but loopback and the listed `address . port` pairs (refusing the rest at once, not timing out). The
 * guest cannot change them: it has no capabilities. Host names in the list are resolved on the host when
 * the function is bound and written to the sandbox's /etc/hosts; the sandbox has no DNS of its own, so a
 * name resolves to an allowed address or not at all.
 *
 * Stem cells are pre-networked: slirp4netns and the drop-all rules are set up when the pool starts the
 * cell (about 15 ms, off the cold path); binding adds one `nft add element` (measured in bench/RESULTS.md).
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { promisify } from 'node:util';
import { HearthError } from '../../domain/errors.js';
import { HOST_GATEWAY, HOST_GATEWAY_NAME } from '../../domain/function.js';
import type { NetworkMode, NetworkPolicy } from '../index.js';
import { findExecutable } from '../paths.js';
import { joiningCgroups } from './cgroups.js';

const run = promisify(execFile);

/** The host's loopback as slirp4netns shows it inside the namespace. */
export const SLIRP_HOST = '10.0.2.2';
/** slirp4netns's DNS forwarder inside the namespace (to the host's resolver); `outbound` only. */
export const SLIRP_DNS = '10.0.2.3';
const READY_TIMEOUT_MS = 10_000;

const BASE_RULES = `table inet hearth {
  set allow4 { type ipv4_addr . inet_service; }
  chain output {
    type filter hook output priority 0; policy drop;
    oif "lo" accept
    ct state established,related accept
    meta l4proto tcp ip daddr . tcp dport @allow4 accept
    meta l4proto udp ip daddr . udp dport @allow4 accept
    meta l4proto tcp reject with tcp reset
    reject with icmpx admin-prohibited
  }
}
`;

export interface FilteredTools {
  readonly slirp: string;
  readonly nft: string;
  readonly nsenter: string;
  /** util-linux's unshare: slirp4netns runs in a mount namespace of its own, private (see `setUp`). */
  readonly unshare: string;
}

/** The tools an allow-list needs, or why they are missing (with how to install them). */
export function probeFilteredTools(privileged: boolean): FilteredTools | string {
  if (!privileged)
    return 'egress allow-lists need the platform to run as root (nftables rules in each sandbox network namespace)';
  const slirp = findExecutable('slirp4netns');
  const nft = findExecutable('nft') ?? ['/usr/sbin/nft', '/sbin/nft'].find((path) => existsSync(path));
  const nsenter = findExecutable('nsenter');
  const unshare = findExecutable('unshare');
  const missing = [
    slirp === undefined ? 'slirp4netns' : undefined,
    nft === undefined ? 'nftables' : undefined,
    nsenter === undefined || unshare === undefined ? 'util-linux (nsenter, unshare)' : undefined,
  ].filter((name) => name !== undefined);
  if (slirp === undefined || nft === undefined || nsenter === undefined || unshare === undefined)
    return `egress allow-lists need ${missing.join(', ')}: install with apt-get install slirp4netns nftables util-linux`;
  return { slirp, nft, nsenter, unshare };
}

/** One sandbox's network: its namespace's pid (for nsenter), its slirp4netns, and readiness. */
export class SandboxNetwork {
  private slirp: ChildProcess | undefined;
  private pid = 0;
  readonly ready: Promise<void>;

  constructor(
    readonly mode: NetworkMode,
    private readonly tools: FilteredTools | undefined,
    /**
     * bubblewrap's `--info-fd` output, for the sandboxed child's pid, or the pid of a process in the
     * namespace itself (a container's supervisor); undefined for `host`.
     */
    info: NodeJS.ReadableStream | number | undefined,
    /**
     * The sandboxed command's hold descriptor: it writes a byte once bubblewrap has set up the namespace,
     * then waits for a line before it goes on. Given, slirp4netns starts only after that byte, and the
     * line is sent once the rules are in.
     */
    private readonly hold?: NodeJS.ReadWriteStream,
    /**
     * The cgroups its helpers (slirp4netns, nft through nsenter) are born in: the sandbox's cpu cgroup, so
     * the CPU they spend on its traffic counts against its quota (cgroups.ts `helperCgroups`).
     */
    private readonly helperCgroups: readonly string[] = [],
  ) {
    this.ready =
      (mode === 'filtered' || mode === 'outbound') && info !== undefined && tools !== undefined
        ? this.setUp(info, tools)
        : Promise.resolve();
    // A failure surfaces when the function is bound; until then nobody may be waiting.
    this.ready.catch(() => {});
  }

  private async setUp(info: NodeJS.ReadableStream | number, tools: FilteredTools): Promise<void> {
    this.pid = typeof info === 'number' ? info : await childPid(info);
    if (this.hold !== undefined) await firstByte(this.hold);
    // `--enable-sandbox` makes slirp4netns unshare a mount namespace and pivot away from the old root, and
    // it marks only `/` private first: the slots tmpfs beneath stays a peer of the host's, so detaching
    // the old root unmounted every function's code and dependency overlays on the host, and from there in
    // every running sandbox (guests saw `No module named 'redis._defaults'` mid-import). Started in a
    // mount namespace that is private all the way down, its unmounts stay its own.
    const slirpCommand = joiningCgroups(this.helperCgroups, tools.unshare, [
      '--mount',
      '--propagation',
      'private',
      '--',
      tools.slirp,
      '--configure',
      '--mtu=65520',
      // `outbound` (egress allow) reaches anything but the host's loopback, which slirp4netns refuses
      // itself, and resolves names through its forwarder; an allow-list has neither (its rules decide).
      ...(this.mode === 'outbound' ? ['--disable-host-loopback'] : ['--disable-dns']),
      '--enable-sandbox',
      '--ready-fd=3',
      '--exit-fd=4',
      String(this.pid),
      'tap0',
    ]);
    // fd 4 stays open in this process: when the platform dies, slirp4netns sees it close and exits.
    const slirp = spawn(slirpCommand.command, [...slirpCommand.args], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    });
    this.slirp = slirp;
    let stderr = '';
    slirp.stderr?.on('data', (chunk: Buffer) => {
      if (stderr.length < 2000) stderr += chunk.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('slirp4netns was not ready within 10s')),
        READY_TIMEOUT_MS,
      );
      const readyFd = slirp.stdio[3] as NodeJS.ReadableStream | null;
      readyFd?.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      slirp.once('exit', (code) => {
        clearTimeout(timer);
        reject(
          new Error(`slirp4netns exited with ${code}: ${stderr.trim().split('\n').slice(-2).join(' | ')}`),
        );
      });
      slirp.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    if (this.mode === 'filtered') await this.nft(['-f', '-'], BASE_RULES);
    this.hold?.end('go\n');
  }

  /** Lets the listed `address . port` pairs through (a `filtered` network). */
  async allow(pairs: readonly { address: string; port: number }[]): Promise<void> {
    await this.ready;
    if (pairs.length === 0) return;
    const elements = pairs.map((pair) => `${pair.address} . ${pair.port}`).join(', ');
    await this.nft(['add', 'element', 'inet', 'hearth', 'allow4', `{ ${elements} }`]);
  }

  close(): void {
    if (this.slirp !== undefined && this.slirp.exitCode === null) this.slirp.kill('SIGKILL');
  }

  private async nft(args: readonly string[], input?: string): Promise<void> {
    const tools = this.tools;
    if (tools === undefined) return;
    const joined = joiningCgroups(this.helperCgroups, tools.nsenter, [
      '-t',
      String(this.pid),
      '-n',
      tools.nft,
      ...args,
    ]);
    const command = [joined.command, joined.args] as const;
    if (input === undefined) {
      await run(command[0], [...command[1]]);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const child = spawn(command[0], [...command[1]], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.once('error', reject);
      child.once('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`nft failed (${code}): ${stderr.trim().split('\n')[0]}`)),
      );
      // nft exits before reading its rules when the sandbox it enters is already gone (its setup failed):
      // the write then fails with EPIPE. Unhandled, that error event would take the whole platform down;
      // the exit above reports the failure.
      child.stdin.on('error', () => {});
      child.stdin.end(input);
    });
  }
}

/** Resolves once the sandboxed command has written its first byte on `hold`. */
function firstByte(hold: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('the sandbox did not start within 10s')),
      READY_TIMEOUT_MS,
    );
    hold.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    hold.once('end', () => {
      clearTimeout(timer);
      reject(new Error('the sandbox ended before its network was set up'));
    });
  });
}

/** bubblewrap writes `{"child-pid": N, ...}` to its info fd once the namespaces exist. */
function childPid(info: NodeJS.ReadableStream): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(
      () => reject(new Error('bubblewrap did not report its child pid')),
      READY_TIMEOUT_MS,
    );
    const done = (): void => {
      clearTimeout(timer);
      const match = /"child-pid"\s*:\s*(\d+)/.exec(text);
      if (match === null) reject(new Error('bubblewrap did not report its child pid'));
      else resolve(Number(match[1]));
    };
    info.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('}')) {
        info.removeAllListeners('data');
        done();
      }
    });
    info.once('end', () => {
      if (!text.includes('}')) done();
    });
  });
}

/** What a function's policy turns into: its /etc/hosts and, for an allow-list, the pairs to let through. */
export async function resolvePolicy(
  policy: NetworkPolicy,
  mode: NetworkMode,
): Promise<{ hosts: string; allow: { address: string; port: number }[] }> {
  // `outbound` cannot reach the host's loopback: `host-gateway` names the host's own address, as Docker's
  // does (services listening on all interfaces answer there, loopback-only ones do not).
  const gateway = mode === 'filtered' ? SLIRP_HOST : mode === 'outbound' ? hostAddress() : '127.0.0.1';
  const names = new Map<string, string>([[HOST_GATEWAY_NAME, gateway]]);
  for (const [name, target] of Object.entries(policy.hostAliases))
    names.set(name.toLowerCase(), target === HOST_GATEWAY ? gateway : target);
  const allow: { address: string; port: number }[] = [];
  if (mode === 'filtered' && Array.isArray(policy.egress)) {
    for (const entry of policy.egress as readonly string[]) {
      const at = entry.lastIndexOf(':');
      const host = entry.slice(0, at).toLowerCase();
      const port = Number(entry.slice(at + 1));
      const address =
        host === HOST_GATEWAY
          ? gateway
          : isIPv4(host)
            ? host
            : (names.get(host) ?? (await resolve(host, entry)));
      // A name only the host's DNS knows is written to the sandbox's /etc/hosts, so it resolves inside.
      if (host !== HOST_GATEWAY && !isIPv4(host) && !names.has(host)) names.set(host, address);
      allow.push({ address, port });
    }
  }
  let hosts = '127.0.0.1 localhost\n::1 localhost\n';
  for (const [name, address] of names) hosts += `${address} ${name}\n`;
  return { hosts, allow };
}

/** This machine's first non-loopback IPv4 address (where `outbound` guests reach it), else loopback. */
export function hostAddress(): string {
  for (const infos of Object.values(networkInterfaces()))
    for (const info of infos ?? []) if (info.family === 'IPv4' && !info.internal) return info.address;
  return '127.0.0.1';
}

async function resolve(host: string, entry: string): Promise<string> {
  try {
    const { address } = await lookup(host, { family: 4 });
    return address;
  } catch (error) {
    throw new HearthError(
      'HEARTH_E_VALIDATION',
      `spec.egress: "${entry}": cannot resolve ${host} on this node (${(error as NodeJS.ErrnoException).code ?? 'error'}); use an address, or a hostAliases name`,
      { details: { field: 'spec.egress', value: entry, expected: 'a resolvable host:port' } },
    );
  }
}

/**
 * What a dependency build may reach: every IPv4 address of each registry's host on its port, and the
 * /etc/hosts that names them (the build has no resolver). A registry on this machine (a local mirror,
 * named `localhost` or `host.hearth.internal`) is reached through slirp4netns's address for the host's
 * loopback, on its own port only; `localhost` then names the host in the build, which needs no
 * loopback of its own.
 */
export async function resolveRegistries(
  urls: readonly string[],
): Promise<{ hosts: string; allow: { address: string; port: number }[] }> {
  const names = new Map<string, string>([[HOST_GATEWAY_NAME, SLIRP_HOST]]);
  const allow: { address: string; port: number }[] = [];
  let loopback = false;
  for (const text of urls) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new Error(`the package registry "${text}" is not a URL`);
    }
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const port = Number(url.port || (url.protocol === 'http:' ? 80 : 443));
    if (host === 'localhost' || host === HOST_GATEWAY_NAME || host.startsWith('127.') || host === '::1') {
      loopback ||= host === 'localhost';
      allow.push({ address: SLIRP_HOST, port });
      continue;
    }
    if (isIPv4(host)) {
      allow.push({ address: host, port });
      continue;
    }
    let addresses: { address: string }[];
    try {
      addresses = await lookup(host, { family: 4, all: true });
    } catch (error) {
      throw new Error(
        `cannot resolve the package registry ${host} on this node (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    const first = addresses[0];
    if (first === undefined) throw new Error(`the package registry ${host} has no IPv4 address`);
    names.set(host, first.address);
    for (const { address } of addresses) allow.push({ address, port });
  }
  let hosts = loopback ? `${SLIRP_HOST} localhost\n` : '127.0.0.1 localhost\n::1 localhost\n';
  for (const [name, address] of names) hosts += `${address} ${name}\n`;
  return { hosts, allow };
}
