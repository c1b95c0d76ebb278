// axios through the mesh: calls by service name, a 503 retried on the other instance, an
// open breaker as an AxiosError whose code and cause are Meshlet's.
// Run: `npm run build && node examples/dist/axios/main.js`.
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import axios from 'axios';
import { createMesh } from 'meshlet';
import { axiosAdapter } from 'meshlet/axios';

// Two instances of inventory; the first answers 503 while `failing`, both while `down`.
const failing = true;
let down = false;
const instances = [];
for (const id of ['inventory-a', 'inventory-b']) {
  const server = createServer((_req, res) => {
    res.statusCode = down || (id === 'inventory-a' && failing) ? 503 : 200;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ instance: id }));
  }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const inventory = createMesh({ service: 'inventory', instanceId: id, port: (server.address() as AddressInfo).port });
  await inventory.register();
  instances.push({ server, inventory });
}

const shop = createMesh({ service: 'shop' });
const api = axios.create({ adapter: axiosAdapter(shop), baseURL: 'http://inventory' });

// One retry on another instance, and a service breaker that opens after 3 failures in a row.
await shop.rules.apply(
  JSON.stringify({
    service: 'inventory',
    breaker: {
      rules: [{ level: 'service', consecutiveFailures: 3, sleepWindowMs: 30_000 }],
      retry: { maxRetries: 1, backoff: { baseMs: 1, maxMs: 5 } },
    },
  }),
  { author: 'example' },
);
await shop.rulesInForce('inventory');

const served = new Set<string>();
for (let i = 0; i < 4; i++) served.add((await api.get<{ instance: string }>('/stock')).data.instance);
console.log(`served by: ${[...served].join(', ')} (inventory-a's 503s were retried)`);

down = true;
for (let i = 0; i < 3; i++) await api.get('/stock').catch(() => undefined);
const err = await api.get('/stock').catch((e: unknown) => e);
if (axios.isAxiosError(err)) console.log(`breaker: ${err.code} (cause: ${(err.cause as Error).name})`);

for (const { server, inventory } of instances) {
  await inventory.close();
  server.close();
  server.closeAllConnections();
}
await shop.close();
