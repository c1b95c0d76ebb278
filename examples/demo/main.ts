/**
 * The Meshlet demo, on the embedded in-memory registry: gateway -> user-service (two
 * instances) -> order-service, all in this process on 127.0.0.1. It sends requests
 * through the chain and prints, for each hop, the instance that served it, who called
 * it and the tags that arrived.
 */
import { InMemoryRegistry, TAG_HEADER } from 'meshlet';
import { type HopReport, type RunningService, startService } from './services.js';

const registry = new InMemoryRegistry();
const services: RunningService[] = [
  await startService({ registry, service: 'order-service', version: '2.0.0', instanceId: 'order-1' }),
  await startService({ registry, service: 'user-service', version: '1.20.0', instanceId: 'user-a', downstream: 'order-service' }),
  await startService({ registry, service: 'user-service', version: '1.20.0', instanceId: 'user-b', downstream: 'order-service' }),
  await startService({ registry, service: 'gateway', version: '1.0.0', instanceId: 'gateway-1', downstream: 'user-service' }),
];
const gatewayPort = services[3]?.mesh.instance?.port;

const requests: { title: string; headers: Record<string, string> }[] = [
  {
    title: 'Chrome user, tier vip',
    headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36', [TAG_HEADER]: 'user-tier=vip' },
  },
  { title: 'Firefox user', headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0' } },
  { title: 'curl, tag with a comma and unicode', headers: { 'user-agent': 'curl/8.5.0', [TAG_HEADER]: 'note=a%2Cb%20%E2%9C%93' } },
  { title: 'Chrome user again (round robin moves on)', headers: { 'user-agent': 'Mozilla/5.0 Chrome/131.0.0.0 Safari/537.36' } },
];

const pad = (s: string, n: number) => s.padEnd(n);
for (const [i, r] of requests.entries()) {
  const res = await globalThis.fetch(`http://127.0.0.1:${gatewayPort}/api/orders/42`, { headers: r.headers });
  let hop: HopReport | undefined = (await res.json()) as HopReport;
  console.log(`\nrequest ${i + 1}: ${r.title}`);
  console.log(`  ${pad('hop', 14)} ${pad('instance', 10)} ${pad('caller', 22)} tags that arrived`);
  while (hop) {
    const tags = Object.entries(hop.tags)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    console.log(`  ${pad(hop.service, 14)} ${pad(hop.instance, 10)} ${pad(hop.caller, 22)} ${tags}`);
    hop = hop.next;
  }
}

for (const s of services) await s.stop();
