// The service of the adaptive-overload benchmark, in its own process: each request burns
// CPU on the event loop, waits on a timer (a stand-in for a database call), burns again.
// argv[2] = 'adaptive' turns the adaptive limit on (mesh option, every default), 'none'
// leaves it off. Tells its port over IPC; answers `{ cmd: 'stats' }` with the limiter's
// adaptive stats.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { createMesh } from 'meshlet';

export const BURN_MS = Number(process.env.ADAPTIVE_BURN_MS ?? 4);
export const WAIT_MS = Number(process.env.ADAPTIVE_WAIT_MS ?? 10);

const mode = process.argv[2] ?? 'none';
const mesh = createMesh({
  service: 'cpu-bound',
  registry: new InMemoryRegistry(),
  logger: new MemoryLogger(),
  ...(mode === 'adaptive' ? { ratelimit: { adaptive: true as const } } : {}),
});

function burn(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // the event loop is blocked: this is the handler's CPU work
  }
}

const body = Buffer.from('{"ok":true}');
const server = createServer(
  mesh.httpHandler(async (_req, res) => {
    burn(BURN_MS);
    await new Promise((r) => setTimeout(r, WAIT_MS));
    burn(BURN_MS);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  }),
);
server.keepAliveTimeout = 60_000;
server.maxRequestsPerSocket = 0;
server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('message', (msg: { cmd?: string }) => {
  if (msg.cmd === 'stats') process.send?.({ stats: mesh.rateLimiter.stats.adaptive ?? null });
});
process.on('disconnect', () => process.exit(0));
