// Installs the AWS clients the Invoke API tests drive (issue 18): boto3 and the AWS CLI v1 from PyPI, once,
// into a venv outside the repository: ~/.cache/hearth-test/aws-<versions> ($HEARTH_TEST_CACHE overrides
// ~/.cache/hearth-test). `node test/support/aws/clients.mjs` prints the venv's bin folder; scripts/test.mjs
// runs it before the suites, and the suite calls awsClients() itself so a targeted run works too.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Pinned so a test run is the same run next month; the folder name changes with them. */
export const AWS_PACKAGES = ['boto3==1.44.5', 'awscli==1.46.2'];

/** The venv's bin folder (`python`, `aws`), created when it is missing. */
export function awsClients() {
  const cache = process.env.HEARTH_TEST_CACHE ?? join(homedir(), '.cache', 'hearth-test');
  const venv = join(cache, `aws-${AWS_PACKAGES.map((spec) => spec.replace('==', '-')).join('_')}`);
  const bin = join(venv, 'bin');
  const marker = join(venv, '.complete');
  if (existsSync(marker)) return bin;
  // Built where it will live (a venv's scripts name their interpreter by absolute path, so it cannot be
  // moved into place); the marker is written last, so an interrupted install is started again.
  rmSync(venv, { recursive: true, force: true });
  process.stderr.write(`test setup: installing ${AWS_PACKAGES.join(' ')} from PyPI into ${venv}\n`);
  execFileSync('python3', ['-m', 'venv', venv], { stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync(
    join(bin, 'python'),
    ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', ...AWS_PACKAGES],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  writeFileSync(marker, '');
  return bin;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(`${awsClients()}\n`);
