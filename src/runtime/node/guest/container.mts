/**
 * @module The supervisor of one container function instance (issue 17), loaded by the Node guest in place
 * of a handler (bootstrap.mts, BUILTIN_HANDLER). The guest runs on the host, as root, in namespaces of its
 * own (container/index.ts): a private mount namespace with a tmpfs for crun's state, the bundle and the
 * image's rootfs, a pid namespace whose end takes every process with it, and a network namespace the
 * container shares (empty for egress `none`, linked by slirp4netns for `allow` and allow-lists; the host's
 * only where the operator chose `egressAllow: host`).
 *
 * As the stem cell starts it may make a container ahead (argv[3]: the image bound last), its process a
 * static busybox waiting on a fifo. At Bind it either starts the function's entrypoint in that container
 * (the exec line, then the go signal) or runs the function's own with crun, and waits until it is ready;
 * then every invocation is proxied:
 *
 * - `http`: below any convention (the `adapter` export); the request goes to 127.0.0.1:$PORT as it came,
 *   the answer comes back whole, or streamed as it arrives. Ready when the port accepts a connection.
 * - `lambda`: bound with the `lambda` convention (the `handler` export); the event goes through the
 *   Runtime API (lambda-runtime-api.mts) at $AWS_LAMBDA_RUNTIME_API. Ready at the runtime's first `next`.
 *
 * When the container exits the guest exits too, and the platform replaces the instance.
 */

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, createServer } from 'node:net';
import { basename, join } from 'node:path';
import type { Adapter, GuestKit } from './adapters.mjs';
import type { HttpResult } from './bootstrap.mjs';
import {
  exitText,
  forwardOutput,
  type LambdaContext,
  OutputTail,
  RuntimeApi,
} from './lambda-runtime-api.mjs';

/** Where a prepared container finds its helper (a static busybox), its go signal and its exec line. */
const HELPER_MOUNT = '/dev/.hearth';

/** A container made ahead, before any function is known (argv[3], JSON): the image's only. */
interface Prepare {
  /** The OCI config: the image's rootfs, user and working dir; the helper waiting for its signal. */
  readonly config: OciConfig;
  readonly runtime: string;
  readonly stateDir: string;
  readonly id: string;
  /** The static busybox shown to the container at HELPER_MOUNT. */
  readonly helper: string;
  readonly network: NetworkName;
}

/** The network the supervisor (and so the container) runs in: container/index.ts's NetworkMode. */
type NetworkName = 'none' | 'outbound' | 'filtered' | 'host';

/** What the platform hands the supervisor in the Bind env (HEARTH_CONTAINER), JSON. */
interface ContainerBind {
  /** The OCI config, complete but for the ports' environment variables. */
  readonly config: OciConfig;
  readonly protocol: 'http' | 'lambda';
  /** `host`: the host's network, free ports are picked; otherwise this namespace is the container's alone. */
  readonly network: NetworkName;
  /** The function's /etc/hosts (hostAliases, allow-listed names), for a network linked to the host. */
  readonly hosts?: string;
  /** A private tmpfs for crun's state and the bundle (container/index.ts mounts it). */
  readonly stateDir: string;
  /** crun (or runc). */
  readonly runtime: string;
  readonly id: string;
  /** How long the container has to become ready. */
  readonly readyTimeoutMs: number;
  /** The container prepared at start is this function's image: start its entrypoint there. */
  readonly usePrepared: boolean;
  /** limits.tmp, when it differs from the size the prepared container's /tmp was made with. */
  readonly resizeTmpBytes?: number;
}

