/** @module `hearth describe NAME`: everything the platform knows about one function, for people. */

import type { Command } from 'commander';
import type { GatewayDetail } from '../../control/api/events-types.js';
import type { DeploymentSummary, FunctionDetail, NamespaceDetail } from '../../control/api/types.js';
import { invokeUrl } from '../client.js';
import type { CliIo } from '../io.js';
import {
  addConnectionOptions,
  addNamespaceOption,
  addOutputOption,
  type CommandContext,
  type ConnectionOptions,
  connect,
  type NamespaceOptions,
  namespaceOf,
  type OutputOptions,
  parseLabel,
  resourceArguments,
} from '../options.js';
import {
  createStyle,
  formatAge,
  formatBytes,
  formatMs,
  renderTable,
  type Style,
  writeJson,
} from '../output.js';
import { functionPath } from '../upload.js';
import { describeTrigger } from './event-triggers.js';
import { renderGateway, renderTriggers } from './events-view.js';
import { quotaSummary } from './ls.js';

interface DescribeOptions extends ConnectionOptions, NamespaceOptions, OutputOptions {
  readonly showEnv?: boolean;
}

export function register(program: Command, context: CommandContext): void {
  const command = program
    .command('describe')
    .description(
      "show a function's configuration, instances, triggers, deployments and versions (or: describe gateway|trigger NAME)",
    )
    .argument('<name>', 'function name (or the kind, `gateway` or `function`, followed by the name)')
    .argument('[name2]', 'the name, when the kind was given first')
    .option('--show-env', 'show environment variable values (masked by default)');
  addNamespaceOption(command);
  addOutputOption(command);
  addConnectionOptions(command);
  command.action(async (first: string, second: string | undefined, options: DescribeOptions) => {
    if (second !== undefined && ['namespace', 'namespaces', 'ns'].includes(first.toLowerCase())) {
      await describeNamespace(parseLabel('namespace', second), options, context);
      return;
    }
    const target = resourceArguments(first, second);
    if (target.kind === 'gateway') await describeGateway(target.name, options, context);
    else if (target.kind === 'trigger') await describeTrigger(target.name, options, context);
    else await describe(target.name, options, context);
  });
}

async function describe(
  name: string,
  options: DescribeOptions,
  { io, version }: CommandContext,
): Promise<void> {
  const client = connect(options, io, version);
  const detail = await client.json<FunctionDetail>(functionPath({ namespace: namespaceOf(options), name }));
  if (options.output === 'json') {
    writeJson(io.stdout, detail);
    return;
  }
  io.stdout.write(
    renderDetail(detail, {
      url: invokeUrl(client, detail.url),
      showEnv: options.showEnv === true,
      io,
      now: Date.now(),
    }),
  );
}

interface RenderOptions {
  readonly url: string;
  readonly showEnv: boolean;
  readonly io: CliIo;
  readonly now: number;
}

