/**
 * @module End-to-end: a guest that writes its own frames on the platform's channel (fd 3), past the
 * bootstrap, can neither split the HTTP response nor make the platform buffer more than the function's
 * limits allow (issue 21). The function runs sandboxed on a real platform; a raw client reads the bytes.
 */

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployFolder,
  eventually,
  functionLogs,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';
import { exchange } from '../support/raw-http.js';

/** The hostile handler: it forges Result frames as the bootstrap would encode them, and writes them itself. */
const HOSTILE = `
import { writeSync } from 'node:fs';

const RESULT = 18;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function header(type, seq, length, metaLength) {
  const out = Buffer.alloc(13);
  out.writeUInt32BE(length, 0);
  out[4] = type;
  out.writeUInt32BE(seq, 5);
  out.writeUInt32BE(metaLength, 9);
  return out;
}

function frame(seq, meta, body) {
  const metaBytes = Buffer.from(JSON.stringify(meta));
  return Buffer.concat([header(RESULT, seq, 9 + metaBytes.length + body.length, metaBytes.length), metaBytes, body]);
}

// fd 3 is non-blocking (the bootstrap's socket): wait out a full buffer instead of failing.
async function writeAll(buffer) {
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += writeSync(3, buffer, offset);
    } catch (error) {
      if (error.code !== 'EAGAIN') throw error;
      await sleep(1);
    }
  }
}

const SMUGGLED = '0\\r\\n\\r\\nHTTP/1.1 200 OK\\r\\nContent-Length: 8\\r\\n\\r\\nsmuggled';

export default async function handler(event, ctx) {
  // The invocation's sequence number on the channel: the id its Result frame must carry.
  const seq = ctx.seq;
  const mode = event.query.mode;
  if (mode === 'split') {
    const headers = [
      'Content-Type', 'text/plain',
      'Transfer-Encoding', 'chunked',
      'CONTENT-LENGTH', '5',
      'Connection', 'close',
      'Keep-Alive', 'timeout=1',
      'Upgrade', 'h2c',
      'X-Kept', 'yes',
    ];
    await writeAll(frame(seq, [200, headers], Buffer.from(SMUGGLED)));
  } else if (mode === 'bad-name') {
    await writeAll(frame(seq, [200, ['X Bad', 'v']], Buffer.from('x')));
  } else if (mode === 'bad-value') {
    await writeAll(frame(seq, [200, ['x-bad', 'a\\r\\nset-cookie: stolen=1']], Buffer.from('x')));
  } else if (mode === 'interim') {
    await writeAll(frame(seq, [101, ['upgrade', 'websocket']], Buffer.alloc(0)));
  } else if (mode === 'flood') {
    const total = 900 * 1024 * 1024;
    await writeAll(header(RESULT, seq, 9 + total, 0));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (let sent = 0; sent < total; sent += chunk.length) await writeAll(chunk);
  } else return 'fine';
  // The bootstrap answers this invocation too once the handler returns; the platform has taken the forged one.
  return 'late';
}
`;

/** Honest functions near the bounds: the bootstraps keep them inside, so their instances are never ended. */
const NODE_BIG = `
import { randomUUID } from 'node:crypto';
const boot = randomUUID();
export default async function handler(event) {
  if (event.query.mode === 'big') return { statusCode: 200, body: 'a'.repeat(2 * 1024 * 1024) };
  if (event.query.mode === 'log') console.log('b'.repeat(3 * 1024 * 1024) + 'é'.repeat(100000) + 'end');
  return boot;
}
`;

const PY_BIG = `
import uuid
boot = str(uuid.uuid4())
def handler(event, context):
    mode = event["query"].get("mode")
    if mode == "big":
        return {"statusCode": 200, "body": "a" * (2 * 1024 * 1024)}
    if mode == "log":
        print("b" * (3 * 1024 * 1024) + "é" * 100000 + "end")
    return boot
`;

