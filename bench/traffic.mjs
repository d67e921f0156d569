// Traffic control through the real platform: (1) rate-limit accuracy, a constant open-loop load offered
// at twice a route's configured rate and the admitted (2xx) rate compared with the configured one; (2) the
// p99 of a high-priority route (paced, open loop) alone and while a closed-loop low-priority load
// (autocannon) saturates the same function, and their ratio.
import { Agent, request } from 'node:http';
import { deploy, ROOT, round, sleep, startHearth, summarise } from './lib.mjs';

const NS = '/api/v1/namespaces/default';

async function applyGateway(url, name, spec) {
  const response = await fetch(`${url}${NS}/gateways/${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ apiVersion: 'hearth.dev/v1', kind: 'EventGateway', metadata: { name }, spec }),
  });
  if (!response.ok) throw new Error(`apply gateway ${name}: ${await response.text()}`);
}

/**
 * An open-loop load at a constant `rate` for `seconds`: every millisecond tick sends the requests that
 * fell due, whatever came back (autocannon's `overallRate` sends each second's quota at the start of the
 * second, a burst that a token bucket rightly refuses beyond its burst size). Latencies of 200s are kept.
 */
async function openLoop(url, path, { rate, seconds, sockets = 128 }) {
  const agent = new Agent({ keepAlive: true, maxSockets: sockets });
  const samples = [];
  const codes = {};
  let failures = 0;
  const one = () =>
    new Promise((resolve) => {
      const started = performance.now();
      const req = request(`${url}${path}`, { agent }, (res) => {
        res.resume();
        res.on('end', () => {
          codes[res.statusCode] = (codes[res.statusCode] ?? 0) + 1;
          if (res.statusCode === 200) samples.push(performance.now() - started);
          resolve();
        });
      });
      req.on('error', () => {
        failures += 1;
        resolve();
      });
      req.end();
    });
  const pending = [];
  const total = Math.round(rate * seconds);
  const begin = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - begin) * rate) / 1000) + 1);
    for (; sent < due; sent++) pending.push(one());
    await sleep(1);
  }
  const elapsed = (performance.now() - begin) / 1000;
  await Promise.all(pending);
  agent.destroy();
  const s = summarise(samples);
  return {
    codes,
    failures,
    elapsed,
    latency: { n: s.n, p50: round(s.p50, 2), p99: round(s.p99, 2), max: round(s.max, 2) },
  };
}

async function overload(url, path, { rate, seconds }) {
  // A warm-up second, not counted: instance warm, JIT, connections open; then the bucket refills.
  await openLoop(url, path, { rate, seconds: 1 });
  await sleep(500);
  const { codes, failures, elapsed } = await openLoop(url, path, { rate, seconds });
  const ok = codes[200] ?? 0;
  const limited = codes[429] ?? 0;
  return {
    offeredPerSecond: Math.round((ok + limited) / elapsed),
    admittedPerSecond: round(ok / elapsed, 1),
    refused429: limited,
    errors:
      failures +
      Object.entries(codes).reduce((n, [code, c]) => (code === '200' || code === '429' ? n : n + c), 0),
    elapsed: round(elapsed, 2),
  };
}

async function paced(url, path, { rate, seconds }) {
  const { latency, codes, failures } = await openLoop(url, path, { rate, seconds, sockets: 64 });
  return { ...latency, failures: failures + Object.values(codes).reduce((a, b) => a + b, 0) - latency.n };
}

export async function trafficBench({ rate = 1000, seconds = 10, highRate = 50, workMs = 20 } = {}) {
  const hearth = await startHearth();
  try {
    await deploy(hearth.url, `${ROOT}/bench/functions/bench-hello`, 'bench-hello');
    await deploy(hearth.url, `${ROOT}/bench/functions/bench-sleep`, 'bench-sleep');
    await applyGateway(hearth.url, 'bench-traffic', {
      functions: [
        { name: 'bench-hello', match: { path: '/limited' }, rateLimit: `${rate}qps` },
        { name: 'bench-sleep', match: { path: '/report' }, priority: 1 },
        { name: 'bench-sleep', match: { path: '/payment-callback' }, priority: 90 },
      ],
    });

    const limit = await overload(hearth.url, '/limited', { rate: rate * 2, seconds });
    const rateLimit = {
      configuredPerSecond: rate,
      ...limit,
      accuracy: round(limit.admittedPerSecond / rate, 4),
    };

    const high = `/payment-callback?ms=${workMs}`;
    await paced(hearth.url, high, { rate: highRate, seconds: 1 });
    const unsaturated = await paced(hearth.url, high, { rate: highRate, seconds });
    const { default: autocannon } = await import('autocannon');
    // Closed loop, 32 connections against 4 slots of `workMs` each: the low-priority queue never empties.
    const low = autocannon({
      url: `${hearth.url}/report?ms=${workMs}`,
      connections: 32,
      duration: seconds + 2,
    });
    await sleep(1000);
    const saturated = await paced(hearth.url, high, { rate: highRate, seconds });
    const lowResult = await low;
    return {
      rateLimit,
      priority: {
        workMs,
        highRatePerSecond: highRate,
        unsaturated,
        saturated,
        p99Ratio: round(saturated.p99 / unsaturated.p99, 2),
        lowPriority: {
          rps: Math.round(lowResult.requests.average),
          p50: lowResult.latency.p50,
          p99: lowResult.latency.p99,
          non2xx: lowResult.non2xx,
        },
      },
    };
  } finally {
    await hearth.stop();
  }
}

if (process.argv[1]?.endsWith('traffic.mjs')) {
  const seconds = Number(process.argv[2] ?? 5);
  process.stdout.write(`${JSON.stringify(await trafficBench({ seconds }), null, 2)}\n`);
}
