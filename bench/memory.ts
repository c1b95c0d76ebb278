// Memory per registered instance (BENCH.md question 4): heap held by a mesh that follows
// a service of 10 000 instances — the service directory's view, the router's precomputed
// table and balancers, and (with an instance breaker rule) the instance breakers — over
// and above the Instance objects themselves, which the registry client holds anyway.
// Each case runs in a fresh child with --expose-gc; heap is measured after two GCs.
// Per breaker: see the breaker section (10 000 instance breakers alone).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { InMemoryKvStore, type Instance, MetaKey, type Registry, silentLogger } from '@meshlet/core';
import { createMesh } from 'meshlet';
import { fmt, machine, table } from './harness.js';

const COUNTS = [1_000, 10_000];
const SERVICE = 'orders';

/** A registry that only hands out a fixed list: no bookkeeping of its own to measure. */
function fixedRegistry(instances: readonly Instance[]): Registry {
  return {
    register: async () => {},
    deregister: async () => {},
    healthyInstances: async () => instances,
    services: async () => [SERVICE],
    watch: (_s, listener) => {
      listener(instances);
      return () => {};
    },
    watchServices: (listener) => {
      listener([SERVICE]);
      return () => {};
    },
  };
}

function fleet(n: number): Instance[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `orders-10-0-${i >> 8}-${i & 255}-8080`,
    service: SERVICE,
    address: `10.0.${i >> 8}.${i & 255}`,
    port: 8080,
    tags: [],
    metadata: { [MetaKey.version]: i % 5 === 0 ? 'v2' : 'v1', [MetaKey.zone]: `z${i % 3}`, [MetaKey.region]: 'r1' },
    health: 'passing',
  }));
}

const rules = (breakers: boolean) => ({
  service: SERVICE,
  route: {
    rules: [
      {
        name: 'gray',
        when: [{ tag: 'user-tier', op: 'equals', value: 'vip' }],
        destinations: [
          { group: { version: 'v2' }, weight: 20 },
          { group: { version: 'v1' }, weight: 80 },
        ],
      },
    ],
    default: [{ group: { version: 'v1' }, weight: 100 }],
  },
  ...(breakers ? { breaker: { rules: [{ level: 'instance', maxEjectionPercent: 50 }] } } : {}),
});

async function heapChild(n: number, breakers: boolean): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const instances = fleet(n);
  const kv = new InMemoryKvStore();
  await kv.put(`meshlet/rules/${SERVICE}`, JSON.stringify(rules(breakers)));
  const registry = fixedRegistry(instances);
  // A mesh following another service first, so that what is measured is per instance, not per mesh.
  const mesh = createMesh({ service: 'caller', registry, rules: kv, logger: silentLogger, metadata: { zone: 'z0', region: 'r1' } });
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const picked = await mesh.resolve(SERVICE); // follows: directory, rules, router table, balancers, breakers
  // Every instance breaker exists once each instance has had a call.
  const group = mesh.breakers.instanceBreakers.forService(SERVICE);
  if (breakers && !group) throw new Error('the instance breaker rule was not applied');
  for (const i of breakers ? instances : []) group?.record(i.id, group.acquire(i.id), false, 1);
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  process.stdout.write(JSON.stringify({ bytes: after - before, picked: picked.id }));
  await mesh.close();
}

/** Heap of the Instance objects themselves (as a registry client holds them). */
function instanceObjectsChild(n: number): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const list = fleet(n);
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  process.stdout.write(JSON.stringify({ bytes: after - before, picked: list[0]?.id }));
}

function inChild(args: string[]): { bytes: number } {
  const out = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--memory-child', ...args], {
    encoding: 'utf8',
  });
  return JSON.parse(out) as { bytes: number };
}

export async function memory(): Promise<string> {
  const rows: (string | number)[][] = [];
  for (const n of COUNTS) {
    const objects = inChild(['objects', String(n)]).bytes;
    const routed = inChild(['mesh', String(n)]).bytes;
    const withBreakers = inChild(['mesh+breakers', String(n)]).bytes;
    rows.push([
      fmt(n),
      fmt(objects / n),
      `${fmt(routed / 2 ** 20, 2)} MiB`,
      fmt(routed / n),
      `${fmt(withBreakers / 2 ** 20, 2)} MiB`,
      fmt(withBreakers / n),
      fmt((withBreakers - routed) / n),
    ]);
  }
  return [
    '## Memory per instance (BENCH.md Q4)',
    '',
    `${machine()}. Heap after GC of a mesh that follows one service (directory + route table with a 20/80 rule, nearby on, 3 zones), ` +
      'beyond the Instance objects (first column, held by the registry client anyway); then with an instance breaker rule and a breaker per instance.',
    '',
    table(
      [
        'instances',
        'Instance object, bytes each',
        'directory + router',
        'bytes per instance',
        'with instance breakers',
        'bytes per instance',
        'per breaker (difference)',
      ],
      rows,
    ),
  ].join('\n');
}

if (process.argv[2] === '--memory-child') {
  const [kind, n] = [process.argv[3], Number(process.argv[4])];
  if (kind === 'objects') instanceObjectsChild(n);
  else await heapChild(n, kind === 'mesh+breakers');
} else if (import.meta.url === `file://${process.argv[1]}`) console.log(await memory());
