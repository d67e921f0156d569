/**
 * @module What the container suites share (containers, containers-runc, container-walls): a platform that
 * takes `dir:` images with a server on the host's loopback that no container may reach, deploying a function
 * folder, and the platform's container cgroups and processes.
 */

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { deployFolder, type Hearth, makeFolder, manifest, startHearth, type TempFolder } from './hearth.js';

export interface ContainerPlatform {
  readonly hearth: Hearth;
  /** The port of a server on the host's loopback (it answers "host") that no container may reach. */
  readonly hostPort: number;
  /** Deploys a folder of `hearth.yaml` (`spec`) and `files` as function `name`; the API's answer. */
  deploy(
    name: string,
    spec: string,
    files?: Readonly<Record<string, string>>,
    query?: string,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  /** The same, expecting it deployed (200). */
  deployOk(name: string, spec: string, query?: string): Promise<void>;
  /** Stops the platform (again, if a test already did) and the host server; removes the folders deployed. */
  stop(): Promise<void>;
}

/** A config file that lets a node take `dir:` images, and whatever `extra` YAML lines add. */
export function localImagesConfig(extra = ''): string {
  const file = join(mkdtempSync(join(tmpdir(), 'hearth-containers-')), 'config.yaml');
  writeFileSync(file, `images: { localDirs: true }\n${extra}`);
  return file;
}

export async function startContainerPlatform(
  options: { readonly extraConfig?: string; readonly env?: Readonly<Record<string, string>> } = {},
): Promise<ContainerPlatform> {
  const hostServer = createServer((_, response) => response.end('host'));
  await new Promise<void>((resolve) => hostServer.listen(0, '127.0.0.1', resolve));
  const hearth = await startHearth({
    args: ['--config', localImagesConfig(options.extraConfig)],
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const folders: TempFolder[] = [];
  const deploy: ContainerPlatform['deploy'] = async (name, spec, files = {}, query = '') => {
    const folder = await makeFolder({ 'hearth.yaml': manifest(name, spec), ...files });
    folders.push(folder);
    return deployFolder(hearth.url, folder.dir, { name, query });
  };
  return {
    hearth,
    hostPort: (hostServer.address() as AddressInfo).port,
    deploy,
    async deployOk(name, spec, query) {
      const deployed = await deploy(name, spec, {}, query);
      expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
    },
    async stop() {
      await hearth.stop();
      hostServer.close();
      await Promise.all(folders.map((folder) => folder.cleanup()));
    },
  };
}

/** The name of a platform's container cgroups (src/runtime/sandbox/cgroups.ts names them after the state dir). */
export function containerCgroupName(dataDir: string): string {
  return createHash('sha256')
    .update(join(dataDir, 'run', 'containers'))
    .digest('hex')
    .slice(0, 12);
}

/**
 * A platform's container cgroups (one directory per instance) in every controller, v1 or v2: the ones it uses,
 * and those runc makes in the others.
 */
export function containerCgroups(dataDir: string): string[] {
  const platform = containerCgroupName(dataDir);
  return ['', ...readdirSync('/sys/fs/cgroup')].flatMap((controller) => {
    const root = join('/sys/fs/cgroup', controller, 'hearth', platform);
    return existsSync(root)
      ? readdirSync(root, { withFileTypes: true })
          .filter((entry) => entry.isDirectory())
          .map((entry) => join(root, entry.name))
      : [];
  });
}

/** Processes in a platform's container cgroups: supervisors, crun, and the containers' own. */
export function containerProcesses(dataDir: string): number[] {
  const marker = `/hearth/${containerCgroupName(dataDir)}/`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cgroup`, 'utf8').includes(marker)) pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}
