// Image pulls (issue 17): seconds and bytes for a first pull, and for a tag that changes one layer, from a
// real registry (Debian's docker-registry) on loopback. Images are built from source with buildah
// (test/support/oci, cached under ~/.cache/hearth-test-images). Bytes are what landed in the node's blob
// store, so a layer already there counts nothing.
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { goImage, pushArchive, twoTagImages } from '../test/support/oci/images.mjs';
import { startRegistry } from '../test/support/oci/registry.mjs';
import { deploy, round, startHearth } from './lib.mjs';

function blobBytes(dataDir) {
  const dir = join(dataDir, 'images', 'blobs', 'sha256');
  let total = 0;
  for (const name of readdirSync(dir)) total += statSync(join(dir, name)).size;
  return total;
}

export async function pullBench() {
  const [go, two] = await Promise.all([goImage(), twoTagImages()]);
  const registry = await startRegistry();
  const hearth = await startHearth();
  const folder = mkdtempSync(join(tmpdir(), 'hearth-bench-pull-'));
  try {
    await pushArchive(go, `${registry.host}/bench/go-http:1`);
    await pushArchive(two.v1, `${registry.host}/bench/two:v1`);
    await pushArchive(two.v2, `${registry.host}/bench/two:v2`);
    const measure = async (name, image) => {
      writeFileSync(
        join(folder, 'hearth.yaml'),
        `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: { image: "${image}" }\n`,
      );
      const before = blobBytes(hearth.dataDir);
      const { ms } = await deploy(hearth.url, folder, name);
      return { seconds: round(ms / 1000, 3), bytes: blobBytes(hearth.dataDir) - before };
    };
    const result = {
      goFirst: await measure('go', `${registry.host}/bench/go-http:1`),
      twoFirst: await measure('two', `${registry.host}/bench/two:v1`),
      twoChanged: await measure('two', `${registry.host}/bench/two:v2`),
    };
    return { ...result, changedLayerShare: round(result.twoChanged.bytes / result.twoFirst.bytes, 4) };
  } finally {
    rmSync(folder, { recursive: true, force: true });
    await hearth.stop();
    await registry.stop();
  }
}
