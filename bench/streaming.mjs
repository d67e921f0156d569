// Response streaming (issue 18): time to first chunk of a streamified Lambda handler that writes its first
// chunk at once and the rest after 100 ms, against time to first byte of the same answer buffered.
import { request } from 'node:http';
import { join } from 'node:path';
import { deploy, ROOT, round, startHearth } from './lib.mjs';

/** One request: milliseconds to the head, to the first body byte, and to the end. */
function timed(url) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(url, (res) => {
      const head = performance.now() - started;
      let first;
      res.on('data', () => {
        first ??= performance.now() - started;
      });
      res.on('end', () => resolve({ head, first, total: performance.now() - started }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
};

export async function streamingBench({ count = 100 } = {}) {
  const hearth = await startHearth();
  try {
    for (const name of ['bench-stream', 'bench-buffered'])
      await deploy(hearth.url, join(ROOT, 'bench', 'functions', name), name);
    const summary = {};
    for (const name of ['bench-stream', 'bench-buffered']) {
      const url = `${hearth.url}/function/${name}`;
      for (let i = 0; i < 10; i++) await timed(url);
      const runs = [];
      for (let i = 0; i < count; i++) runs.push(await timed(url));
      summary[name] = {};
      for (const key of ['head', 'first', 'total'])
        summary[name][key] = {
          p50: round(
            percentile(
              runs.map((r) => r[key]),
              50,
            ),
            2,
          ),
          p99: round(
            percentile(
              runs.map((r) => r[key]),
              99,
            ),
            2,
          ),
        };
    }
    return { count, workMs: 100, summary };
  } finally {
    await hearth.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await streamingBench(), null, 2)}\n`);
}
