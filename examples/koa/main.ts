// Koa with the mesh: `app.use(mesh.koa())`; the handler's tags travel with its calls.
// Run: `npm run build && node examples/dist/koa/main.js`.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { createMesh, fetch, getTag, setTag } from 'meshlet';

// user-service answers with the tags it received.
const users = createMesh({ service: 'user-service' });
const usersServer = createServer(users.httpHandler((_req, res) => res.end(`user-tier=${getTag('user-tier')}`))).listen(0, '127.0.0.1');
await once(usersServer, 'listening');
await users.register({ port: (usersServer.address() as AddressInfo).port });

const gateway = createMesh({ service: 'gateway' });
const app = new Koa();
app.use(gateway.koa());
app.use(async (ctx) => {
  setTag('user-tier', 'vip');
  ctx.body = await (await fetch('http://user-service/api/users/42')).text();
});
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
const port = (server.address() as AddressInfo).port;

console.log(await (await globalThis.fetch(`http://127.0.0.1:${port}/`)).text()); // user-tier=vip
console.log(`health: ${(await globalThis.fetch(`http://127.0.0.1:${port}/health`)).status}`);

server.close();
usersServer.close();
await gateway.close();
await users.close();
