// ky and got through the mesh: ky takes the mesh's fetch, got takes its hooks. Both call
// user-service by name; the tag set here travels with each call.
// Run: `npm run build && node examples/dist/ky-got/main.js`.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import got from 'got';
import ky from 'ky';
import { createMesh, getTag, gotHooks, setTag, withTags } from 'meshlet';

const users = createMesh({ service: 'user-service' });
const server = createServer(users.httpHandler((_req, res) => res.end(`tier=${getTag('user-tier')}`))).listen(0, '127.0.0.1');
await once(server, 'listening');
await users.register({ port: (server.address() as AddressInfo).port });

const app = createMesh({ service: 'app' });
// Retries are the mesh's (its breaker rules); the clients' own are off.
const kyClient = ky.create({ fetch: app.fetch, retry: 0 });
const gotClient = got.extend({ hooks: gotHooks(app), retry: { limit: 0 } });

await withTags({ 'user-tier': 'gold' }, async () => {
  console.log(`ky: ${await kyClient.get('http://user-service/api/users/42').text()}`);
  setTag('user-tier', 'vip');
  console.log(`got: ${await gotClient.get('http://user-service/api/users/42').text()}`);
});

server.close();
await app.close();
await users.close();
