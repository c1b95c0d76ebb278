// Scale of discovery (issue 17): N watching processes × M services against one Consul
// cluster (3 servers + a client agent, startConsulCluster), at N = 100 and 1 000.
//
// Simulated watchers: each "process" is its own ConsulRegistry (Meshlet's real watch
// code: one blocking query per service, its own probe) in this one Node process, so N×M
// long polls are open at once; what differs from N real processes is one event loop and
// one machine for everything. M services of 2 instances each (TTL checks); a change is
// one instance's check failing or passing again, on a service every watcher follows.
//   change-to-effect  from before the PUT to each watcher's listener seeing the change,
//                     p50 / p99 over every (watcher, change)
//   server load       CPU seconds of the three server processes during the changes,
//                     and of the client agent
// Two ways of reading, the same watchers:
//   client agent      the production layout: processes ask their local client agent,
//                     which (Consul ≥ 1.10, use_streaming_backend) serves blocking queries
//                     on /v1/health/service from one streaming subscription per service to
//                     the servers, whatever the number of watchers
//   servers direct    every watcher's blocking query goes to a server (round robin), as
//                     without client agents; default consistency forwards them to the leader

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '@meshlet/core';
import { ConsulClient, ConsulRegistry } from '@meshlet/registry';
import { type ConsulNode, startConsulCluster } from '@meshlet/registry/testing';
import { fmt, quantile, quick, table } from './harness.js';

const SERVICES = 5;
const CHANGES = quick ? 4 : 10;
const WATCHERS = quick ? [20, 100] : [100, 1000];

