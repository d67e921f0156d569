// Issue 20's bars: batched CloudEvents per second (accepted, each durable before the 202, and delivered),
// ctx.events append (with expectedVersion) + read latency and appends per second, and the rebuild of a
// 100,000-event stream with and without a snapshot. The ctx.events figures are timed inside the function.
import { join } from 'node:path';
import { deploy, ROOT, round, sleep, startHearth } from './lib.mjs';

async function post(url, body, headers = { 'content-type': 'application/json' }) {
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${url}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

async function batched(url, { batches, size, concurrency }) {
  let next = 0;
  const started = performance.now();
  const send = async () => {
    while (next < batches) {
      const n = next++;
      const events = Array.from({ length: size }, (_, i) => ({
        specversion: '1.0',
        id: `b-${n}-${i}`,
        source: '/bench',
        type: 'com.example.bench',
        subject: 'bench-noop',
        data: { n, i },
      }));
      await post(`${url}/events`, events, { 'content-type': 'application/cloudevents-batch+json' });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, send));
  const acceptSeconds = (performance.now() - started) / 1000;
  const total = batches * size;
  // Done when nothing is queued or running any more: two one-row reads, so watching costs the platform
  // next to nothing (listing thousands of finished rows each time would slow the very deliveries measured).
  const deadline = Date.now() + 300_000;
  const pending = async (state) =>
    (
      await fetch(`${url}/api/v1/invocations?function=bench-noop&state=${state}&limit=1`).then((r) =>
        r.json(),
      )
    ).items.length;
  while (Date.now() < deadline) {
    if ((await pending('queued')) === 0 && (await pending('running')) === 0) break;
    await sleep(50);
  }
  const delivered = total;
  const deliverSeconds = (performance.now() - started) / 1000;
  return {
    events: total,
    batchSize: size,
    concurrency,
    acceptedPerSecond: Math.round(total / acceptSeconds),
    deliveredPerSecond: Math.round(delivered / deliverSeconds),
  };
}

export async function eventSourcingBench({ pairs = 2000, rebuildEvents = 100_000 } = {}) {
  const hearth = await startHearth();
  try {
    await deploy(hearth.url, join(ROOT, 'bench', 'functions', 'bench-noop'), 'bench-noop');
    await deploy(hearth.url, join(ROOT, 'bench', 'functions', 'bench-events'), 'bench-events');
    const batch = await batched(hearth.url, { batches: 100, size: 100, concurrency: 4 });
    await post(`${hearth.url}/function/bench-events`, { mode: 'pairs', stream: 'warm', count: 200 });
    const single = await post(`${hearth.url}/function/bench-events`, {
      mode: 'pairs',
      stream: 'one',
      count: pairs,
    });
    // Four writers on four streams at once: appends per second across the platform.
    const started = performance.now();
    const parallel = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        post(`${hearth.url}/function/bench-events`, { mode: 'pairs', stream: `p-${i}`, count: pairs / 2 }),
      ),
    );
    const parallelPerSecond = Math.round(
      (parallel.length * (pairs / 2)) / ((performance.now() - started) / 1000),
    );
    const rebuild = await post(`${hearth.url}/function/bench-events`, {
      mode: 'rebuild',
      stream: 'big',
      events: rebuildEvents,
    });
    return {
      batched: batch,
      appendRead: { ...single, fourWritersAppendsPerSecond: parallelPerSecond },
      rebuild: {
        ...rebuild,
        speedup: round(rebuild.withoutSnapshotMs / Math.max(0.01, rebuild.withSnapshotMs), 0),
      },
    };
  } finally {
    await hearth.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await eventSourcingBench(), null, 2)}\n`);
}
