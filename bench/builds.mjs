// Dependency builds of heavy packages, sandboxed: time cold (empty package cache), with the package cache
// warm (a new layer), and with the layer cached (a code-only redeploy); the layer's size and the build's disk.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deploy, round, scaleToZero, startHearth, timeToFirstByte } from './lib.mjs';

const CASES = [
  {
    name: 'numpy + pandas',
    runtime: 'python3',
    spec: '{ runtime: python3, limits: { memory: 512Mi, timeout: 30s } }',
    files: {
      'main.py':
        'import numpy as np\nimport pandas as pd\n\n\ndef handler(event, context):\n    return {"sum": int(pd.DataFrame({"a": np.arange(4)}).to_numpy().sum())}\n',
      'requirements.txt': 'numpy==2.2.6\npandas==2.2.3\n',
    },
    manifest: 'requirements.txt',
  },
  {
    name: 'sharp (prebuilt libvips from npm)',
    runtime: 'node20',
    spec: '{ runtime: node20, limits: { memory: 512Mi, timeout: 30s } }',
    files: {
      'index.mjs':
        "import sharp from 'sharp';\n\nexport default async () => (await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).png().metadata());\n",
      'package.json': JSON.stringify({ name: 'b', private: true, dependencies: { sharp: '0.33.5' } }),
    },
    manifest: 'package.json',
  },
  {
    name: 'better-sqlite3 (compiled: its prebuilt download is on GitHub)',
    runtime: 'node20',
    spec: '{ runtime: node20, build: { scripts: true }, limits: { memory: 256Mi } }',
    files: {
      'index.mjs':
        "import Database from 'better-sqlite3';\n\nexport default async () => new Database(':memory:').prepare('select 41 + 1 as y').get();\n",
      'package.json': JSON.stringify({
        name: 'b',
        private: true,
        dependencies: { 'better-sqlite3': '11.10.0' },
      }),
    },
    manifest: 'package.json',
  },
];

function writeFunction(folder, name, spec, files) {
  writeFileSync(
    join(folder, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: ${spec}\n`,
  );
  for (const [file, text] of Object.entries(files)) writeFileSync(join(folder, file), text);
}

function kib(dir) {
  return Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]);
}

async function oneCase(hearth, index, testCase) {
  const folder = mkdtempSync(join(tmpdir(), 'hearth-builds-'));
  const namespace = `builds-${index}`;
  const name = 'heavy';
  try {
    writeFunction(folder, name, testCase.spec, testCase.files);
    const cold = await deploy(hearth.url, folder, name, { namespace });
    const key = cold.body.function.dependencies.key;
    const layerMiB = round(kib(join(hearth.dataDir, 'layers', key)) / 1024, 1);
    const cacheMiB = round(
      kib(join(hearth.dataDir, 'cache', 'build', namespace, testCase.runtime)) / 1024,
      1,
    );
    await scaleToZero(hearth.url, name, namespace);
    const first = await timeToFirstByte(hearth.url, `/function/${name}.${namespace}`);
    if (first.status !== 200)
      throw new Error(`${testCase.name}: first invocation answered ${first.status} ${first.body}`);

    // A new layer (the manifest changed by a blank line) over the namespace's warm package cache.
    const manifestPath = join(folder, testCase.manifest);
    const text = testCase.files[testCase.manifest];
    writeFileSync(manifestPath, testCase.manifest.endsWith('.json') ? `${text}\n` : `${text}\n# warm\n`);
    const warm = await deploy(hearth.url, folder, name, { namespace });

    // The layer cached: only the code changed.
    const entry = Object.keys(testCase.files).find((file) => file !== testCase.manifest);
    writeFileSync(
      join(folder, entry),
      `${testCase.files[entry]}\n${entry.endsWith('.py') ? '#' : '//'} v3\n`,
    );
    const cached = await deploy(hearth.url, folder, name, { namespace });
    const reused = cached.body.function.dependencies.key === warm.body.function.dependencies.key;
    return {
      name: testCase.name,
      runtime: testCase.runtime,
      coldMs: round(cold.ms, 0),
      warmCacheMs: round(warm.ms, 0),
      layerCachedMs: round(cached.ms, 0),
      layerReused: reused,
      layerMiB,
      packageCacheMiB: cacheMiB,
      firstInvokeMs: round(first.ttfb, 0),
      firstInvokeCold: first.cold,
    };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

export async function buildsBench() {
  const hearth = await startHearth();
  try {
    const cases = [];
    for (const [index, testCase] of CASES.entries()) cases.push(await oneCase(hearth, index, testCase));
    return { maxDisk: '4Gi, the default', cases };
  } finally {
    await hearth.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await buildsBench(), null, 2)}\n`);
}
