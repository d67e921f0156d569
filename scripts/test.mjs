// `npm test`: make sure what the suites need is on this machine (installing it as root where it can),
// build, then run every suite. A missing tool is a failure with one line, never a skipped test.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
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
if (!has('tmux', ['-V'])) aptInstall(['tmux'], 'tmux runs `hearth top` in a real terminal for its test');

// Observability and state (issue 5): a real Redis, Prometheus (and promtool), Chromium for the dashboard,
// and slirp4netns + nftables for egress allow-lists.
if (!has('redis-server'))
  aptInstall(['redis-server'], 'redis-server is needed for the Redis state store tests');
if (!has('promtool', ['--version']) || !has('prometheus', ['--version']))
  aptInstall(['prometheus'], 'prometheus (and promtool) are needed for the metrics and alert rule tests');
if (!existsSync('/usr/bin/chromium')) aptInstall(['chromium'], 'chromium is needed for the dashboard test');
if (!has('slirp4netns')) aptInstall(['slirp4netns'], 'slirp4netns is needed for egress allow-lists');
if (!existsSync('/usr/sbin/nft')) aptInstall(['nftables'], 'nftables is needed for egress allow-lists');

// isolation: microvm (issue 14): QEMU's microvm machine (with virtiofsd), Debian's cloud kernel as the guest
// kernel, busybox for the VM's init, lz4 to unpack the kernel and mke2fs for the VM's root image.
if (!has('qemu-system-x86_64', ['--version']) || !existsSync('/usr/lib/qemu/virtiofsd'))
  aptInstall(['qemu-system-x86'], 'QEMU is needed for isolation: microvm');
if (
  !(existsSync('/boot') ? readdirSync('/boot', { withFileTypes: true }) : []).some((entry) =>
    /^vmlinuz-.*-cloud-amd64$/.test(entry.name),
  )
)
  aptInstall(['linux-image-cloud-amd64'], "Debian's cloud kernel is the microVMs' guest kernel");
if (!existsSync('/bin/busybox')) aptInstall(['busybox-static'], "busybox is the microVMs' init");
if (!has('lz4', ['--version'])) aptInstall(['lz4'], "lz4 unpacks the microVMs' kernel");
if (!has('mke2fs', ['-V'])) aptInstall(['e2fsprogs'], "mke2fs builds the microVMs' root image");
// Container images (issue 17): a real registry (distribution v2) with htpasswd auth, and images built from
// source without a Docker daemon (buildah, skopeo to push; Go for the static server image).
if (!has('docker-registry', ['--version']))
  aptInstall(['docker-registry'], 'docker-registry is needed for the container image tests');
if (!has('htpasswd', ['-h']) && !existsSync('/usr/bin/htpasswd'))
  aptInstall(['apache2-utils'], 'htpasswd (apache2-utils) is needed for the registry auth tests');
if (!has('buildah', ['--version']) || !has('skopeo', ['--version']) || !has('umoci', ['--version']))
  aptInstall(['buildah', 'skopeo', 'umoci'], 'buildah, skopeo and umoci build and push the test images');
if (!has('go', ['version'])) aptInstall(['golang-go'], 'Go builds the static HTTP server test image');
if (!has('openssl', ['version']))
  aptInstall(['openssl'], 'openssl makes the signing certificate of the registry token service test');

// The event gateway's trigger suites run against real brokers (issue 3): Mosquitto and nats-server from
// Debian, and Kafka 4 (KRaft) from Maven Central, fetched once into ~/.cache/hearth-test.
if (!has('mosquitto', ['-h']) && !existsSync('/usr/sbin/mosquitto'))
  aptInstall(['mosquitto'], 'mosquitto is needed for the MQTT trigger tests');
if (!has('nats-server', ['--version']))
  aptInstall(['nats-server'], 'nats-server is needed for the NATS trigger tests');
// Cluster mode (issue 12) runs three nodes on a real PostgreSQL (a private cluster made with initdb, run as
// the `postgres` user the package creates), besides the nats-server and redis-server above.
if (
  !existsSync('/usr/lib/postgresql') ||
  spawnSync('id', ['-u', 'postgres'], { stdio: 'ignore' }).status !== 0
)
  aptInstall(['postgresql'], 'PostgreSQL is needed for the cluster mode tests');
