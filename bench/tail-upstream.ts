// The long-tail upstream of the hedging benchmark, in its own process: INSTANCES listeners,
// each answering after 2-6 ms, except TAIL_SHARE of requests that take 80-150 ms (a GC
// pause, a cold cache, a slow disk: independent per request). Tells its ports over IPC;
// `{ cmd: 'count' }` answers the requests received since the last count.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const INSTANCES = 3;
export const TAIL_SHARE = Number(process.env.HEDGE_TAIL_SHARE ?? 0.02);

let received = 0;
const body = Buffer.from('{"ok":true}');
const delay = () => (Math.random() < TAIL_SHARE ? 80 + Math.random() * 70 : 2 + Math.random() * 4);
const ports: number[] = [];
for (let i = 0; i < INSTANCES; i++) {
  const server = createServer((_req, res) => {
    received++;
    const t = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    }, delay());
    // A hedged call's loser is aborted: stop its timer with it.
    res.on('close', () => clearTimeout(t));
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    ports.push((server.address() as AddressInfo).port);
    if (ports.length === INSTANCES) process.send?.({ ports });
  });
}
process.on('message', (msg: { cmd?: string }) => {
  if (msg.cmd === 'count') {
    process.send?.({ count: received });
    received = 0;
  }
});
process.on('disconnect', () => process.exit(0));
