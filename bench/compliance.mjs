// The cost of issue 13's compliance features on the warm path, each pair measured in the same run and
// loaded in alternation: (1) SM4-GCM invocations (body opened and answer sealed inside the guest) against
// the same handler taking the same JSON in clear, on one platform; (2) two platforms side by side, one with
// `audit.invocations: true` (an SM3 of each payload and a hash-chained record per invocation) and one
// without.
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deploy, round, sleep, startHearth } from './lib.mjs';

const HANDLER =
  'export default async function handler(event) {\n  return { ok: true, amount: event.body.amount };\n}\n';

function functionFolder(name, extraSpec = '') {
  const dir = mkdtempSync(join(tmpdir(), `hearth-bench-${name}-`));
  writeFileSync(
    join(dir, 'hearth.yaml'),
    `apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: ${name} }\nspec:\n  runtime: node20\n  scaling: { max: 1, targetConcurrency: 1000 }\n${extraSpec}`,
  );
  writeFileSync(join(dir, 'index.mjs'), HANDLER);
  return dir;
}

// The wire format of src/compliance/sm4-gcm.ts, sealed once here (the benchmark resends one body).
function sealSm4(key, plain) {
  const nonce = randomBytes(12);
  const counter = (value) => {
    const block = Buffer.alloc(16);
    nonce.copy(block);
    block.writeUInt32BE(value, 12);
    return block;
  };
  const ecb = (block) => {
    const cipher = createCipheriv('sm4-ecb', key, null);
    cipher.setAutoPadding(false);
    return cipher.update(block);
  };
  const big = (b) => (b.length === 0 ? 0n : BigInt(`0x${b.toString('hex').padEnd(32, '0')}`));
  const gmul = (x, y) => {
    let z = 0n;
    let v = y;
    for (let i = 127n; i >= 0n; i--) {
      if ((x >> i) & 1n) z ^= v;
      v = v & 1n ? (v >> 1n) ^ (0xe1n << 120n) : v >> 1n;
    }
    return z;
  };
  const version = Buffer.from([1]);
  const ciphertext = createCipheriv('sm4-ctr', key, counter(2)).update(plain);
  const h = big(ecb(Buffer.alloc(16)));
  let y = 0n;
  for (const data of [version, ciphertext])
    for (let offset = 0; offset < data.length; offset += 16)
      y = gmul(y ^ big(data.subarray(offset, offset + 16)), h);
  const lengths = Buffer.alloc(16);
  lengths.writeBigUInt64BE(8n, 0);
  lengths.writeBigUInt64BE(BigInt(ciphertext.length) * 8n, 8);
  y = gmul(y ^ big(lengths), h) ^ big(ecb(counter(1)));
  return Buffer.concat([version, nonce, ciphertext, Buffer.from(y.toString(16).padStart(32, '0'), 'hex')]);
}

async function load(url, { connections, seconds, method = 'GET', body, headers }) {
  const { default: run } = await import('autocannon');
  const result = await run({ url, connections, duration: seconds, method, body, headers });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors,
  };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

function summarise(results) {
  return Object.fromEntries(
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
}

async function alternate(targets, rounds, seconds, connections) {
  const results = Object.fromEntries(targets.map(([name]) => [name, []]));
  for (let i = 0; i < rounds; i++) {
    for (const [name, options] of i % 2 === 0 ? targets : [...targets].reverse()) {
      await sleep(500);
      await load(options.url, { ...options, connections, seconds: 1 });
      results[name].push(await load(options.url, { ...options, connections, seconds }));
    }
  }
  return results;
}

export async function complianceBench({ seconds = 5, connections = 32, rounds = 4 } = {}) {
  const key = randomBytes(16);
  const plain = Buffer.from(
    JSON.stringify({ account: '6222020000000000', amount: '100.00', memo: 'x'.repeat(160) }),
  );
  const sealed = sealSm4(key, plain);
  const folders = [
    functionFolder('bench-plain'),
    functionFolder(
      'bench-sm4',
      '  encryption: { algorithm: sm4-gcm, key: { secret: bench-key, key: sm4 } }\n',
    ),
  ];
  const platform = await startHearth({});
  const audited = await startHearth({ audit: { invocations: true } });
  const unaudited = await startHearth({});
  try {
    const put = await fetch(`${platform.url}/api/v1/namespaces/default/secrets/bench-key`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ stringData: { sm4: key.toString('hex') } }),
    });
    if (!put.ok) throw new Error(`secret: ${await put.text()}`);
    await deploy(platform.url, folders[0], 'bench-plain');
    await deploy(platform.url, folders[1], 'bench-sm4');
    await deploy(audited.url, folders[0], 'bench-plain');
    await deploy(unaudited.url, folders[0], 'bench-plain');
    const post = (url, body, type) => ({
      url,
      method: 'POST',
      body,
      headers: { 'content-type': type, 'x-hearth-plain-content-type': 'application/json' },
    });
    const sm4 = summarise(
      await alternate(
        [
          ['plain JSON', post(`${platform.url}/function/bench-plain`, plain, 'application/json')],
          ['SM4-GCM sealed', post(`${platform.url}/function/bench-sm4`, sealed, 'application/hearth-sm4')],
        ],
        rounds,
        seconds,
        connections,
      ),
    );
    const audit = summarise(
      await alternate(
        [
          ['audit.invocations off', post(`${unaudited.url}/function/bench-plain`, plain, 'application/json')],
          ['audit.invocations on', post(`${audited.url}/function/bench-plain`, plain, 'application/json')],
        ],
        rounds,
        seconds,
        connections,
      ),
    );
    const records = await fetch(`${audited.url}/api/v1/audit?limit=1`).then((r) => r.json());
    return {
      connections,
      seconds,
      rounds,
      bodyBytes: plain.length,
      sealedBytes: sealed.length,
      sm4,
      sm4ThroughputRatio: round(sm4['SM4-GCM sealed'].rps / sm4['plain JSON'].rps),
      audit,
      auditedRecords: records.lastSeq,
      auditThroughputRatio: round(audit['audit.invocations on'].rps / audit['audit.invocations off'].rps),
    };
  } finally {
    await platform.stop();
    await audited.stop();
    await unaudited.stop();
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.env.SECONDS_PER_RUN ?? 5);
  const rounds = Number(process.env.ROUNDS ?? 4);
  process.stdout.write(`${JSON.stringify(await complianceBench({ seconds, rounds }), null, 2)}\n`);
}
