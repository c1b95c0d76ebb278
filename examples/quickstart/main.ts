// The README's quick start, kept runnable: `npm run build && node examples/dist/quickstart/main.js`.
import { createServer } from 'node:http';
import { createMesh, fetch, getTag, setTag } from 'meshlet';

// A service that answers with the tag it received.
const users = createMesh({ service: 'user-service', version: '1.21.0', port: 8081 });
const usersServer = createServer(users.httpHandler((_req, res) => res.end(`tier=${getTag('user-tier')}`)));
usersServer.listen(8081, '127.0.0.1', () => users.register());

// A gateway that calls it by name; the tag it sets travels with the call.
const gateway = createMesh({ service: 'gateway', version: '1.0.0', port: 8080 });
const gatewayServer = createServer(
  gateway.httpHandler(async (_req, res) => {
    setTag('user-tier', 'vip');
    const answer = await fetch('http://user-service/api/users/42');
    res.end(await answer.text());
  }),
);
gatewayServer.listen(8080, '127.0.0.1', async () => {
  await gateway.register();
  console.log(await (await globalThis.fetch('http://127.0.0.1:8080/')).text()); // tier=vip
  for (const [mesh, server] of [
    [users, usersServer],
    [gateway, gatewayServer],
  ] as const) {
    await mesh.close();
    server.close();
  }
});
