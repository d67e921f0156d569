// Builds the Kubernetes tools the k8s suite needs, once, into ~/.cache/hearth/k8s/ (issue 12):
//   kube-apiserver  from k8s.io/kubernetes (the Go module proxy serves the module without its staging/
//                   tree, so its `./staging/src/k8s.io/*` replaces are pointed at the published
//                   k8s.io/* modules of the same release)
//   helm            from helm.sh/helm/v4
// The binaries are named with their versions, so a version change builds anew. About 5-10 minutes for
// kube-apiserver on 2 cores the first time; nothing after that.
// Usage: node scripts/k8s-tools.mjs [apiserver|helm]...   (both when none is named)
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const kubernetesVersion = 'v1.34.2';
// The staging modules of Kubernetes 1.34.2 are published as k8s.io/*@v0.34.2.
export const stagingVersion = 'v0.34.2';
export const helmVersion = 'v4.3.2';
export const cacheDir = join(homedir(), '.cache', 'hearth', 'k8s');
export const apiserverPath = join(cacheDir, `kube-apiserver-${kubernetesVersion}`);
export const helmPath = join(cacheDir, `helm-${helmVersion}`);

function log(message) {
  process.stderr.write(`k8s tools: ${message}\n`);
}

function go(args, cwd, extraEnv = {}) {
  return execFileSync('go', args, {
    cwd,
    env: { ...process.env, GOFLAGS: '-mod=mod -buildvcs=false', CGO_ENABLED: '0', ...extraEnv },
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
  }).toString();
}

export function buildApiserver() {
  if (existsSync(apiserverPath)) return apiserverPath;
  mkdirSync(cacheDir, { recursive: true });
  log(`building kube-apiserver ${kubernetesVersion} (several minutes, once)`);
  const module = JSON.parse(
    go(['mod', 'download', '-json', `k8s.io/kubernetes@${kubernetesVersion}`], cacheDir),
  );
  if (!module.Dir) throw new Error(`go mod download k8s.io/kubernetes@${kubernetesVersion}: ${module.Error}`);
  const source = join(cacheDir, `kubernetes-src-${kubernetesVersion}`);
  rmSync(source, { recursive: true, force: true });
  cpSync(module.Dir, source, { recursive: true });
  execFileSync('chmod', ['-R', 'u+w', source]);
  // The module zip leaves out staging/ (nested modules) and would build from vendor/ and go.work.
  for (const name of ['vendor', 'go.work', 'go.work.sum'])
    rmSync(join(source, name), { recursive: true, force: true });
  const goMod = readFileSync(join(source, 'go.mod'), 'utf8').replace(
    /^(\s*)(k8s\.io\/[\w-]+) => \.\/staging\/src\/k8s\.io\/[\w-]+$/gm,
    `$1$2 => $2 ${stagingVersion}`,
  );
  writeFileSync(join(source, 'go.mod'), goMod);
  const output = join(cacheDir, `kube-apiserver-${kubernetesVersion}.partial`);
  go(['build', '-trimpath', '-ldflags=-s -w', '-o', output, './cmd/kube-apiserver'], source);
  chmodSync(output, 0o755);
  renameSync(output, apiserverPath);
  rmSync(source, { recursive: true, force: true });
  log(`kube-apiserver at ${apiserverPath}`);
  return apiserverPath;
}

export function buildHelm() {
  if (existsSync(helmPath)) return helmPath;
  mkdirSync(cacheDir, { recursive: true });
  log(`building helm ${helmVersion} (a minute or two, once)`);
  const gobin = join(cacheDir, `helm-bin-${helmVersion}`);
  go(['install', '-trimpath', '-ldflags=-s -w', `helm.sh/helm/v4/cmd/helm@${helmVersion}`], cacheDir, {
    GOBIN: gobin,
    GOFLAGS: '-buildvcs=false',
  });
  renameSync(join(gobin, 'helm'), helmPath);
  rmSync(gobin, { recursive: true, force: true });
  log(`helm at ${helmPath}`);
  return helmPath;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const wanted = process.argv.slice(2);
  if (wanted.length === 0 || wanted.includes('apiserver')) buildApiserver();
  if (wanted.length === 0 || wanted.includes('helm')) buildHelm();
}
