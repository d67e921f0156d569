/**
 * @module Container images for the tests and the bench (plain JavaScript, shared with bench/) (issue 17, run half), built from source on this
 * machine and cached under ~/.cache/hearth-test-images (keyed by what they are built from). Each is a
 * `dir:` image: a folder with `rootfs/` and `config.json` (src/runtime/container/local-image.ts).
 *
 * - `goHttpImage`: a static Go HTTP server (CGO_ENABLED=0) alone in an otherwise empty rootfs, as an image
 *   `FROM scratch`; its paths probe the walls (test/fixtures/containers/go-http/main.go).
 * - `nodeLambdaImage`: this machine's node binary with the libraries `ldd` names, AWS's own Runtime
 *   Interface Client from npm (`aws-lambda-ric`, native addon compiled at install) and an unchanged Lambda
 *   handler, with the ENTRYPOINT a Lambda Node image has.
 * - `goLambdaBootstrap`: a `bootstrap` built with github.com/aws/aws-lambda-go, for `runtime: provided`.
 */

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const CACHE = join(homedir(), '.cache', 'hearth-test-images');
const SOURCES = join(ROOT, 'test', 'fixtures', 'containers');
/** The Runtime Interface Client from npm, pinned. */
export const RIC_VERSION = '4.0.2';

/** Builds `name` into a fresh folder unless a build of the same inputs is cached; returns its folder. */
function cached(name, inputs, build) {
  const hash = createHash('sha256');
  for (const input of inputs) hash.update(existsSync(input) ? readFileSync(input) : input);
  const dir = join(CACHE, `${name}-${hash.digest('hex').slice(0, 12)}`);
  if (existsSync(join(dir, 'config.json')) || existsSync(join(dir, 'bootstrap'))) return dir;
  const building = `${dir}.building-${process.pid}`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(building, { recursive: true });
  build(building);
  rmSync(dir, { recursive: true, force: true });
  renameSync(building, dir);
  return dir;
}

