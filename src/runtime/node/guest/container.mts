/**
 * @module The supervisor of one container function instance (issue 17), loaded by the Node guest in place
 * of a handler (bootstrap.mts, BUILTIN_HANDLER). The guest runs on the host, as root, in namespaces of its
 * own (container/index.ts): a private mount namespace with a tmpfs for crun's state and the bundle, a pid
 * namespace whose end takes every process with it, and for egress `none` an empty network namespace the
 * container shares. At bind it writes the OCI config the platform made, starts the container with crun
 * and waits until it is ready; then every invocation is proxied:
 *
 * - `http`: bound with the `web` convention; the request goes to 127.0.0.1:$PORT, the answer (streamed as it
 *   comes) back. Ready when the port accepts a connection.
 * - `lambda`: bound with the `lambda` convention; the event goes through the Runtime API
 *   (lambda-runtime-api.mts) at $AWS_LAMBDA_RUNTIME_API. Ready when the runtime first asks for work.
 *
 * When the container exits the guest exits too, and the platform replaces the instance.
 */

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import type { Adapter, GuestKit } from './adapters.mjs';
import type { HttpResult } from './bootstrap.mjs';
import {
  exitText,
  forwardOutput,
  INIT_TIMEOUT_MS,
  type LambdaContext,
  OutputTail,
  RuntimeApi,
} from './lambda-runtime-api.mjs';

/** What the platform hands the supervisor in the Bind env (HEARTH_CONTAINER), JSON. */
interface ContainerBind {
  /** The OCI config, complete but for the ports' environment variables. */
  readonly config: { process: { env: string[] }; root: { path: string } } & Record<string, unknown>;
  readonly protocol: 'http' | 'lambda';
  /** `none`: this namespace is the container's alone, fixed ports do; `host`: free ports are picked. */
  readonly network: 'none' | 'host';
  /** A private tmpfs for crun's state and the bundle (container/index.ts mounts it). */
  readonly stateDir: string;
  /** crun (or runc). */
  readonly runtime: string;
  readonly id: string;
  /** How long the container has to become ready. */
  readonly readyTimeoutMs: number;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
]);
/** Set by the platform on every answer: the container's copy would repeat it. */
const PLATFORM_SET = new Set(['date', 'content-length']);
/** Statuses whose response has no body: a fetch Response refuses one. */
const NULL_BODY = new Set([101, 204, 205, 304]);

const encoded = process.env.HEARTH_CONTAINER;
delete process.env.HEARTH_CONTAINER;
if (encoded === undefined) throw new Error('no container was given to this instance (HEARTH_CONTAINER)');
const bind = JSON.parse(encoded) as ContainerBind;

let port = 0;
/** Set once the container has exited; the guest exits right after. */
let gone = false;

/** Whether the container exits within `ms`. */
async function containerGone(ms: number): Promise<boolean> {
  for (let waited = 0; !gone && waited < ms; waited += 10)
    await new Promise((resolve) => setTimeout(resolve, 10));
  return gone;
}
let api: RuntimeApi | undefined;
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

async function start(): Promise<void> {
  const env = bind.config.process.env;
  if (bind.protocol === 'lambda') {
    api = new RuntimeApi();
    env.push(`AWS_LAMBDA_RUNTIME_API=${await api.listen(bind.network === 'none' ? 9001 : 0)}`);
  } else {
    port = bind.network === 'none' ? 8080 : await freePort();
    env.push(`PORT=${port}`);
  }
  const bundle = join(bind.stateDir, 'bundle');
  mkdirSync(bundle, { recursive: true });
  // The image's folder may sit below folders the container's unprivileged root cannot search (a 0700
  // data dir): it is shown at a path in this namespace's tmpfs instead, read-only.
  const rootfs = join(bind.stateDir, 'rootfs');
  mkdirSync(rootfs);
  execFileSync('mount', ['--bind', bind.config.root.path, rootfs]);
  execFileSync('mount', ['-o', 'remount,bind,ro', rootfs]);
  bind.config.root.path = rootfs;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(bind.config));
  const tail = new OutputTail();
  const child = spawn(
    bind.runtime,
    ['--root', join(bind.stateDir, 'state'), '--cgroup-manager=disabled', 'run', '--bundle', bundle, bind.id],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  forwardOutput(child, tail);
  let ready = false;
  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(`could not start ${bind.runtime}: ${error.message}`));
    child.once('exit', (code, signal) =>
      resolve(`the container ${exitText(code, signal)}${tail.describe()}`),
    );
  });
  void exited.then((why) => {
    gone = true;
    if (!ready) {
      api?.fail(new Error(why));
      return;
    }
    // The container is the instance: once it is gone, so is this guest, and the platform starts another.
    process.stderr.write(`[hearth] ${why}\n`, () => process.exit(1));
  });
  const timeout = new Promise<string>((resolve) => {
    setTimeout(
      () =>
        resolve(
          bind.protocol === 'http'
            ? `the container did not open port ${port} ($PORT) within ${bind.readyTimeoutMs / 1000}s${tail.describe()}`
            : `the container did not ask the Runtime API for an invocation within ${bind.readyTimeoutMs / 1000}s${tail.describe()}`,
        ),
      bind.readyTimeoutMs,
    ).unref();
  });
  const becameReady =
    bind.protocol === 'http'
      ? waitForPort(port, exited).then(() => undefined)
      : (api as RuntimeApi).ready.then(
          () => undefined,
          (error: Error) => `${error.name}: ${error.message}`,
        );
  const failure = await Promise.race([becameReady, exited, timeout]);
  if (failure !== undefined) {
    child.kill('SIGKILL');
    throw Object.assign(new Error(failure), {
      name: bind.protocol === 'http' ? 'ContainerNotReady' : 'Runtime.InitError',
    });
  }
  ready = true;
}