export function renderDetail(fn: FunctionDetail, options: RenderOptions): string {
  const style = createStyle(options.io.stdout, options.io.env);
  const { spec } = fn;
  // The server's note usually names the class itself ("process: NOT SANDBOXED — …").
  const isolation = fn.isolationNote.startsWith(spec.isolation)
    ? fn.isolationNote
    : `${spec.isolation} — ${fn.isolationNote}`;
  const fields: [string, string][] = [
    ['Name', fn.name],
    ['Namespace', fn.namespace],
    ['Version', String(fn.version)],
    ['Runtime', spec.runtime === 'image' ? 'image (container)' : `${spec.runtime} (handler ${spec.handler})`],
    [
      'Events',
      fn.convention === undefined || fn.convention === null || fn.convention === spec.eventFormat
        ? spec.eventFormat
        : `${spec.eventFormat} (in force: ${fn.convention})`,
    ],
    ['URL', fn.url === '' ? '-' : options.url],
    // A function running without the sandbox must be impossible to overlook.
    ['Isolation', spec.isolation === 'process' ? style.bold(style.yellow(isolation)) : isolation],
    [
      'Limits',
      `memory ${spec.limits.memory}, cpu ${spec.limits.cpu}, timeout ${spec.limits.timeout}, maxBody ${spec.limits.maxBody}, pids ${spec.limits.pids}, tmp ${spec.limits.tmp}`,
    ],
    ['Walls', renderWalls(fn, style)],
    [
      'Scaling',
      `min ${spec.scaling.min}, max ${spec.scaling.max}, targetConcurrency ${spec.scaling.targetConcurrency}, idleTimeout ${spec.scaling.idleTimeout}, warmPoolRatio ${spec.scaling.warmPoolRatio}`,
    ],
    ['Egress', typeof spec.egress === 'string' ? spec.egress : spec.egress.join(', ')],
    [
      'Auth',
      spec.auth === 'jwt' && fn.manifest.spec.jwt !== undefined
        ? `jwt (issuer ${String(fn.manifest.spec.jwt.issuer)}, audience ${String(fn.manifest.spec.jwt.audience)}, JWKS ${fn.manifest.spec.jwt.jwks})`
        : spec.auth,
    ],
    ['Priority', String(spec.priority)],
    ['Env', renderEnv(spec.env, options.showEnv)],
    ...(fn.image === undefined
      ? ([
          ['Code', `${fn.code.hash.slice(0, 12)}, ${fn.code.files} files, ${formatBytes(fn.code.bytes)}`],
        ] as [string, string][])
      : renderImage(fn.image)),
    ['Dependencies', fn.dependencies === null ? 'none' : `layer ${fn.dependencies.key}`],
    ['Created', `${fn.createdAt} (${formatAge(fn.createdAt, options.now)} ago)`],
    ['Updated', `${fn.updatedAt} (${formatAge(fn.updatedAt, options.now)} ago)`],
  ];
  const width = Math.max(...fields.map(([label]) => label.length)) + 2;
  const sections = [
    fields.map(([label, value]) => `${`${label}:`.padEnd(width)}${value}`).join('\n'),
    renderInstances(fn, options.now),
    renderTraffic(fn, options.now),
    renderAutoscaling(fn, options.now),
    renderDeployment(fn.lastDeployment, options.now, style),
    renderVersions(fn, options.now),
  ];
  return `${sections.join('\n\n')}\n`;
}

/** Which walls hold, with the function's figures; a wall that does not hold stands out. */
function renderWalls(fn: FunctionDetail, style: Style): string {
  if (fn.walls === undefined) return fn.spec.isolation === 'process' ? 'none (isolation: process)' : '-';
  const { limits } = fn.spec;
  const figure: Record<string, string> = {
    memory: `memory ${limits.memory} (no swap)`,
    cpu: `cpu ${limits.cpu}`,
    pids: `pids ${limits.pids}`,
    tmp: `/tmp ${limits.tmp}`,
    seccomp: 'seccomp',
  };
  const held = fn.walls.filter((wall) => wall.inForce).map((wall) => figure[wall.wall] ?? wall.wall);
  const missing = fn.walls
    .filter((wall) => !wall.inForce)
    .map((wall) => style.bold(style.yellow(`NOT IN FORCE: ${wall.wall} (${wall.detail})`)));
  return [...held, ...missing].join(', ') || 'none';
}

function renderEnv(env: Readonly<Record<string, string>>, show: boolean): string {
  const names = Object.keys(env).sort();
  if (names.length === 0) return '(none)';
  return names.map((name) => `${name}=${show ? (env[name] ?? '') : '***'}`).join(', ');
}

