/**
 * @module CPU and memory of function instances, read from /proc at scrape time. An instance is a process
 * tree (bubblewrap, its pid-namespace init, the runtime and anything the function spawned), so each
 * figure is summed over the tree. Cgroups would be cheaper per read, but instances are not in cgroups
 * of their own yet (v1 on these machines), and /proc works under every isolation class.
 */

import { readdirSync, readFileSync } from 'node:fs';

const PAGE_BYTES = 4096;
/** USER_HZ: /proc reports CPU time in these ticks on every Linux architecture Node runs on. */
const TICKS_PER_SECOND = 100;

export interface ProcessTreeUsage {
  /** user + system CPU seconds of every live process in the tree. */
  readonly cpuSeconds: number;
  /** Resident memory of the tree, bytes (shared pages counted once per process). */
  readonly rssBytes: number;
  readonly processes: number;
}

/** Usage of `pid` and its descendants; zeros when it is gone or /proc is unavailable. */
export function processTreeUsage(pid: number): ProcessTreeUsage {
  let cpu = 0;
  let rss = 0;
  let processes = 0;
  const visit = (id: number, depth: number): void => {
    if (depth > 16) return;
    const stat = readText(`/proc/${id}/stat`);
    if (stat === undefined) return;
    // Fields after the command name, which is in parentheses and may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    cpu += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
    rss += Number(fields[21] ?? 0) * PAGE_BYTES;
    processes += 1;
    for (const child of childrenOf(id)) visit(child, depth + 1);
  };
  if (pid > 0) visit(pid, 0);
  return { cpuSeconds: cpu / TICKS_PER_SECOND, rssBytes: rss, processes };
}

function childrenOf(pid: number): number[] {
  const children: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return children;
  }
  for (const task of tasks) {
    const text = readText(`/proc/${pid}/task/${task}/children`);
    if (text === undefined) continue;
    for (const part of text.trim().split(/\s+/)) if (part !== '') children.push(Number(part));
  }
  return children;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
