// What an egress policy adds to a cold start: the first request after an instance is released, for a
// function with egress none (empty network namespace), allow (its own namespace behind slirp4netns, no
// host loopback; and, on a second platform with `egressAllow: host`, the host network) and an allow-list
// (its own namespace behind slirp4netns, pre-networked stem cells, rules added at bind).
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deploy, ROOT, round, scaleToZero, sleep, startHearth, summarise, timeToFirstByte } from './lib.mjs';

const POLICIES = {
  none: 'egress: none',
  allow: 'egress: allow, hostAliases: { db: host-gateway }',
  list: 'egress: ["db:6379", "host-gateway:5432"], hostAliases: { db: host-gateway }',
};

export async function egressBench({ count = 20 } = {}) {
  const results = await measure({}, POLICIES, count);
  // `egress: allow` sharing the host's network, as it did before it had a namespace of its own.
  const shared = await measure({ egressAllow: 'host' }, { allowHost: POLICIES.allow }, count);
  return {
    ...results,
    ...shared,
    listAddsP50Ms: round(results.list.p50 - results.none.p50),
    allowAddsP50Ms: round(results.allow.p50 - shared.allowHost.p50),
  };
}

async function measure(config, policies, count) {
  const hearth = await startHearth(config);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const results = {};
  try {
    for (const [policy, spec] of Object.entries(policies)) {
      const samples = [];
      for (let i = 0; i < count; i++) {
        // A fresh function deployed without verification has no instance: its first request is a cold start.
        const name = `egress-${policy.toLowerCase()}-${i}`;
        // Let the stem-cell pool refill (and, for a list, network its new cell) before the next start.
        await sleep(400);
        const folder = mkdtempSync(join(tmpdir(), `hearth-${name}-`));
        cpSync(join(ROOT, 'examples', 'hello'), folder, { recursive: true });
        writeFileSync(
          join(folder, 'hearth.yaml'),
          `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec: { runtime: node20, ${spec} }\n`,
        );
        await deploy(hearth.url, folder, name, { verify: false });
        await scaleToZero(hearth.url, name);
        rmSync(folder, { recursive: true, force: true });
        const { ttfb, cold, status } = await timeToFirstByte(hearth.url, `/function/${name}`, agent);
        if (status !== 200 || !cold)
          throw new Error(`${name}: expected a cold 200, got ${status} cold=${cold}`);
        samples.push(ttfb);
      }
      const s = summarise(samples);
      results[policy] = { n: s.n, p50: round(s.p50), p95: round(s.p95) };
    }
  } finally {
    agent.destroy();
    await hearth.stop();
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const count = Number(process.env.COUNT ?? 20);
  process.stdout.write(`${JSON.stringify(await egressBench({ count }), null, 2)}\n`);
}
