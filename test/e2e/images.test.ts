/**
 * @module Container images on the real platform (issue 17, the image half): real `docker-registry`
 * instances on loopback (anonymous and htpasswd basic auth), images built from source with buildah, the real
 * CLI. Pulls with layer reuse, digest checks, the bad-input list, oci-archive uploads and garbage collection,
 * asserted on what a user sees (`hearth deploy`, `hearth describe`) and on the rootfs stored on the node.
 * Invoking a container function belongs to the run half; these tests stop at the deployed version.
 */

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { copyFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  api,
  deployArchive,
  eventually,
  getFunction,
  type Hearth,
  makeFolder,
  rawTarGz,
  runCli,
  startHearth,
} from '../support/hearth.js';
import { configFile } from '../support/load.js';
import { pushCrafted, registryBlobFile } from '../support/oci/craft.js';
import { goImage, pushArchive, type TwoTags, twoTagImages } from '../support/oci/images.mjs';
import { startRegistry, type TestRegistry } from '../support/oci/registry.mjs';

const BOB = { username: 'bob', password: 'correct horse battery staple' };

let hearth: Hearth;
let open: TestRegistry;
let locked: TestRegistry;
let tokens: TestRegistry;
let goArchive: string;
let twoTags: TwoTags;

beforeAll(async () => {
  [goArchive, twoTags] = await Promise.all([goImage(), twoTagImages()]);
  [open, locked, tokens, hearth] = await Promise.all([
    startRegistry(),
    startRegistry({ auth: BOB }),
    startRegistry({ auth: BOB, token: true }),
    startHearth(),
  ]);
  await pushArchive(goArchive, `${open.host}/hearth/go-http:1.0`);
  await pushArchive(goArchive, `${locked.host}/private/go-http:1.0`, BOB);
  await pushArchive(goArchive, `${tokens.host}/private/go-http:1.0`, BOB);
  await pushArchive(twoTags.v1, `${open.host}/hearth/two:v1`);
  await pushArchive(twoTags.v2, `${open.host}/hearth/two:v2`);
}, 600_000);

afterAll(async () => {
  await hearth?.stop();
  await open?.stop();
  await locked?.stop();
  await tokens?.stop();
});

