// The floor of Hearth's architecture, for reference: node:http in one process handing each request over a
// socket to a second process and writing back its answer, with nothing else. No ids, deadlines, scheduling,
// accounting, sandbox or telemetry. The gap between this and the hearth gateway is what the platform's
// own per-request work costs; the gap between this and the raw server is what a separate process costs.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const guest = spawn(process.execPath, [join(fileURLToPath(new URL('.', import.meta.url)), 'guest.mjs')], {
  stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
});
const channel = guest.stdio[3];
const waiting = new Map();
let nextId = 0;
let outbox = [];
let flushQueued = false;

// Frames: u32 payload length, u32 id, JSON payload. Batched like the platform's (8 frames or one turn).
const flush = () => {
  flushQueued = false;
  channel.write(outbox.length === 1 ? outbox[0] : Buffer.concat(outbox));
  outbox = [];
};

let rest;
channel.on('data', (chunk) => {
  const buffer = rest === undefined ? chunk : Buffer.concat([rest, chunk]);
  rest = undefined;
  let offset = 0;
  while (buffer.length - offset >= 8) {
    const length = buffer.readUInt32BE(offset);
    if (offset + 8 + length > buffer.length) break;
    const id = buffer.readUInt32BE(offset + 4);
    const [status, headers, body] = JSON.parse(buffer.toString('utf8', offset + 8, offset + 8 + length));
    offset += 8 + length;
    const res = waiting.get(id);
    waiting.delete(id);
    res.writeHead(status, headers);
    res.end(body);
  }
  if (offset < buffer.length) rest = buffer.subarray(offset);
});

const server = createServer((req, res) => {
  nextId = (nextId + 1) >>> 0;
  waiting.set(nextId, res);
  const payload = Buffer.from(JSON.stringify([req.method, req.url, req.rawHeaders]));
  const frame = Buffer.allocUnsafe(8 + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(nextId, 4);
  payload.copy(frame, 8);
  outbox.push(frame);
  if (outbox.length >= 8) flush();
  else if (!flushQueued) {
    flushQueued = true;
    setImmediate(flush);
  }
});
server.keepAliveTimeout = 65_000;
const stop = () => {
  guest.kill();
  process.exit(0);
};
process.on('SIGTERM', stop);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port, guestPid: guest.pid })}\n`);
});