function renderInstances(fn: FunctionDetail, now: number): string {
  const ready = fn.activeInstances.filter((instance) => instance.state === 'ready').length;
  const title = `Instances: ${fn.activeInstances.length} (${ready} ready), ${fn.startingInstances} starting, ${fn.queuedRequests} queued requests`;
  if (fn.activeInstances.length === 0) return title;
  const rows = fn.activeInstances.map((instance) => [
    instance.id,
    `v${instance.version}`,
    instance.state,
    `${instance.inFlight}/${instance.capacity}`,
    String(instance.served),
    String(instance.pid),
    formatAge(instance.startedAt, now),
  ]);
  return `${title}\n${indent(renderTable(['ID', 'VERSION', 'STATE', 'IN-FLIGHT', 'SERVED', 'PID', 'AGE'], rows))}`;
}

/** What the autoscaler wants and why, the warm pool, keep-alive, recent cold starts, the latest decisions. */
export function renderAutoscaling(fn: FunctionDetail, now: number): string {
  const scaling = fn.autoscaling;
  if (scaling === null)
    return 'Autoscaling: no decision yet (the function was loaded on this node a moment ago)';
  const { spec } = fn;
  const keepAlive = scaling.keepAlive;
  const coldStarts = scaling.coldStarts;
  const rows: [string, string][] = [
    ['Why', scaling.reason],
    [
      'Load',
      `${scaling.load.concurrency} in flight (stable window), ${scaling.load.panicConcurrency} (panic window), ${scaling.load.rps} req/s`,
    ],
    [
      'Warm pool',
      `${scaling.warmPool.idle} idle, target ${scaling.warmPool.target} (warmPoolRatio ${scaling.warmPool.ratio})`,
    ],
    [
      'Keep-alive',
      `${keepAlive.strategy === 'histogram' ? `histogram of ${keepAlive.idlePeriods} idle periods` : 'fixed'}: ${
        keepAlive.prewarmAfter === null
          ? `kept until ${keepAlive.keepUntil} idle`
          : `released after use, pre-warmed at ${keepAlive.prewarmAfter} idle, kept until ${keepAlive.keepUntil}`
      } (${keepAlive.reason})`,
    ],
    [
      'Cold starts',
      coldStarts.ratio === null
        ? `no requests in the last ${coldStarts.window}`
        : `${(coldStarts.ratio * 100).toFixed(1)}% (${coldStarts.coldStarts} of ${coldStarts.requests} requests in the last ${coldStarts.window})`,
    ],
  ];
  const title = `Autoscaling: ${scaling.policy}, ${scaling.mode} mode; ${scaling.ready} ready, ${scaling.starting} starting, desired ${scaling.desired} (min ${spec.scaling.min}, max ${spec.scaling.max})`;
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  const lines = [title, ...rows.map(([label, value]) => `  ${`${label}:`.padEnd(width)}${value}`)];
  const recent = [...scaling.decisions].reverse().slice(0, 8);
  if (recent.length > 0) {
    const table = renderTable(
      ['AGE', 'ACTION', 'INSTANCES', 'MODE', 'REASON'],
      recent.map((decision) => [
        formatAge(decision.at, now),
        decision.action,
        `${decision.from}→${decision.to}`,
        decision.mode,
        decision.reason,
      ]),
    );
    lines.push('  Decisions (newest first):', indent(indent(table)));
  }
  return lines.join('\n');
}

/** The circuit breaker, a gateway's instance cap, and the triggers with their lag and counts (issue 3). */
function renderTraffic(fn: FunctionDetail, now: number): string {
  const circuit = fn.circuit;
  const parts = [
    `Circuit: ${circuit === undefined ? 'closed' : circuit.state}${
      circuit !== undefined && circuit.state === 'open'
        ? ` (probe in ${Math.ceil(circuit.retryAfterMs / 1000)}s)`
        : ''
    }${circuit !== undefined && circuit.failures > 0 ? `, ${circuit.failures} consecutive failures` : ''}${
      fn.instanceCap === undefined ? '' : `; instance cap ${fn.instanceCap} (EventGateway concurrency)`
    }`,
  ];
  parts.push(renderTriggers(fn.triggers ?? [], now));
  return parts.join('\n');
}