/** The digest the registry serves for a tag (what the deployed version must pin). */
async function registryDigest(host: string, repository: string, tag: string): Promise<string> {
  const response = await fetch(`http://${host}/v2/${repository}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  return response.headers.get('docker-content-digest') ?? '';
}

/** The platform's `image resolved` log records for one reference. */
function resolvedLog(reference: string): Record<string, unknown>[] {
  return hearth.log.filter((line) => line.msg === 'image resolved' && line.image === reference);
}

function rootfsOf(digest: string): string {
  return join(hearth.dataDir, 'images', 'rootfs', digest.replace(/^sha256:/, ''));
}

/** A deploy over the API of a manifest-only package (what the CLI sends), for status codes. */
async function deployManifest(name: string, spec: string, namespace = 'default') {
  return deployArchive(
    hearth.url,
    rawTarGz([
      {
        name: 'hearth.yaml',
        content: `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec: ${spec}\n`,
      },
    ]),
    { name, namespace },
  );
}

describe('pulling from a registry', () => {
  it('deploys an image from an anonymous registry with progress; describe shows the image and its digest', async () => {
    const reference = `${open.host}/hearth/go-http:1.0`;
    const deployed = await runCli(['deploy', '--image', reference], { url: hearth.url });
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.stdout).toMatch(/deployed default\/go-http version 1/);
    expect(deployed.stderr).toMatch(/layer 1\/1 .* pulled and verified/);
    expect(deployed.stderr).toMatch(/rootfs unpacked/);

    const digest = await registryDigest(open.host, 'hearth/go-http', '1.0');
    expect(digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    const described = await runCli(['describe', 'go-http'], { url: hearth.url });
    expect(described.code, described.stderr).toBe(0);
    expect(described.stdout).toMatch(new RegExp(`Image:\\s+${reference.replace(/[.]/g, '\\.')}`));
    expect(described.stdout).toContain(digest);
    expect(described.stdout).toMatch(/Command:\s+\/server/);
    expect(described.stdout).toMatch(/user 65534, ports 8080\/tcp/);

    // The rootfs: the image's one file, executable, no set-id bits; the mount points the runtime needs.
    const rootfs = rootfsOf(digest);
    const server = statSync(join(rootfs, 'server'));
    expect(server.mode & 0o7777).toBe(0o755);
    for (const dir of ['proc', 'dev', 'sys', 'tmp'])
      expect(statSync(join(rootfs, dir)).isDirectory()).toBe(true);
    expect(existsSync(join(rootfs, 'etc', 'resolv.conf'))).toBe(true);

    // And it runs: the container isolation serves the pinned image.
    const answer = await fetch(`${hearth.url}/function/go-http/orders`);
    expect(answer.status).toBe(200);
    expect(await answer.text()).toBe('hello from go /orders\n');
  });

  it('needs credentials for a locked registry, quotes its refusal, and pulls once logged in', async () => {
    const reference = `${locked.host}/private/go-http:1.0`;
    const anonymous = await runCli(['deploy', '--image', reference, '--name', 'private'], {
      url: hearth.url,
    });
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toContain('HEARTH_E_REGISTRY_AUTH');
    expect(anonymous.stderr).toContain(`hearth registry login ${locked.host}`);
    expect(await getFunction(hearth.url, 'private')).toBeUndefined();

    // Login checks the credentials with the registry first, as docker login does.
    const checked = await runCli(['registry', 'login', locked.host, '-u', 'bob', '--password-stdin'], {
      url: hearth.url,
      input: 'not the password\n',
    });
    expect(checked.code).not.toBe(0);
    expect(checked.stderr).toMatch(/HEARTH_E_REGISTRY_AUTH: .*refused the credentials of bob: 401/);
    expect((await runCli(['registry', 'ls'], { url: hearth.url })).stdout).not.toContain(locked.host);
    // Stored unchecked, a wrong password is the registry's refusal at deploy.
    const wrong = await runCli(
      ['registry', 'login', locked.host, '-u', 'bob', '--password-stdin', '--no-verify'],
      {
        url: hearth.url,
        input: 'not the password\n',
      },
    );
    expect(wrong.code, wrong.stderr).toBe(0);
    const refused = await runCli(['deploy', '--image', reference, '--name', 'private'], { url: hearth.url });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/refused the credentials of bob .*401 UNAUTHORIZED/);

    const login = await runCli(['registry', 'login', locked.host, '-u', 'bob', '--password-stdin'], {
      url: hearth.url,
      input: `${BOB.password}\n`,
    });
    expect(login.code, login.stderr).toBe(0);
    const listed = await runCli(['registry', 'ls'], { url: hearth.url });
    expect(listed.stdout).toMatch(new RegExp(`${locked.host.replace(/[.]/g, '\\.')}\\s+bob`));
    expect(listed.stdout).not.toContain(BOB.password);
    const secrets = await api<{ items: { name: string }[] }>(
      hearth.url,
      '/api/v1/namespaces/default/secrets',
    );
    expect(secrets.body.items.map((secret) => secret.name)).not.toContain(`registry:${locked.host}`);

    const pulled = await runCli(['deploy', '--image', reference, '--name', 'private'], { url: hearth.url });
    expect(pulled.code, pulled.stderr).toBe(0);
    // The same image as the anonymous registry's: its layer is already on this node.
    expect(pulled.stderr).toMatch(/layer 1\/1 .* already on this node/);

    const logout = await runCli(['registry', 'logout', locked.host], { url: hearth.url });
    expect(logout.code, logout.stderr).toBe(0);
    expect((await runCli(['registry', 'ls'], { url: hearth.url })).stdout).not.toContain(locked.host);
  });

  it('answers a bearer-token challenge with the stored login, per namespace', async () => {
    const reference = `${tokens.host}/private/go-http:1.0`;
    const anonymous = await runCli(['deploy', '--image', reference, '--name', 'token', '-n', 'tokens'], {
      url: hearth.url,
    });
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toContain('HEARTH_E_REGISTRY_AUTH');
    expect(anonymous.stderr).toContain('UNAUTHORIZED');
    const login = await runCli(
      ['registry', 'login', tokens.host, '-u', 'bob', '--password-stdin', '-n', 'tokens'],
      { url: hearth.url, input: BOB.password },
    );
    expect(login.code, login.stderr).toBe(0);
    const pulled = await runCli(['deploy', '--image', reference, '--name', 'token', '-n', 'tokens'], {
      url: hearth.url,
    });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect((await getFunction(hearth.url, 'token', 'tokens'))?.image?.manifestDigest).toMatch(/^sha256:/);
    // The login belongs to its namespace: another one still has none.
    const elsewhere = await runCli(['deploy', '--image', reference, '--name', 'token'], { url: hearth.url });
    expect(elsewhere.code).not.toBe(0);
    expect(elsewhere.stderr).toContain('HEARTH_E_REGISTRY_AUTH');
  });

  it('pulls only the changed layer for a new tag, and keeps the previous version when a pull fails', async () => {
    const v1 = `${open.host}/hearth/two:v1`;
    const v2 = `${open.host}/hearth/two:v2`;
    const first = await runCli(['deploy', '--image', v1, '--name', 'two'], { url: hearth.url });
    expect(first.code, first.stderr).toBe(0);
    const second = await runCli(['deploy', '--image', v2, '--name', 'two'], { url: hearth.url });
    expect(second.code, second.stderr).toBe(0);
    // Both tags sit on the Go server image (so they run): its layer and the 4 MiB base are shared.
    expect(second.stderr).toMatch(/layer 1\/3 .* already on this node/);
    expect(second.stderr).toMatch(/layer 2\/3 .* already on this node/);
    expect(second.stderr).toMatch(/layer 3\/3 .* pulled and verified/);

    const [pulledFirst] = resolvedLog(v1);
    const [pulledSecond] = resolvedLog(v2);
    expect(pulledFirst?.pulledBytes).toBeGreaterThan(4 * 1024 * 1024);
    // The second tag shares the 4 MiB base: only its small top layer and config are fetched.
    expect(pulledSecond?.reusedBytes).toBeGreaterThan(4 * 1024 * 1024);
    expect(pulledSecond?.pulledBytes).toBeLessThan(16 * 1024);
    expect(pulledSecond?.pulledLayers).toBe(1);

    const digest = await registryDigest(open.host, 'hearth/two', 'v2');
    expect(readFileSync(join(rootfsOf(digest), 'version.txt'), 'utf8')).toBe('v2\n');
    const active = await getFunction(hearth.url, 'two');
    expect(active?.version).toBe(2);
    expect(active?.image?.manifestDigest).toBe(digest);

    // An unknown tag: 404 naming the registry's answer, version 2 untouched.
    const missing = await deployManifest('two', `{ image: "${open.host}/hearth/two:v3" }`);
    expect(missing.status).toBe(404);
    expect(missing.text).toContain('HEARTH_E_IMAGE_NOT_FOUND');
    expect(missing.text).toContain('MANIFEST_UNKNOWN');
    const unknownRepo = await runCli(['deploy', '--image', `${open.host}/nobody/here:1`, '--name', 'two'], {
      url: hearth.url,
    });
    expect(unknownRepo.code).not.toBe(0);
    expect(unknownRepo.stderr).toContain('HEARTH_E_IMAGE_NOT_FOUND');
    const still = await getFunction(hearth.url, 'two');
    expect(still?.version).toBe(2);
    expect(still?.image?.manifestDigest).toBe(digest);
    expect(still?.lastDeployment?.status).toBe('failed');
  });

  it('pins the digest: redeploying the same tag after it moved makes a new version', async () => {
    const reference = `${open.host}/hearth/moving:latest`;
    await pushArchive(twoTags.v1, reference);
    expect(
      (await runCli(['deploy', '--image', reference, '--name', 'moving'], { url: hearth.url })).code,
    ).toBe(0);
    const unchanged = await runCli(['deploy', '--image', reference, '--name', 'moving'], { url: hearth.url });
    expect(unchanged.stdout).toMatch(/version 1\b/);
    await pushArchive(twoTags.v2, reference);
    const moved = await runCli(['deploy', '--image', reference, '--name', 'moving'], { url: hearth.url });
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toMatch(/version 2\b/);
    expect((await getFunction(hearth.url, 'moving'))?.image?.manifestDigest).toBe(
      await registryDigest(open.host, 'hearth/moving', 'latest'),
    );
  });
});

describe('bad images', () => {
  it('refuses a blob whose bytes do not match its digest', async () => {
    const pushed = await pushCrafted(open.host, 'bad/tampered', '1', {
      layers: [[{ name: 'unique.txt', content: `tampered ${Date.now()} ${Math.random()}\n` }]],
    });
    const file = registryBlobFile(open.storage, pushed.layerDigests[0] ?? '');
    const bytes = readFileSync(file);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 0xff;
    await writeFile(file, bytes);
    const answer = await deployManifest('tampered', `{ image: "${open.host}/bad/tampered:1" }`);
    expect(answer.status).toBe(422);
    expect(answer.text).toContain('HEARTH_E_IMAGE_INVALID');
    expect(answer.text).toContain('digest mismatch');
    expect(
      existsSync(join(hearth.dataDir, 'images', 'blobs', 'sha256', (pushed.layerDigests[0] ?? '').slice(7))),
    ).toBe(false);
  });

  it('refuses an unsupported layer media type, another architecture, and an index without linux/amd64', async () => {
    await pushCrafted(open.host, 'bad/mediatype', '1', {
      layers: [[{ name: 'a.txt', content: 'a' }]],
      layerMediaType: 'application/vnd.example.not-a-layer',
    });
    const mediaType = await deployManifest('mediatype', `{ image: "${open.host}/bad/mediatype:1" }`);
    expect(mediaType.status).toBe(422);
    expect(mediaType.text).toMatch(/unsupported media type application\/vnd\.example\.not-a-layer/);

    await pushCrafted(open.host, 'bad/arm', '1', {
      layers: [[{ name: 'a.txt', content: 'arm' }]],
      architecture: 'arm64',
    });
    const arch = await deployManifest('arm', `{ image: "${open.host}/bad/arm:1" }`);
    expect(arch.status).toBe(422);
    expect(arch.text).toContain('linux/arm64; this node runs linux/amd64');

    await pushCrafted(open.host, 'bad/armindex', '1', {
      layers: [[{ name: 'a.txt', content: 'arm index' }]],
      indexArchitecture: 'arm64',
    });
    const index = await deployManifest('armindex', `{ image: "${open.host}/bad/armindex:1" }`);
    expect(index.status).toBe(422);
    expect(index.text).toContain('no linux/amd64 image in the index (it has linux/arm64)');
  });

  it('refuses layers that climb out of the root, hold device files or write through a link, writing nothing outside', async () => {
    const marker = `hearth-escape-${process.pid}-${Date.now()}`;
    const cases: { name: string; layers: Parameters<typeof pushCrafted>[3]['layers']; says: RegExp }[] = [
      {
        name: 'dotdot',
        layers: [[{ name: `../../../../../../../../tmp/${marker}`, content: 'out' }]],
        says: /climbs out of the root with "\.\."/,
      },
      {
        name: 'device',
        layers: [
          [
            { name: 'etc/', type: '5' },
            { name: 'etc/evil', type: '3' },
          ],
        ],
        says: /device file etc\/evil/,
      },
      {
        name: 'through-link',
        layers: [
          [{ name: 'escape', type: '2', linkname: `/tmp/${marker}-dir` }],
          [{ name: 'escape/file', content: 'through' }],
        ],
        says: /goes through escape, which is a symbolic link/,
      },
    ];
    for (const bad of cases) {
      await pushCrafted(open.host, `bad/${bad.name}`, '1', { layers: bad.layers });
      const answer = await deployManifest(bad.name, `{ image: "${open.host}/bad/${bad.name}:1" }`);
      expect(answer.status, bad.name).toBe(422);
      expect(answer.text, bad.name).toContain('HEARTH_E_IMAGE_INVALID');
      expect((answer.body.error as { message: string }).message, bad.name).toMatch(bad.says);
      expect(await getFunction(hearth.url, bad.name)).toBeUndefined();
    }
    expect(existsSync(`/tmp/${marker}`)).toBe(false);
    expect(existsSync(`/tmp/${marker}-dir/file`)).toBe(false);
    // Nothing half-unpacked is left behind, and no rootfs took a bad image's name.
    expect(await readdir(join(hearth.dataDir, 'images', 'tmp'))).toEqual([]);
  });

  it('names the field of a bad spec.image, and refuses an image over the namespace codeBytes quota', async () => {
    const invalid = await deployManifest('badref', '{ image: "Not A Reference" }');
    expect(invalid.status).toBe(400);
    expect(invalid.text).toContain('spec.image');
    const both = await deployManifest(
      'both',
      `{ runtime: node20, image: "${open.host}/hearth/go-http:1.0" }`,
    );
    expect(both.status).toBe(400);
    expect(both.text).toContain('spec.runtime');
    // A host folder as a rootfs is for development nodes only (images.localDirs): off by default.
    const hostRoot = await deployManifest('hostroot', '{ image: "dir:/" }');
    expect(hostRoot.status).toBe(400);
    expect(hostRoot.text).toContain('spec.image');
    expect(hostRoot.text).toContain('images.localDirs');

    const folder = await makeFolder({
      'ns.yaml':
        'apiVersion: hearth.dev/v1\nkind: Namespace\nmetadata: { name: tiny }\nspec:\n  quotas: { codeBytes: 1Mi }\n',
    });
    try {
      const applied = await runCli(['apply', '-f', join(folder.dir, 'ns.yaml')], { url: hearth.url });
      expect(applied.code, applied.stderr).toBe(0);
    } finally {
      await folder.cleanup();
    }
    const over = await runCli(['deploy', '--image', `${open.host}/hearth/go-http:1.0`, '-n', 'tiny'], {
      url: hearth.url,
    });
    expect(over.code).not.toBe(0);
    expect(over.stderr).toContain('HEARTH_E_QUOTA_EXCEEDED');
    expect(await getFunction(hearth.url, 'go-http', 'tiny')).toBeUndefined();
    // Refused from the manifest's sizes: the layer is never downloaded.
    const big = await pushCrafted(open.host, 'bad/big', '1', {
      layers: [[{ name: 'big.bin', content: randomBytes(1536 * 1024).toString('base64') }]],
    });
    const refused = await deployManifest('big', `{ image: "${open.host}/bad/big:1" }`, 'tiny');
    expect(refused.status).toBe(403);
    expect(refused.text).toContain('codeBytes');
    const blobs = await readdir(join(hearth.dataDir, 'images', 'blobs', 'sha256'));
    expect(blobs).not.toContain((big.layerDigests[0] ?? '').slice(7));
  });
});

describe('oci-archive uploads', () => {
  it('deploys an image uploaded as an oci-archive, usable only in the namespace it was uploaded to', async () => {
    const deployed = await runCli(
      ['deploy', '--image', `oci-archive:${goArchive}`, '--name', 'from-archive'],
      {
        url: hearth.url,
      },
    );
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.stderr).toMatch(/uploading image archive image\.tar/);
    const detail = await getFunction(hearth.url, 'from-archive');
    // The same image the registry serves: same manifest digest, same rootfs.
    expect(detail?.image?.manifestDigest).toBe(await registryDigest(open.host, 'hearth/go-http', '1.0'));
    expect(detail?.image?.reference).toMatch(/^oci-archive:image\.tar@sha256:[a-f0-9]{64}$/);

    // A function folder whose hearth.yaml names the archive beside it: uploaded, then deployed by digest.
    const folder = await makeFolder({
      'hearth.yaml':
        'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: folder-image }\nspec:\n  image: oci-archive:./image.tar\n  env: { GREETING: hi }\n',
    });
    try {
      await copyFile(goArchive, join(folder.dir, 'image.tar'));
      const fromFolder = await runCli(['deploy', folder.dir], { url: hearth.url });
      expect(fromFolder.code, fromFolder.stderr).toBe(0);
    } finally {
      await folder.cleanup();
    }
    const folderImage = await getFunction(hearth.url, 'folder-image');
    expect(folderImage?.image?.manifestDigest).toBe(detail?.image?.manifestDigest);
    expect(folderImage?.spec.env).toEqual({ GREETING: 'hi' });
    // Only the manifest was packed: the archive went to the image store, not into the code package.
    expect(folderImage?.code.files).toBe(0);

    const elsewhere = await deployManifest('stolen', `{ image: "${detail?.image?.reference}" }`, 'other');
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.text).toContain('was not uploaded to this namespace');

    const notLayout = await api(hearth.url, '/api/v1/namespaces/default/images?name=junk.tar', {
      method: 'POST',
      headers: { 'content-type': 'application/x-tar' },
      body: Buffer.alloc(2048),
    });
    expect(notLayout.status).toBe(422);
    expect(notLayout.text).toContain('not a readable oci-archive');
  });

  it('applies a Function resource with spec.image from a YAML file', async () => {
    const folder = await makeFolder({
      'fn.yaml': `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: applied-image }\nspec:\n  image: ${open.host}/hearth/two:v1\n  args: ["--verbose"]\n`,
    });
    try {
      const applied = await runCli(['apply', '-f', join(folder.dir, 'fn.yaml')], { url: hearth.url });
      expect(applied.code, applied.stderr).toBe(0);
    } finally {
      await folder.cleanup();
    }
    const detail = await getFunction(hearth.url, 'applied-image');
    expect(detail?.image?.manifestDigest).toBe(await registryDigest(open.host, 'hearth/two', 'v1'));
    expect(detail?.image?.args).toEqual(['--verbose']);
  });
});

describe('garbage collection of images', () => {
  let collecting: Hearth;
  let config: Awaited<ReturnType<typeof configFile>>;

  beforeAll(async () => {
    config = await configFile({ gc: { grace: '2s', interval: '500ms' } });
    collecting = await startHearth({ args: ['--config', config.path] });
  });

  afterAll(async () => {
    await collecting?.stop();
    await config?.cleanup();
  });

  it("deletes a removed function's image blobs and rootfs, keeping those a deployed function uses", async () => {
    for (const [name, reference] of [
      ['kept', `${open.host}/hearth/go-http:1.0`],
      ['gone', `${open.host}/hearth/two:v1`],
    ] as const) {
      const deployed = await runCli(['deploy', '--image', reference, '--name', name], {
        url: collecting.url,
      });
      expect(deployed.code, deployed.stderr).toBe(0);
    }
    const keptDigest = await registryDigest(open.host, 'hearth/go-http', '1.0');
    const goneDigest = await registryDigest(open.host, 'hearth/two', 'v1');
    const rootfs = (digest: string) => join(collecting.dataDir, 'images', 'rootfs', digest.slice(7));
    expect(existsSync(rootfs(goneDigest))).toBe(true);
    const removed = await runCli(['rm', 'gone'], { url: collecting.url });
    expect(removed.code, removed.stderr).toBe(0);

    await eventually(
      'the removed image collected',
      () => (existsSync(rootfs(goneDigest)) ? undefined : true),
      {
        timeoutMs: 30_000,
      },
    );
    expect(existsSync(rootfs(keptDigest))).toBe(true);
    const blobs = await readdir(join(collecting.dataDir, 'images', 'blobs', 'sha256'));
    // The go image: its manifest, config and one layer are all that is left.
    expect(blobs.sort()).toEqual(expect.arrayContaining([keptDigest.slice(7)]));
    expect(blobs.length).toBe(3);
    const logged = await eventually('the collection logged', () =>
      collecting.log.find((line) => line.msg === 'garbage collected' && Number(line.imageRootfs) > 0),
    );
    expect(Number(logged?.freedBytes)).toBeGreaterThan(4 * 1024 * 1024);
  });
});
