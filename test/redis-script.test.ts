// scripts/redis.sh (npm test's Redis) exits 3 when anything else holds the port, at once and
// without asking the holder anything: `npm test` then tries another port. A listener that
// accepted and never answered held it forever; one that closed made it exit 1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { it } from 'node:test';

async function holder(onConnection: (socket: Socket) => void): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    onConnection(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port, sockets };
}

function start(port: number, dir: string): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(resolve('scripts/redis.sh'), ['start', String(port)], { env: { ...process.env, TMPDIR: dir } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
  });
  return new Promise((r) => child.on('exit', (code) => r({ code, stderr })));
}

for (const [name, onConnection] of [
  ['accepts and never answers', () => {}],
  ['accepts and closes', (s: Socket) => s.destroy()],
] as const) {
  it(`redis.sh start exits 3 when a listener that ${name} holds the port`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'redis-script-'));
    const h = await holder(onConnection);
    t.after(async () => {
      for (const s of h.sockets) s.destroy();
      h.server.close();
      await rm(dir, { recursive: true, force: true });
    });
    const { code, stderr } = await start(h.port, dir);
    assert.equal(code, 3, stderr);
    assert.match(stderr, /is taken by another server/);
  });
}
