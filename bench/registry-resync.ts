// Resync after an agent restart (issue 17): a caller follows `orders` (instances a and b)
// on a real dev agent; the agent is killed; b's process goes away during the outage; the
// agent comes back empty on the same ports. Measured from the moment the new agent
// answers (it has elected itself leader: what `restart()` waits for) to the caller's view
// being [a] again: a's process registers itself again (its registry's re-registration
// check, which waits on the agent probe while the agent is down) and the caller's watch
// reads the new agent (index 0 after the failure, then blocking on the new index).
// Also counted: requests the caller sent to the agent per second of outage (its watch
// waits on one probe instead of retrying its query).
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Instance, silentLogger } from '@meshlet/core';
import { ConsulRegistry } from '@meshlet/registry';
import { startConsulAgent } from '@meshlet/registry/testing';
import { fmt, machine, quantile, sized, table } from './harness.js';

const ROUNDS = sized('BENCH_RESYNC_ROUNDS', 10, 3);
const OUTAGE_MS = 2_000;

function consulBinary(): string {
  const given = process.env.MESHLET_CONSUL_BIN;
  if (given) return given;
  const script = fileURLToPath(new URL('../../scripts/install-consul.sh', import.meta.url));
  const out = execFileSync(script, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const bin = out.trim().split('\n').pop() ?? '';
  process.env.MESHLET_CONSUL_BIN = bin;
  return bin;
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

export async function registryResync(): Promise<string> {
  const agent = await startConsulAgent({ binary: consulBinary() });
  const app = createServer((_req, res) => res.end('UP'));
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const port = (app.address() as AddressInfo).port;
  let sent = 0;
  const counting = ((input: string | URL | Request, init?: RequestInit) => {
    sent++;
    return fetch(input, init);
  }) as typeof globalThis.fetch;
  const a = new ConsulRegistry({ address: agent.address, logger: silentLogger });
  await a.register(instance('orders-a', port));
  const caller = new ConsulRegistry({ address: agent.address, logger: silentLogger, fetch: counting });
  let view = '';
  let changed: () => void = () => {};
  const off = caller.watch('orders', (l) => {
    view = l
      .map((i) => i.id)
      .sort()
      .join();
    changed();
  });
  const viewIs = (want: string) =>
    new Promise<void>((resolve) => {
      changed = () => {
        if (view === want) resolve();
      };
      changed();
    });
  const resync: number[] = [];
  const perSecond: number[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const b = new ConsulRegistry({ address: agent.address, logger: silentLogger });
      await b.register(instance('orders-b', port));
      await viewIs('orders-a,orders-b');
      await agent.stop();
      await b.close(); // b's process is gone; nobody registers it again
      const before = sent;
      const down = performance.now();
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      perSecond.push(((sent - before) * 1000) / (performance.now() - down));
      await agent.restart();
      const t0 = performance.now();
      await viewIs('orders-a');
      resync.push(performance.now() - t0);
    }
  } finally {
    off();
    await Promise.all([caller.close(), a.close()]);
    app.close();
    await agent.stop();
  }
  const sorted = [...resync].sort((x, y) => x - y);
  return [
    '## registry-resync: a watch across an agent restart',
    '',
    `${machine()}. ${ROUNDS} restarts of a dev agent on the same ports (it comes back empty, with a lower index);`,
    `during each ${OUTAGE_MS / 1000} s outage one upstream goes away. Time from the new agent answering (leader elected)`,
    'to the caller’s view being right again, which needs the surviving upstream to register itself again.',
    '',
    table(
      [
        'restarts',
        'resync p50 ms',
        'resync p99 ms (max below 100 samples)',
        'max ms',
        'caller requests to the agent per second of outage (1 watch)',
      ],
      [
        [
          ROUNDS,
          fmt(quantile(sorted, 0.5)),
          fmt(quantile(sorted, 0.99)),
          fmt(sorted.at(-1) ?? 0),
          fmt(
            quantile(
              [...perSecond].sort((x, y) => x - y),
              0.5,
            ),
            1,
          ),
        ],
      ],
    ),
    '',
    'Before issue 17 (same scenario, measured by the issue): 5.7–7.5 s, with the watch blind for up to 25.9 s when it blocked on the old agent’s index.',
  ].join('\n');
}
