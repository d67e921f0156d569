// `npm run bench`: every benchmark in one run on this machine, written to bench/RESULTS.md.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { abuseBench } from './abuse.mjs';
import { authBench } from './auth.mjs';
import { buildsBench } from './builds.mjs';
import { cloudEventsBench } from './cloudevents.mjs';
import { clusterBench, clusterMqttBench } from './cluster.mjs';
import { coldBench } from './cold.mjs';
import { coldBurstBench } from './cold-burst.mjs';
import { complianceBench } from './compliance.mjs';
import { containersBench } from './containers.mjs';
import { densityBench } from './density.mjs';
import { egressBench } from './egress.mjs';
import { asyncBench, eventsBench } from './events.mjs';
import { eventSourcingBench } from './eventsourcing.mjs';
import { footprintBench } from './footprint.mjs';
import { hostileBench } from './hostile.mjs';
import { isolateBench } from './isolate.mjs';
import { clusterLayersBench } from './layers.mjs';
import { machine, ROOT, writeResults } from './lib.mjs';
import { microvmBench } from './microvm.mjs';
import { pullBench } from './pull.mjs';
import { stateBench } from './state.mjs';
import { streamingBench } from './streaming.mjs';
import { telemetryBench } from './telemetry.mjs';
import { tlsBench } from './tls.mjs';
import { trafficBench } from './traffic.mjs';
import { warmBench } from './warm.mjs';
import { wasmBench } from './wasm.mjs';

const only = process.argv.slice(2);
const want = (name) => only.length === 0 || only.includes(name);
const started = new Date();
const previousJson = existsSync(join(ROOT, 'bench', 'results.json'))
  ? JSON.parse(readFileSync(join(ROOT, 'bench', 'results.json'), 'utf8'))
  : {};
// `node bench/run.mjs hostile` re-runs some sections: the others keep their last results, and every
// section measured apart from the full run says when (a section re-run again drops its older mention).
const { rerun: legacyRerun, reruns: previousReruns, ...kept } = previousJson;
const reruns = [...(previousReruns ?? (legacyRerun === undefined ? [] : [legacyRerun]))]
  .map((rerun) => ({ ...rerun, sections: rerun.sections.filter((section) => !only.includes(section)) }))
  .filter((rerun) => rerun.sections.length > 0);
const results =
  only.length === 0
    ? { date: started.toISOString(), machine: machine() }
    : { ...kept, reruns: [...reruns, { date: started.toISOString(), sections: only }] };
/** Sections that failed: each keeps its previous figures, so one failure does not lose the others'. */
const failed = [];
async function measure(key, run) {
  try {
    return await run();
  } catch (error) {
    process.stderr.write(`bench: ${key} failed, its previous figures are kept: ${error?.stack ?? error}\n`);
    failed.push(key);
    return previousJson[key];
  }
}
if (want('warm'))
  results.warm = await measure('warm', () => warmBench({ seconds: 5, connections: 50, rounds: 9 }));
if (want('cold')) results.cold = await measure('cold', () => coldBench({ count: 24 }));
if (want('cold-burst')) results.coldBurst = await measure('coldBurst', () => coldBurstBench());
if (want('density')) results.density = await measure('density', () => densityBench());
if (want('isolate')) results.isolate = await measure('isolate', () => isolateBench());
if (want('containers')) results.containers = await measure('containers', () => containersBench());
if (want('footprint')) results.footprint = await measure('footprint', () => footprintBench({ count: 10 }));
if (want('telemetry'))
  results.telemetry = await measure('telemetry', () =>
    telemetryBench({ seconds: 5, connections: 50, rounds: 6 }),
  );
if (want('auth'))
  results.auth = await measure('auth', () => authBench({ seconds: 5, connections: 50, rounds: 5 }));
if (want('state')) results.state = await measure('state', () => stateBench({ rounds: 5, perRound: 1000 }));
if (want('egress')) results.egress = await measure('egress', () => egressBench({ count: 20 }));
if (want('traffic'))
  results.traffic = await measure('traffic', () => trafficBench({ rate: 1000, seconds: 10 }));
if (want('events')) results.events = await measure('events', () => eventsBench({ count: 50_000 }));
if (want('async')) results.async = await measure('async', () => asyncBench({ count: 5000 }));
if (want('streaming')) results.streaming = await measure('streaming', () => streamingBench({ count: 100 }));
if (want('cloudevents'))
  results.cloudevents = await measure('cloudevents', () =>
    cloudEventsBench({ rounds: 5, seconds: 3, connections: 32 }),
  );
if (want('eventsourcing'))
  results.eventsourcing = await measure('eventsourcing', () =>
    eventSourcingBench({ pairs: 2000, rebuildEvents: 100_000 }),
  );
if (want('hostile'))
  results.hostile = await measure('hostile', () => hostileBench({ seconds: 3, rounds: 4 }));
if (want('builds')) results.builds = await measure('builds', () => buildsBench());
if (want('abuse')) results.abuse = await measure('abuse', () => abuseBench({ seconds: 4, rounds: 3 }));
if (want('cluster'))
  results.cluster = await measure('cluster', () =>
    clusterBench({ seconds: 4, connections: 30, sequentialCount: 1000 }),
  );
if (want('cluster-mqtt'))
  results.clusterMqtt = await measure('clusterMqtt', () => clusterMqttBench({ count: 5000 }));
if (want('cluster-layers'))
  results.clusterLayers = await measure('clusterLayers', () => clusterLayersBench());
if (want('tls'))
  results.tls = await measure('tls', () => tlsBench({ seconds: 5, connections: 50, rounds: 5 }));
if (want('compliance'))
  results.compliance = await measure('compliance', () =>
    complianceBench({ seconds: 5, connections: 32, rounds: 4 }),
  );
if (want('microvm'))
  results.microvm = await measure('microvm', () =>
    microvmBench({ boots: 3, coldStarts: 3, seconds: 5, connections: 16 }),
  );
if (want('pull')) results.pull = await measure('pull', () => pullBench());
if (want('wasm'))
  results.wasm = await measure('wasm', () =>
    wasmBench({ count: 24, seconds: 5, connections: 50, rounds: 3 }),
  );