/** Connects until the port answers; gives up once the container has exited. */
async function waitForPort(target: number, exited: Promise<string>): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  for (let delay = 1; !gone; delay = Math.min(delay * 2, 20)) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(target, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

/**
 * `http`: every invocation as it comes, below any convention (bootstrap.mts, builtinAdapter): the request
 * line, headers and body go to the container as they are; an answer with a length is returned whole, any
 * other (chunked, or ended by closing) is streamed on as it arrives.
 */
function proxyAdapter(kit: GuestKit): Adapter {
  return (meta, body, ctx, seq) =>
    new Promise<HttpResult | undefined>((resolve, reject) => {
      const headers: string[] = [];
      let traced = false;
      for (let i = 0; i + 1 < meta.rawHeaders.length; i += 2) {
        const name = meta.rawHeaders[i] as string;
        const lower = name.toLowerCase();
        if (HOP_BY_HOP.has(lower) || lower === 'content-length') continue;
        if (lower === 'traceparent') traced = true;
        headers.push(name, meta.rawHeaders[i + 1] as string);
      }
      if (!traced) headers.push('traceparent', (ctx as { traceparent: string }).traceparent);
      if (body.length > 0 || (meta.method !== 'GET' && meta.method !== 'HEAD'))
        headers.push('content-length', String(body.length));
      const outgoing = httpRequest(
        {
          host: '127.0.0.1',
          port,
          method: meta.method,
          path: meta.rawQuery === '' ? meta.path : `${meta.path}?${meta.rawQuery}`,
          headers,
          agent,
        },
        (answer) => {
          try {
            resolve(relay(kit, answer, seq));
          } catch (error) {
            reject(error);
          }
        },
      );
      outgoing.once('error', (error) => {
        // A container that died (its memory limit, a crash) takes this guest with it in a moment: the
        // platform then answers 502 naming why (HEARTH_E_FN_OOM for memory), not this reset connection.
        void containerGone(200).then((dead) => {
          if (dead) return;
          reject(
            Object.assign(new Error(`the container did not answer: ${error.message}`), {
              name: 'ContainerError',
            }),
          );
        });
      });
      outgoing.end(body.length > 0 ? body : undefined);
    });
}

/** The container's answer as the guest's: whole when it says its length, streamed otherwise. */
function relay(kit: GuestKit, answer: IncomingMessage, seq: number): Promise<HttpResult | undefined> {
  const status = answer.statusCode ?? 502;
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(answer.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || PLATFORM_SET.has(name)) continue;
    headers[name] = value;
  }
  const length = answer.headers['content-length'];
  if (length !== undefined || NULL_BODY.has(status)) {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.once('end', () =>
        resolve({
          status,
          headers,
          body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
        }),
      );
      answer.once('error', reject);
    });
  }
  const sink = kit.openStream(seq, status, headers);
  answer.on('data', (chunk: Buffer) => sink.write(chunk));
  answer.once('end', () => sink.end());
  answer.once('error', (error) => sink.end(error));
  return Promise.resolve(undefined);
}

/** `lambda`: the lambda convention's handler. */
function invoke(event: unknown, context: LambdaContext): Promise<unknown> {
  return (api as RuntimeApi).invoke(event, context);
}

await start();

/** `lambda`: bound with the lambda convention. */
export const handler: unknown = invoke;
/** `http`: the guest hands every invocation to the proxy. */
export const adapter: ((kit: GuestKit) => Adapter) | undefined =
  bind.protocol === 'http' ? proxyAdapter : undefined;
export { INIT_TIMEOUT_MS };
