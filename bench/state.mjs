// ctx.state latency seen by a function (one platform call each): get, set and incr p50/p99 on the
// embedded SQLite store and on Redis (a redis-server started here), measured in the same run.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deploy, ROOT, round, sleep, startHearth, summarise } from './lib.mjs';

async function startRedis(port) {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-redis-'));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) break;
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop() {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function measure(config, rounds, perRound) {
  const hearth = await startHearth(config);
  try {
    await deploy(hearth.url, join(ROOT, 'bench', 'functions', 'bench-state'), 'bench-state');
    // A first round warms the instance, the store and the JIT; it is not counted.
    await fetch(`${hearth.url}/function/bench-state?n=200`).then((r) => r.json());
    const samples = { get: [], set: [], incr: [] };
    for (let i = 0; i < rounds; i++) {
      const answer = await fetch(`${hearth.url}/function/bench-state?n=${perRound}`).then((r) => r.json());
      for (const op of Object.keys(samples)) samples[op].push(...answer[op]);
    }
    const out = {};
    for (const [op, values] of Object.entries(samples)) {
      const s = summarise(values);
      out[op] = { n: s.n, p50: round(s.p50, 3), p99: round(s.p99, 3) };
    }
    return out;
  } finally {
    await hearth.stop();
  }
}

export async function stateBench({ rounds = 5, perRound = 1000 } = {}) {
  const redis = await startRedis(16399);
  try {
    return {
      embedded: await measure({}, rounds, perRound),
      redis: await measure({ state: { redis: { url: redis.url } } }, rounds, perRound),
    };
  } finally {
    redis.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rounds = Number(process.env.ROUNDS ?? 5);
  const perRound = Number(process.env.PER_ROUND ?? 1000);
  const results = await stateBench({ rounds, perRound });
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
}
