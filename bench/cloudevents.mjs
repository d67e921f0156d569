// A binary-mode CloudEvent into a synchronous function (`POST /events`) against the same payload through
// `POST /function/<name>`, in the same run and alternating: what the ingress's parsing and checks cost.
import { join } from 'node:path';
import { deploy, ROOT, round, startHearth } from './lib.mjs';

const BODY = JSON.stringify({ order: 42, items: [1, 2, 3] });

async function load(url, headers, { connections, seconds }) {
  const { default: run } = await import('autocannon');
  const result = await run({ url, method: 'POST', headers, body: BODY, connections, duration: seconds });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors,
  };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

export async function cloudEventsBench({ rounds = 5, seconds = 3, connections = 32 } = {}) {
  const hearth = await startHearth();
  try {
    await deploy(hearth.url, join(ROOT, 'bench', 'functions', 'bench-hello'), 'bench-hello');
    const targets = {
      function: [`${hearth.url}/function/bench-hello`, { 'content-type': 'application/json' }],
      cloudevents: [
        `${hearth.url}/events`,
        {
          'content-type': 'application/json',
          'ce-specversion': '1.0',
          'ce-id': 'bench-1',
          'ce-source': '/bench',
          'ce-type': 'com.example.bench',
          'ce-subject': 'bench-hello',
        },
      ],
    };
    for (const [url, headers] of Object.values(targets))
      await load(url, headers, { connections, seconds: 2 });
    const samples = { function: [], cloudevents: [] };
    for (let i = 0; i < rounds; i++)
      for (const [name, [url, headers]] of Object.entries(targets))
        samples[name].push(await load(url, headers, { connections, seconds }));
    const summary = {};
    for (const [name, runs] of Object.entries(samples))
      summary[name] = {
        rps: round(median(runs.map((r) => r.rps)), 0),
        p50: round(median(runs.map((r) => r.p50)), 2),
        p99: round(median(runs.map((r) => r.p99)), 2),
        errors: runs.reduce((sum, r) => sum + r.errors, 0),
      };
    const ratios = samples.cloudevents.map((r, i) => r.rps / samples.function[i].rps);
    return { rounds, seconds, connections, summary, throughputRatio: round(median(ratios), 2) };
  } finally {
    await hearth.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await cloudEventsBench(), null, 2)}\n`);
}
