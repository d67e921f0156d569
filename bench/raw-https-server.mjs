// The TLS baseline: the same hello as raw-server.mjs over node:https (`node raw-https-server.mjs CERT KEY`).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

const body = JSON.stringify({ hello: 'world' });
const server = createServer(
  { cert: readFileSync(process.argv[2]), key: readFileSync(process.argv[3]) },
  (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  },
);
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
