/**
 * @module The audit log (issue 13) against the real platform and real receivers: control-plane changes
 * and invocations recorded with who, what, when, from where and the outcome; `hearth audit verify` naming
 * the first record edited, removed or moved straight in the SQLite file; delivery to a webhook (HMAC-SM3),
 * to rsyslog over TCP (RFC 5424) and TLS (RFC 5425) and to the suite's Kafka broker; and nothing lost across a kill -9 while
 * the webhook receiver was down.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Consumer, type Message } from '@platformatic/kafka';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/compliance/index.js';
import { type Broker, freePort, startKafka } from '../support/brokers.js';
import {
  api,
  deployFolder,
  eventually,
  type Hearth,
  invoke,
  makeFolder,
  runCli,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

const WEBHOOK_SECRET = 'a-webhook-secret-of-some-length';
const folders: TempFolder[] = [];

async function folder(files: Record<string, string>): Promise<string> {
  const made = await makeFolder(files);
  folders.push(made);
  return made.dir;
}

/** A webhook receiver that checks the signature and keeps the seqs it accepted; it can be "down" (503). */
interface Receiver {
  readonly url: string;
  readonly accepted: Set<number>;
  down: boolean;
  badSignatures: number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const receiver = { accepted: new Set<number>(), down: false, badSignatures: 0 } as Receiver & {
    server: Server;
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (receiver.down) {
        res.writeHead(503).end();
        return;
      }
      const body = Buffer.concat(chunks);
      const expected = `hmac-sm3=${createHmac('sm3', WEBHOOK_SECRET).update(body).digest('hex')}`;
      if (req.headers['x-hearth-signature'] !== expected) {
        receiver.badSignatures++;
        res.writeHead(401).end();
        return;
      }
      for (const record of (JSON.parse(body.toString()) as { records: AuditRecord[] }).records)
        receiver.accepted.add(record.seq);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}/audit`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

/**
 * rsyslogd in the foreground: RFC 5424 over TCP on a loopback port, written to a file; with `tls`, RFC 5425
 * through rsyslog's OpenSSL driver with a self-signed certificate (returned as `ca`).
 */
async function startRsyslog(
  tls = false,
): Promise<{ address: string; file: string; process: ChildProcess; ca: string }> {
  const dir = await folder({});
  const port = await freePort();
  const file = join(dir, 'audit.log');
  const config = join(dir, 'rsyslog.conf');
  const ca = join(dir, 'cert.pem');
  if (tls)
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        ca,
      ],
      { stdio: 'ignore' },
    );
  await writeFile(
    config,
    [
      `global(workDirectory="${dir}"${tls ? ` DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile="${ca}" DefaultNetstreamDriverCertFile="${ca}" DefaultNetstreamDriverKeyFile="${join(dir, 'key.pem')}"` : ''})`,
      tls
        ? 'module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")'
        : 'module(load="imtcp")',
      `input(type="imtcp" port="${port}" address="127.0.0.1")`,
      `*.* action(type="omfile" file="${file}" template="RSYSLOG_SyslogProtocol23Format")`,
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/rsyslogd', ['-n', '-f', config, '-i', join(dir, 'rsyslog.pid')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  // Ready once it accepts a connection.
  await eventually(
    `rsyslogd listening on ${port} (${stderr})`,
    () =>
      new Promise<true | undefined>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.end();
          resolve(true);
        });
        socket.on('error', () => resolve(undefined));
      }),
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  return { address: `127.0.0.1:${port}`, file, process: child, ca };
}

async function auditRecords(url: string, after = 0): Promise<AuditRecord[]> {
  const answer = await api<{ items: AuditRecord[] }>(url, `/api/v1/audit?after=${after}&limit=1000`);
  expect(answer.status, answer.text).toBe(200);
  return answer.body.items;
}

const ECHO = {
  'hearth.yaml':
    'apiVersion: hearth.dev/v1\nkind: Function\nmetadata: { name: echo }\nspec: { runtime: node20 }\n',
  'index.mjs': 'export default (event) => ({ got: event.body });\n',
};

describe('the audit log', () => {
  let hearth: Hearth;
  let receiver: Receiver;
  let rsyslog: Awaited<ReturnType<typeof startRsyslog>>;
  let rsyslogTls: Awaited<ReturnType<typeof startRsyslog>>;
  let configFile: string;

  beforeAll(async () => {
    receiver = await startReceiver();
    rsyslog = await startRsyslog();
    rsyslogTls = await startRsyslog(true);
    configFile = join(await folder({}), 'hearth.yaml');
    await writeFile(
      configFile,
      `audit:\n  invocations: true\n  checkpointEvery: 4\n  sinks:\n    webhook: [{ url: "${receiver.url}", secret: "${WEBHOOK_SECRET}" }]\n    syslog: [{ address: "${rsyslog.address}" }, { address: "${rsyslogTls.address}", tls: { ca: "${rsyslogTls.ca}" } }]\n`,
    );
    hearth = await startHearth({ args: ['--config', configFile] });
  });

  afterAll(async () => {
    await hearth?.stop();
    rsyslog?.process.kill('SIGTERM');
    rsyslogTls?.process.kill('SIGTERM');
    await receiver?.close();
    await Promise.all(folders.map((made) => made.cleanup()));
  });

  it('records control-plane changes and invocations with who, what, when, from where and the outcome', async () => {
    expect((await runCli(['secret', 'set', 'tok', '--from-literal', 'k=v'], { url: hearth.url })).code).toBe(
      0,
    );
    const deployed = await deployFolder(hearth.url, await folder(ECHO), { name: 'echo' });
    expect(deployed.status).toBe(200);
    const payload = 'account=6222020000000000&amount=100.00';
    expect((await invoke(hearth.url, 'echo', { body: payload })).status).toBe(200);
    const missing = await api(hearth.url, '/api/v1/namespaces/default/functions/nope', { method: 'DELETE' });
    expect(missing.status).toBe(404);

    const records = await eventually('four audit records', async () => {
      const found = await auditRecords(hearth.url);
      return found.length >= 4 ? found : undefined;
    });
    const secret = records.find(
      (record) => record.action === 'PUT /api/v1/namespaces/:namespace/secrets/:name',
    );
    expect(secret).toMatchObject({
      target: '/api/v1/namespaces/default/secrets/tok',
      outcome: 'success',
      status: 200,
      actor: { remote: '127.0.0.1' },
    });
    expect(Date.parse(secret?.time ?? '')).toBeGreaterThan(Date.now() - 120_000);
    expect(records.some((record) => record.action.endsWith('/deploy') && record.outcome === 'success')).toBe(
      true,
    );
    expect(
      records.find((record) => record.action === 'DELETE /api/v1/namespaces/:namespace/functions/:name'),
    ).toMatchObject({
      outcome: 'failure',
      status: 404,
    });
    const invocation = records.find((record) => record.action === 'invoke');
    expect(invocation).toMatchObject({
      target: 'default/echo',
      outcome: 'success',
      status: 200,
      actor: { remote: '127.0.0.1' },
      detail: { payloadSm3: createHash('sm3').update(payload).digest('hex') },
    });
    // The payload itself is nowhere in the audit file.
    const bytes = await readFile(join(hearth.dataDir, 'audit.db'));
    const wal = await readFile(join(hearth.dataDir, 'audit.db-wal')).catch(() => Buffer.alloc(0));
    expect(Buffer.concat([bytes, wal]).includes(payload)).toBe(false);

    const ls = await runCli(['audit', 'ls'], { url: hearth.url });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(
      /127\.0\.0\.1\s+PUT \/api\/v1\/namespaces\/:namespace\/secrets\/:name\s+\S+tok\s+success 200/,
    );
    const verified = await runCli(['audit', 'verify'], { url: hearth.url });
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/audit log verified: \d+ record\(s\), [1-9]\d* signed checkpoint\(s\)/);
  });

  it('streams every record to a webhook (HMAC-SM3 signed) and to rsyslog over TCP', async () => {
    const last = (await auditRecords(hearth.url)).at(-1)?.seq ?? 0;
    await eventually('the webhook to have every record', () =>
      [...Array(last).keys()].every((index) => receiver.accepted.has(index + 1)) ? true : undefined,
    );
    expect(receiver.badSignatures).toBe(0);
    const everyRecordIn = (receiver: typeof rsyslog, what: string) =>
      eventually(what, async () => {
        const text = await readFile(receiver.file, 'utf8').catch(() => '');
        const seqs = new Set([...text.matchAll(/seq="(\d+)"/g)].map((match) => Number(match[1])));
        return [...Array(last).keys()].every((index) => seqs.has(index + 1)) ? text : undefined;
      });
    const lines = await everyRecordIn(rsyslog, 'rsyslog (TCP) to have every record');
    await everyRecordIn(rsyslogTls, 'rsyslog (TLS) to have every record');
    // Parsed by rsyslog as RFC 5424: our app-name and msgid, our structured data, the record as the message.
    expect(lines).toMatch(/^<85>1 \S+ \S+ hearth \d+ AUDIT \[audit@32473 seq="1" outcome="success"/m);
    const metrics = await (await fetch(`${hearth.url}/metrics`)).text();
    expect(metrics).toMatch(/hearth_audit_sink_lag\{sink="webhook:[^"]+"\} 0/);
    const dashboard = await api<{ auditSinks: { name: string; lag: number }[] }>(
      hearth.url,
      '/ui/api/overview',
    );
    expect(dashboard.body.auditSinks.map((sink) => sink.name.split(':')[0])).toEqual([
      'webhook',
      'syslog',
      'syslog+tls',
    ]);
  });

  it('names the first record edited, removed or moved in the SQLite file, and a rewritten chain', async () => {
    const db = new Database(join(hearth.dataDir, 'audit.db'));
    db.pragma('busy_timeout = 5000');
    type Row = { seq: number; body: string; prev_hash: string; hash: string };
    const row = (seq: number): Row => db.prepare('SELECT * FROM audit WHERE seq = ?').get(seq) as Row;
    const put = (r: Row, seq = r.seq): void => {
      db.prepare('INSERT OR REPLACE INTO audit (seq, body, prev_hash, hash) VALUES (?, ?, ?, ?)').run(
        seq,
        r.body,
        r.prev_hash,
        r.hash,
      );
    };
    const verify = () => runCli(['audit', 'verify'], { url: hearth.url });
    try {
      const [two, three] = [row(2), row(3)];
      // Edited: the outcome of record 3 changed from its value.
      db.prepare('UPDATE audit SET body = ? WHERE seq = 3').run(
        three.body.replace(/"outcome":"\w+"/, '"outcome":"refused"'),
      );
      let result = await verify();
      expect(result.code).not.toBe(0);
      expect(result.stderr.trim()).toBe(
        'error: audit log does not verify: record 3: its content does not match its SM3 hash (edited) (2 record(s) before it hold)',
      );
      put(three);
      // Removed.
      db.prepare('DELETE FROM audit WHERE seq = 3').run();
      result = await verify();
      expect(result.stderr).toContain('record 3: record 3 is missing (removed)');
      put(three);
      // Reordered: records 2 and 3 swap places.
      put(three, 2);
      put(two, 3);
      result = await verify();
      expect(result.stderr).toContain('record 2: its previous-hash does not match the record before it');
      put(two);
      put(three);
      // Rewritten: record 2 edited and every later hash recomputed, as someone without the signing key would.
      const rows = db.prepare('SELECT * FROM audit ORDER BY seq').all() as Row[];
      let previous = (rows[0] as Row).hash;
      for (const r of rows.slice(1)) {
        const body = r.seq === 2 ? r.body.replace('127.0.0.1', '10.9.9.9') : r.body;
        const hash = createHash('sm3').update(previous).update('\n').update(body).digest('hex');
        db.prepare('UPDATE audit SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?').run(
          body,
          previous,
          hash,
          r.seq,
        );
        previous = hash;
      }
      result = await verify();
      expect(result.stderr).toMatch(
        /record 4: the chain up to record 4 differs from its signed checkpoint \(rewritten\)/,
      );
      for (const r of rows) put(r);
      expect((await verify()).code).toBe(0);
    } finally {
      db.close();
    }
  });

  it('loses nothing across a kill -9 while the webhook receiver is down', async () => {
    receiver.down = true;
    for (const name of ['a', 'b', 'c'])
      expect(
        (await runCli(['secret', 'set', `k-${name}`, '--from-literal', 'x=y'], { url: hearth.url })).code,
      ).toBe(0);
    const last = (await auditRecords(hearth.url)).at(-1)?.seq ?? 0;
    const sinks = await api<{ items: { name: string; lag: number }[] }>(hearth.url, '/api/v1/audit/sinks');
    expect(sinks.body.items.find((sink) => sink.name.startsWith('webhook'))?.lag).toBeGreaterThan(0);
    const dataDir = hearth.dataDir;
    hearth.process.kill('SIGKILL');
    await new Promise((resolve) => hearth.process.once('exit', resolve));
    receiver.down = false;
    hearth = await startHearth({ dataDir, args: ['--config', configFile] });
    await eventually(
      'the webhook to have every record up to the kill',
      () => ([...Array(last).keys()].every((index) => receiver.accepted.has(index + 1)) ? true : undefined),
      { timeoutMs: 30_000 },
    );
    expect((await auditRecords(hearth.url)).some((record) => record.seq === last)).toBe(true);
    expect((await runCli(['audit', 'verify'], { url: hearth.url })).code).toBe(0);
  });
});

describe('the Kafka audit sink', () => {
  let broker: Broker;
  let hearth: Hearth;

  beforeAll(async () => {
    broker = await startKafka();
    const configFile = join(await folder({}), 'hearth.yaml');
    await writeFile(
      configFile,
      `audit:\n  sinks:\n    kafka: [{ brokers: ["${broker.address}"], topic: hearth-audit }]\n`,
    );
    hearth = await startHearth({ args: ['--config', configFile] });
  }, 120_000);

  afterAll(async () => {
    await hearth?.stop();
    await broker?.stop();
  });

  it('produces every record to the topic, keyed by its sequence number', async () => {
    for (const name of ['one', 'two'])
      expect((await runCli(['secret', 'set', name, '--from-literal', 'x=y'], { url: hearth.url })).code).toBe(
        0,
      );
    const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      clientId: 'test-audit-reader',
      groupId: `test-audit-${Date.now()}`,
      bootstrapBrokers: [broker.address],
    });
    try {
      const stream = await consumer.consume({ topics: ['hearth-audit'], mode: 'earliest', maxWaitTime: 200 });
      const seen = await new Promise<AuditRecord[]>((resolve, reject) => {
        const records: AuditRecord[] = [];
        const timer = setTimeout(
          () => reject(new Error(`only ${records.length} audit record(s) in Kafka after 30s`)),
          30_000,
        );
        stream.on('data', (message: Message<Buffer, Buffer, Buffer, Buffer>) => {
          const record = JSON.parse(message.value.toString()) as AuditRecord;
          expect(message.key.toString()).toBe(String(record.seq));
          records.push(record);
          if (records.length >= 2) {
            clearTimeout(timer);
            resolve(records);
          }
        });
      });
      await stream.close();
      expect(seen.map((record) => record.target)).toEqual([
        '/api/v1/namespaces/default/secrets/one',
        '/api/v1/namespaces/default/secrets/two',
      ]);
    } finally {
      await consumer.close(true);
    }
  }, 60_000);
});
