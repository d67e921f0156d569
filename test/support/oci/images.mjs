// Test images built from source, without a Docker daemon: `buildah` (vfs storage in a private temp root)
// builds them and saves each as an `oci-archive` under ~/.cache/hearth-test-images, keyed by a hash of its
// sources, so later runs (tests and `node bench/run.mjs pull`) reuse it. `pushArchive` copies one into a
// registry with `skopeo`. Types in images.d.mts.
//
// - `goImage()`: a static Go HTTP server (CGO_ENABLED=0) `FROM scratch`, serving on $PORT (8080).
// - `twoTagImages()`: `v1` and `v2`, which share a 4 MiB base layer and differ in one small top layer.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
export const IMAGE_CACHE = join(homedir(), '.cache', 'hearth-test-images');
/** Bumped when the recipes below change in a way the hashed sources do not show. */
const RECIPE = 'v1';

export async function goImage() {
  const sources = await Promise.all(
    ['main.go', 'go.mod'].map((file) => readFile(join(HERE, 'go-http', file))),
  );
  const dir = await cached('go-http', sources, async (work, out) => {
    await run('go', ['build', '-trimpath', '-ldflags=-s -w', '-o', join(work, 'server'), '.'], {
      cwd: join(HERE, 'go-http'),
      env: { ...process.env, CGO_ENABLED: '0', GOOS: 'linux', GOARCH: 'amd64', GOFLAGS: '-mod=mod' },
    });
    await buildah(work, async (b) => {
      const container = (await b('from', 'scratch')).trim();
      await b('copy', '--chmod', '0755', container, join(work, 'server'), '/server');
      await b(
        'config',
        '--entrypoint',
        '["/server"]',
        '--port',
        '8080/tcp',
        '--env',
        'PORT=8080',
        '--workingdir',
        '/',
        '--user',
        '65534',
        '--os',
        'linux',
        '--arch',
        'amd64',
        container,
      );
      await b('commit', '--format', 'oci', container, 'localhost/hearth-test/go-http:latest');
      await b('push', 'localhost/hearth-test/go-http:latest', `oci-archive:${join(out, 'image.tar')}`);
    });
  });
  return join(dir, 'image.tar');
}

export async function twoTagImages() {
  // Built on the Go server so that both tags run (a deploy starts the image and waits for its port).
  const go = await goImage();
  const dir = await cached(
    'two-tag',
    [Buffer.from('v1 v2 on go-http'), await readFile(go)],
    async (work, out) => {
      // 4 MiB that does not compress: the shared layer a one-layer change must not pull again.
      const base = join(work, 'base.bin');
      const seed = createHash('sha256').update('hearth base layer').digest();
      const blocks = [];
      for (let i = 0; i < 4 * 1024 * 32; i += 1)
        blocks.push(createHash('sha256').update(seed).update(String(i)).digest());
      await writeFile(base, Buffer.concat(blocks));
      await buildah(work, async (b) => {
        const first = (await b('from', `oci-archive:${go}`)).trim();
        await b('copy', first, base, '/base.bin');
        await b('commit', '--format', 'oci', first, 'localhost/hearth-test/base:latest');
        for (const tag of ['v1', 'v2']) {
          await writeFile(join(work, 'version.txt'), `${tag}\n`);
          const next = (await b('from', 'localhost/hearth-test/base:latest')).trim();
          await b('copy', next, join(work, 'version.txt'), '/version.txt');
          await b('commit', '--format', 'oci', next, `localhost/hearth-test/two:${tag}`);
          await b('push', `localhost/hearth-test/two:${tag}`, `oci-archive:${join(out, `${tag}.tar`)}`);
        }
      });
    },
  );
  return { v1: join(dir, 'v1.tar'), v2: join(dir, 'v2.tar') };
}

/**
 * Builds any image with buildah, cached like the others: `from` is `scratch` or an oci-archive file (another
 * image of this module), `copy` maps paths in the image to files or folders on this machine, `config` sets
 * Entrypoint/Cmd/Env/WorkingDir/User/ExposedPorts. `sources` are the bytes the cache key hashes (the
 * recipe is hashed too). Answers the oci-archive file.
 */
