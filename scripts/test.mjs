// `npm test`: make sure what the suites need is on this machine (installing it as root where it can),
// build, then run every suite. A missing tool is a failure with one line, never a skipped test.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const isRoot = process.getuid?.() === 0;

function has(command, args = ['--version']) {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

let aptUpdated = false;
function aptInstall(packages, why) {
  if (!isRoot || !existsSync('/usr/bin/apt-get')) {
    process.stderr.write(`error: ${why}; install it with: sudo apt-get install -y ${packages.join(' ')}\n`);
    process.exit(1);
  }
  process.stderr.write(`test setup: installing ${packages.join(' ')} (${why})\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    aptUpdated = true;
  }
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
}

if (!has('bwrap')) aptInstall(['bubblewrap'], 'bubblewrap (bwrap) is needed for sandboxed functions');
if (!has('python3')) aptInstall(['python3', 'python3-pip'], 'python3 is needed for Python functions');
if (!has('python3', ['-m', 'pip', '--version']))
  aptInstall(['python3-pip'], 'pip is needed to build Python dependency layers');

execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
const vitest = spawnSync(
  process.execPath,
  [join(root, 'node_modules/vitest/vitest.mjs'), 'run', ...process.argv.slice(2)],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
process.exit(vitest.status ?? 1);
