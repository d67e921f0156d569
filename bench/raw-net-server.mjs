// A second baseline: the same hello over HTTP/1.1 parsed by hand on node:net, without node:http. It shows
// what answering costs with a lean parser, the kind the gateway's fast front uses (src/gateway/fast-http.ts).
// Bodiless keep-alive requests only: enough for the benchmark's GETs.
import { createServer } from 'node:net';

const body = JSON.stringify({ hello: 'world' });
const head = (date) =>
  `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nDate: ${date}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=65\r\n\r\n`;
let date = new Date().toUTCString();
setInterval(() => {
  date = new Date().toUTCString();
}, 1000).unref();

const server = createServer((socket) => {
  let pending = '';
  socket.on('data', (chunk) => {
    const text = pending + chunk.toString('latin1');
    let at = 0;
    let out = '';
    for (let end = text.indexOf('\r\n\r\n'); end >= 0; end = text.indexOf('\r\n\r\n', at)) {
      // Request line and header lines, split as a handler would need them.
      const lines = text.slice(at, end).split('\r\n');
      const [method, target] = (lines[0] ?? '').split(' ');
      const headers = lines.slice(1).map((line) => line.slice(0, line.indexOf(':')));
      if (method === undefined || target === undefined || headers.length === 0) socket.destroy();
      out += head(date) + body;
      at = end + 4;
    }
    pending = text.slice(at);
    if (out !== '') socket.write(out, 'latin1');
  });
  socket.on('error', () => socket.destroy());
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
