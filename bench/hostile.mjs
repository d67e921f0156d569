// The warm path while hostile deploys are refused (issue 19): sequential warm invocations of the hello
// function, unloaded and while a loop posts a valid .tar.gz followed by 256 MiB of gzip-compressed zeros,
// measured in alternating rounds on one platform, reported side by side.
import { Agent } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { deploy, packFolder, ROOT, round, startHearth, summarise, timeToFirstByte } from './lib.mjs';

const FUNCTION = join(ROOT, 'bench', 'functions', 'bench-hello');
const PADDING = 256 * 1024 ** 2;

/** Sequential invocations for `ms`; each sample is the full round trip on one keep-alive connection. */
async function invocations(url, agent, ms) {
  const samples = [];
  const until = performance.now() + ms;
  while (performance.now() < until) {
    const started = performance.now();
    const { status } = await timeToFirstByte(url, '/function/bench-hello', agent);
    if (status !== 200) throw new Error(`warm invocation answered ${status}`);
    samples.push(performance.now() - started);
  }
  return samples;
}

/**
 * The longest the platform's event loop was held since the last call: prom-client's lag histogram
 * (10 ms resolution) is reset at every scrape of /metrics.
 */
async function eventLoopMaxMs(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = text.match(/^nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m);
  return match === null ? Number.NaN : Number(match[1]) * 1000;
}

/** Posts `archive` as a deploy again and again until `running()` is false; every answer must be a refusal. */
async function attack(url, archive, running) {
  const answers = [];
  while (running()) {
    const started = performance.now();
    const response = await fetch(`${url}/api/v1/namespaces/default/functions/bench-hello/deploy`, {
      method: 'POST',
      headers: { 'content-type': 'application/gzip' },
      body: archive,
    });
    const body = await response.json();
    if (response.status < 400 || response.status >= 500)
      throw new Error(`hostile deploy answered ${response.status}: ${JSON.stringify(body)}`);
    answers.push({ ms: performance.now() - started, code: body.error.code });
  }
  return answers;
}

export async function hostileBench({ seconds = 3, rounds = 4 } = {}) {
  const hearth = await startHearth();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await deploy(hearth.url, FUNCTION, 'bench-hello');
    const hostile = Buffer.concat([
      await packFolder(FUNCTION),
      gzipSync(Buffer.alloc(PADDING), { level: 9 }),
    ]);
    await invocations(hearth.url, agent, 1000);
    const unloaded = [];
    const loaded = [];
    const refusals = [];
    const loopMax = { unloaded: 0, underAttack: 0 };
    for (let round = 0; round < rounds; round++) {
      await eventLoopMaxMs(hearth.url);
      unloaded.push(...(await invocations(hearth.url, agent, seconds * 1000)));
      loopMax.unloaded = Math.max(loopMax.unloaded, await eventLoopMaxMs(hearth.url));
      let running = true;
      const attacking = attack(hearth.url, hostile, () => running);
      loaded.push(...(await invocations(hearth.url, agent, seconds * 1000)));
      running = false;
      refusals.push(...(await attacking));
      loopMax.underAttack = Math.max(loopMax.underAttack, await eventLoopMaxMs(hearth.url));
    }
    const a = summarise(unloaded);
    const b = summarise(loaded);
    const refused = summarise(refusals.map((answer) => answer.ms));
    return {
      seconds,
      rounds,
      uploadBytes: hostile.length,
      inflatesToBytes: PADDING,
      unloaded: {
        n: a.n,
        p50: round(a.p50),
        p99: round(a.p99),
        max: round(a.max),
        eventLoopMaxMs: round(loopMax.unloaded),
      },
      underAttack: {
        n: b.n,
        p50: round(b.p50),
        p99: round(b.p99),
        max: round(b.max),
        eventLoopMaxMs: round(loopMax.underAttack),
      },
      p50Ratio: round(b.p50 / a.p50),
      p99Ratio: round(b.p99 / a.p99),
      hostileDeploys: {
        n: refused.n,
        codes: [...new Set(refusals.map((answer) => answer.code))],
        p50: round(refused.p50),
        p99: round(refused.p99),
      },
    };
  } finally {
    agent.destroy();
    await hearth.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await hostileBench(), null, 2)}\n`);
}
