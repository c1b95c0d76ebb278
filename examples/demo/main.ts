/**
 * The Meshlet demo: gateway -> user-service -> order-service on 127.0.0.1, on the
 * embedded in-memory registry (or a real Consul agent with `--consul`).
 *
 * 1. Requests through the chain; each hop prints the instance that served it, who called
 *    it and the tags that arrived.
 * 2. Gray release: v1.21 starts behind a rule that keeps all traffic on v1.20; a rule then
 *    sends 20% of Chrome users to it (`stickyBy: 'user-id'`: each user's requests stay on
 *    one version); the split over DEMO_REQUESTS requests (default 10 000, from a tenth as
 *    many users) is printed with the users who saw both versions (none), the rule is rolled
 *    back in one call (v1.21 back to 0%), and the split printed again.
 */
import { type KvStore, type Registry, TAG_HEADER } from 'meshlet';
import { demoBackend } from './backend.js';
import { type HopReport, type RunningService, startService } from './services.js';

const REQUESTS = Number(process.env.DEMO_REQUESTS ?? 10_000);
const backend = await demoBackend(process.argv.includes('--consul'));
const { registry, rules }: { registry: Registry; rules: KvStore } = backend;
console.log(`registry: ${backend.name}`);
// Stopped by a signal (Ctrl-C, or a SIGTERM to this process alone), or by an error, the demo
// still stops what it started: the Consul agent of `--consul` would otherwise outlive it.
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    stopping = true;
    void backend.close().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  });

async function main(): Promise<void> {
  const services: RunningService[] = [
    await startService({ registry, rules, service: 'order-service', version: '2.0.0', instanceId: 'order-1' }),
    await startService({ registry, rules, service: 'user-service', version: '1.20.0', instanceId: 'user-a', downstream: 'order-service' }),
    await startService({ registry, rules, service: 'user-service', version: '1.20.0', instanceId: 'user-b', downstream: 'order-service' }),
    await startService({ registry, rules, service: 'gateway', version: '1.0.0', instanceId: 'gateway-1', downstream: 'user-service' }),
  ];
  const gateway = services[3];
  const gatewayUrl = `http://127.0.0.1:${gateway?.mesh.instance?.port}/api/orders/42`;
  const CHROME = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
  const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0';

  const call = async (headers: Record<string, string>): Promise<HopReport> =>
    (await globalThis.fetch(gatewayUrl, { headers })).json() as Promise<HopReport>;

  // 1. What each hop saw.
  const requests: { title: string; headers: Record<string, string> }[] = [
    { title: 'Chrome user, tier vip', headers: { 'user-agent': CHROME, [TAG_HEADER]: 'user-tier=vip' } },
    { title: 'Firefox user', headers: { 'user-agent': FIREFOX } },
    { title: 'curl, tag with a comma and unicode', headers: { 'user-agent': 'curl/8.5.0', [TAG_HEADER]: 'note=a%2Cb%20%E2%9C%93' } },
    { title: 'Chrome user again (round robin moves on)', headers: { 'user-agent': CHROME } },
  ];
  const pad = (s: string, n: number) => s.padEnd(n);
  for (const [i, r] of requests.entries()) {
    let hop: HopReport | undefined = await call(r.headers);
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

  // 2. Gray release: 20% of Chrome users to v1.21, and a way back. Before v1.21 starts, a
  // rule keeps all traffic on v1.20 (deployed dark): that is what a rollback returns to.
  const dark = {
    service: 'user-service',
    description: 'v1.21 deployed dark: all traffic on v1.20',
    route: { default: [{ group: { version: '1.20.0' }, weight: 100 }] },
  };
  const darkVersion = await gateway?.mesh.rules.apply(JSON.stringify(dark), { author: 'demo', reason: 'before the gray release' });
  await gateway?.mesh.rulesInForce('user-service');
  services.push(
    await startService({ registry, rules, service: 'user-service', version: '1.21.0', instanceId: 'user-c', downstream: 'order-service' }),
  );
  const grayRule = {
    service: 'user-service',
    description: 'gray release: 20% of Chrome users to v1.21',
    route: {
      rules: [
        {
          name: 'chrome-to-v1.21',
          when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }],
          // A user's group is a hash of their user-id tag (salted by the rule's name): without
          // it, each request would be drawn, and a user's requests would reach both versions.
          stickyBy: 'user-id',
          destinations: [
            { group: { version: '1.21.0' }, weight: 20 },
            { group: { version: '1.20.0' }, weight: 80 },
          ],
        },
      ],
      default: [{ group: { version: '1.20.0' }, weight: 100 }],
    },
  };

  const USERS = Math.max(1, Math.ceil(REQUESTS / 10));
  /** Users (by the `user-id` tag) that saw more than one user-service version in the last `split`. */
  let onBoth = 0;
  /**
   * Sends `n` requests, 20 at a time, from USERS users in turn, and counts the user-service
   * version that served each.
   */
  async function split(userAgent: string, n: number): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    const seen = new Map<string, Set<string>>();
    let sent = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (sent < n) {
          const user = `u${sent++ % USERS}`;
          const report = await call({ 'user-agent': userAgent, [TAG_HEADER]: `user-id=${user}` });
          const v = report.next?.version ?? '?';
          counts.set(v, (counts.get(v) ?? 0) + 1);
          seen.set(user, (seen.get(user) ?? new Set()).add(v));
        }
      }),
    );
    onBoth = [...seen.values()].filter((versions) => versions.size > 1).length;
    return counts;
  }
  const show = (label: string, counts: Map<string, number>) => {
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const parts = [...counts.entries()].sort().map(([v, c]) => `v${v}: ${c} (${((100 * c) / total).toFixed(1)}%)`);
    console.log(`  ${pad(label, 34)} ${parts.join('   ')}`);
  };

  console.log(
    `\ngray release: ${USERS} users, ${Math.round(REQUESTS / USERS)} requests each (${REQUESTS} Chrome requests, ${Math.ceil(REQUESTS / 10)} Firefox)`,
  );
  console.log(`  rule applied as version ${darkVersion?.version}: ${dark.description}`);
  const applied = await gateway?.mesh.rules.apply(JSON.stringify(grayRule), { author: 'demo', reason: 'gray release' });
  // The gateway calls user-service: wait until its watch of the rule store has the rule.
  await gateway?.mesh.rulesInForce('user-service');
  console.log(`  rule applied as version ${applied?.version}: ${grayRule.description}`);
  show('Chrome, rule in force', await split(CHROME, REQUESTS));
  console.log(`  ${pad('Chrome users on both versions', 34)} ${onBoth} of ${USERS}`);
  show('Firefox, rule in force', await split(FIREFOX, Math.ceil(REQUESTS / 10)));
  const back = await gateway?.mesh.rules.rollback('user-service', { author: 'demo', reason: 'the way back' });
  await gateway?.mesh.rulesInForce('user-service');
  console.log(`  rolled back (version ${back?.version} restores ${back?.restored === 0 ? 'no rules' : `version ${back?.restored}`})`);
  show('Chrome, after rollback', await split(CHROME, REQUESTS));
  console.log(
    '  so: the rule sent a share of Chrome *users* to v1.21, each user always to one version, Firefox never; the rollback put everyone back on v1.20',
  );

  for (const s of services) await s.stop();
}

try {
  await main();
  await backend.close();
} catch (err) {
  // After a signal, a step cut short by the closed registry is expected: the handler exits.
  if (!stopping) {
    await backend.close();
    throw err;
  }
}