function goBuild(source, output, tags = []) {
  execFileSync('go', ['build', ...(tags.length > 0 ? ['-tags', tags.join(',')] : []), '-o', output, '.'], {
    cwd: source,
    env: { ...process.env, CGO_ENABLED: '0', GOFLAGS: '-mod=mod' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** The mount points an image `FROM scratch` lacks and a read-only rootfs cannot get at run time. */
function mountPoints(rootfs) {
  for (const dir of ['proc', 'dev', 'tmp']) mkdirSync(join(rootfs, dir), { recursive: true });
}

function writeConfig(dir, config) {
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      entrypoint: [],
      cmd: [],
      env: [],
      workingDir: '',
      user: '',
      exposedPorts: [],
      ...config,
    }),
  );
}

export function goHttpImage() {
  const source = join(SOURCES, 'go-http');
  return cached('go-http', [join(source, 'main.go'), join(source, 'go.mod')], (dir) => {
    const rootfs = join(dir, 'rootfs');
    mountPoints(rootfs);
    // As `docker build` leaves them: the platform shows a function's own over these (hostAliases, DNS).
    mkdirSync(join(rootfs, 'etc'), { recursive: true });
    for (const file of ['hosts', 'resolv.conf']) writeFileSync(join(rootfs, 'etc', file), '');
    goBuild(source, join(rootfs, 'server'));
    writeConfig(dir, {
      entrypoint: ['/server'],
      env: ['GREETING=from the image'],
      exposedPorts: ['8080/tcp'],
    });
  });
}

/** A folder holding an executable `bootstrap` (aws-lambda-go); copy it into a function folder. */
export function goLambdaBootstrap() {
  const source = join(SOURCES, 'go-lambda');
  return cached(
    'go-lambda',
    [join(source, 'main.go'), join(source, 'go.mod'), join(source, 'go.sum')],
    (dir) => {
      goBuild(source, join(dir, 'bootstrap'), ['lambda.norpc']);
    },
  );
}

/** Copies `file` (following links) to `at` (by default the same path) under `rootfs`. */
function copyInto(rootfs, file, at = file) {
  const target = join(rootfs, at);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(realpathSync(file), target);
  chmodSync(target, 0o755);
}

/** The shared libraries a binary loads, with the dynamic loader (`ldd`). */
function sharedLibraries(binary) {
  let out = '';
  try {
    out = execFileSync('ldd', [binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    // Statically linked, or not an object ldd reads: nothing to add.
  }
  return [...out.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((match) => match[1] ?? '').filter(Boolean);
}

export function nodeLambdaImage() {
  const source = join(SOURCES, 'node-lambda');
  const node = realpathSync(process.execPath);
  return cached(
    'node-lambda',
    [join(source, 'index.mjs'), join(source, 'stream.mjs'), node, RIC_VERSION],
    (dir) => {
      const rootfs = join(dir, 'rootfs');
      mountPoints(rootfs);
      copyInto(rootfs, node, '/usr/local/bin/node');
      for (const library of sharedLibraries(node)) copyInto(rootfs, library);
      // AWS's client, installed as its README says; its native addon is compiled by its install script.
      const runtime = join(rootfs, 'var/runtime');
      mkdirSync(runtime, { recursive: true });
      writeFileSync(join(runtime, 'package.json'), '{"name":"runtime","version":"1.0.0","private":true}');
      execFileSync(
        'npm',
        ['install', `aws-lambda-ric@${RIC_VERSION}`, '--no-audit', '--no-fund', '--loglevel=error'],
        {
          cwd: runtime,
          stdio: ['ignore', 'ignore', 'inherit'],
        },
      );
      for (const library of sharedLibraries(join(runtime, 'node_modules/aws-lambda-ric/rapid-client.node')))
        if (!existsSync(join(rootfs, library))) copyInto(rootfs, library);
      cpSync(source, join(rootfs, 'var/task'), { recursive: true });
      writeConfig(dir, {
        entrypoint: ['/usr/local/bin/node', '/var/runtime/node_modules/aws-lambda-ric/index.mjs'],
        cmd: ['index.handler'],
        env: [
          'LAMBDA_TASK_ROOT=/var/task',
          'LAMBDA_RUNTIME_DIR=/var/runtime',
          'NODE_PATH=/var/runtime/node_modules',
        ],
        workingDir: '/var/task',
      });
    },
  );
}

/** AWS's Python Runtime Interface Client from PyPI, pinned. */
export const PYTHON_RIC_VERSION = '4.2.2';

/**
 * This machine's python3 with its standard library and the libraries `ldd` names for it and its
 * extension modules, AWS's `awslambdaric` from PyPI and an unchanged Lambda handler.
 */
export function pythonLambdaImage() {
  const source = join(SOURCES, 'python-lambda');
  const python = realpathSync('/usr/bin/python3');
  const version = execFileSync(
    python,
    ['-c', 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")'],
    {
      encoding: 'utf8',
    },
  ).trim();
  return cached('python-lambda', [join(source, 'app.py'), python, PYTHON_RIC_VERSION], (dir) => {
    const rootfs = join(dir, 'rootfs');
    mountPoints(rootfs);
    copyInto(rootfs, python, '/usr/bin/python3');
    const stdlib = `/usr/lib/python${version}`;
    cpSync(stdlib, join(rootfs, stdlib), {
      recursive: true,
      dereference: true,
      filter: (path) =>
        !/\/(test|tests|idlelib|tkinter|ensurepip|site-packages|dist-packages|__pycache__)(\/|$)/.test(
          path.slice(stdlib.length),
        ),
    });
    const runtime = join(rootfs, 'var/runtime');
    execFileSync(
      python,
      [
        '-m',
        'pip',
        'install',
        '--quiet',
        '--no-cache-dir',
        '--target',
        runtime,
        `awslambdaric==${PYTHON_RIC_VERSION}`,
      ],
      {
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    const objects = execFileSync('find', [rootfs, '-name', '*.so*', '-type', 'f'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
    for (const binary of [python, ...objects])
      for (const library of sharedLibraries(binary))
        if (!existsSync(join(rootfs, library))) copyInto(rootfs, library);
    cpSync(source, join(rootfs, 'var/task'), { recursive: true });
    writeConfig(dir, {
      entrypoint: ['/usr/bin/python3', '-m', 'awslambdaric'],
      cmd: ['app.handler'],
      env: ['LAMBDA_TASK_ROOT=/var/task', 'PYTHONPATH=/var/runtime:/var/task', 'PYTHONDONTWRITEBYTECODE=1'],
      workingDir: '/var/task',
    });
  });
}