// Its suite across hosts puts each node in a network namespace joined to a bridge (ip, unshare, nsenter).
if (!has('ip', ['-V'])) aptInstall(['iproute2'], 'ip (iproute2) is needed for the cluster test network');
// The audit log's syslog sink (issue 13) is tested against rsyslog, a real RFC 5424 receiver over TCP and TLS.
if (!existsSync('/usr/sbin/rsyslogd') || !existsSync('/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so'))
  aptInstall(
    ['rsyslog', 'rsyslog-openssl'],
    'rsyslog (with its TLS driver) is needed for the audit log syslog sink test',
  );
if (!has('java', ['-version']))
  aptInstall(['openjdk-17-jre-headless'], 'Java 17 is needed to run Kafka for the Kafka trigger tests');
if (!has('mvn', ['-v'])) aptInstall(['maven'], 'Maven is needed to fetch Kafka for the Kafka trigger tests');
// Container functions (issue 17): crun (runc the fallback) runs images; unshare and ip set up each
// instance's namespaces; the test images are built from source: Go servers and an aws-lambda-go bootstrap,
// and aws-lambda-ric, whose install compiles its native client (cmake, a C++ compiler).
if (!has('crun')) aptInstall(['crun'], 'crun is needed to run container functions');
if (!has('runc', ['--version']))
  aptInstall(['runc'], 'runc is the fallback OCI runtime for container functions');
if (!existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip'))
  aptInstall(['iproute2'], 'ip (iproute2) brings up a container network namespace');
if (!existsSync('/bin/busybox') && !existsSync('/usr/bin/busybox'))
  aptInstall(['busybox-static'], 'a static busybox waits in containers made ahead of their function');
if (!has('go', ['version'])) aptInstall(['golang-go'], 'Go builds the container test images');
if (!has('cmake') || !has('g++') || !has('make'))
  aptInstall(
    ['cmake', 'g++', 'make'],
    'aws-lambda-ric (the Lambda image test) compiles its native client at install',
  );

execFileSync(process.execPath, [join(root, 'test/support/kafka/fetch.mjs')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});

// The Lambda Invoke API suite drives real AWS clients (issue 18): boto3 and the AWS CLI v1 from PyPI, in a
// venv in ~/.cache/hearth-test, installed once (python3 -m venv is in Debian's python3-venv).
if (!has('python3', ['-c', 'import venv, ensurepip']))
  aptInstall(['python3-venv'], 'python3-venv is needed for the AWS clients the Lambda Invoke API tests use');
execFileSync(process.execPath, [join(root, 'test/support/aws/clients.mjs')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});

// rustup installs into ~/.cargo/bin and Go's tarball into /usr/local/go/bin, which a bare CI shell may not
// have on PATH.
for (const dir of [join(homedir(), '.cargo', 'bin'), '/usr/local/go/bin'])
  if (existsSync(dir) && !(process.env.PATH ?? '').split(':').includes(dir))
    process.env.PATH = `${process.env.PATH ?? ''}:${dir}`;
// WebAssembly functions (issue 14): the wasm suite deploys Rust and Go modules built from this repository's
// sources. Rust comes from rustup (its wasm32-wasip1 target is added when missing), Go from the machine.
if (!has('cargo')) {
  process.stderr.write(
    'error: cargo is needed to build the Rust wasm modules; install Rust with https://rustup.rs\n',
  );
  process.exit(1);
}
if (!has('go', ['version'])) {
  // Debian's golang-go (1.19) predates GOOS=wasip1 (Go 1.21).
  process.stderr.write(
    'error: Go 1.21 or newer is needed to build the Go wasm module; install it from https://go.dev/dl\n',
  );
  process.exit(1);
}
execFileSync(process.execPath, [join(root, 'test/support/wasm/build.mjs')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});

// Kubernetes mode (issue 12): Debian's etcd, and kube-apiserver and helm built from the Go module proxy once
// into ~/.cache/hearth/k8s (several minutes the first time, here rather than inside a suite's timeout).
if (!has('etcd')) aptInstall(['etcd-server'], "etcd is the Kubernetes suite's API server store");
if (!has('openssl', ['version']))
  aptInstall(['openssl'], "openssl makes the Kubernetes suite's certificates");
execFileSync(process.execPath, [join(root, 'scripts/k8s-tools.mjs')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});

execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
execFileSync(process.execPath, [join(root, 'scripts/microvm-image.mjs')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
const vitest = spawnSync(
  process.execPath,
  [join(root, 'node_modules/vitest/vitest.mjs'), 'run', ...process.argv.slice(2)],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
process.exit(vitest.status ?? 1);
