/**
 * @module End-to-end container functions, the run half of issue 17: images (built here from source, see
 * test/support/container-images.ts) run by crun behind the sandbox's walls through the real platform.
 *
 * - `protocol: http`: a static Go server answers on $PORT; path, query, body, trace context and streamed
 *   answers pass through; the image config and spec.command/args/env apply as Kubernetes does.
 * - `protocol: lambda`: AWS's own `aws-lambda-ric` (npm) runs an unchanged Lambda handler against
 *   Hearth's Runtime API: the API Gateway v2 event and answer, errors, response streaming.
 * - `runtime: provided`: an aws-lambda-go `bootstrap` from a function folder, in the sandbox.
 * - A deadline answers 504 and the container is replaced; a container that never opens its port, or
 *   exits at once, fails its deploy naming why, and the previous version keeps serving.
 * - Walls: limits.memory (HEARTH_E_FN_OOM), limits.pids, limits.tmp, a read-only rootfs, no host
 *   loopback with egress none, and nothing left (process, crun state, mount, cgroup) after it ends.
 *
 * Images are deployed with this branch's local form, `spec.image: dir:/PATH` (a rootfs and its config).
 */

import { cpSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTAINER_RUN_DIR } from '../../src/runtime/container/index.js';
import {
  goHttpImage,
  goLambdaBootstrap,
  nodeLambdaImage,
  pythonLambdaImage,
} from '../support/container-images.mjs';
import {
  type ContainerPlatform,
  containerCgroups,
  containerProcesses,
  startContainerPlatform,
} from '../support/containers.js';
import {
  deployFolder,
  eventually,
  functionLogs,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  type TempFolder,
} from '../support/hearth.js';

let platform: ContainerPlatform;
let hearth: Hearth;
let goImage: string;
let nodeImage: string;
let pythonImage: string;
let bootstrapDir: string;
/** Folders this file deploys itself (the platform removes those it deployed). */
const folders: TempFolder[] = [];

const deploy: ContainerPlatform['deploy'] = (...args) => platform.deploy(...args);
const deployOk = (name: string, spec: string): Promise<void> => platform.deployOk(name, spec);

beforeAll(async () => {
  goImage = goHttpImage();
  nodeImage = nodeLambdaImage();
  pythonImage = pythonLambdaImage();
  bootstrapDir = goLambdaBootstrap();
  platform = await startContainerPlatform();
  hearth = platform.hearth;
}, 900_000);

afterAll(async () => {
  await platform?.stop();
  await Promise.all(folders.map((folder) => folder.cleanup()));
});

describe('protocol http', () => {
  it('serves a static Go image: path, query, method, body, trace context; the image config and spec env apply', async () => {
    await deployOk('go-http', `{ runtime: image, image: "dir:${goImage}", env: { EXTRA: "yes" } }`);
    const hello = await invoke(hearth.url, 'go-http', { path: '/some/path?x=1', method: 'PUT', body: 'b' });
    expect(hello.status).toBe(200);
    expect(hello.text).toBe('hello from go PUT /some/path?x=1 args=\n');
    expect(hello.headers.get('x-traceparent')).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    const env = (await invoke(hearth.url, 'go-http', { path: '/env' })).json() as Record<string, string>;
    expect(env).toMatchObject({
      PORT: '8080',
      GREETING: 'from the image',
      EXTRA: 'yes',
      AWS_LAMBDA_FUNCTION_NAME: 'go-http',
      __hostname: 'hearth',
      __uid: '0',
    });
    expect(
      Object.keys(env).filter(
        (key) => key.startsWith('HEARTH_') && !/^HEARTH_(FUNCTION|NAMESPACE|VERSION)$/.test(key),
      ),
    ).toEqual([]);
  });

  it('spec.args replaces the image Cmd and spec.command its Entrypoint, as Kubernetes does', async () => {
    await deployOk('go-args', `{ runtime: image, image: "dir:${goImage}", args: ["one", "two"] }`);
    expect((await invoke(hearth.url, 'go-args')).text).toBe('hello from go GET / args=one,two\n');
    await deployOk(
      'go-command',
      `{ runtime: image, image: "dir:${goImage}", command: ["/server", "three"] }`,
    );
    expect((await invoke(hearth.url, 'go-command')).text).toBe('hello from go GET / args=three\n');
  });

  it('a streamed answer reaches the client chunk by chunk', async () => {
    const response = await fetch(`${hearth.url}/function/go-http/stream`);
    expect(response.status).toBe(200);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value ?? []).toString()).toBe('chunk 0\n');
    let rest = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
      rest += Buffer.from(chunk.value).toString();
    expect(rest).toBe('chunk 1\nchunk 2\n');
  });

  it('what the container prints is in the function logs', async () => {
    await invoke(hearth.url, 'go-http', { path: '/log' });
    await eventually('the container line in the logs', async () => {
      const lines = await functionLogs(hearth.url, 'go-http');
      return lines.some((line) => line.message.includes('a line from the container')) ? true : undefined;
    });
  });

  it('a request past its deadline is 504, and the next request is served by a fresh container', async () => {
    await deployOk('go-deadline', `{ runtime: image, image: "dir:${goImage}", limits: { timeout: 1s } }`);
    const slow = await invoke(hearth.url, 'go-deadline', { path: '/slow' });
    expect(slow.status).toBe(504);
    expect((slow.json() as { error: { code: string } }).error.code).toBe('HEARTH_E_TIMEOUT');
    await eventually('a fresh container to answer', async () =>
      (await invoke(hearth.url, 'go-deadline')).status === 200 ? true : undefined,
    );
  });

  it('a container that exits at once fails its deploy naming its exit and output; the previous version keeps serving', async () => {
    await deployOk('go-broken', `{ runtime: image, image: "dir:${goImage}" }`);
    const failed = await deploy('go-broken', `{ runtime: image, image: "dir:${goImage}", args: ["exit"] }`);
    expect(failed.status).toBeGreaterThanOrEqual(400);
    const message = JSON.stringify(failed.body);
    expect(message).toContain('the container exited with code 3');
    expect(message).toContain('configuration missing, giving up');
    expect((await invoke(hearth.url, 'go-broken')).status).toBe(200);
  });

  it('a container that never opens its port fails its deploy saying so', async () => {
    const failed = await deploy('go-noport', `{ runtime: image, image: "dir:${goImage}", args: ["noport"] }`);
    expect(failed.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(failed.body)).toContain('did not open port 8080');
  }, 60_000);

  it('a container that dies while serving answers 502 and is replaced', async () => {
    await deployOk('go-dies', `{ runtime: image, image: "dir:${goImage}" }`);
    const died = await invoke(hearth.url, 'go-dies', { path: '/exit' });
    expect(died.status).toBe(502);
    await eventually('a fresh container', async () =>
      (await invoke(hearth.url, 'go-dies')).status === 200 ? true : undefined,
    );
  });

  it('bad input: a missing image, and image fields on a source runtime, are 400 naming the field', async () => {
    const missing = await deploy('bad-image', '{ runtime: image, image: "dir:/nonexistent/image" }');
    expect(missing.status).toBe(400);
    expect(JSON.stringify(missing.body)).toContain('spec.image');
    const mixed = await deploy('bad-mixed', '{ runtime: node20, protocol: lambda }', {
      'index.js': 'exports.handler = async () => 1;',
    });
    expect(mixed.status).toBe(400);
    expect(JSON.stringify(mixed.body)).toContain('spec.protocol');
  });
});