export async function buildImage(name, { from = 'scratch', copy = {}, config = {}, sources = [] }) {
  const recipe = Buffer.from(JSON.stringify({ from, copy, config }));
  const dir = await cached(name, [recipe, ...sources], async (work, out) => {
    await buildah(work, async (b) => {
      const container = (await b('from', from === 'scratch' ? 'scratch' : `oci-archive:${from}`)).trim();
      for (const [dest, src] of Object.entries(copy)) await b('copy', container, src, dest);
      const flags = ['--os', 'linux', '--arch', 'amd64'];
      if (config.entrypoint !== undefined) flags.push('--entrypoint', JSON.stringify(config.entrypoint));
      if (config.cmd !== undefined) flags.push('--cmd', JSON.stringify(config.cmd));
      for (const [key, value] of Object.entries(config.env ?? {})) flags.push('--env', `${key}=${value}`);
      if (config.workingDir !== undefined) flags.push('--workingdir', config.workingDir);
      if (config.user !== undefined) flags.push('--user', config.user);
      for (const port of config.ports ?? []) flags.push('--port', port);
      await b('config', ...flags, container);
      await b('commit', '--format', 'oci', container, `localhost/hearth-test/${name}:latest`);
      await b('push', `localhost/hearth-test/${name}:latest`, `oci-archive:${join(out, 'image.tar')}`);
    });
  });
  return join(dir, 'image.tar');
}

/**
 * A base image with this machine's Node (the binary and the shared libraries `ldd` names, at their paths)
 * and nothing else: what a Node image for the container class can build on (`buildImage({ from })`).
 */
export async function nodeBaseImage() {
  const { stdout } = await run('ldd', [process.execPath]);
  const libraries = [...stdout.matchAll(/(\/\S+\.so[^\s]*)/g)].map((match) => match[1]);
  const copy = { '/usr/local/bin/node': process.execPath };
  for (const library of new Set(libraries)) copy[library] = library;
  return buildImage('node-base', {
    copy,
    config: { entrypoint: ['/usr/local/bin/node'], env: { PATH: '/usr/local/bin:/usr/bin:/bin' } },
    sources: [Buffer.from(process.version), Buffer.from(libraries.join('\n'))],
  });
}

/** Copies an oci-archive into `host/repository:tag` over plain HTTP. */
export async function pushArchive(archive, target, credentials) {
  await run('skopeo', [
    'copy',
    '--quiet',
    '--dest-tls-verify=false',
    ...(credentials === undefined ? [] : ['--dest-creds', `${credentials.username}:${credentials.password}`]),
    `oci-archive:${archive}`,
    `docker://${target}`,
  ]);
}

/** A directory of built files under the cache, named by `name` and the hash of `sources`; built once. */
async function cached(name, sources, build) {
  const hash = createHash('sha256').update(RECIPE);
  for (const source of sources) hash.update(source);
  const dir = join(IMAGE_CACHE, `${name}-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(dir)) return dir;
  await mkdir(IMAGE_CACHE, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), `hearth-image-${name}-`));
  const out = await mkdtemp(join(IMAGE_CACHE, `.${name}-`));
  try {
    await build(work, out);
    await rename(out, dir);
    return dir;
  } finally {
    await rm(out, { recursive: true, force: true }).catch(() => undefined);
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Runs buildah with its own storage under `work` (vfs: no overlay mounts needed). */
async function buildah(work, steps) {
  const root = join(work, 'storage');
  const b = async (...args) => {
    const { stdout } = await run(
      'buildah',
      ['--root', root, '--runroot', join(work, 'runroot'), '--storage-driver', 'vfs', ...args],
      { maxBuffer: 16 * 1024 * 1024 },
    );
    return stdout;
  };
  try {
    await steps(b);
  } finally {
    // vfs layers are plain directories, but buildah may have left them read-only.
    await run('chmod', ['-R', 'u+w', root]).catch(() => undefined);
  }
}