function consulBinary(): string {
  const given = process.env.MESHLET_CONSUL_BIN;
  if (given) return given;
  const script = fileURLToPath(new URL('../../scripts/install-consul.sh', import.meta.url));
  const out = execFileSync(script, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const bin = out.trim().split('\n').pop() ?? '';
  process.env.MESHLET_CONSUL_BIN = bin;
  return bin;
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
const cpuOf = (nodes: readonly ConsulNode[]) => nodes.reduce((sum, n) => sum + cpuSeconds(n.pid), 0);

interface Row {
  readonly mode: string;
  readonly watchers: number;
  readonly p50: number;
  readonly p99: number;
  readonly serverCpuPerChange: number;
  readonly clientCpuPerChange: number;
}

export async function registryScale(): Promise<string> {
  const cluster = await startConsulCluster({
    binary: consulBinary(),
    hcl: ['limits { http_max_conns_per_client = 12000 }'],
  });
  const rows: Row[] = [];
  try {
    const admin = new ConsulClient({ address: cluster.client.address });
    const services = Array.from({ length: SERVICES }, (_, i) => `svc-${i}`);
    for (const s of services)
      for (const n of [1, 2])
        await admin.request('PUT', '/v1/agent/service/register', {
          body: JSON.stringify({
            ID: `${s}-${n}`,
            Name: s,
            Address: '127.0.0.1',
            Port: 10_000 + n,
            Check: { TTL: '1h', Status: 'passing', DeregisterCriticalServiceAfter: '2h' },
          }),
        });
    for (const watchers of WATCHERS) {
      for (const mode of ['client agent', 'servers direct'] as const) {
        process.stderr.write(`bench: registry-scale ${mode}, ${watchers} watchers…\n`);
        rows.push(await measure(cluster, admin, services, watchers, mode));
      }
    }
  } finally {
    await cluster.stop();
  }
  return [
    '## registry-scale: N watching processes × M services on one cluster',
    '',
    `3 servers + 1 client agent (Consul 1.16.3, raft_multiplier 1) on this machine; ${SERVICES} services of 2 instances;`,
    `each watcher follows every service (N × ${SERVICES} blocking queries open); ${CHANGES} changes (a TTL check failing`,
    'or passing). Watchers are simulated: one ConsulRegistry each, all in this one Node process (see the file).',
    '',
    table(
      [
        'reading from',
        'watchers',
        'change-to-effect p50 ms',
        'p99 ms',
        'server CPU ms per change (3 servers)',
        'client agent CPU ms per change',
      ],
      rows.map((r) => [r.mode, r.watchers, fmt(r.p50, 1), fmt(r.p99, 1), fmt(r.serverCpuPerChange, 1), fmt(r.clientCpuPerChange, 1)]),
    ),
    '',
    'On paper: reading from the servers, the servers hold N × M blocking queries and answer N of them per change to a',
    'service (at 1 000 processes × 50 services: 50 000 open queries, 1 000 answers per change, all on the leader in',
    'default consistency). Through client agents, each agent holds one streaming subscription per service its processes',
    'follow and fans the change out locally: the servers send one event per agent per change, whatever N. `?cached` on',
    '/v1/health/service uses the same streaming backend on a 1.16 agent (Consul: "it will be used when either the index',
    'or cached query parameters are set"), so it adds nothing for Meshlet`s blocking queries, which always pass `index`.',
    'Here every watcher and the agents share 2 cores: change-to-effect at 1 000 watchers is this one event loop taking',
    '1 000 answers, not Consul; the server CPU column is the comparison to read.',
  ].join('\n');
}

async function measure(
  cluster: Awaited<ReturnType<typeof startConsulCluster>>,
  admin: ConsulClient,
  services: readonly string[],
  watchers: number,
  mode: 'client agent' | 'servers direct',
): Promise<Row> {
  const registries = Array.from(
    { length: watchers },
    (_, i) =>
      new ConsulRegistry({
        address: mode === 'client agent' ? cluster.client.address : (cluster.servers[i % 3] as ConsulNode).address,
        logger: silentLogger,
      }),
  );
  // seen[w][s]: the ids of the healthy instances watcher w last heard for service s.
  const seen = registries.map(() => new Map<string, string>());
  let onChange: () => void = () => {};
  const offs = registries.flatMap((r, w) =>
    services.map((s) =>
      r.watch(s, (instances) => {
        seen[w]?.set(
          s,
          instances
            .map((i) => i.id)
            .sort()
            .join(),
        );
        onChange();
      }),
    ),
  );
  const everyone = (s: string, ids: string) => seen.every((m) => m.get(s) === ids);
  const waitAll = (s: string, ids: string, t0: number, latencies: number[]) =>
    new Promise<void>((resolve) => {
      const recorded = new Set<number>();
      const check = () => {
        for (const [w, m] of seen.entries())
          if (!recorded.has(w) && m.get(s) === ids) {
            recorded.add(w);
            latencies.push(performance.now() - t0);
          }
        if (recorded.size === seen.length) resolve();
      };
      onChange = check;
      check();
    });
  try {
    for (const s of services) await waitAll(s, `${s}-1,${s}-2`, performance.now(), []);
    const latencies: number[] = [];
    const servers0 = cpuOf(cluster.servers);
    const client0 = cpuOf([cluster.client]);
    for (let n = 0; n < CHANGES; n++) {
      const s = services[n % services.length] as string;
      const failing = !everyone(s, `${s}-1,${s}-2`) ? 'pass' : 'fail';
      const want = failing === 'fail' ? `${s}-2` : `${s}-1,${s}-2`;
      const t0 = performance.now();
      await admin.request('PUT', `/v1/agent/check/${failing}/service:${s}-1`);
      await waitAll(s, want, t0, latencies);
      // Leave the service as it was for the next round on it.
      if (failing === 'fail') {
        await admin.request('PUT', `/v1/agent/check/pass/service:${s}-1`);
        await waitAll(s, `${s}-1,${s}-2`, performance.now(), []);
      }
    }
    const sorted = latencies.sort((a, b) => a - b);
    return {
      mode,
      watchers,
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      serverCpuPerChange: ((cpuOf(cluster.servers) - servers0) * 1000) / (CHANGES * 2),
      clientCpuPerChange: ((cpuOf([cluster.client]) - client0) * 1000) / (CHANGES * 2),
    };
  } finally {
    for (const off of offs) off();
    await Promise.all(registries.map((r) => r.close()));
  }
}