describe('protocol lambda with aws-lambda-ric', () => {
  it('runs an unchanged Lambda handler: the API Gateway v2 event in, statusCode/headers/cookies/body out', async () => {
    await deployOk('node-ric', `{ runtime: image, protocol: lambda, image: "dir:${nodeImage}" }`);
    const answer = await invoke(hearth.url, 'node-ric', {
      path: '/orders/7?size=large',
      method: 'POST',
      body: 'hello',
      headers: { 'content-type': 'text/plain' },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-handler')).toBe('node-lambda');
    expect(answer.headers.get('set-cookie')).toBe('flavour=oat');
    const body = answer.json() as Record<string, unknown>;
    expect(body).toMatchObject({
      method: 'POST',
      path: '/orders/7',
      query: { size: 'large' },
      body: 'hello',
      requestId: answer.headers.get('x-hearth-invocation-id'),
      functionName: 'node-ric',
    });
    expect(body.remainingMs).toBeGreaterThan(0);
    expect(String(body.traceId)).toMatch(/^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=1$/);
  });

  it('an error the handler throws is answered as a function error with its type and message', async () => {
    const failed = await invoke(hearth.url, 'node-ric', { path: '/fail' });
    expect(failed.status).toBe(500);
    expect(failed.text).toContain('failed on purpose');
  });

  it('a streaming handler (streamifyResponse, HttpResponseStream.from) streams through', async () => {
    await deployOk(
      'node-ric-stream',
      `{ runtime: image, protocol: lambda, image: "dir:${nodeImage}", args: ["stream.handler"] }`,
    );
    const response = await fetch(`${hearth.url}/function/node-ric-stream`);
    expect(response.status).toBe(207);
    expect(response.headers.get('x-streamed')).toBe('yes');
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(Buffer.from((await reader.read()).value ?? []).toString()).toBe('first\n');
    let rest = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
      rest += Buffer.from(chunk.value).toString();
    expect(rest).toBe('second\n');
  });

  it('a handler that does not exist fails the deploy with the client’s own init error', async () => {
    const failed = await deploy(
      'node-ric-missing',
      `{ runtime: image, protocol: lambda, image: "dir:${nodeImage}", args: ["nothere.handler"] }`,
    );
    expect(failed.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(failed.body)).toMatch(/Runtime\.|ImportModuleError|nothere/);
  });
});

describe('protocol lambda with awslambdaric (Python)', () => {
  it("runs an unchanged Python Lambda handler through AWS's own client", async () => {
    await deployOk('py-ric', `{ runtime: image, protocol: lambda, image: "dir:${pythonImage}" }`);
    const answer = await invoke(hearth.url, 'py-ric', { path: '/items', method: 'POST', body: 'hi' });
    expect(answer.status, answer.text).toBe(202);
    expect(answer.headers.get('x-handler')).toBe('python-lambda');
    expect(answer.json()).toMatchObject({
      method: 'POST',
      path: '/items',
      body: 'hi',
      requestId: answer.headers.get('x-hearth-invocation-id'),
      functionName: 'py-ric',
      handler: 'app.handler',
    });
    const failed = await invoke(hearth.url, 'py-ric', { path: '/fail' });
    expect(failed.status).toBe(500);
    expect(failed.text).toContain('failed on purpose');
  });
});

describe('runtime provided', () => {
  it('runs an aws-lambda-go bootstrap from the function folder against the Runtime API', async () => {
    const folder = await makeFolder({ 'hearth.yaml': manifest('go-provided', '{ runtime: provided }') });
    folders.push(folder);
    cpSync(join(bootstrapDir, 'bootstrap'), join(folder.dir, 'bootstrap'));
    const deployed = await deployFolder(hearth.url, folder.dir, { name: 'go-provided' });
    expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
    const answer = await invoke(hearth.url, 'go-provided', {
      path: '/p/q?a=b',
      method: 'POST',
      body: 'payload',
    });
    expect(answer.status).toBe(201);
    expect(answer.text).toBe('go lambda POST /p/q?a=b body=payload deadline=true');
    expect(answer.headers.get('x-request-id')).toBe(answer.headers.get('x-hearth-invocation-id'));
    const failed = await invoke(hearth.url, 'go-provided', { path: '/fail' });
    expect(failed.status).toBe(500);
    expect(failed.text).toContain('failed on purpose');
  });
});

describe('walls', () => {
  it('a memory bomb is 502 HEARTH_E_FN_OOM naming the limit, and the function answers again', async () => {
    await deployOk('go-mem', `{ runtime: image, image: "dir:${goImage}", limits: { memory: 96Mi } }`);
    const bomb = await invoke(hearth.url, 'go-mem', { path: '/alloc' });
    expect(bomb.status).toBe(502);
    expect((bomb.json() as { error: { code: string } }).error.code).toBe('HEARTH_E_FN_OOM');
    await eventually('a fresh container', async () =>
      (await invoke(hearth.url, 'go-mem')).status === 200 ? true : undefined,
    );
  });

  it('processes stop at limits.pids, /tmp at limits.tmp, and the rootfs is read-only', async () => {
    await deployOk('go-walls', `{ runtime: image, image: "dir:${goImage}", limits: { pids: 64, tmp: 8Mi } }`);
    const fork = await invoke(hearth.url, 'go-walls', { path: '/fork' });
    expect(fork.status).toBe(200);
    const started = Number(/started=(\d+)/.exec(fork.text)?.[1]);
    expect(started).toBeLessThan(64);
    expect(fork.text).toMatch(/resource temporarily unavailable|cannot allocate/);
    await deployOk('go-tmp', `{ runtime: image, image: "dir:${goImage}", limits: { tmp: 8Mi } }`);
    const fill = await invoke(hearth.url, 'go-tmp', { path: '/tmpfill' });
    expect(fill.text).toMatch(/no space left on device/);
    const written = Number(/written=(\d+)/.exec(fill.text)?.[1]);
    expect(written).toBeLessThanOrEqual(8 * 1024 ** 2);
    const rootfs = await invoke(hearth.url, 'go-tmp', { path: '/rootfs' });
    expect(rootfs.text).toMatch(/read-only file system/);
  });

  it('with egress none the host loopback (and the platform) cannot be reached', async () => {
    const dial = await invoke(hearth.url, 'go-http', { path: `/dial?to=127.0.0.1:${platform.hostPort}` });
    expect(dial.text).toMatch(/connection refused/);
    const ownPort = await invoke(hearth.url, 'go-http', { path: `/dial?to=127.0.0.1:${hearth.port}` });
    expect(ownPort.text).toMatch(/connection refused/);
    const outside = await invoke(hearth.url, 'go-http', { path: '/dial?to=192.0.2.1:80' });
    expect(outside.text).toMatch(/network is unreachable/);
  });

  it('nothing of a container is left once the platform stops: no process, crun state, mount or cgroup', async () => {
    const dataDir = hearth.dataDir;
    expect(containerProcesses(dataDir).length).toBeGreaterThan(0);
    expect(containerCgroups(dataDir).length).toBeGreaterThan(0);
    // The crun state and bundles live in a tmpfs of each instance's own mount namespace: never on the host.
    expect(readdirSync(CONTAINER_RUN_DIR)).toEqual([]);
    await hearth.stop();
    await eventually('every container process to end', () =>
      containerProcesses(dataDir).length === 0 ? true : undefined,
    );
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    expect(mounts).not.toContain(CONTAINER_RUN_DIR);
    expect(readdirSync(CONTAINER_RUN_DIR)).toEqual([]);
    await eventually('the container cgroups to be removed', () =>
      containerCgroups(dataDir).length === 0 ? true : undefined,
    );
  });
});
