// Change-to-effect through a real Consul agent (BENCH.md question 6): the time from a
// change in Consul to the SDK acting on it, over 100 changes of each kind:
//   instance down   PUT /v1/agent/check/fail/service:<id> on its TTL check → the router no longer picks it
//   instance back   PUT /v1/agent/check/pass/service:<id>                  → the router picks it again
//   rule edit       PUT of the rule document in Consul KV (default route flips v1 ↔ v2) → the next decision follows it
// The clock starts before the PUT is sent. The effect is checked the moment the mesh has
// taken the update in (a listener registered after the mesh's, on the same registry watch /
// KV watch), with a 1 ms poll as a backstop. Changes are 100 ms apart so that the blocking
// query loops' own rate limit (10 queries/s) never holds them back.
// The agent is a dev agent from `startConsulAgent` (MESHLET_CONSUL_BIN, else built with
// scripts/install-consul.sh).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type KvStore, silentLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '@meshlet/registry';
import { startConsulAgent } from '@meshlet/registry/testing';
import type { RouteDecision } from '@meshlet/route';
import { createMesh } from 'meshlet';
import { fmt, machine, median, quantile, sized, table } from './harness.js';

const CHANGES = sized('BENCH_CONSUL_CHANGES', 100, 10);
const GAP_MS = 100;
const TARGET = 'bench-target';
const INSTANCES = [
  { id: 'target-a', version: 'v1', port: 9001 },
  { id: 'target-b', version: 'v1', port: 9002 },
  { id: 'target-c', version: 'v2', port: 9003 },
];

function consulBinary(): string {
  const given = process.env.MESHLET_CONSUL_BIN;
  if (given) return given;
  const script = fileURLToPath(new URL('../../scripts/install-consul.sh', import.meta.url));
  const out = execFileSync(script, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const bin = out.trim().split('\n').pop() ?? '';
  process.env.MESHLET_CONSUL_BIN = bin;
  return bin;
}

const ruleDocument = (version: string) => JSON.stringify({ service: TARGET, route: { default: [{ group: { version }, weight: 100 }] } });

/** Resolves with the ms from `t0` to the first moment `effect()` holds; checked on nudge() and every 1 ms. */
function effectWatcher() {
  let pending: { effect: () => boolean; t0: bigint; resolve: (ms: number) => void; timer: NodeJS.Timeout } | undefined;
  const check = () => {
    const p = pending;
    if (!p?.effect()) return;
    pending = undefined;
    clearInterval(p.timer);
    p.resolve(Number(process.hrtime.bigint() - p.t0) / 1e6);
  };
  return {
    nudge: check,
    /** Sends the change and waits for its effect; fails after 10 s. */
    async time(change: () => Promise<unknown>, effect: () => boolean): Promise<number> {
      const t0 = process.hrtime.bigint();
      const done = new Promise<number>((resolve, reject) => {
        const timer = setInterval(() => {
          check();
          if (pending && Number(process.hrtime.bigint() - t0) > 10e9) {
            clearInterval(timer);
            pending = undefined;
            reject(new Error('the change had no effect within 10 s'));
          }
        }, 1);
        pending = { effect, t0, resolve, timer };
      });
      await change();
      check();
      return done;
    },
  };
}

export async function consulPropagation(): Promise<string> {
  const binary = consulBinary();
  const agent = await startConsulAgent({ binary });
  const registry = new ConsulRegistry({ address: agent.address, logger: silentLogger });
  const consulKv = new ConsulKvStore({ address: agent.address, logger: silentLogger });
  const watcher = effectWatcher();
  // The mesh's rule store, with a listener after the mesh's own on every watch.
  const kv: KvStore = {
    get: (k) => consulKv.get(k),
    list: (p) => consulKv.list(p),
    put: (k, v, o) => consulKv.put(k, v, o),
    delete: (k, o) => consulKv.delete(k, o),
    putAll: (writes) => consulKv.putAll(writes),
    watch: (prefix, listener) =>
      consulKv.watch(prefix, (entries) => {
        listener(entries);
        watcher.nudge();
      }),
  };
  const mesh = createMesh({ service: 'bench-client', registry, rules: kv, logger: silentLogger });
  const down: number[] = [];
  const back: number[] = [];
  const rules: number[] = [];
  try {
    for (const i of INSTANCES) {
      await registry.client.request('PUT', '/v1/agent/service/register', {
        body: JSON.stringify({
          ID: i.id,
          Name: TARGET,
          Address: '127.0.0.1',
          Port: i.port,
          Meta: { version: i.version },
          Check: { TTL: '10m', Status: 'passing', DeregisterCriticalServiceAfter: '1h' },
        }),
      });
    }
    await kv.put(`meshlet/rules/${TARGET}`, ruleDocument('v1'));
    await mesh.resolve(TARGET); // the mesh follows the service and its rules
    registry.watch(TARGET, () => watcher.nudge());
    const decide = (): RouteDecision => mesh.router.decide(TARGET, () => undefined);
    // Round robin over the candidates: 6 picks see every healthy v1 instance at least twice.
    const picksOf = () => Array.from({ length: 6 }, () => decide().instance.id);
    const gap = () => new Promise((r) => setTimeout(r, GAP_MS));

    // Health: a is v1, so with the default route on v1 its absence shows in the picks.
    for (let n = 0; n < CHANGES; n++) {
      down.push(
        await watcher.time(
          () => registry.client.request('PUT', '/v1/agent/check/fail/service:target-a'),
          () => !picksOf().includes('target-a'),
        ),
      );
      await gap();
      back.push(
        await watcher.time(
          () => registry.client.request('PUT', '/v1/agent/check/pass/service:target-a'),
          () => picksOf().includes('target-a'),
        ),
      );
      await gap();
    }
    let version = 'v1';
    for (let n = 0; n < CHANGES; n++) {
      version = version === 'v1' ? 'v2' : 'v1';
      const want = version;
      rules.push(
        await watcher.time(
          () => kv.put(`meshlet/rules/${TARGET}`, ruleDocument(want)),
          () => decide().instance.metadata.version === want,
        ),
      );
      await gap();
    }
  } finally {
    await mesh.close();
    await registry.close();
    await agent.stop();
  }
  const row = (name: string, xs: number[]) => {
    const s = Float64Array.from(xs).sort();
    return [name, xs.length, fmt(median(xs), 1), fmt(quantile(s, 0.99), 1), fmt(s[s.length - 1] ?? Number.NaN, 1)];
  };
  return [
    '## Consul change to SDK effect (BENCH.md Q6)',
    '',
    `${machine()}; a local Consul dev agent (${binary.split('/').slice(-2).join(' ')}), blocking queries (ConsulRegistry / ConsulKvStore), ` +
      `changes ${GAP_MS} ms apart; ms from sending the change to the router acting on it. Target: p99 under 100 ms.`,
    '',
    table(
      ['change', 'changes', 'p50 ms', 'p99 ms', 'max ms'],
      [
        row('instance check critical → no longer picked', down),
        row('instance check passing → picked again', back),
        row('rule document edited in KV → new route decides', rules),
      ],
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await consulPropagation());
