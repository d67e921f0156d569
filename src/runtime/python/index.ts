/** @module The Python runtime (`python3`), host side: how to start its guest and build its pip layer. */

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildStep, DependencyManifest, LaunchSpec, Runtime } from '../index.js';
import { BUILD_TMP, GUEST_TOKEN } from '../index.js';
import { findExecutable, guestDir, SANDBOX_PATH } from '../paths.js';
import { registriesOf } from '../registries.js';

const PIP_ENV = /^(PIP_|HTTPS?_PROXY$|NO_PROXY$|https?_proxy$|no_proxy$)/;

interface Interpreter {
  readonly executable: string;
  readonly prefix: string;
  readonly version: readonly [number, number, number];
}

/** Asks an interpreter where it really lives (a pyenv shim is a script that execs the real one). */
function inspect(candidate: string): Interpreter | undefined {
  try {
    const out = execFileSync(
      candidate,
      [
        '-I',
        '-c',
        'import sys,json;print(json.dumps([sys.executable,sys.base_prefix,list(sys.version_info[:3])]))',
      ],
      {
        encoding: 'utf8',
        timeout: 10_000,
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    const [executable, prefix, version] = JSON.parse(out) as [string, string, [number, number, number]];
    return { executable, prefix, version };
  } catch {
    return undefined;
  }
}

export class PythonRuntime implements Runtime {
  readonly name = 'python3' as const;
  readonly unavailable: string | undefined;
  readonly abi: string;
  readonly layerOutput = 'site';
  readonly interpreter: Interpreter | undefined;

  constructor(configured?: string) {
    const candidate = configured ?? process.env.HEARTH_PYTHON ?? findExecutable('python3');
    this.interpreter = candidate === undefined ? undefined : inspect(candidate);
    const version = this.interpreter?.version;
    if (this.interpreter === undefined || version === undefined) {
      this.unavailable =
        'python3 is not installed: install Python 3.9 or newer (e.g. `apt-get install python3 python3-pip`)';
    } else if (version[0] !== 3 || version[1] < 9) {
      this.unavailable = `python3 functions need Python 3.9 or newer (found ${version.join('.')})`;
    }
    this.abi = `cpython${version?.[0] ?? 0}${version?.[1] ?? 0}-${process.platform}-${process.arch}`;
  }

  launchSpec(): LaunchSpec {
    const interpreter = this.required();
    return {
      command: interpreter.executable,
      args: ['-I', '-S', '-B', `${GUEST_TOKEN}/bootstrap.py`],
      env: { PATH: SANDBOX_PATH, HOME: '/tmp', LANG: 'C.UTF-8', TMPDIR: '/tmp' },
      guestDir: guestDir('python'),
      readOnlyPaths: this.extraPaths(interpreter),
      // The guest's bytecode, by this interpreter, checked against the source's hash (not its mtime, which a
      // copy changes): a stem cell then skips compiling ~1,500 lines (~8 ms of its ~28 ms of CPU; issue 11).
      prepareGuest: {
        command: interpreter.executable,
        args: ['-I', '-S', '-m', 'compileall', '-q', '--invalidation-mode', 'checked-hash', GUEST_TOKEN],
      },
      // A stem cell forked from one booted guest in a few ms instead of booting Python (~17 ms of CPU).
      forkServer: 'hearth_zygote.py',
    };
  }

  dependencyManifest(codeDir: string): DependencyManifest | undefined {
    const requirements = join(codeDir, 'requirements.txt');
    if (!existsSync(requirements)) return undefined;
    const lines = readFileSync(requirements, 'utf8')
      .split('\n')
      .map((line) => line.replace(/#.*/, '').trim())
      .filter((line) => line !== '');
    return lines.length === 0 ? undefined : { files: ['requirements.txt'], mountName: 'deps' };
  }

  buildCommand(workDir: string, cacheDir: string): BuildStep {
    const interpreter = this.required();
    const env: Record<string, string> = {
      PATH: SANDBOX_PATH,
      HOME: join(workDir, '.home'),
      LANG: 'C.UTF-8',
      TMPDIR: join(workDir, BUILD_TMP),
    };
    for (const [key, value] of Object.entries(process.env))
      if (value !== undefined && PIP_ENV.test(key)) env[key] = value;
    return {
      command: interpreter.executable,
      args: [
        '-m',
        'pip',
        'install',
        '--no-input',
        // A manylinux wheel over a newer sdist: numpy, pandas or scipy compiled from source need compilers
        // and headers the node may not have, and minutes where a wheel takes seconds.
        '--prefer-binary',
        '--disable-pip-version-check',
        '--no-warn-script-location',
        '--cache-dir',
        cacheDir,
        '--target',
        join(workDir, this.layerOutput),
        '-r',
        join(workDir, 'requirements.txt'),
      ],
      env,
      // The index, and where PyPI keeps its files (an index of one's own says its own hosts).
      registries: [
        ...registriesOf(
          env,
          ['PIP_INDEX_URL'],
          ['https://pypi.org/simple/', 'https://files.pythonhosted.org/'],
        ),
        ...registriesOf(env, ['PIP_EXTRA_INDEX_URL'], []),
      ],
      readOnlyPaths: this.extraPaths(interpreter),
    };
  }

  precompileCommand(dir: string): BuildStep | undefined {
    const interpreter = this.interpreter;
    if (interpreter === undefined) return undefined;
    return {
      command: interpreter.executable,
      args: ['-I', '-m', 'compileall', '-q', '-j', '0', dir],
      env: { PATH: SANDBOX_PATH, HOME: '/tmp', LANG: 'C.UTF-8' },
      readOnlyPaths: this.extraPaths(interpreter),
    };
  }

  private required(): Interpreter {
    if (this.interpreter === undefined) throw new Error(this.unavailable ?? 'python3 is unavailable');
    return this.interpreter;
  }

  private extraPaths(interpreter: Interpreter): string[] {
    return interpreter.prefix.startsWith('/usr') ? [] : [interpreter.prefix];
  }
}
