// Route decision cost against fleet size (BENCH.md question 3): 100 rules, of which the
// one that matches is the 91st, over 10, 1 000 and 10 000 instances, per load balancer.
// Everything that depends on rules and instances is precomputed, so the figures should
// stay flat as the fleet grows. The first decision after a change pays the rebuild; it is
// reported apart. Two rule sets: "equality" rules (equals / in, as most tag routing rules
// are, plus regex / exists rules on tags the request lacks), which the rule index skips
// without testing them; and "mixed", where 30 range / regex rules on tags the request has
// must each be tested, the worst case of the index. The "sticky" row is the round robin
// row with the matching rule's group chosen by a hash of the request's `user-id` (stickyBy)
// instead of the random draw, side by side in one run.
import { createContext, getTag, type Instance, MetaKey, seededRandom } from '@meshlet/core';
import { type LoadBalancerConfig, parseRouteSection, Router } from '@meshlet/route';
import { fmt, machine, median, table } from './harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const DECISIONS = Number(process.env.BENCH_ROUTE_DECISIONS ?? 100_000);
const SIZES = [10, 1_000, 10_000];
const SERVICE = 'user-service';

type RuleSet = 'equality' | 'mixed';
/** [rules, balancer (row label), balancer, the matching rule sticky by `user-id`] */
const CASES: [RuleSet, string, LoadBalancerConfig, boolean?][] = [
  ['equality', 'round robin', { type: 'roundRobin' }],
  ['equality', 'round robin, rule sticky by user-id', { type: 'roundRobin' }, true],
  ['equality', 'random', { type: 'random' }],
  ['equality', 'least requests', { type: 'leastRequests' }],
  ['equality', 'consistent hash', { type: 'consistentHash', hashTag: 'user-id' }],
  ['mixed', 'round robin', { type: 'roundRobin' }],
];

function fleet(n: number): Instance[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `user-${i}`,
    service: SERVICE,
    address: '10.0.0.1',
    port: 8000 + (i % 1000),
    tags: [],
    metadata: {
      [MetaKey.version]: i % 5 === 0 ? 'v1.21' : 'v1.20',
      [MetaKey.zone]: `z${i % 3}`,
      [MetaKey.region]: 'r1',
      ...(i % 7 === 0 ? { [MetaKey.weight]: '200' } : {}),
    },
    health: 'passing',
  }));
}

/** 100 rules; only `chrome-gray` (the 91st) matches the benchmark's request. */
function rules(set: RuleSet, loadBalancer: LoadBalancerConfig, sticky = false) {
  const misses = (i: number) => {
    switch (i % 5) {
      case 0:
        return [{ tag: 'user-id', op: 'equals', value: `nobody-${i}` }];
      case 1:
        return [{ tag: 'tier', op: 'in', values: [`t${i}`, `u${i}`] }];
      case 2:
        return set === 'mixed' ? [{ tag: 'user-num', op: 'range', min: 1_000_000 + i }] : [{ tag: 'beta', op: 'exists' }];
      case 3:
        return [
          { tag: 'ua.family', op: 'equals', value: 'Chrome' },
          { tag: 'tier', op: 'equals', value: `t${i}` },
        ];
      default:
        return set === 'mixed' && i % 10 === 4
          ? [{ tag: 'ua.family', op: 'regex', pattern: `^Firefox/${i}` }]
          : [{ tag: 'app-version', op: 'regex', pattern: `^${i}\\.` }];
    }
  };
  const dest = (v: string) => [{ group: { version: v }, weight: 100 }];
  return parseRouteSection({
    rules: Array.from({ length: 100 }, (_, i) =>
      i === 90
        ? {
            name: 'chrome-gray',
            priority: i,
            ...(sticky ? { stickyBy: 'user-id' } : {}),
            when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }],
            destinations: [
              { group: { version: 'v1.21' }, weight: 20 },
              { group: { version: 'v1.20' }, weight: 80 },
            ],
          }
        : { name: `rule-${i}`, priority: i, when: misses(i), destinations: dest(i % 2 ? 'v1.21' : 'v1.20') },
    ),
    default: dest('v1.20'),
    loadBalancer,
  });
}

export async function routeDecision(): Promise<string> {
  const ctx = createContext({
    tags: [
      ['ua.family', 'Chrome'],
      ['user-id', 'alice-42'],
      ['tier', 'gold'],
      ['user-num', '42'],
    ],
  });
  const lookup = (t: string) => getTag(t, ctx);
  const rows: (string | number)[][] = [];
  let sink = 0;
  for (const [set, name, lb, sticky] of CASES) {
    const row: (string | number)[] = [set, name];
    const rebuilds: string[] = [];
    const routers = SIZES.map((n) => {
      const router = new Router({ location: { zone: 'z0', region: 'r1' }, random: seededRandom(n) });
      router.setRules(SERVICE, rules(set, lb, sticky));
      router.setInstances(SERVICE, fleet(n));
      const t0 = process.hrtime.bigint();
      sink += router.decide(SERVICE, lookup).instance.port; // builds the table and the balancers
      rebuilds.push(fmt(Number(process.hrtime.bigint() - t0) / 1e6, 1));
      for (let i = 0; i < 20_000; i++) sink += router.decide(SERVICE, lookup).instance.port; // warm-up
      return router;
    });
    // Sizes alternate within each run, so that drift on a noisy machine hits all of them.
    const ns: number[][] = SIZES.map(() => []);
    for (let r = 0; r < RUNS; r++) {
      routers.forEach((router, k) => {
        const start = process.hrtime.bigint();
        for (let i = 0; i < DECISIONS; i++) sink += router.decide(SERVICE, lookup).instance.port;
        ns[k]?.push(Number(process.hrtime.bigint() - start) / DECISIONS);
      });
    }
    for (const [k, router] of routers.entries()) {
      row.push(fmt(median(ns[k] ?? [])));
      router.close();
    }
    rows.push([...row, rebuilds.join(' / ')]);
  }
  if (sink === 0) console.error('unreachable: keeps the loop from being optimised away');
  return [
    '## Route decision (ns per decision, 100 rules, the 91st matches)',
    '',
    `${machine()}; median of ${RUNS} runs of ${fmt(DECISIONS)} decisions; nearby on (3 zones), 20/80 split; target under 1 µs and flat.`,
    '',
    table(
      ['rules', 'balancer', ...SIZES.map((n) => `${fmt(n)} instances`), 'first decision after a change, ms (10 / 1 000 / 10 000)'],
      rows,
    ),
  ].join('\n');
}

// Run alone: node bench/dist/route-decision.js
if (import.meta.url === `file://${process.argv[1]}`) console.log(await routeDecision());