// `npm run bench:trace` owns `trace` in results.json as in RESULTS.md: carry it over.
if (previousJson.trace !== undefined) results.trace = previousJson.trace;
writeFileSync(join(ROOT, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);

const pass = (ok) => (ok ? 'meets the bar' : '**misses the bar**');
const lines = [
  '# Benchmark results',
  '',
  `Measured ${results.date.slice(0, 16).replace('T', ' ')} UTC with \`npm run bench\` on ${results.machine.cores} cores (${results.machine.cpu}), Node ${results.machine.node}.`,
  'Every comparison is made in the same run, servers measured in turn and in alternation, because the machine is shared and noisy: read the ratios, not the absolute figures.',
  ...(results.reruns === undefined
    ? []
    : [
        '',
        ...results.reruns.map(
          (rerun) =>
            `Re-run alone ${rerun.date.slice(0, 16).replace('T', ' ')} UTC with \`node bench/run.mjs ${rerun.sections.join(' ')}\`: ${rerun.sections.join(', ')}.`,
        ),
      ]),
  '',
];
if (results.warm) {
  const w = results.warm;
  lines.push(
    '## Warm invocation (hello through the gateway)',
    '',
    `${w.tool}, ${w.connections} connections, ${w.seconds}s per measurement after a 2s warm-up, ${w.rounds} rounds alternating the servers; figures are medians over the rounds, ratios the median of per-round ratios (hearth against the raw server measured just before it).`,
    '',
    '| server | req/s | p50 ms | p99 ms | errors | CPU µs/request, front process | all its processes |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...Object.entries(w.summary).map(
      ([name, s]) =>
        `| ${name} | ${s.rps} | ${s.p50} | ${s.p99} | ${s.errors} | ${s.frontCpuUs} | ${s.treeCpuUs} |`,
    ),
    '',
    `Throughput ratio hearth/raw: **${w.throughputRatio}** (bar ≥ 0.6: ${pass(w.throughputRatio >= 0.6)}); p99 ratio: **${w.p99Ratio}** (bar ≤ 3: ${pass(w.p99Ratio <= 3)}).`,
    '',
    'The front process is the one that parses HTTP: the gateway for Hearth, whose functions run in processes of their own (the tree column adds them). On two cores shared with the load generator it is the bottleneck, so its CPU per request sets the throughput ratio.',
    '',
    "The gateway reads the common invocation request (`/function/…`, HTTP/1.1, no body or a small Content-Length body) with its own parser, `src/gateway/fast-http.ts`, and leaves every other request to node:http on the same connection. The `raw node:net` row is the hello answered by a parser of that kind with nothing else: the difference between it and `raw node:http` is node:http's own cost per request, which the gateway no longer pays on its hot path. The bar's ratio is still taken against `raw node:http`.",
    '',
  );
}
if (results.cold) {
  const c = results.cold;
  lines.push(
    '## Cold start (first request to a freshly deployed function, sandboxed, time to first byte)',
    '',
    '| runtime | stem cells p50 ms | p95 ms | without the pool p50 ms | p95 ms | gain (p50) |',
    '|---|---:|---:|---:|---:|---:|',
    ...['node20', 'python3'].map((r) => {
      const a = c['stem cells'][r];
      const b = c['no pool'][r];
      return `| ${r} | ${a.p50} | ${a.p95} | ${b.p50} | ${b.p95} | ${(b.p50 / a.p50).toFixed(1)}× |`;
    }),
    '',
    `${c['stem cells'].node20.n} functions per runtime. Bars: node20 p50 ≤ 10 ms (${pass(c['stem cells'].node20.p50 <= 10)}), python3 p50 ≤ 25 ms (${pass(c['stem cells'].python3.p50 <= 25)}). The seed's figures were 450 ms and 680 ms.`,
    '',
  );
}
if (results.coldBurst) {
  const c = results.coldBurst;
  const b = c.backToBack;
  lines.push(
    '## Cold starts in bursts (distinct idle functions, sandboxed, time to first byte, a fresh connection each)',
    '',
    '| burst | n | p50 ms | p95 ms | p99 ms | stem-cell pool misses | bar |',
    '|---|---:|---:|---:|---:|---:|---|',
    ...['node20', 'python3'].map(
      (r) =>
        `| ${r}, back to back | ${b[r].n} | ${b[r].p50} | ${b[r].p95} | — | ${b[r].poolMisses} | p50 ≤ 5, p95 ≤ 30: ${pass(b[r].p50 <= 5 && b[r].p95 <= 30)} |`,
    ),
    `| half node20, half python3, all at once | ${c.atOnce.n} (${c.atOnce.ok} answered 200) | ${c.atOnce.p50} | — | ${c.atOnce.p99} | ${c.atOnce.poolMisses} | all 200, p99 ≤ 150: ${pass(c.atOnce.ok === c.atOnce.n && c.atOnce.p99 <= 150)} |`,
    '',
    ...(c.atOnce.cpuPerCall === undefined
      ? []
      : [
          `CPU per cold start (the platform, its sandboxes and the client, counted by cgroup cpuacct; does not move with the machine's other load): back to back node20 ${b.node20.cpuPerCall} ms, python3 ${b.python3.cpuPerCall} ms; at once ${c.atOnce.cpuPerCall} ms (the gateway's own thread ${c.atOnce.gatewayCpuPerCall} ms); sustained ${c.sustained.cpuPerCall} ms. Cells ready at the start (the floor, \`stemCellFloor\`): at once ${JSON.stringify(c.atOnce.cellsReady)}, sustained ${JSON.stringify(c.sustained.cellsReady)}; misses during the sustained run ${c.sustained.poolMisses}.`,
          '',
        ]),
    `Sustained: ${c.sustained.n} distinct functions (node20 and python3 alternating) called by ${c.sustained.clients} clients in a closed loop: **${c.sustained.coldPerSecond} cold starts/s** (${c.sustained.ok} answered 200, p50 ${c.sustained.p50} ms, p99 ${c.sustained.p99} ms); bar ≥ 100/s: ${pass(c.sustained.coldPerSecond >= 100)}.`,
    '',
    "Each part starts with the stem-cell pools full and never waits for them between calls: a burst is served by the cells ready at its start plus what boots during it. A miss costs a whole sandboxed runtime boot (bubblewrap, cgroups, seccomp, then the interpreter), which on two shared cores is hundreds of milliseconds; `node bench/run.mjs cold-burst` runs this section alone (`COLD_BURST_TIMINGS=1 node bench/cold-burst.mjs` prints each request's Server-Timing).",
    '',
  );
}
if (results.density) {
  const d = results.density;
  lines.push(
    `## Density (${d.functions} deployed functions, half node20 and half python3, ${d.warm} of them warm)`,
    '',
    '| measure | value |',
    '|---|---:|',
    `| live instances | ${d.liveInstances} |`,
    `| gateway process RSS (MiB) | ${d.gatewayRssMiB} |`,
    `| one idle warm instance, PSS (MiB): node20 / python3${d.idleSettleSeconds === undefined ? '' : ` (median of 10 each, ${d.idleSettleSeconds} s without requests)`} | ${d.idleInstancePssMiB.node20} / ${d.idleInstancePssMiB.python3} |`,
    ...(d.idleInstanceAnonymousMiB === undefined
      ? []
      : [
          `| of which its own (Anonymous, MiB): node20 / python3 | ${d.idleInstanceAnonymousMiB.node20} / ${d.idleInstanceAnonymousMiB.python3} |`,
          `| the same right after their last request, PSS (MiB): node20 / python3 | ${d.justUsedInstancePssMiB.node20} / ${d.justUsedInstancePssMiB.python3} |`,
        ]),
    `| the platform and every instance, PSS (MiB) | ${d.totalPssMiB} |`,
    ...(d.stemCellsReady === undefined
      ? []
      : [
          `| of which ready stem cells (the pools' floor for the idle functions, \`stemCellFloor\`) | ${d.stemCellsReady} |`,
        ]),
    `| warm invocation across the ${d.warm}, p50 / p99 (ms) | ${d.warmInvoke.p50} / ${d.warmInvoke.p99} |`,
    `| control API (describe, stats), p50 / p99 (ms) | ${d.api.p50} / ${d.api.p99} |`,
    ...(d.list === undefined
      ? []
      : [
          `| listing the ${d.functions} (GET /api/v1/functions), p50 / p99 (ms) | ${d.list.p50} / ${d.list.p99} |`,
          `| while the ${d.warm} are called in turn: cold starts / evictions | ${d.warmPhase.coldStarts} / ${d.warmPhase.evictions} |`,
        ]),
    d.applySeconds === undefined
      ? `| deploying the ${d.functions} (s) | ${d.deploySeconds} |`
      : `| one \`hearth apply\` of the ${d.functions} documents, each verified (s) | ${d.applySeconds} |`,
    '',
    `Bar: an idle instance ≤ 8 MiB PSS: ${pass(Math.max(d.idleInstancePssMiB.node20 ?? 99, d.idleInstancePssMiB.python3 ?? 99) <= 8)}. \`node bench/run.mjs density\` runs this section alone.`,
    '',
  );
}
if (results.isolate) {
  const i = results.isolate;
  const w = i.warm;
  const row = (name) =>
    `| ${name} | ${w[name]?.rps ?? '—'} | ${w[name]?.p50 ?? '—'} | ${w[name]?.p99 ?? '—'} | ${w[name]?.errors ?? '—'} |`;
  lines.push(
    `## isolation: isolate (${i.functions} hello functions of one namespace in one host process)`,
    '',
    '| measure | value |',
    '|---|---:|',
    `| one more idle function, PSS (MiB) | ${i.perFunctionMiB} |`,
    `| the host with 1 / ${i.functions} functions, PSS (MiB) | ${i.hostBaseMiB} / ${i.hostAllMiB} |`,
    `| workerd, one more idle worker, PSS (MiB) | ${i.workerd.perWorkerMiB ?? `unavailable: ${i.workerd.unavailable}`} |`,
    `| cold start: the bind inside the host (compile, link, run the module) p50 / p99 (ms) | ${i.hostBind.inside.p50} / ${i.hostBind.inside.p99} |`,
    `| cold start: the bind there and back over the host's socket, host alone p50 / p99 (ms) | ${i.hostBind.roundTrip.p50} / ${i.hostBind.roundTrip.p99} |`,
    ...(i.hostBindBurst === undefined
      ? []
      : [
          `| cold start: the same, host alone, binds back to back (each after the previous one's first answer) p50 / p99 (ms) | ${i.hostBindBurst.roundTrip.p50} / ${i.hostBindBurst.roundTrip.p99} |`,
          `| the bind inside the host, its steps' medians, quiet / back to back (ms): take an isolate, compile and link, run the module, find the handler | ${Object.values(i.hostBind.steps).join(', ')} / ${Object.values(i.hostBindBurst.steps).join(', ')} |`,
        ]),
    `| cold start: the bind as the platform sees it (Server-Timing cold-load) p50 / p99 (ms) | ${i.coldBind.p50} / ${i.coldBind.p99} |`,
    `| cold start, the platform's whole part (code, cell, attach, bind) p50 / p99 (ms) | ${i.coldServer.p50} / ${i.coldServer.p99} |`,
    `| cold start, time to first byte p50 / p99 (ms) | ${i.coldTtfb.p50} / ${i.coldTtfb.p99} |`,
    '',
    `Warm, ${i.tool}, 50 connections, medians of rounds in alternation:`,
    '',
    '| server | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    row('raw node:http'),
    row('hearth, isolation: sandbox'),
    row('hearth, isolation: isolate'),
    '',
    `Bars: ≤ 3 MiB per idle function: ${pass(i.perFunctionMiB <= 3)}; cold start (the bind into the running host) ≤ 1 ms at p50: ${pass(i.hostBind.inside.p50 <= 1)} inside the host; as the platform sees it, with the IPC there and back and the host's wake-up, ${pass(i.coldBind.p50 <= 1)}. Every function ran in the same host process: ${i.sameHost}. The per-function figure is the host's PSS with all ${i.functions} bound, less with one, divided by ${i.functions - 1}; workerd's is the same difference between 51 and 1 workers. \`node bench/run.mjs isolate\` runs this section alone.`,
    '',
  );
}
if (results.footprint) {
  const f = results.footprint;
  lines.push(
    '## Footprint and redeploy',
    '',
    '| measure | value |',
    '|---|---:|',
    `| idle warm node20 instance, RSS / PSS (MiB) | ${f.node20.rssMiB} / ${f.node20.pssMiB} |`,
    `| idle warm python3 instance, RSS / PSS (MiB) | ${f.python3.rssMiB} / ${f.python3.pssMiB} |`,
    `| gateway process RSS (MiB) | ${f.gatewayRssMiB} |`,
    `| first deploy of a function with an npm dependency (ms) | ${f.redeploy.firstDeployMs} |`,
    `| code-only redeploy, median of 5 (ms) | ${f.redeploy.codeOnlyRedeployMs} |`,
    `| dependency layer reused on code-only redeploy | ${f.redeploy.layerReused} |`,
    '',
    'PSS divides shared pages (the interpreter binary, libraries) among the processes that map them: it is what each extra instance really costs.',
    '',
  );
}
if (results.containers) {
  const c = results.containers;
  lines.push(
    '## Container functions (issue 17)',
    '',
    `Images run by crun behind the sandbox's walls (\`node bench/run.mjs containers\`, or \`node bench/containers.mjs\`). Cold start: a freshly deployed function scaled to zero, its image unpacked and cached, the supervisor stem cell ready; time to the first byte of the first request on a fresh connection, n = ${c.cold.goHttp.n}. Warm: wrk, ${c.connections} connections, ${c.seconds}s × ${c.rounds} rounds in alternation, medians.`,
    '',
    '| cold start to first byte | p50 ms | p95 ms | min ms |',
    '|---|---:|---:|---:|',
    `| static Go HTTP image (\`protocol: http\`) | ${c.cold.goHttp.p50} | ${c.cold.goHttp.p95} | ${c.cold.goHttp.min} |`,
    `| Node image with aws-lambda-ric (\`protocol: lambda\`) | ${c.cold.nodeLambdaRic.p50} | ${c.cold.nodeLambdaRic.p95} | ${c.cold.nodeLambdaRic.min} |`,
    `| Python image with awslambdaric (\`protocol: lambda\`) | ${c.cold.pythonLambdaRic.p50} | ${c.cold.pythonLambdaRic.p95} | ${c.cold.pythonLambdaRic.min} |`,
    '',
    '| warm | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    ...Object.entries(c.warm).map(
      ([name, w]) => `| ${name} | ${w.rps} | ${w.p50} | ${w.p99} | ${w.errors} |`,
    ),
    '',
    '| idle instance | RSS MiB | PSS MiB |',
    '|---|---:|---:|',
    `| container (supervisor, crun, Go server) | ${c.memory.container.rssMiB} | ${c.memory.container.pssMiB} |`,
    `| sandboxed node20 | ${c.memory.sandboxNode20.rssMiB} | ${c.memory.sandboxNode20.pssMiB} |`,
    '',
    `Bar: Go image cold start p50 ≤ 15 ms and p95 ≤ 50 ms: ${pass(c.cold.goHttp.p50 <= 15 && c.cold.goHttp.p95 <= 50)}.`,
    '',
  );
}
if (results.auth) {
  const a = results.auth;
  lines.push(
    '## Cost of function-level auth on the warm path',
    '',
    `The hello function deployed three times on one platform — \`public\`, \`auth: key\` (an API key per request) and \`auth: jwt\` (one ES256 JWT, verified by jose against a JWKS file, then cached until its exp) — ${a.tool}, ${a.connections} connections, ${a.seconds}s × ${a.rounds} rounds in alternation (\`node bench/run.mjs auth\`, or \`node bench/auth.mjs\`). CPU is the platform process's own (utime + stime over the run ÷ requests): what the check costs the gateway, steadier than req/s on a shared machine.`,
    '',
    '| function auth | req/s | p50 ms | p99 ms | platform CPU µs / request | errors |',
    '|---|---:|---:|---:|---:|---:|',
    ...Object.entries(a.summary).map(
      ([name, s]) =>
        `| ${name} | ${s.rps} | ${s.p50} | ${s.p99} | ${s.platformCpuMicrosPerRequest} | ${s.errors} |`,
    ),
    '',
    `Throughput against the public function, median of per-round ratios: key **${a.keyRatio}**, jwt **${a.jwtRatio}**. A public function pays one test (\`invocationChecked\`) for all of it.`,
    '',
  );
}
if (results.telemetry) {
  const t = results.telemetry;
  lines.push(
    '## Cost of telemetry on the warm path',
    '',
    `The hello function on two platforms side by side, one with metrics, Server-Timing and OTLP tracing (to a local sink) on, one with all of it off; ${t.tool}, ${t.connections} connections, ${t.seconds}s × ${t.rounds} rounds in alternation.`,
    '',
    '| platform | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    ...Object.entries(t.summary).map(
      ([name, s]) => `| ${name} | ${s.rps} | ${s.p50} | ${s.p99} | ${s.errors} |`,
    ),
    '',
    `Throughput ratio on/off: **${t.throughputRatio}** (bar ≥ 0.9: ${pass(t.throughputRatio >= 0.9)}); ${t.otlpExportRequests} OTLP export requests were sent during the run.`,
    '',
  );
}
if (results.state) {
  const st = results.state;
  lines.push(
    '## ctx.state latency (measured inside the function, per operation)',
    '',
    '| store | get p50 / p99 ms | set p50 / p99 ms | incr p50 / p99 ms |',
    '|---|---:|---:|---:|',
    ...Object.entries(st).map(
      ([store, ops]) =>
        `| ${store} | ${ops.get.p50} / ${ops.get.p99} | ${ops.set.p50} / ${ops.set.p99} | ${ops.incr.p50} / ${ops.incr.p99} |`,
    ),
    '',
    `${st.embedded.get.n} samples per operation and store. The embedded store is SQLite (WAL) behind the platform; Redis is a real redis-server on loopback.`,
    '',
  );
}
if (results.cluster) {
  const cl = results.cluster;
  const f = cl.forward;
  lines.push(
    '## Cluster mode (bench-hello over 1, 2 and 3 nodes on PostgreSQL, NATS and Redis)',
    '',
    '| nodes | req/s (all nodes) | worst p99 ms | errors |',
    '|---:|---:|---:|---:|',
    ...cl.throughput.map((t) => `| ${t.nodes} | ${t.rps} | ${t.p99} | ${t.errors} |`),
    '',
    `${cl.connections} connections in all (autocannon, split evenly over the nodes), ${cl.seconds}s per measurement. Every node and the load generator share the same two cores: this shows what running more nodes costs on one machine, not the speed-up separate machines would give.`,
    '',
    '| one request, one keep-alive connection | n | p50 ms | p95 ms | p99 ms |',
    '|---|---:|---:|---:|---:|',
    `| served where it lands | ${f.direct.n} | ${f.direct.p50} | ${f.direct.p95} | ${f.direct.p99} |`,
    `| forwarded one hop (by a full node) | ${f.forwarded.n} | ${f.forwarded.p50} | ${f.forwarded.p95} | ${f.forwarded.p99} |`,
    '',
    ...(cl.async === undefined
      ? []
      : [
          `Async through NATS JetStream (${cl.async.count} invocations of bench-hello, ${cl.async.lanes} at a time, spread over ${cl.async.nodes} nodes): **${cl.async.acceptsPerSecond} accepts/s** (202 once the record is in PostgreSQL and JetStream acknowledged the publish: p50 ${cl.async.accept.p50} / p95 ${cl.async.accept.p95} / p99 ${cl.async.accept.p99} ms), **${cl.async.runsPerSecond} runs/s** by the nodes together.`,
          '',
        ]),
    ...(cl.kill === undefined
      ? []
      : [
          `kill -9 of n3 (and its sandboxes) while ${cl.kill.asyncAccepted} async invocations were being accepted by the three: every one finished ${cl.kill.allFinishedAfterKillS} s after the kill (\`cluster.ackWait: 5s\`). Sync bench-hello on the survivors, ${cl.seconds}s each: n1 p99 ${cl.kill.before[0].p99} → ${cl.kill.after[0].p99} ms, n2 p99 ${cl.kill.before[1].p99} → ${cl.kill.after[1].p99} ms (before → from the kill on; errors ${cl.kill.before[0].errors + cl.kill.before[1].errors} → ${cl.kill.after[0].errors + cl.kill.after[1].errors}).`,
          '',
        ]),
    `A forwarded request costs **${f.costP50Ms} ms** more at the median. \`node bench/run.mjs cluster\` runs this section alone.`,
    '',
  );
}
if (results.clusterMqtt) {
  const cm = results.clusterMqtt;
  lines.push(
    '## Cluster mode: MQTT trigger events through the shared queue',
    '',
    `${cm.count} QoS 1 messages to an EventGateway's MQTT protocol on a cluster of ${cm.nodes} nodes: each message is recorded in PostgreSQL and published to JetStream before its PUBACK, then run by whichever node's queue worker takes it (${cm.runNodes} nodes ran some). **${cm.queuedPerSecond} events/s queued** (first to last record, while the publisher ran), **${cm.runsPerSecond} runs/s** finished by the nodes together. On one node the same trigger delivers in place (the events section above); in a cluster each event pays the queue's record and publish, the price of surviving the node that received it. \`node bench/run.mjs cluster-mqtt\` runs this section alone.`,
    '',
  );
}
if (results.clusterLayers) {
  lines.push(
    '## Cluster mode: a dependency layer built once (n1 builds and stores it, n2 fetches it)',
    '',
    '| requirements.txt | stored (gzip) MiB | build on n1 s | store in PostgreSQL s | fetch on n2 s |',
    '|---|---:|---:|---:|---:|',
    ...results.clusterLayers.cases.map(
      (c) => `| ${c.requirements} | ${c.storedMiB} | ${c.buildS} | ${c.storeS} | ${c.fetchS} |`,
    ),
    '',
    'Build: pip from PyPI in the sandbox (downloads included). Fetch: the gzipped tar read from PostgreSQL in 1 MiB rows, checked and unpacked, as a node does before it serves the version. One sample each; `node bench/run.mjs cluster-layers` runs this section alone.',
    '',
  );
}
if (results.egress) {
  const e = results.egress;
  lines.push(
    '## Cold start by egress policy (sandboxed node20, time to first byte)',
    '',
    '| egress | p50 ms | p95 ms |',
    '|---|---:|---:|',
    ...['none', 'allow', 'allowHost', 'list']
      .filter((k) => e[k] !== undefined)
      .map((k) => `| ${k === 'allowHost' ? 'allow, `egressAllow: host`' : k} | ${e[k].p50} | ${e[k].p95} |`),
    '',
    `An allow-list adds ${e.listAddsP50Ms} ms at p50 over no network (${e.none.n} functions per policy)${e.allowAddsP50Ms === undefined ? '' : `; \`allow\` in a namespace of its own adds ${e.allowAddsP50Ms} ms over sharing the host's network`}.`,
    '',
  );
}
if (results.traffic) {
  const { rateLimit: rl, priority: pr } = results.traffic;
  lines.push(
    '## Traffic control',
    '',
    `Rate limit: a route limited to ${rl.configuredPerSecond} req/s (burst ${rl.configuredPerSecond / 10}) offered a constant open-loop ${rl.offeredPerSecond} req/s for ${rl.elapsed}s: **${rl.admittedPerSecond} req/s admitted** (${rl.refused429} answered 429, ${rl.errors} errors), accuracy ${rl.accuracy} (bar: within ±5% of the configured rate: ${pass(Math.abs(rl.accuracy - 1) <= 0.05)}).`,
    '',
    `Priority: one function with 4 slots, each request holding one for ${pr.workMs} ms; a high-priority route (priority 90) paced at ${pr.highRatePerSecond} req/s, alone and while 32 closed-loop connections on a low-priority route (priority 1) keep its queue full.`,
    '',
    '| high-priority route | n | p50 ms | p99 ms | max ms |',
    '|---|---:|---:|---:|---:|',
    `| unsaturated | ${pr.unsaturated.n} | ${pr.unsaturated.p50} | ${pr.unsaturated.p99} | ${pr.unsaturated.max} |`,
    `| saturated | ${pr.saturated.n} | ${pr.saturated.p50} | ${pr.saturated.p99} | ${pr.saturated.max} |`,
    '',
    `p99 saturated / unsaturated: **${pr.p99Ratio}**; meanwhile the low-priority route ran ${pr.lowPriority.rps} req/s at p50 ${pr.lowPriority.p50} ms, p99 ${pr.lowPriority.p99} ms (queued).`,
    '',
  );
}
if (results.events) {
  const ev = results.events;
  const row = (name, r, how) =>
    r === undefined
      ? []
      : [`| ${name} | ${how} | ${r.delivered} | ${r.seconds} | **${r.eventsPerSecond}** |`];
  lines.push(
    '## Events into a no-op function',
    '',
    `${ev.count} events per broker, each broker on this machine; the rate is the trigger's own delivered count (acked or committed only after the function succeeded) from the first delivery to the last. Kafka and NATS drain a backlog produced beforehand; MQTT is measured while its publisher runs.`,
    '',
    '| source | settings | delivered | seconds | events/s |',
    '|---|---|---:|---:|---:|',
    ...row('Kafka', ev.kafka, `${ev.kafka?.partitions} partitions, ordering per partition`),
    ...row('Kafka', ev.kafkaByKey, `${ev.kafkaByKey?.partitions} partitions, ordering per key (1,024 keys)`),
    ...row('NATS JetStream', ev.nats, `durable consumer, ${ev.nats?.parallelism} unacked at once`),
    ...row('MQTT (QoS 1)', ev.mqtt, `receive maximum ${ev.mqtt?.parallelism}`),
    '',
    `Bars: ≥ 5,000 events/s for Kafka (${pass((ev.kafka?.eventsPerSecond ?? 0) >= 5000)}) and NATS (${pass((ev.nats?.eventsPerSecond ?? 0) >= 5000)}).`,
    '',
  );
}
if (results.async) {
  const a = results.async;
  lines.push(
    '## Async invocation (durable SQLite queue)',
    '',
    `${a.count} \`POST /async-function/bench-noop\` with ${a.concurrency} in flight: **${a.acceptedPerSecond} accepted/s** (each durable before its 202), **${a.completedPerSecond} completed/s** (first accept to last finish); accept → start p50 ${a.acceptToStartMs.p50} ms, p99 ${a.acceptToStartMs.p99} ms (the backlog the burst builds included).`,
    '',
  );
}
if (results.cloudevents) {
  const ce = results.cloudevents;
  lines.push(
    '## CloudEvents ingress (binary mode into a synchronous function)',
    '',
    `autocannon, ${ce.connections} connections, ${ce.seconds}s per measurement, ${ce.rounds} rounds alternating the two paths; the same 35-byte JSON body to the same hello function. Medians over the rounds.`,
    '',
    '| path | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    ...Object.entries(ce.summary).map(
      ([name, s]) =>
        `| ${name === 'function' ? 'POST /function/bench-hello' : 'POST /events (ce-* headers)'} | ${s.rps} | ${s.p50} | ${s.p99} | ${s.errors} |`,
    ),
    '',
    `Throughput ratio /events over /function/: **${ce.throughputRatio}**. \`/events\` goes through node:http (the fast front serves only \`/function/\`) and validates the event before submitting it.`,
    '',
  );
}
if (results.eventsourcing) {
  const es = results.eventsourcing;
  const b = es.batched;
  const ar = es.appendRead;
  const rb = es.rebuild;
  lines.push(
    '## Batched CloudEvents and event-sourced state (issue 20)',
    '',
    `Batched mode: ${b.events} events as ${b.events / b.batchSize} \`application/cloudevents-batch+json\` posts of ${b.batchSize} to \`POST /events\`, ${b.concurrency} in flight, each event for the bench-noop function: **${b.acceptedPerSecond} events/s accepted** (each batch durable in the queue before its 202), **${b.deliveredPerSecond} events/s delivered** (first post until none is queued or running).`,
    '',
    `ctx.events, timed inside one function (bench/functions/bench-events): ${ar.count} sequential append-with-expectedVersion + read-back pairs on one stream.`,
    '',
    '| operation | p50 ms | p99 ms |',
    '|---|---:|---:|',
    `| append (expectedVersion) | ${ar.append.p50} | ${ar.append.p99} |`,
    `| read (the event just appended) | ${ar.read.p50} | ${ar.read.p99} |`,
    `| append + read | ${ar.pair.p50} | ${ar.pair.p99} |`,
    '',
    `Appends per second with expectedVersion: **${ar.appendsPerSecond}** from one writer (each append waits for the one before), **${ar.fourWritersAppendsPerSecond}** from four writers on four streams at once.`,
    '',
    `Rebuild of a ${rb.events}-event stream (folding every event, read in pages of 10,000): **${rb.withoutSnapshotMs} ms without a snapshot**, **${rb.withSnapshotMs} ms from a snapshot** at version ${rb.events} plus the 100 events appended after it (${rb.speedup}×). Filling the stream took ${rb.fillMs} ms (appends of 1,000 events each).`,
    '',
  );
}
if (results.streaming) {
  const st = results.streaming;
  const row = (label, s) =>
    `| ${label} | ${s.head.p50} / ${s.head.p99} | ${s.first.p50} / ${s.first.p99} | ${s.total.p50} / ${s.total.p99} |`;
  lines.push(
    '## Response streaming (time to first chunk)',
    '',
    `${st.count} sequential requests each, warm, one connection per request. The streaming function (\`awslambda.streamifyResponse\`) writes its first chunk at once and the rest after ${st.workMs} ms; the buffered one returns the same answer after the same ${st.workMs} ms.`,
    '',
    '| function | head p50 / p99 ms | first body byte p50 / p99 ms | end p50 / p99 ms |',
    '|---|---:|---:|---:|',
    row('streamed (bench-stream)', st.summary['bench-stream']),
    row('buffered (bench-buffered)', st.summary['bench-buffered']),
    '',
  );
}
if (results.hostile) {
  const h = results.hostile;
  lines.push(
    '## Warm path while hostile deploys are refused',
    '',
    `Sequential warm invocations of the hello function on one keep-alive connection, ${h.seconds}s unloaded then ${h.seconds}s while a loop posts a deployable .tar.gz followed by gzip-compressed zeros (${(h.uploadBytes / 1024).toFixed(0)} KiB on the wire, ${h.inflatesToBytes / 1024 ** 2} MiB inflated), ${h.rounds} rounds alternating; figures over all rounds.`,
    '',
    '| condition | invocations | p50 ms | p99 ms | max ms | longest event-loop delay, ms |',
    '|---|---:|---:|---:|---:|---:|',
    `| unloaded | ${h.unloaded.n} | ${h.unloaded.p50} | ${h.unloaded.p99} | ${h.unloaded.max} | ${h.unloaded.eventLoopMaxMs} |`,
    `| hostile deploys refused meanwhile | ${h.underAttack.n} | ${h.underAttack.p50} | ${h.underAttack.p99} | ${h.underAttack.max} | ${h.underAttack.eventLoopMaxMs} |`,
    '',
    `Ratio under attack / unloaded: p50 **${h.p50Ratio}**, p99 **${h.p99Ratio}**. ${h.hostileDeploys.n} hostile deploys, each refused (${h.hostileDeploys.codes.join(', ')}) in p50 ${h.hostileDeploys.p50} ms, p99 ${h.hostileDeploys.p99} ms. Before issue 19's fix one such upload of 32 MiB of padding stalled every request for 16-28 s.`,
    '',
    "The attacking client posts deploys back to back and shares the two cores with the platform, its archive worker thread and the function: the p99 ratio is that contention for CPU, not a held event loop (the last column, from the platform's own `nodejs_eventloop_lag_max_seconds`, read at each phase's end).",
    '',
  );
}
if (results.builds) {
  const b = results.builds;
  lines.push(
    '## Dependency builds of heavy packages (sandboxed, from the public registries)',
    '',
    '| dependencies | runtime | cold build, deploy ms | new layer, package cache warm, ms | layer cached (code-only), ms | layer MiB | package cache MiB | first invocation, cold, ms |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...b.cases.map(
      (c) =>
        `| ${c.name} | ${c.runtime} | ${c.coldMs} | ${c.warmCacheMs} | ${c.layerCachedMs}${c.layerReused ? '' : ' (not reused!)'} | ${c.layerMiB} | ${c.packageCacheMiB} | ${c.firstInvokeMs} |`,
    ),
    '',
    `Deploy times are the whole deploy (upload, build, verify, activate). Cold: a namespace whose package cache is empty; the package cache is the namespace's own (issue 21), so every new namespace starts cold. Builds run with a TMPDIR on disk in their scratch dir, capped by \`build.maxDisk\` (${b.maxDisk}); a function's /tmp stays 64 MiB. pip's package cache stays empty on this machine: its registry mirror answers without Cache-Control headers, so pip's HTTP cache keeps nothing and a new Python layer downloads again. better-sqlite3 needs its install script (\`build: { scripts: true }\`): its prebuilt binary is on GitHub, which builds cannot reach (only the registries), so node-gyp compiles it here with this node's headers.`,
    '',
  );
}
if (results.abuse) {
  const a = results.abuse;
  lines.push(
    '## A neighbour under abuse (sandbox walls, issue 10)',
    '',
    `The neighbour: the hello function serving a steady 200 invocations/s on one keep-alive connection, ${a.seconds}s unloaded then ${a.seconds}s while another function of the same platform does the abuse, invoked from a worker thread of the bench one call at a time, at most 50 calls/s (a flooding client is the namespace quota's and the rate limiter's to bound: see Traffic control), or while a client holds slow-loris connections; ${a.rounds} rounds of every case. Unloaded: ${a.unloaded.n} calls, p50 ${a.unloaded.p50} ms, p99 ${a.unloaded.p99} ms. (Until 2026-12-07 the neighbour was a closed loop as fast as it could go and the abuser was called back to back: the neighbour then took both cores itself, and its p99 measured the CPU share left to it.)`,
    '',
    '| abuse | neighbour calls | p50 ms | p99 ms | p99 / unloaded (bar ≤ 2) | what the abuser got |',
    '|---|---:|---:|---:|---:|---|',
    ...Object.entries(a.cases).map(
      ([label, c]) =>
        `| ${label} | ${c.n} | ${c.p50} | ${c.p99} | ${c.p99Ratio} (${pass(c.p99Ratio <= 2)}) | ${Object.entries(
          c.answers,
        )
          .map(([answer, count]) => `${answer} ×${count}`)
          .join(', ')} |`,
    ),
    '',
    `After all of it: health ${a.platformAfter}, the log store ${a.logStoreAfter}. The abusers' limits are the defaults (128Mi, pids 256, /tmp 64Mi) but for the CPU hog's \`limits.cpu: 1\`; a function that keeps failing opens its circuit breaker (503 \`HEARTH_E_CIRCUIT_OPEN\`), which then answers at once.`,
    ...(a.loadAverage === undefined
      ? []
      : [
          '',
          `The machine's 1-minute load average was ${a.loadAverage[0]} when the run started and ${a.loadAverage[1]} when it ended (${cpus().length} cores)${Math.min(...a.loadAverage) > cpus().length ? ": well above the core count, so other work's wake-ups, not only the abuse, set the neighbour's p99, unloaded and loaded alike" : ''}.`,
        ]),
    '',
    "CPU sharing (since 2026-12-07): the platform's process runs in a cpu cgroup of its own beside its sandboxes' with ten times their weight, and a sandbox that reaches its CPU quota is marked `cpu.idle` until it has gone a second without (ten once it kept reaching it, since the second run of 2026-12-07), so the gateway and other instances waking preempt it at once; a stem cell booted to refill a pool boots at the least CPU weight until it is bound or a request waits for it, and the helpers of a sandbox (slirp4netns, nft) run in its cgroup (README, Security: Sharing the CPU).",
    '',
    ...(a.clientCgroup === undefined
      ? []
      : [
          a.clientCgroup.startsWith('the bench')
            ? "The neighbour's client (the bench's main thread) ran in the bench process's own cpu cgroup (the root one here), as a process on the same machine outside Hearth would. A task there meets Hearth's whole cgroup tree as one entity, so a hog's `cpu.idle` among its siblings does not reach it: on cgroup v1 a sandbox at its quota in three looks is moved, for the cpu controller only, under a top-level `hearth-idle` cgroup marked `cpu.idle`, where any task waking preempts it (since the third run of 2026-12-07; README, Security: Sharing the CPU). `ABUSE_CLIENT=platform` runs the client in the platform's own cpu cgroup instead. The abusers and their callers are untouched."
            : `The neighbour's client (the bench's main thread) ran in the platform's own cpu cgroup ${a.clientCgroup} (\`ABUSE_CLIENT=platform\`), sharing that cgroup's CPU with the gateway; by default it stays in the bench process's own (root) cgroup, as a process on the same machine outside Hearth would. The abusers and their callers are untouched.`,
          '',
        ]),
  );
}
if (results.tls) {
  const t = results.tls;
  lines.push(
    '## Warm invocation over HTTPS (TLS on the platform port)',
    '',
    `The hello function through hearth with a certificate (\`tls: { cert, key }\`, a self-signed P-256 one) against a raw node:https hello, and through hearth without one against a raw node:http hello, in the same run; ${t.tool}, ${t.connections} keep-alive connections, ${t.seconds}s × ${t.rounds} rounds in alternation; ratios are medians of per-round ratios.`,
    '',
    '| server | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    ...Object.entries(t.summary).map(
      ([name, s]) => `| ${name} | ${s.rps} | ${s.p50} | ${s.p99} | ${s.errors} |`,
    ),
    '',
    `Throughput ratio hearth/raw over HTTP: **${t.plainRatio}**; over HTTPS: **${t.tlsRatio}**; HTTPS ratio over HTTP ratio: **${t.tlsOverPlain}** (bar ≥ 0.8: ${pass(t.tlsOverPlain >= 0.8)}). The gateway's fast front reads the decrypted stream of node:https's TLS sockets, so TLS costs hearth what it costs any node:https server.`,
    '',
  );
}
if (results.compliance) {
  const c = results.compliance;
  const rows = (summary) =>
    Object.entries(summary).map(([name, r]) => `| ${name} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} |`);
  lines.push(
    '## Compliance on the warm path (issue 13)',
    '',
    `POST of a ${c.bodyBytes}-byte JSON body to a Node function, ${c.connections} connections, ${c.seconds}s × ${c.rounds} rounds alternating, medians. SM4-GCM: the same handler, the body sealed (${c.sealedBytes} bytes in the hearth-sm4 wire format), opened and the answer sealed inside the guest, on the same platform in the same run. Invocation auditing: two platforms side by side, one with \`audit.invocations: true\` (an SM3 of each payload, a hash-chained record per invocation, written in 50 ms groups); ${c.auditedRecords} records written.`,
    '',
    '| case | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    ...rows(c.sm4),
    ...rows(c.audit),
    '',
    `Throughput ratio SM4-GCM / plain: **${c.sm4ThroughputRatio}**; audit on / off: **${c.auditThroughputRatio}**.`,
    '',
  );
}
if (results.microvm) {
  const m = results.microvm;
  lines.push(
    '## isolation: microvm (issue 14)',
    '',
    `QEMU microvm guests (Debian's cloud kernel, busybox init, the host's node on a read-only ext4 root, the slot over virtiofs), accelerator: ${m.boot.accelerator}. Boot: a VM started straight through the isolation to its guest's Ready frame (kernel, init, node and the bootstrap), ${m.boot.medianMs} ms median (${m.boot.minMs}-${m.boot.maxMs}). Cold start from the pool of booted VMs, on a fresh connection: ${m.coldFromPool.map((c) => `${c.ms} ms${c.cold ? '' : ' (not cold!)'}`).join(', ')}. Idle microVM (QEMU, virtiofsd and the guest's RAM): PSS ${m.idlePssMiB} MiB, RSS ${m.idleRssMiB} MiB.`,
    '',
    '| hello served by | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    ...Object.entries(m.warm).map(
      ([name, r]) => `| ${name} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} |`,
    ),
    '',
    `Warm throughput microvm / sandbox: **${m.warmRatioToSandbox}** (autocannon, 16 connections, 5 s each, in the same run).`,
    '',
  );
}
if (results.wasm) {
  const w = results.wasm;
  const command = w.cold['wasm, WASI command (Rust hello)'];
  const hosted = w.cold['wasm host, WASI command (Rust hello)'];
  lines.push(
    '## WebAssembly functions (issue 14)',
    '',
    `Cold start: ${command.n} distinct idle functions per row, one at a time (the rows taking turns, so drifting load weighs on all alike), a fresh connection each, time to first byte. "wasm host" rows: \`isolation: isolate\`, the namespace's wasm host already up (booted by a first function), the function without an instance: the module compiled once per content hash (identical bytes share it; the "bytes of its own" row compiles at each function's first bind), a fresh instance per request on a worker thread. Other rows: sandboxed, a stem-cell process per instance, the pool full. The phases are medians of the platform's Server-Timing (code checkout, stem cell, attach and limits, bind = load the module; exec = the first request). \`node bench/run.mjs wasm\` runs this section alone.`,
    '',
    '| function | p50 ms | p95 ms | p99 ms | min ms | pool misses | code | stem cell | attach | bind | exec |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...Object.entries(w.cold).map(
      ([name, c]) =>
        `| ${name} | ${c.p50} | ${c.p95} | ${c.p99 ?? '—'} | ${c.min} | ${c.poolMisses} | ${c.phasesP50['cold-code']} | ${c.phasesP50['cold-stemcell']} | ${c.phasesP50['cold-attach']} | ${c.phasesP50['cold-load']} | ${c.phasesP50.exec} |`,
    ),
    '',
    `Bar: wasm cold start p50 ≤ 1 ms: in the wasm host **${hosted?.p50 ?? '—'} ms** (${pass(hosted !== undefined && hosted.p50 <= 1)}); a process per instance **${command.p50} ms** (${pass(command.p50 <= 1)}); the seed's WasmEdge figure is < 50 ms.`,
    ...(w.hostAlone === undefined
      ? []
      : [
          '',
          `The wasm host alone (a script speaking its frames, no platform, no sandbox; a new function of an already compiled module: its open, Bind and first Invoke written at once, to its Result): ${Object.entries(
            w.hostAlone,
          )
            .map(([name, t]) => `${name} p50 ${t.p50} ms (p99 ${t.p99}, n ${t.n})`)
            .join('; ')}.`,
        ]),
    '',
    `Warm: ${w.tool}, ${w.connections} connections, ${w.seconds}s each after a 2s warm-up, ${w.rounds} rounds alternating the servers in the same run; medians, ratios the median of per-round ratios.`,
    '',
    '| server | req/s | p50 ms | p99 ms | errors | vs raw node:http | vs the Node hello |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...Object.entries(w.warm).map(
      ([name, r]) =>
        `| ${name} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.vsRaw} | ${r.vsNodeHello} |`,
    ),
    '',
  );
}
// The seed's runtime table, with this machine's figures: one row per class, each figure from its own section
// of this file (so of the run that section last ran in; ratios are to raw node:http of that same run).
{
  const rows = [];
  const ratio = (rps, raw) => (rps !== undefined && raw ? (rps / raw).toFixed(2) : '—');
  const c = results.containers;
  if (c) {
    const rawRps = c.warm['raw node:http']?.rps;
    rows.push(
      `| sandbox (bubblewrap), node20 | ${results.cold?.['stem cells']?.node20?.p50 ?? '—'} | ${c.warm['node20 source hello']?.rps} (${ratio(c.warm['node20 source hello']?.rps, rawRps)}) | ${c.memory.sandboxNode20.pssMiB} | namespaces, seccomp, cgroup, unprivileged uid |`,
      `| container (crun), static Go image | ${c.cold.goHttp.p50} | ${c.warm['container (Go image)']?.rps} (${ratio(c.warm['container (Go image)']?.rps, rawRps)}) | ${c.memory.container.pssMiB} | the sandbox's walls around an OCI image, read-only rootfs |`,
    );
  }
  const w = results.wasm;
  if (w) {
    const rawRps = w.warm['raw node:http']?.rps;
    const hello = Object.entries(w.warm).find(([name]) => name.includes('WASI command'))?.[1];
    rows.push(
      `| wasm (V8 + node:wasi in the sandbox), Rust | ${w.cold['wasm, WASI command (Rust hello)']?.p50} | ${hello?.rps ?? '—'} (${ratio(hello?.rps, rawRps)}) | — | linear memory capped, plus the sandbox's walls |`,
    );
    const hostedWarm = w.warm['hearth, wasm host, WASI command (Rust hello)'];
    if (w.cold['wasm host, WASI command (Rust hello)'] !== undefined)
      rows.push(
        `| wasm host (isolation: isolate), Rust | ${w.cold['wasm host, WASI command (Rust hello)'].p50} | ${hostedWarm?.rps ?? '—'} (${ratio(hostedWarm?.rps, rawRps)}) | — | linear memory capped, a worker thread per run; one namespace's sandboxed host process shared |`,
      );
  }
  const i = results.isolate;
  if (i) {
    const rawRps = i.warm['raw node:http']?.rps;
    const iso = i.warm['hearth, isolation: isolate'];
    rows.push(
      `| isolate (V8 isolate in a shared sandboxed host), node20 | ${i.coldTtfb.p50} | ${iso?.rps ?? '—'} (${ratio(iso?.rps, rawRps)}) | ${i.perFunctionMiB} | a V8 isolate per function; one namespace's host process shared |`,
    );
  }
  const m = results.microvm;
  if (m) {
    const cold = [...m.coldFromPool.map((entry) => entry.ms)].sort((a, b) => a - b);
    rows.push(
      `| microvm (QEMU microvm, ${String(m.boot.accelerator).split(':')[0]}), node20 | ${cold[Math.floor(cold.length / 2)]} | ${m.warm.microvm.rps} (${ratio(m.warm.microvm.rps, m.warm.raw?.rps)}) | ${m.idlePssMiB} | its own kernel; no network device |`,
    );
  }
  if (rows.length > 0)
    lines.push(
      "## Isolation classes side by side (the seed's runtime table, measured)",
      '',
      "Cold start: time to first byte of a function's first request, p50 ms, from each class's section below. Warm: requests per second (and the ratio to raw node:http measured in the same section's run). Idle memory: PSS of one more idle instance (MiB).",
      '',
      '| class | cold start p50 ms | warm req/s (vs raw) | idle PSS MiB | isolation |',
      '|---|---:|---:|---:|---|',
      ...rows,
      '',
    );
}
// `npm run bench:trace` owns its own section (it takes ten minutes): keep it across this rewrite.
const previous = existsSync(join(ROOT, 'bench', 'RESULTS.md'))
  ? readFileSync(join(ROOT, 'bench', 'RESULTS.md'), 'utf8')
  : '';
