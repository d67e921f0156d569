// Writes the CRDs of Kubernetes mode (issue 12), derived from the domain's zod schemas by src/k8s/crd.ts,
// to deploy/crds/ and the Helm chart's crds/. Run after `npm run build`; src/k8s/crd.test.ts fails when
// the files are not what this would write.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { crdFiles } = await import(join(root, 'dist/k8s/crd.js'));
for (const dir of ['deploy/crds', 'deploy/helm/hearth/crds']) {
  mkdirSync(join(root, dir), { recursive: true });
  for (const [name, text] of Object.entries(crdFiles())) writeFileSync(join(root, dir, name), text);
}
