// The floor's second process: answers each framed request with the hello, as a function would.
import { Socket } from 'node:net';

const channel = new Socket({ fd: 3, readable: true, writable: true });
const handler = async () => ({ hello: 'world' });
let outbox = [];

const flush = () => {
  channel.write(outbox.length === 1 ? outbox[0] : Buffer.concat(outbox));
  outbox = [];
};

const answer = (id, value) => {
  const body = JSON.stringify(value);
  const payload = Buffer.from(JSON.stringify([200, ['content-type', 'application/json'], body]));
  const frame = Buffer.allocUnsafe(8 + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(id, 4);
  payload.copy(frame, 8);
  if (outbox.push(frame) === 1) process.nextTick(flush);
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
    const [method, url, headers] = JSON.parse(buffer.toString('utf8', offset + 8, offset + 8 + length));
    offset += 8 + length;
    void handler({ method, url, headers }).then((value) => answer(id, value));
  }
  if (offset < buffer.length) rest = buffer.subarray(offset);
});
channel.on('end', () => process.exit(0));