const traceSection = previous.match(/<!-- bench:trace -->[\s\S]*?<!-- \/bench:trace -->/)?.[0];
if (traceSection !== undefined) lines.push(traceSection, '');
if (results.pull) {
  const p = results.pull;
  const row = (what, m) => `| ${what} | ${m.seconds} | ${(m.bytes / 1024).toFixed(1)} |`;
  lines.push(
    '## Image pulls (container functions, a registry on loopback)',
    '',
    "`hearth deploy` of an image function, from the request to the version serving (pull, verify, unpack, then an instance started to check the image runs), and the bytes that landed in the node's blob store.",
    '',
    '| pull | seconds | KiB stored |',
    '|---|---:|---:|',
    row('static Go server `FROM scratch`, first pull', p.goFirst),
    row('two-layer image (4 MiB base), first pull', p.twoFirst),
    row('next tag of it, one small layer changed', p.twoChanged),
    '',
    `The changed tag stores ${(p.changedLayerShare * 100).toFixed(2)}% of the first pull's bytes: its manifest, config and the one changed layer (bar: bytes pulled ≈ that layer).`,
    '',
  );
}
writeResults(`${lines.join('\n')}\n`);
if (failed.length > 0) {
  process.stderr.write(`bench: not measured this time (previous figures kept): ${failed.join(', ')}\n`);
  process.exitCode = 1;
}
