/**
 * @module Where a live process sits in the cgroup tree, read from /proc (the sandbox helpers' placement:
 * src/runtime/sandbox/cgroups.ts).
 */

import { readdirSync, readFileSync } from 'node:fs';

/** The pids of `parent`'s live children whose command name (`comm`) is `name`. */
export function childrenNamed(parent: number, name: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so read from the last ')'.
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (comm === name && ppid === parent) pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** The process's cgroup under the cpu controller (cgroup v1 `cpu`, else the v2 tree), as the kernel names it. */
export function cpuCgroupOf(pid: number): string | undefined {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  const v1 = lines.find((line) => line.split(':')[1]?.split(',').includes('cpu'));
  const line = v1 ?? lines.find((candidate) => candidate.startsWith('0::'));
  return line?.split(':').slice(2).join(':');
}
