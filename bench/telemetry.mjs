// The cost of observability on the warm path: the same hello function on two platforms started side by
// side, one with telemetry off (metrics: false, serverTiming: false, no tracing) and one with everything
// on (metrics, Server-Timing, OTLP traces to a local sink), loaded in alternation. Bar: on/off ≥ 0.9.
import { createServer } from 'node:http';
import { join } from 'node:path';
import { autocannon, deploy, ensureWrk, ROOT, round, sleep, startHearth, wrk } from './lib.mjs';

/** An OTLP endpoint that accepts and drops everything, so export costs what it would against a collector. */
async function startSink() {
  let spans = 0;
  const server = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      spans += 1;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests: () => spans,
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

export async function telemetryBench({ seconds = 5, connections = 50, rounds = 3 } = {}) {
  const tool = ensureWrk() ? 'wrk' : 'autocannon';
  const load = (url, s) =>
    tool === 'wrk' ? wrk(url, { connections, seconds: s }) : autocannon(url, { connections, seconds: s });
  const sink = await startSink();
  const off = await startHearth({ metrics: false, serverTiming: false });
  const on = await startHearth({ metrics: true, serverTiming: true, otlp: { endpoint: sink.url } });
  const folder = join(ROOT, 'bench', 'functions', 'bench-hello');
  await deploy(off.url, folder, 'bench-hello');
  await deploy(on.url, folder, 'bench-hello');
  const targets = [
    ['telemetry off', `${off.url}/function/bench-hello`],
    ['telemetry on', `${on.url}/function/bench-hello`],
  ];
  const results = Object.fromEntries(targets.map(([name]) => [name, []]));
  try {
    for (let i = 0; i < rounds; i++) {
      // Alternate the order each round, so neither always runs on a machine the other just warmed.
      for (const [name, url] of i % 2 === 0 ? targets : [...targets].reverse()) {
        await sleep(1000);
        await load(url, 2);
        results[name].push(await load(url, seconds));
      }
    }
    const scrape = await fetch(`${on.url}/metrics`).then((r) => r.text());
    if (!scrape.includes('hearth_invocations_total'))
      throw new Error('the "on" platform exported no metrics');
  } finally {
    await off.stop();
    await on.stop();
    await sink.stop();
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const summary = Object.fromEntries(
    Object.entries(results).map(([name, runs]) => [
      name,
      {
        rps: round(median(runs.map((r) => r.rps)), 0),
        p50: round(median(runs.map((r) => r.p50))),
        p99: round(median(runs.map((r) => r.p99))),
        errors: runs.reduce((sum, r) => sum + r.errors, 0),
      },
    ]),
  );
  const onRuns = results['telemetry on'];
  const offRuns = results['telemetry off'];
  return {
    tool,
    connections,
    seconds,
    rounds,
    summary,
    otlpExportRequests: sink.requests(),
    throughputRatio: round(median(onRuns.map((r, i) => r.rps / offRuns[i].rps))),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.env.SECONDS_PER_RUN ?? 5);
  const rounds = Number(process.env.ROUNDS ?? 3);
  process.stdout.write(`${JSON.stringify(await telemetryBench({ seconds, rounds }), null, 2)}\n`);
}