interface OciConfig {
  process: { env: string[]; args: string[] };
  root: { path: string };
  [key: string]: unknown;
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
/** Statuses whose response has no body. */
const NULL_BODY = new Set([101, 204, 205, 304]);

let port = 0;
/** Set once the container has exited; the guest exits right after. */
let gone = false;
/** Set once the container is ready: from then on its exit ends this guest. */
let ready = false;
let api: RuntimeApi | undefined;
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

/** Whether the container exits within `ms`. */
async function containerGone(ms: number): Promise<boolean> {
  for (let waited = 0; !gone && waited < ms; waited += 10)
    await new Promise((resolve) => setTimeout(resolve, 10));
  return gone;
}

/** A running `crun run`, its output's tail, and a promise of why it ended. */
interface Running {
  readonly child: ChildProcess;
  readonly tail: OutputTail;
  readonly exited: Promise<string>;
}

/**
 * The image's folder may sit below folders the container's unprivileged root cannot search (a 0700 data
 * dir): it is shown at a path in this namespace's tmpfs instead, read-only.
 */
function showRootfs(stateDir: string, path: string): string {
  const rootfs = join(stateDir, 'rootfs');
  mkdirSync(rootfs);
  execFileSync('mount', ['--bind', path, rootfs]);
  execFileSync('mount', ['-o', 'remount,bind,ro', rootfs]);
  return rootfs;
}

/** slirp4netns's DNS forwarder, which `outbound` resolves through (sandbox/network.ts SLIRP_DNS). */
const SLIRP_DNS = '10.0.2.3';

/**
 * For a namespace linked to the host: its /etc/hosts and /etc/resolv.conf, files in this namespace's tmpfs
 * shown over the image's own (only where the image has them: its rootfs is read-only, no mount point can be
 * made). The hosts file is filled in at Bind, in place, so a container made ahead sees it too.
 */
function networkMounts(stateDir: string, rootfs: string, network: NetworkName): unknown[] {
  if (network === 'none' || network === 'host') return [];
  const dir = join(stateDir, 'net');
  if (!existsSync(dir)) {
    mkdirSync(dir, { mode: 0o755 });
    writeFileSync(join(dir, 'hosts'), '127.0.0.1 localhost\n::1 localhost\n', { mode: 0o644 });
    // An allow-list has no resolver: a name resolves through /etc/hosts to an allowed address, or not at all.
    writeFileSync(join(dir, 'resolv.conf'), network === 'outbound' ? `nameserver ${SLIRP_DNS}\n` : '', {
      mode: 0o644,
    });
  }
  return ['hosts', 'resolv.conf']
    .filter((name) => existsSync(join(rootfs, 'etc', name)))
    .map((name) => ({
      destination: `/etc/${name}`,
      type: 'bind',
      source: join(dir, name),
      options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'],
    }));
}

/** Where a container finds its function's secret files (`spec.secrets[].mountPath`): $HEARTH_SECRETS_DIR. */
const SECRETS_MOUNT = '/tmp/hearth-secrets';

/**
 * The folder of this namespace's tmpfs shown read-only at SECRETS_MOUNT: empty until Bind fills it, so a
 * container made ahead has it too.
 */
function secretsMount(stateDir: string): unknown {
  const dir = join(stateDir, 'secrets');
  if (!existsSync(dir)) mkdirSync(dir, { mode: 0o755 });
  return {
    destination: SECRETS_MOUNT,
    type: 'bind',
    source: dir,
    options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'],
  };
}

/**
 * The secret files the guest wrote at Bind (bootstrap.mts, into this namespace's tmpfs: TMPDIR) move to the
 * folder the container sees, owned by the container's user (as the host sees it) and readable by it alone.
 */
function moveSecretFiles(info: ContainerBind): void {
  const written = process.env.HEARTH_SECRETS_DIR;
  delete process.env.HEARTH_SECRETS_DIR;
  if (written === undefined) return;
  const target = join(info.stateDir, 'secrets');
  cpSync(written, target, { recursive: true });
  rmSync(written, { recursive: true, force: true });
  const linux = info.config.linux as {
    uidMappings?: { hostID: number }[];
    gidMappings?: { hostID: number }[];
  };
  const user = (info.config.process as { user?: { uid: number; gid: number } }).user ?? { uid: 0, gid: 0 };
  const uid = (linux.uidMappings?.[0]?.hostID ?? 0) + user.uid;
  const gid = (linux.gidMappings?.[0]?.hostID ?? 0) + user.gid;
  for (const entry of readdirSync(target, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    chownSync(path, uid, gid);
    chmodSync(path, entry.isDirectory() ? 0o500 : 0o400);
  }
  info.config.process.env.push(`HEARTH_SECRETS_DIR=${SECRETS_MOUNT}`);
}

/**
 * The supervisor's own cgroup (the instance's, which container/index.ts made and limits), from the memory
 * controller's line of /proc/self/cgroup; undefined outside one.
 */
function ownCgroup(): string | undefined {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers?.split(',').includes('memory') && path !== undefined && path !== '/') return path;
  }
  return undefined;
}

