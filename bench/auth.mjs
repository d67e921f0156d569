// The cost of function-level auth (issue 10) on the warm path: the hello function deployed three times on
// one platform — public, `auth: key` (an API key checked per request: a map lookup, a SHA-256 and a
// constant-time compare) and `auth: jwt` (an ES256 JWT verified by jose against a JWKS file) — loaded in
// alternation. The public one takes the path every function took before; its figure is the baseline.
// Besides req/s (noisy on a shared machine), the platform process's own CPU time per request: what the
// check costs the gateway, whatever else the machine is doing.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { deploy, ensureWrk, ROOT, round, sleep, startHearth } from './lib.mjs';

/** wrk with an Authorization header (lib.mjs's wrk sends none). */
function wrkWith(target, { connections, seconds, authorization }) {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency'];
  if (authorization !== undefined) args.push('-H', `Authorization: ${authorization}`);
  const out = execFileSync('wrk', [...args, target], { encoding: 'utf8' });
  const toMs = (value, unit) => Number(value) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
  const latency = (p) => {
    const match = out.match(new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`));
    return match ? toMs(match[1], match[2]) : Number.NaN;
  };
  return {
    requests: Number(out.match(/(\d+) requests in/)?.[1]),
    rps: Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1]),
    p50: latency(50),
    p99: latency(99),
    errors: Number(out.match(/Non-2xx or 3xx responses:\s+(\d+)/)?.[1] ?? 0),
  };
}

/** User + system CPU of one process, in microseconds (clock ticks of 10 ms). */
function cpuMicros(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

function variant(dir, name, extra) {
  const folder = join(dir, name);
  cpSync(join(ROOT, 'bench', 'functions', 'bench-hello'), folder, { recursive: true });
  const manifest = readFileSync(join(folder, 'hearth.yaml'), 'utf8')
    .replace('name: bench-hello', `name: ${name}`)
    .replace('runtime: node20', `runtime: node20${extra}`);
  writeFileSync(join(folder, 'hearth.yaml'), manifest);
  return folder;
}

export async function authBench({ seconds = 5, connections = 50, rounds = 3 } = {}) {
  if (!ensureWrk()) throw new Error('the auth benchmark needs wrk (it sends an Authorization header)');
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-auth-'));
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwks = join(dir, 'jwks.json');
  writeFileSync(
    jwks,
    JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'b', alg: 'ES256' }] }),
  );
  const jwt = await new SignJWT({ sub: 'bench' })
    .setProtectedHeader({ alg: 'ES256', kid: 'b' })
    .setIssuer('bench')
    .setAudience('bench')
    .setExpirationTime('1h')
    .sign(privateKey);
  const hearth = await startHearth();
  const results = { public: [], key: [], jwt: [] };
  try {
    await deploy(hearth.url, variant(dir, 'hello-public', ''), 'hello-public');
    await deploy(hearth.url, variant(dir, 'hello-key', '\n  auth: key'), 'hello-key');
    await deploy(
      hearth.url,
      variant(dir, 'hello-jwt', `\n  auth: jwt\n  jwt: { jwks: "${jwks}", issuer: bench, audience: bench }`),
      'hello-jwt',
    );
    const created = await fetch(`${hearth.url}/api/v1/keys`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ role: 'invoker', namespaces: ['default'] }),
    }).then((response) => response.json());
    const targets = [
      ['public', `${hearth.url}/function/hello-public`, undefined],
      ['key', `${hearth.url}/function/hello-key`, `Bearer ${created.key}`],
      ['jwt', `${hearth.url}/function/hello-jwt`, `Bearer ${jwt}`],
    ];
    for (let i = 0; i < rounds; i++) {
      for (const [name, url, authorization] of i % 2 === 0 ? targets : [...targets].reverse()) {
        await sleep(1000);
        wrkWith(url, { connections, seconds: 2, authorization });
        const before = cpuMicros(hearth.pid);
        const run = wrkWith(url, { connections, seconds, authorization });
        results[name].push({ ...run, cpuMicros: (cpuMicros(hearth.pid) - before) / run.requests });
      }
    }
  } finally {
    await hearth.stop();
    rmSync(dir, { recursive: true, force: true });
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
        platformCpuMicrosPerRequest: round(median(runs.map((r) => r.cpuMicros)), 1),
      },
    ]),
  );
  const ratio = (name) => round(median(results[name].map((r, i) => r.rps / results.public[i].rps)));
  return {
    tool: 'wrk',
    connections,
    seconds,
    rounds,
    summary,
    keyRatio: ratio('key'),
    jwtRatio: ratio('jwt'),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.env.SECONDS_PER_RUN ?? 5);
  const rounds = Number(process.env.ROUNDS ?? 3);
  process.stdout.write(`${JSON.stringify(await authBench({ seconds, rounds }), null, 2)}\n`);
}