let hearth: Hearth;
let folder: TempFolder;
let nodeBig: TempFolder;
let pyBig: TempFolder;

beforeAll(async () => {
  hearth = await startHearth();
  folder = await makeFolder({
    'hearth.yaml': manifest('hostile', '{ runtime: node20, limits: { memory: 128Mi, timeout: 30s } }'),
    'index.mjs': HOSTILE,
  });
  const deployed = await deployFolder(hearth.url, folder.dir, { name: 'hostile' });
  expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
  nodeBig = await makeFolder({
    'hearth.yaml': manifest('node-big', '{ runtime: node20, limits: { maxBody: 1Mi } }'),
    'index.mjs': NODE_BIG,
  });
  pyBig = await makeFolder({
    'hearth.yaml': manifest('py-big', '{ runtime: python3, limits: { maxBody: 1Mi } }'),
    'main.py': PY_BIG,
  });
  for (const [name, dir] of [
    ['node-big', nodeBig.dir],
    ['py-big', pyBig.dir],
  ] as const) {
    const answer = await deployFolder(hearth.url, dir, { name });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  }
});

afterAll(async () => {
  await hearth?.stop();
  await folder?.cleanup();
  await nodeBig?.cleanup();
  await pyBig?.cleanup();
});

function get(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: h\r\n\r\n`;
}

/** A bodied request: chunked, so node:http reads it rather than the fast front. */
function chunkedPost(path: string): string {
  return `POST ${path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`;
}

function headerLines(head: string, name: string): string[] {
  return head.split('\r\n').filter((line) => line.toLowerCase().startsWith(`${name}:`));
}

describe('forged response headers', () => {
  it.each([
    ['the fast front', get],
    ['node:http', chunkedPost],
  ])(
    'through %s: framing and hop-by-hop headers in any case are dropped, the connection stays in step',
    async (_front, request) => {
      const { answers, socket } = await exchange(
        hearth.port,
        [request('/function/hostile?mode=split') + get('/function/hostile?mode=ok')],
        2,
      );
      // Anything smuggled would arrive as a third answer.
      await new Promise((resolve) => setTimeout(resolve, 200));
      socket.destroy();
      expect(answers).toHaveLength(2);
      const [forged, next] = answers;
      expect(forged?.status).toBe(200);
      const head = forged?.head ?? '';
      expect(headerLines(head, 'content-length')).toEqual([`content-length: ${forged?.body.length}`]);
      expect(headerLines(head, 'transfer-encoding')).toEqual([]);
      expect(headerLines(head, 'upgrade')).toEqual([]);
      expect(headerLines(head, 'connection').map((line) => line.toLowerCase())).toEqual([
        'connection: keep-alive',
      ]);
      // The forged bytes arrive as the body they are, not as a second response.
      expect(forged?.body).toContain('smuggled');
      expect(forged?.headers['x-kept']).toBe('yes');
      expect(forged?.headers['content-type']).toBe('text/plain');
      expect(next?.status).toBe(200);
      expect(next?.body).toBe('fine');
    },
  );

  it.each([
    ['bad-name', 'X Bad'],
    ['bad-value', 'x-bad'],
    ['interim', '101'],
  ])(
    'a response with %s is refused with a clear error, and nothing of it reaches the client',
    async (mode, named) => {
      const { answers, socket } = await exchange(hearth.port, [get(`/function/hostile?mode=${mode}`)], 1);
      socket.destroy();
      const answer = answers[0];
      expect(answer?.status).toBe(502);
      expect(answer?.head).not.toMatch(/stolen|websocket/i);
      const body = JSON.parse(answer?.body ?? '{}') as {
        error: { code: string; message: string; invocationId: string };
      };
      expect(body.error.code).toBe('HEARTH_E_FN_CRASHED');
      expect(body.error.message).toMatch(/^the function returned an invalid response: /);
      expect(body.error.message).toContain(named);
      // The function's log says why its answer was refused.
      const refused = await eventually('the refusal in the function log', async () =>
        (await functionLogs(hearth.url, 'hostile', { invocation: body.error.invocationId })).find((r) =>
          r.message.includes('refused'),
        ),
      );
      expect(refused.message).toContain(named);
      expect((await invoke(hearth.url, 'hostile', { path: '?mode=ok' })).text).toBe('fine');
    },
  );
});

/** The platform process's resident memory, in bytes. */
function rss(pid: number): number {
  const line = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(line?.[1] ?? 0) * 1024;
}

describe('oversized frames', () => {
  it('a Result frame announcing 900 MiB ends the guest without the platform buffering it', async () => {
    const pid = hearth.process.pid ?? 0;
    // Warm the instance first, so its start is not counted in the growth.
    expect((await invoke(hearth.url, 'hostile', { path: '?mode=ok' })).text).toBe('fine');
    const before = rss(pid);
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rss(pid));
    }, 10);
    const response = await fetch(`${hearth.url}/function/hostile?mode=flood`);
    // Read no more than a little of whatever comes back: without the bound it would be the 900 MiB.
    const reader = response.body?.getReader();
    let text = '';
    for (;;) {
      const chunk = await reader?.read();
      if (chunk === undefined || chunk.done) break;
      text += Buffer.from(chunk.value).toString('utf8');
      if (text.length > 1024 * 1024) {
        await reader?.cancel();
        break;
      }
    }
    clearInterval(sampler);
    peak = Math.max(peak, rss(pid));
    expect(peak - before, 'growth of the platform process').toBeLessThan(40 * 1024 * 1024);
    expect(response.status).toBe(502);
    const body = JSON.parse(text) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('HEARTH_E_FN_CRASHED');
    expect(body.error.message).toContain(`Result frame of ${9 + 900 * 1024 * 1024} bytes`);
    expect(body.error.message).toContain('limits.maxBody');
    // The instance is replaced and the function serves again.
    expect((await invoke(hearth.url, 'hostile', { path: '?mode=ok' })).text).toBe('fine');
    const logs = await eventually('the system line about the ended instance', async () => {
      const records = await functionLogs(hearth.url, 'hostile');
      return records.some((r) => r.stream === 'system' && r.message.includes('ended by the platform'))
        ? records
        : undefined;
    });
    const line = logs.find((r) => r.stream === 'system' && r.message.includes('ended by the platform'));
    expect(line?.message).toContain('Result frame');
  });
});

describe('honest functions at the bounds', () => {
  it.each(['node-big', 'py-big'])(
    '%s: a response over limits.maxBody is refused by the bootstrap, and the instance lives on',
    async (name) => {
      const boot = (await invoke(hearth.url, name)).text;
      const big = await invoke(hearth.url, name, { path: '?mode=big' });
      expect(big.status).toBe(500);
      expect(big.json()).toMatchObject({
        error: {
          code: 'HEARTH_E_FN_ERROR',
          message: `ResponseTooLarge: the response body is ${2 * 1024 * 1024} bytes; limits.maxBody allows at most ${1024 * 1024}`,
        },
      });
      expect((await invoke(hearth.url, name)).text).toBe(boot);
    },
  );

  it.each(['node-big', 'py-big'])(
    '%s: a log line of several MiB is logged clipped, and the instance lives on',
    async (name) => {
      const boot = (await invoke(hearth.url, name)).text;
      const logged = await invoke(hearth.url, name, { path: '?mode=log' });
      expect(logged.status).toBe(200);
      expect(logged.text).toBe(boot);
      const invocation = logged.headers.get('x-hearth-invocation-id') ?? '';
      const records = await eventually('the long line in the log', async () => {
        const found = (await functionLogs(hearth.url, name, { invocation })).filter(
          (r) => r.stream === 'stdout',
        );
        return found.length > 0 ? found : undefined;
      });
      expect(records).toHaveLength(1);
      expect(records[0]?.message).toMatch(/^b{16384}… \[truncated \d+ characters\]/);
    },
  );
});