function runContainer(runtime: string, stateDir: string, id: string, config: OciConfig): Running {
  const bundle = join(stateDir, `bundle-${id}`);
  mkdirSync(bundle, { recursive: true });
  // The container stays in the instance's cgroups, which hold its limits. crun is told to leave cgroups
  // alone; runc has no such switch: it is given the instance's own cgroup to join (it creates the same path
  // in the controllers the platform does not use, and removes them when the container ends).
  const runc = basename(runtime) === 'runc';
  const cgroup = runc ? ownCgroup() : undefined;
  const written =
    cgroup === undefined
      ? config
      : { ...config, linux: { ...(config.linux as object), cgroupsPath: cgroup } };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(written));
  const tail = new OutputTail();
  const child = spawn(
    runtime,
    [
      '--root',
      join(stateDir, 'state'),
      ...(runc ? [] : ['--cgroup-manager=disabled']),
      'run',
      '--bundle',
      bundle,
      id,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  forwardOutput(child, tail);
  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(`could not start ${runtime}: ${error.message}`));
    child.once('exit', (code, signal) =>
      resolve(`the container ${exitText(code, signal)}${tail.describe()}`),
    );
  });
  return { child, tail, exited };
}

/**
 * A stem cell's container: namespaces, mounts, seccomp and all, its process a static busybox waiting on a
 * fifo for the function's entrypoint, so a cold start only has to say go (`crun run` itself costs tens of
 * milliseconds). Any failure leaves the cell to start its container the ordinary way at bind.
 */
function prepare(spec: Prepare): { running: Running; helperDir: string; rootfs: string } | undefined {
  try {
    const helperDir = join(spec.stateDir, 'helper');
    mkdirSync(helperDir, { mode: 0o755 });
    // A copy: the container's root cannot execute a bind mount of the host's file (crun: "open executable:
    // Permission denied"), whatever its mode.
    copyFileSync(spec.helper, join(helperDir, 'busybox'));
    chmodSync(join(helperDir, 'busybox'), 0o755);
    execFileSync('mkfifo', ['-m', '0644', join(helperDir, 'go')]);
    const rootfs = showRootfs(spec.stateDir, spec.config.root.path);
    const config: OciConfig = { ...spec.config, root: { ...spec.config.root, path: rootfs } };
    const mounts = (config.mounts as unknown[]) ?? [];
    config.mounts = [
      ...mounts,
      ...networkMounts(spec.stateDir, spec.config.root.path, spec.network),
      secretsMount(spec.stateDir),
      {
        destination: HELPER_MOUNT,
        type: 'bind',
        source: helperDir,
        options: ['rbind', 'ro', 'nosuid', 'nodev'],
      },
    ];
    const running = runContainer(spec.runtime, spec.stateDir, spec.id, config);
    void running.exited.then((why) => {
      if (prepared?.running !== running || ready) return;
      prepared = undefined;
      preparedLost = `it ended before the bind: ${why}`;
    });
    return { running, helperDir, rootfs };
  } catch (error) {
    process.stderr.write(`[hearth] no container prepared ahead: ${(error as Error).message}\n`);
    preparedLost = `it could not be made: ${(error as Error).message}`;
    return undefined;
  }
}

/**
 * Why the container made ahead is gone before the bind (its helper failed, say, or its go signal went
 * before the helper opened it): the bind makes the function's container and says why, as for one that
 * could not be started. Forgotten without a word, such a cold start was slower and its logs silent (seen in
 * the walls test: a go signal removed while the helper had not opened it yet).
 */
