// Issue 17: a long-lived watch across a restart of the agent (a dev agent comes back
// empty, with a lower index), on a real Consul agent restarted on the same ports.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import { type Instance, MemoryLogger } from '@meshlet/core';
import { ConsulRegistry } from '../src/index.js';
import { type ConsulAgent, startConsulAgent } from '../src/testing/consul-agent.js';

/** One request the watch sent: the index it blocked on, and the index it was answered with. */
interface Sent {
  readonly path: string;
  readonly index: number;
  answered?: number;
  failed?: boolean;
}

/** fetch that records every request's `index` parameter and the X-Consul-Index of its answer. */
function recordingFetch(sent: Sent[]): typeof globalThis.fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const entry: Sent = { path: url.pathname, index: Number(url.searchParams.get('index') ?? Number.NaN) };
    sent.push(entry);
    try {
      const res = await fetch(input, init);
      entry.answered = Number(res.headers.get('x-consul-index') ?? 0);
      return res;
    } catch (err) {
      entry.failed = true;
      throw err;
    }
  }) as typeof globalThis.fetch;
}

/** Resolves once `test` holds, checked on every delivery of the watch. */
function seen(registry: ConsulRegistry, service: string, test: (ids: string[]) => boolean): Promise<string[]> {
  return new Promise((resolve) => {
    let done = false;
    const off = registry.watch(service, (instances: readonly Instance[]) => {
      const ids = instances.map((i) => i.id).sort();
      if (done || !test(ids)) return;
      done = true;
      queueMicrotask(() => off());
      resolve(ids);
    });
  });
}

const instance = (id: string, port: number): Instance => ({
  id,
  service: 'orders',
  address: '127.0.0.1',
  port,
  tags: [],
  metadata: {},
  health: 'passing',
});

let agent: ConsulAgent;
let appPort: number;
const app = createServer((_req, res) => res.end('UP'));
before(async () => {
  agent = await startConsulAgent();
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  appPort = (app.address() as AddressInfo).port;
});
after(async () => {
  await agent.stop();
  app.close();
});

it('a long-lived watch across an agent restart with a lower index: no query blocks on the old index, the change is seen', async (t) => {
  const logger = new MemoryLogger();
  // The upstreams, each its own registry (as its own process would have).
  const upstreamA = new ConsulRegistry({ address: agent.address, logger });
  const upstreamB = new ConsulRegistry({ address: agent.address, logger });
  await upstreamA.register(instance('orders-a', appPort));
  await upstreamB.register(instance('orders-b', appPort));
  // Raise the service's index well above what a fresh agent will have.
  const churn = new ConsulRegistry({ address: agent.address, logger });
  for (let n = 0; n < 25; n++) {
    await churn.register(instance('orders-churn', appPort));
    await churn.deregister('orders-churn');
  }

  const sent: Sent[] = [];
  // The default wait (25 s): a query blocking on the old index would be held that long.
  const caller = new ConsulRegistry({ address: agent.address, logger, fetch: recordingFetch(sent), resyncGraceMs: 0 });
  // The long-lived follower: one watch for the whole test (seen() adds and removes listeners).
  const hold = caller.watch('orders', () => {});
  t.after(async () => {
    hold();
    await Promise.all([caller.close(), upstreamA.close(), upstreamB.close(), churn.close()]);
  });
  await seen(caller, 'orders', (ids) => ids.join() === 'orders-a,orders-b');
  const health = () => sent.filter((s) => s.path === '/v1/health/service/orders');
  const oldIndex = Math.max(...health().map((s) => s.answered ?? 0));
  assert.ok(oldIndex > 50, `the old agent's index is high (${oldIndex})`);

  // The agent restarts empty. During the outage orders-b's process went away; orders-a's
  // registers itself again once the agent answers; a new instance, orders-c, registers.
  await upstreamB.close();
  const beforeRestart = sent.length;
  await agent.restart();
  const upstreamC = new ConsulRegistry({ address: agent.address, logger });
  t.after(() => upstreamC.close());
  await upstreamC.register(instance('orders-c', appPort));

  await seen(caller, 'orders', (ids) => ids.join() === 'orders-a,orders-c');
  const afterRestart = health().filter((s) => sent.indexOf(s) >= beforeRestart);
  const firstFailed = afterRestart.findIndex((s) => s.failed);
  const retries = afterRestart.slice(firstFailed + 1);
  assert.ok(retries.length > 0, 'the watch queried the new agent');
  assert.equal(retries[0]?.index, 0, 'the first query after the failure does not block');
  assert.ok(
    retries.every((s) => s.index < oldIndex),
    `no query to the new agent blocks on the old index ${oldIndex}: ${retries.map((s) => s.index).join(', ')}`,
  );
  assert.ok(
    logger.entries.some((e) => e.fields?.code === 'MESHLET_REGISTRY_REREGISTERED' && e.fields?.instanceId === 'orders-a'),
    'orders-a registered itself again once the agent answered',
  );
});

it('while the agent is down, the watches of a process wait on one probe instead of each retrying its query', async (t) => {
  const logger = new MemoryLogger();
  const sent: Sent[] = [];
  const caller = new ConsulRegistry({ address: agent.address, logger, fetch: recordingFetch(sent), waitSeconds: 5 });
  const services = ['svc-1', 'svc-2', 'svc-3', 'svc-4', 'svc-5', 'svc-6', 'svc-7', 'svc-8'];
  const offs = services.map((s) => caller.watch(s, () => {}));
  t.after(async () => {
    for (const off of offs) off();
    await caller.close();
  });
  // Every watch has had its first answer and is blocking on its index.
  await waitFor(() => services.every((s) => sent.filter((x) => x.path === `/v1/health/service/${s}` && x.answered).length >= 1));
  const killedAt = sent.length;
  await agent.stop();
  // Four probe rounds while the agent is down (about 3 s)…
  const probesBefore = caller.client.probe.checks;
  await waitFor(() => caller.client.probe.checks >= probesBefore + 4);
  const duringOutage = sent.slice(killedAt);
  const queries = duringOutage.filter((s) => s.path.startsWith('/v1/health/service/'));
  // …and each watch sent one query (the one the kill cut, or the first retry): not one per backoff.
  assert.ok(queries.length <= services.length * 2, `${queries.length} queries for ${services.length} watches`);
  assert.ok(duringOutage.filter((s) => s.path === '/v1/status/leader').length >= 4);
  await agent.restart();
  await waitFor(() => !caller.status.degraded);
});

async function waitFor(test: () => boolean): Promise<void> {
  while (!test()) await new Promise((r) => setTimeout(r, 20));
}
