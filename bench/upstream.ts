// The upstream server for client-path benchmarks, in its own process so that its work
// does not share an event loop with the client being measured. Tells its port over IPC.
// `{ cmd: 'down' }` stops listening and drops every connection, as a dead instance does;
// `{ cmd: 'up' }` listens again on the same port. Each answers `{ ack }` when done.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const body = Buffer.from('{"ok":true}');
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
let port = 0;
server.listen(0, '127.0.0.1', () => {
  port = (server.address() as AddressInfo).port;
  process.send?.({ port });
});
process.on('message', (msg: { cmd?: string }) => {
  if (msg.cmd === 'down') {
    server.close();
    server.closeAllConnections();
    process.send?.({ ack: 'down' });
  } else if (msg.cmd === 'up') {
    server.listen(port, '127.0.0.1', () => process.send?.({ ack: 'up' }));
  }
});
process.on('disconnect', () => process.exit(0));