let preparedLost: string | undefined;
const prepareArgument = process.argv[3];
const prepareSpec = prepareArgument === undefined ? undefined : (JSON.parse(prepareArgument) as Prepare);
let prepared = prepareSpec === undefined ? undefined : prepare(prepareSpec);
/** Whether the container made ahead was seen running (`warm`); one that never was is not used at bind. */
let preparedRunning = false;

/**
 * Settles once the container made ahead runs its helper (or none was made): the guest says it is ready
 * only then, so a stem cell counted ready has its container ready too.
 */
export const warm: Promise<void> = (async () => {
  const spec = prepareSpec;
  if (spec === undefined) return;
  const until = Date.now() + 10_000;
  while (prepared !== undefined && !gone && Date.now() < until) {
    const state = await new Promise<string>((resolve) =>
      execFile(spec.runtime, ['--root', join(spec.stateDir, 'state'), 'state', spec.id], (error, stdout) =>
        resolve(error === null ? stdout : ''),
      ),
    );
    if (state.includes('"running"')) {
      preparedRunning = true;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
})();

/** POSIX shell quoting: one word whatever it holds. */
function quote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

/** Starts the function's entrypoint in the prepared container: its exec line, then the go signal. */
async function startPrepared(target: NonNullable<typeof prepared>, info: ContainerBind): Promise<void> {
  const deadline = Date.now() + info.readyTimeoutMs;
  if (info.resizeTmpBytes !== undefined) {
    // /tmp was made at the default size; the function's limits.tmp is set from inside its mount namespace.
    const state = JSON.parse(
      execFileSync(info.runtime, ['--root', join(info.stateDir, 'state'), 'state', info.id], {
        encoding: 'utf8',
      }),
    ) as { pid: number };
    execFileSync('nsenter', [
      '-t',
      String(state.pid),
      '-m',
      // Its pid namespace too: busybox reads /proc/self/mounts, and /proc there is the container's.
      '-p',
      // The image may have no mount binary: the helper's busybox is there, in the container's mount namespace.
      `${HELPER_MOUNT}/busybox`,
      'mount',
      '-o',
      `remount,size=${info.resizeTmpBytes}`,
      '/tmp',
    ]);
  }
  // busybox's env -i: exactly the function's environment, then execvp of its entrypoint with its PATH.
  const words = [...info.config.process.env, ...info.config.process.args].map(quote);
  writeFileSync(join(target.helperDir, 'exec'), `exec ${HELPER_MOUNT}/busybox env -i ${words.join(' ')}\n`, {
    mode: 0o644,
  });
  // The container may still be starting (a bind right after the cell came up): until its helper opens
  // the fifo, opening it to write fails with ENXIO.
  for (;;) {
    let fifo: number;
    try {
      fifo = openSync(join(target.helperDir, 'go'), constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENXIO' || gone || Date.now() > deadline) throw error;
      // Its `crun run` ended (the exit handler in `prepare` let it go): no helper will ever open the fifo.
      if (prepared !== target) throw new Error('it exited before its go signal');
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    try {
      writeSync(fifo, 'go\n');
    } finally {
      closeSync(fifo);
    }
    return;
  }
}

/** Called by the guest at Bind: starts (or starts in) the container and waits until it is ready. */
export async function bind(): Promise<void> {
  const encoded = process.env.HEARTH_CONTAINER;
  delete process.env.HEARTH_CONTAINER;
  if (encoded === undefined) throw new Error('no container was given to this instance (HEARTH_CONTAINER)');
  const info = JSON.parse(encoded) as ContainerBind;
  const env = info.config.process.env;
  if (info.protocol === 'lambda') {
    api = new RuntimeApi();
    env.push(`AWS_LAMBDA_RUNTIME_API=${await api.listen(info.network === 'host' ? 0 : 9001)}`);
  } else {
    port = info.network === 'host' ? await freePort() : 8080;
    env.push(`PORT=${port}`);
  }
  const mounts = networkMounts(info.stateDir, info.config.root.path, info.network);
  const secrets = secretsMount(info.stateDir);
  moveSecretFiles(info);
  if (info.hosts !== undefined && mounts.length > 0)
    writeFileSync(join(info.stateDir, 'net', 'hosts'), info.hosts);
  // A cell bound right after it started (the first take of an image's pool boots one for itself) may not
  // have its container running yet: its start finishes first (a no-op once it runs).
  await warm;
  let running: Running | undefined;
  const ahead = prepared;
  let unusable: string | undefined;
  if (info.usePrepared && ahead !== undefined && !gone) {
    try {
      if (!preparedRunning) throw new Error('it was not running when the cell came up');
      await startPrepared(ahead, info);
      running = ahead.running;
    } catch (error) {
      // Nothing of the function ran in it yet (no go signal was written): the cold start goes on the
      // ordinary way, a container made now, rather than failing the bind.
      unusable = (error as Error).message;
    }
  } else if (info.usePrepared && ahead === undefined) unusable = preparedLost;
  if (unusable !== undefined)
    process.stderr.write(
      `[hearth] the container made ahead could not be used (${unusable}); making the function's container now\n`,
    );
  if (running === undefined) {
    if (ahead !== undefined) {
      // Made for another image, or unusable: ended, and the function's own started beside it.
      prepared = undefined;
      try {
        execFileSync(info.runtime, ['--root', join(info.stateDir, 'state'), 'delete', '--force', info.id], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
      } catch {
        // Already ending on its own (crun finds no state left to remove): `crun run` ends with it. Anything
        // else, and its process goes the hard way; either way the wait below returns.
        ahead.running.child.kill('SIGKILL');
      }
      await ahead.running.exited;
    }
    // What a prepared container that failed or was ended showed of its image goes too.
    const shown = join(info.stateDir, 'rootfs');
    if (existsSync(shown)) {
      execFileSync('umount', [shown]);
      rmSync(shown, { recursive: true, force: true });
    }
    const config = {
      ...info.config,
      root: { ...info.config.root, path: showRootfs(info.stateDir, info.config.root.path) },
      mounts: [...((info.config.mounts as unknown[]) ?? []), ...mounts, secrets],
    };
    running = runContainer(info.runtime, info.stateDir, `${info.id}-fn`, config);
  }
  await becomeReady(info, running);
  handler = invoke;
  adapter = info.protocol === 'http' ? proxyAdapter : undefined;
}

async function becomeReady(info: ContainerBind, running: Running): Promise<void> {
  const { exited, tail, child } = running;
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
          info.protocol === 'http'
            ? `the container did not open port ${port} ($PORT) within ${info.readyTimeoutMs / 1000}s${tail.describe()}`
            : `the container did not ask the Runtime API for an invocation within ${info.readyTimeoutMs / 1000}s${tail.describe()}`,
        ),
      info.readyTimeoutMs,
    ).unref();
  });
  const becameReady =
    info.protocol === 'http'
      ? waitForPort(port, exited).then(() => undefined)
      : (api as RuntimeApi).ready.then(
          () => undefined,
          (error: Error) => `${error.name}: ${error.message}`,
        );
  const failure = await Promise.race([becameReady, exited, timeout]);
  if (failure !== undefined) {
    child.kill('SIGKILL');
    throw Object.assign(new Error(failure), {
      name: info.protocol === 'http' ? 'ContainerNotReady' : 'Runtime.InitError',
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
  // Every millisecond for the first 100 (a server that starts in 3 ms is seen at 3 ms, not at the next
  // doubling), then less often for one that takes its time.
  for (let attempt = 0, delay = 1; !gone; attempt++, delay = attempt < 100 ? 1 : Math.min(delay * 2, 20)) {
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
        // runc takes longer than crun to notice and end, and a loaded machine longer still: up to a second.
        void containerGone(1000).then((dead) => {
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

/** `lambda`: bound with the lambda convention (set at bind). */
export let handler: unknown;
/** `http`: the guest hands every invocation to the proxy (set at bind). */
export let adapter: ((kit: GuestKit) => Adapter) | undefined;
