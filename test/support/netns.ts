/**
 * @module A test network of separate hosts on this machine: one network namespace per host, each joined
 * by a veth pair to a bridge in the root namespace, on a /24 of 10.213.0.0/16 the test makes (and removes)
 * itself. The bridge's address is where the root namespace's services (PostgreSQL, NATS, Redis) listen.
 *
 * Each namespace is held by a `sleep` started with `unshare --net` and entered with `nsenter`, not named
 * with `ip netns add`: the names' bind mounts under /run/netns are shared by everything on the machine,
 * and were seen to stop being namespaces under a concurrent run (setns: Invalid argument). Needs root.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readlinkSync } from 'node:fs';

export interface TestHost {
  readonly address: string;
  /** Runs a command inside this host's namespace (it execs the command). */
  readonly prefix: readonly string[];
}

export interface TestNetwork {
  /** The bridge's address in the root namespace. */
  readonly hostAddress: string;
  /** The network as a CIDR, for allow-lists. */
  readonly cidr: string;
  readonly hosts: readonly TestHost[];
  destroy(): void;
}

function run(command: string, args: readonly string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A subnet no interface of this machine uses yet (other suites may run a network of their own). */
function freeSubnet(): number {
  const used = run('ip', ['-4', '-o', 'addr', 'show']);
  for (let tries = 0; tries < 50; tries++) {
    const subnet = randomInt(1, 255);
    if (!used.includes(`10.213.${subnet}.`)) return subnet;
  }
  throw new Error('no free 10.213.x.0/24 subnet for the test network');
}

/** A process alone in a new network namespace, once it is there. */
async function holder(): Promise<ChildProcess & { pid: number }> {
  const child = spawn('unshare', ['--net', 'sleep', 'infinity'], { stdio: 'ignore' });
  const own = readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 200; i++) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        if (readlinkSync(`/proc/${child.pid}/ns/net`) !== own) return child as ChildProcess & { pid: number };
      } catch {
        // Not started yet.
      }
    }
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  child.kill('SIGKILL');
  throw new Error('unshare --net did not make a network namespace');
}

export async function createTestNetwork(count: number): Promise<TestNetwork> {
  if (process.getuid?.() !== 0)
    throw new Error('the test network needs root (network namespaces, veth, a bridge)');
  const subnet = freeSubnet();
  // Interface names are at most 15 characters: a short tag per network.
  const tag = `h${subnet.toString(16)}${randomInt(0, 0xfff).toString(16)}`;
  const bridge = `${tag}br`;
  const holders: ChildProcess[] = [];
  const hosts: TestHost[] = [];
  const destroy = (): void => {
    // The veth pairs go with their namespaces, once the last process in each has gone.
    for (const held of holders) held.kill('SIGKILL');
    try {
      run('ip', ['link', 'del', bridge]);
    } catch {
      // Already gone.
    }
  };
  try {
    run('ip', ['link', 'add', bridge, 'type', 'bridge']);
    run('ip', ['addr', 'add', `10.213.${subnet}.1/24`, 'dev', bridge]);
    run('ip', ['link', 'set', bridge, 'up']);
    for (let i = 0; i < count; i++) {
      const held = await holder();
      holders.push(held);
      const inside = ['nsenter', '-t', String(held.pid), '-n'];
      const address = `10.213.${subnet}.${10 + i}`;
      run('ip', [
        'link',
        'add',
        `${tag}v${i}`,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        String(held.pid),
      ]);
      run('ip', ['link', 'set', `${tag}v${i}`, 'master', bridge]);
      run('ip', ['link', 'set', `${tag}v${i}`, 'up']);
      run('nsenter', [...inside.slice(1), 'ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      run('nsenter', [...inside.slice(1), 'ip', 'link', 'set', 'eth0', 'up']);
      run('nsenter', [...inside.slice(1), 'ip', 'link', 'set', 'lo', 'up']);
      hosts.push({ address, prefix: inside });
    }
  } catch (error) {
    destroy();
    throw error;
  }
  return { hostAddress: `10.213.${subnet}.1`, cidr: `10.213.${subnet}.0/24`, hosts, destroy };
}
