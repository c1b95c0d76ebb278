// Tag header dialects and warm-up (issue 12). Two tables:
// 1. What reading and writing the tags of one request costs per dialect: 8 tags, half of
//    them with separators, quotes and non-ASCII, through TagPropagation (bounds checked).
// 2. Warm-up's effect on routing: four instances, one registered at t = 0 with a 10-minute
//    window (floor 1%, 10 steps); the router is re-fed with applyWarmup at each instant and
//    the share of 10 000 round-robin picks the new instance gets is counted.
import { type Instance, MetaKey, seededRandom } from '@meshlet/core';
import { type DialectName, TagPropagation, TagScopes } from '@meshlet/propagation';
import { applyWarmup, REGISTERED_AT_META, Router } from '@meshlet/route';
import { fmt, machine, median, table } from './harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const OPS = Number(process.env.BENCH_DIALECT_OPS ?? 20_000);
const DIALECTS: DialectName[] = ['meshlet', 'tsf', 'sct', 'polaris'];

const TAGS: [string, string][] = [
  ['user-tier', 'vip'],
  ['ua.family', 'Chrome'],
  ['lane', 'gray'],
  ['user-id', 'alice-42'],
  ['note', 'a:b {"c"}, 中文'],
  ['json', '{"x":[1,2]}'],
  ['quote', 'say "hi"'],
  ['list', 'a,b,c'],
];

function timeIt(fn: () => number): number {
  const ns: number[] = [];
  let sink = 0;
  for (let i = 0; i < OPS; i++) sink += fn(); // warm-up
  for (let r = 0; r < RUNS; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < OPS; i++) sink += fn();
    ns.push(Number(process.hrtime.bigint() - start) / OPS);
  }
  if (sink === 0) console.error('unreachable');
  return median(ns);
}

function costRows(): (string | number)[][] {
  const scopes = new TagScopes([['note', 'one-hop']]);
  return DIALECTS.map((name) => {
    const p = new TagPropagation({ accept: [name], emit: [name] });
    const { headers } = p.emit(TAGS, scopes);
    const inbound = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    const bytes = Object.entries(headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
    const extract = timeIt(() => p.extract(inbound).tags.size);
    const emit = timeIt(() => Object.keys(p.emit(TAGS, scopes).headers).length);
    return [name, fmt(extract), fmt(emit), bytes];
  });
}

function warmupRows(): (string | number)[][] {
  const MIN = 60_000;
  const t0 = 1_700_000_000_000;
  const registry: Instance[] = ['a', 'b', 'c', 'new'].map((id, i) => ({
    id,
    service: 'orders',
    address: `10.0.0.${i + 1}`,
    port: 8080,
    tags: [],
    metadata: { [MetaKey.zone]: 'z0', [REGISTERED_AT_META]: String(id === 'new' ? t0 : t0 - 60 * MIN) },
    health: 'passing',
  }));
  const options = { windowMs: 10 * MIN, floor: 0.01 };
  const router = new Router({ location: { zone: 'z0', region: 'r1' }, random: seededRandom(7) });
  const rows: (string | number)[][] = [];
  for (const minutes of [0, 1, 2.5, 5, 7.5, 9.9, 10]) {
    const fed = applyWarmup(registry, t0 + minutes * MIN, options);
    router.setInstances('orders', fed);
    let picked = 0;
    const n = 10_000;
    for (let i = 0; i < n; i++) if (router.pick('orders', () => undefined).id === 'new') picked++;
    const weight = fed[3]?.metadata[MetaKey.weight] ?? '100';
    rows.push([minutes, weight, `${fmt((picked / n) * 100, 1)}%`, `${fmt((Number(weight) / (300 + Number(weight))) * 100, 1)}%`]);
  }
  router.close();
  return rows;
}

export async function dialectsBench(): Promise<string> {
  return [
    '## Tag header dialects (ns per request, 8 tags)',
    '',
    `${machine()}; median of ${RUNS} runs of ${fmt(OPS)} operations; extract = read and bound-check every tag, emit = write every header.`,
    '',
    table(['dialect', 'extract ns', 'emit ns', 'header bytes'], costRows()),
    '',
    '## Warm-up: share of picks for an instance registered at t = 0 (3 warm peers of weight 100, 10-minute window)',
    '',
    table(['minutes since registration', 'weight fed to the router', 'share of 10 000 picks', 'expected w / (300 + w)'], warmupRows()),
  ].join('\n');
}

// Run alone: node bench/dist/dialects.js
if (import.meta.url === `file://${process.argv[1]}`) console.log(await dialectsBench());
