/** @module The Node.js runtime (`node20`), host side: how to start its guest and build its npm layer. */

import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BuildOptions, BuildStep, DependencyManifest, LaunchSpec, Runtime } from '../index.js';
import { BUILD_TMP, GUEST_TOKEN } from '../index.js';
import { guestDir, SANDBOX_PATH } from '../paths.js';
import { registriesOf } from '../registries.js';

/**
 * V8's old generation for a guest under a memory wall of `memoryBytes`: three quarters of it, less 32 MiB
 * for the rest of the process (code, the young generation, buffers), at least 16 MiB; 64 MiB at the
 * default 128Mi. V8 otherwise sizes its heap from the machine (4 GiB here) and lets garbage grow far past
 * the wall before it collects, so a function whose live data fits was killed by the cgroup at an odd
 * moment; now it collects in time, and live data past the heap ends the process with V8's "heap out of
 * memory", which the platform reports as the same 502 `HEARTH_E_FN_OOM`.
 */
export function heapMiB(memoryBytes: number): number {
  return Math.max(16, Math.floor((memoryBytes / 1024 ** 2) * 0.75) - 32);
}

const REGISTRY_ENV = /^(npm_config_|HTTPS?_PROXY$|NO_PROXY$|https?_proxy$|no_proxy$)/;

export class NodeRuntime implements Runtime {
  readonly name = 'node20' as const;
  readonly unavailable: string | undefined;
  readonly abi = `node-abi${process.versions.modules}-${process.platform}-${process.arch}`;
  readonly layerOutput = 'node_modules';
  private readonly node = realpathSync(process.execPath);
  /** The install prefix holding this node's C headers (`include/node`), if they were installed. */
  private readonly headersPrefix = ((prefix: string) =>
    existsSync(join(prefix, 'include', 'node', 'common.gypi')) ? prefix : undefined)(
    dirname(dirname(this.node)),
  );

  constructor() {
    const major = Number(process.versions.node.split('.')[0]);
    this.unavailable =
      major >= 20 ? undefined : `node20 functions need Node.js 20 or newer (this is ${process.version})`;
  }

  readonly heapFromMemory = true;

  launchSpec(options: { readonly memoryBytes?: number } = {}): LaunchSpec {
    return {
      command: this.node,
      args: [
        ...(options.memoryBytes === undefined
          ? []
          : [`--max-old-space-size=${heapMiB(options.memoryBytes)}`]),
        `${GUEST_TOKEN}/bootstrap.mjs`,
      ],
      env: { PATH: SANDBOX_PATH, HOME: '/tmp', LANG: 'C.UTF-8', NODE_ENV: 'production', TMPDIR: '/tmp' },
      guestDir: guestDir('node'),
      readOnlyPaths: this.node.startsWith('/usr/') ? [] : [dirname(dirname(this.node))],
    };
  }

  dependencyManifest(codeDir: string): DependencyManifest | undefined {
    const manifestPath = join(codeDir, 'package.json');
    if (!existsSync(manifestPath)) return undefined;
    let manifest: { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    try {
      manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as typeof manifest;
    } catch {
      return undefined;
    }
    const count =
      Object.keys(manifest.dependencies ?? {}).length +
      Object.keys(manifest.optionalDependencies ?? {}).length;
    if (count === 0) return undefined;
    const files = ['package.json'];
    for (const lock of ['package-lock.json', 'npm-shrinkwrap.json'])
      if (existsSync(join(codeDir, lock))) files.push(lock);
    return { files, mountName: 'node_modules' };
  }

  buildCommand(
    workDir: string,
    cacheDir: string,
    manifest: DependencyManifest,
    options: BuildOptions,
  ): BuildStep {
    const locked = manifest.files.length > 1;
    const npmCli = join(dirname(dirname(this.node)), 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
    const env: Record<string, string> = {
      PATH: SANDBOX_PATH,
      HOME: join(workDir, '.home'),
      LANG: 'C.UTF-8',
      TMPDIR: join(workDir, BUILD_TMP),
    };
    // node-gyp would download this node's headers from nodejs.org, which the build cannot reach (it
    // reaches the registries only): a native module compiled from source uses the headers installed here.
    if (this.headersPrefix !== undefined) env.npm_config_nodedir = this.headersPrefix;
    for (const [key, value] of Object.entries(process.env))
      if (value !== undefined && REGISTRY_ENV.test(key)) env[key] = value;
    return {
      command: this.node,
      args: [
        npmCli,
        locked ? 'ci' : 'install',
        '--omit=dev',
        '--no-audit',
        '--no-fund',
        '--no-update-notifier',
        '--loglevel=warn',
        // Install scripts are arbitrary code from every package in the tree: only a function that asks runs them.
        ...(options.scripts ? [] : ['--ignore-scripts']),
        '--cache',
        cacheDir,
      ],
      env,
      registries: registriesOf(env, ['npm_config_registry'], ['https://registry.npmjs.org/']),
      readOnlyPaths: this.node.startsWith('/usr/') ? [] : [dirname(dirname(this.node))],
    };
  }
}
