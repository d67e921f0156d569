// Fetches a Kafka broker (KRaft) and its runtime jars from Maven Central, once, into a cache outside the
// repository: ~/.cache/hearth-test/kafka/libs-<version> ($HEARTH_TEST_CACHE overrides ~/.cache/hearth-test).
// `node test/support/kafka/fetch.mjs` prints the folder; scripts/test.mjs runs it before the suites.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pom = join(here, 'pom.xml');

export function kafkaVersion() {
  const match = readFileSync(pom, 'utf8').match(/<kafka\.version>([^<]+)<\/kafka\.version>/);
  if (!match) throw new Error(`${pom}: no <kafka.version>`);
  return match[1];
}

/** The folder of jars for the pom's Kafka version; fetched with Maven when it is missing. */
export function kafkaLibs() {
  const cache = process.env.HEARTH_TEST_CACHE ?? join(homedir(), '.cache', 'hearth-test');
  const libs = join(cache, 'kafka', `libs-${kafkaVersion()}`);
  const marker = join(libs, '.complete');
  if (existsSync(marker)) return libs;
  const partial = `${libs}.partial`;
  rmSync(partial, { recursive: true, force: true });
  process.stderr.write(`test setup: fetching Kafka ${kafkaVersion()} from Maven Central into ${libs}\n`);
  execFileSync(
    'mvn',
    [
      '-q',
      '-B',
      '-f',
      pom,
      'dependency:copy-dependencies',
      '-DincludeScope=runtime',
      `-DoutputDirectory=${partial}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  if (!readdirSync(partial).some((name) => name.startsWith('kafka_2.13-')))
    throw new Error(`Maven did not fetch kafka_2.13 into ${partial}`);
  rmSync(libs, { recursive: true, force: true });
  renameSync(partial, libs);
  execFileSync('touch', [marker]);
  return libs;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(`${kafkaLibs()}\n`);