async function describeGateway(
  name: string,
  options: DescribeOptions,
  { io, version }: CommandContext,
): Promise<void> {
  const client = connect(options, io, version);
  const detail = await client.json<GatewayDetail>(
    `/api/v1/namespaces/${namespaceOf(options)}/gateways/${parseLabel('gateway name', name)}`,
  );
  if (options.output === 'json') writeJson(io.stdout, detail);
  else io.stdout.write(renderGateway(detail, Date.now()));
}

function renderDeployment(deployment: DeploymentSummary | null, now: number, style: Style): string {
  if (deployment === null) return 'Last deployment: none';
  const version = deployment.version === null ? '' : `, version ${deployment.version}`;
  const status = deployment.status === 'failed' ? style.red(deployment.status) : deployment.status;
  const lines = [
    `Last deployment: ${status}${version}, ${formatAge(deployment.startedAt, now)} ago (${deployment.id})`,
  ];
  const phases = Object.entries(deployment.phases);
  if (phases.length > 0)
    lines.push(`  phases: ${phases.map(([phase, ms]) => `${phase} ${formatMs(ms)}`).join(', ')}`);
  if (deployment.error !== null) lines.push(`  error: ${deployment.error.code}: ${deployment.error.message}`);
  return lines.join('\n');
}

function renderVersions(fn: FunctionDetail, now: number): string {
  if (fn.versions.length === 0) return 'Versions: none';
  const rows = [...fn.versions]
    .sort((a, b) => b.version - a.version)
    .map((entry) => [
      `${entry.version}${entry.version === fn.version ? ' (active)' : ''}`,
      formatAge(entry.createdAt, now),
      entry.codeHash.slice(0, 12),
    ]);
  return `Versions:\n${indent(renderTable(['VERSION', 'AGE', 'CODE'], rows))}`;
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

/** `hearth describe namespace NAME`: its policy, and each quota with what is used of it. */
async function describeNamespace(
  name: string,
  options: DescribeOptions,
  { io, version }: CommandContext,
): Promise<void> {
  const client = connect(options, io, version);
  const detail = await client.json<NamespaceDetail>(`/api/v1/namespaces/${name}`);
  if (options.output === 'json') {
    writeJson(io.stdout, detail);
    return;
  }
  const lines = [
    `Name:           ${detail.name}`,
    `Defined:        ${detail.defined ? `yes (updated ${detail.updatedAt ?? '?'})` : 'no (no Namespace resource: no quotas)'}`,
    `Function auth:  ${detail.functionAuth}`,
    `Quotas:         ${quotaSummary(detail)}`,
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
}

/** A container function's image (issue 17): what it was deployed as, the digest the version pins, its config. */
function renderImage(image: NonNullable<FunctionDetail['image']>): [string, string][] {
  const entrypoint = image.command ?? image.config.entrypoint;
  const args = image.args ?? (image.command === undefined ? image.config.cmd : []);
  return [
    ['Image', image.reference],
    ['Digest', `${image.manifestDigest} (${formatBytes(image.sizeBytes)} in layers)`],
    [
      'Command',
      [...entrypoint, ...args].map((part) => (/\s/.test(part) ? JSON.stringify(part) : part)).join(' ') ||
        '-',
    ],
    [
      'Image config',
      [
        image.config.workingDir === '' ? undefined : `workdir ${image.config.workingDir}`,
        image.config.user === '' ? undefined : `user ${image.config.user}`,
        image.config.exposedPorts.length === 0 ? undefined : `ports ${image.config.exposedPorts.join(', ')}`,
        image.config.env.length === 0 ? undefined : `${image.config.env.length} env`,
      ]
        .filter((part) => part !== undefined)
        .join(', ') || '-',
    ],
  ];
}
