// Warm invocation over HTTPS against plain HTTP, in the same run: hearth with a certificate against a raw
// node:https hello, and hearth without one against a raw node:http hello. The bar (issue 10): the TLS
// ratio (hearth/raw over HTTPS) within 0.8× of the plain ratio (hearth/raw over HTTP).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { autocannon, deploy, ensureWrk, packFolder, ROOT, round, sleep, startHearth, wrk } from './lib.mjs';

function selfSigned(dir) {
  const cert = join(dir, 'bench.crt');
  const key = join(dir, 'bench.key');
  execFileSync(
    'openssl',
    [
      ...[
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '2',
      ],
      ...['-subj', '/CN=bench', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

async function startNodeServer(script, args, scheme) {
  const child = spawn(process.execPath, [join(ROOT, 'bench', script), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return { url: `${scheme}://127.0.0.1:${JSON.parse(line).port}/`, stop: () => child.kill() };
}

/** The deploy of lib.mjs, over HTTPS trusting the bench's own certificate only. */
async function deployTls(url, ca, folder, name) {
  const body = await packFolder(folder);
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/api/v1/namespaces/default/functions/${name}/deploy`,
      { method: 'POST', ca, headers: { 'content-type': 'application/gzip' } },
      (res) => {
        let text = '';
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`deploy ${name}: ${res.statusCode} ${text}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export async function tlsBench({ seconds = 8, connections = 50, rounds = 3 } = {}) {
  const tool = ensureWrk() ? 'wrk' : 'autocannon';
  const load = (url, s) =>
    tool === 'wrk' ? wrk(url, { connections, seconds: s }) : autocannon(url, { connections, seconds: s });
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-tls-'));
  const files = selfSigned(dir);
  const ca = readFileSync(files.cert);
  const hello = join(ROOT, 'bench', 'functions', 'bench-hello');
  const rawHttp = await startNodeServer('raw-server.mjs', [], 'http');
  const rawHttps = await startNodeServer('raw-https-server.mjs', [files.cert, files.key], 'https');
  const plain = await startHearth();
  const secure = await startHearth({ tls: { cert: files.cert, key: files.key } });
  try {
    await deploy(plain.url, hello, 'bench-hello');
    await deployTls(secure.url, ca, hello, 'bench-hello');
    const targets = [
      ['raw node:http', rawHttp.url],
      ['hearth, HTTP', `${plain.url}/function/bench-hello`],
      ['raw node:https', rawHttps.url],
      ['hearth, HTTPS', `${secure.url}/function/bench-hello`],
    ];
    const results = Object.fromEntries(targets.map(([name]) => [name, []]));
    for (let round = 0; round < rounds; round++) {
      for (const [name, url] of targets) {
        await sleep(1000);
        await load(url, 2);
        results[name].push(await load(url, seconds));
      }
    }
    const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
    const ratio = (ours, raw) => median(results[ours].map((r, i) => r.rps / results[raw][i].rps));
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
    const plainRatio = round(ratio('hearth, HTTP', 'raw node:http'));
    const tlsRatio = round(ratio('hearth, HTTPS', 'raw node:https'));
    return {
      tool,
      connections,
      seconds,
      rounds,
      summary,
      plainRatio,
      tlsRatio,
      tlsOverPlain: round(tlsRatio / plainRatio),
    };
  } finally {
    rawHttp.stop();
    rawHttps.stop();
    await plain.stop();
    await secure.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify(await tlsBench(), null, 2)}\n`);
}
