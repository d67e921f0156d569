// Builds the WebAssembly modules the wasm suite and bench deploy, from their sources in this repository:
// the Rust examples and fixtures for wasm32-wasip1 (adding that target with rustup when it is missing) and
// the Go example with GOOS=wasip1 GOARCH=wasm. Each module is cached by the hash of its sources under
// ~/.cache/hearth-test/wasm ($HEARTH_TEST_CACHE overrides ~/.cache/hearth-test), so only a change rebuilds.
// `node test/support/wasm/build.mjs` prints the modules' paths; scripts/test.mjs runs it before the suites.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');

// rustup installs into ~/.cargo/bin and Go's tarball into /usr/local/go/bin: a shell's profile puts them on
// PATH, a bare CI shell may not.
for (const dir of [join(homedir(), '.cargo', 'bin'), '/usr/local/go/bin'])
  if (existsSync(dir) && !(process.env.PATH ?? '').split(':').includes(dir))
    process.env.PATH = `${process.env.PATH ?? ''}:${dir}`;
const TARGET = 'wasm32-wasip1';

/** name → [language, source folder, artifact]. */
const MODULES = {
  helloRust: ['rust', 'examples/wasm/hello-rust', 'main.wasm'],
  computeRust: ['rust', 'examples/wasm/compute-rust', 'main.wasm'],
  helloGo: ['go', 'examples/wasm/hello-go', 'main.wasm'],
  probe: ['rust', 'test/fixtures/wasm/probe', 'probe.wasm'],
  probeExports: ['rust', 'test/fixtures/wasm/probe', 'probe_exports.wasm'],
};

function cacheDir() {
  return join(process.env.HEARTH_TEST_CACHE ?? join(homedir(), '.cache', 'hearth-test'), 'wasm');
}

function sourceFiles(dir) {
  const files = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    const rel = relative(dir, path);
    if (!entry.isFile() || rel.startsWith('target') || rel.endsWith('.wasm')) continue;
    files.push(rel);
  }
  return files.sort();
}

function sourceHash(dir) {
  const hash = createHash('sha256');
  for (const file of sourceFiles(dir)) hash.update(`${file}\0`).update(readFileSync(join(dir, file)));
  return hash.digest('hex').slice(0, 16);
}

let rustReady = false;
/** Rust's wasm32-wasip1 standard library, added with rustup when this toolchain lacks it. */
export function ensureRustTarget() {
  if (rustReady) return;
  const listed = spawnSync('rustup', ['target', 'list', '--installed'], { encoding: 'utf8' });
  if (listed.error !== undefined)
    throw new Error('rustup is needed to build the Rust wasm modules: install it from https://rustup.rs');
  if (!listed.stdout.split('\n').includes(TARGET)) {
    process.stderr.write(`test setup: rustup target add ${TARGET}\n`);
    execFileSync('rustup', ['target', 'add', TARGET], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  rustReady = true;
}

function build(language, dir, out) {
  const staging = `${out}.tmp-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  if (language === 'rust') {
    ensureRustTarget();
    const targetDir = join(cacheDir(), 'cargo-target', relative(ROOT, dir).replaceAll('/', '_'));
    execFileSync('cargo', ['build', '--quiet', '--release', '--target', TARGET], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, CARGO_TARGET_DIR: targetDir },
    });
    const built = join(targetDir, TARGET, 'release');
    for (const file of readdirSync(built))
      if (file.endsWith('.wasm')) cpSync(join(built, file), join(staging, file));
  } else {
    execFileSync('go', ['build', '-o', join(staging, 'main.wasm'), '.'], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, GOOS: 'wasip1', GOARCH: 'wasm' },
    });
  }
  rmSync(out, { recursive: true, force: true });
  renameSync(staging, out);
}

/** name → absolute path of the built module. */
export function buildWasmModules() {
  const paths = {};
  for (const [name, [language, folder, artifact]] of Object.entries(MODULES)) {
    const dir = join(ROOT, folder);
    const out = join(cacheDir(), `${folder.replaceAll('/', '_')}-${sourceHash(dir)}`);
    if (!existsSync(join(out, artifact))) {
      process.stderr.write(`test setup: building ${folder} (${language}) for WASI\n`);
      build(language, dir, out);
    }
    if (!statSync(join(out, artifact)).isFile()) throw new Error(`${folder} built no ${artifact}`);
    paths[name] = join(out, artifact);
  }
  return paths;
}

if (process.argv[1] === fileURLToPath(import.meta.url))
  process.stdout.write(`${JSON.stringify(buildWasmModules(), null, 2)}\n`);
