// What auth costs a call. Signing is done once per half-lifetime per destination
// (IdentitySigner), verifying once per distinct token (IdentityVerifier's cache), so the
// per-call figures are the cached rows; the raw HMAC rows are what a miss costs. Then the
// Authorizer's decision with 20 rules, and template matching against a 200-API catalog.

import {
  ApiMatcher,
  Authorizer,
  checkIdentity,
  IdentitySigner,
  IdentityVerifier,
  type MeshKey,
  parseAuthSection,
  signIdentity,
} from '@meshlet/auth';
import { ManualClock } from '@meshlet/core';
import { fmt, machine, median, table } from './harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const N = Number(process.env.BENCH_AUTH_OPS ?? 100_000);

const key: MeshKey = { id: 'k1', key: Buffer.alloc(32, 5) };
const identity = { service: 'checkout', namespace: 'prod', instance: 'checkout-10.0.0.7-8080', version: '1.4.2' };

function nsPerOp(op: () => unknown, n = N): number {
  for (let i = 0; i < Math.min(n, 20_000); i++) op();
  const runs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) op();
    runs.push(Number(process.hrtime.bigint() - t0) / n);
  }
  return median(runs);
}

export async function authIdentity(): Promise<string> {
  const clock = new ManualClock(1_700_000_000_000);
  const header = signIdentity(identity, key, clock, { audience: 'payment' });
  const signer = new IdentitySigner({ identity, key, clock });
  const verifier = new IdentityVerifier({ keys: [key], clock, audience: 'payment' });
  const uncached = new IdentityVerifier({ keys: [key], clock, audience: 'payment', cacheSize: 0 });

  const rules = parseAuthSection(
    {
      rules: Array.from({ length: 20 }, (_, i) => ({
        name: `r${i}`,
        action: 'deny',
        services: [`svc-${i}`],
        apis: [{ method: 'POST', path: `/things${i}/{id}` }],
      })),
    },
    'auth',
  );
  const authorizer = new Authorizer({}, rules);
  const caller = verifier.verify(header);
  const svc19 = { ...identity, service: 'svc-19' };
  const catalog = new ApiMatcher(
    Array.from({ length: 200 }, (_, i) => ({ method: i % 2 ? 'GET' : 'POST', path: i % 3 ? `/r${i}/{id}` : `/r${i}/{id}/items/{item}` })),
  );

  const rows: (string | number)[][] = [
    ['signIdentity (HMAC-SHA-256, per miss)', fmt(nsPerOp(() => signIdentity(identity, key, clock, { audience: 'payment' }), N / 4))],
    ['IdentitySigner.header (cached, per call)', fmt(nsPerOp(() => signer.header('payment')))],
    [
      'checkIdentity (HMAC + constant-time compare)',
      fmt(nsPerOp(() => checkIdentity(header, [key], clock, { audience: 'payment' }), N / 4)),
    ],
    ['IdentityVerifier.verify, cache off', fmt(nsPerOp(() => uncached.verify(header), N / 4))],
    ['IdentityVerifier.verify (cached, per call)', fmt(nsPerOp(() => verifier.verify(header)))],
    [
      'Authorizer.decide, 20 rules, none match (default allow)',
      fmt(nsPerOp(() => authorizer.decide(caller, { method: 'GET', path: '/users/42' }))),
    ],
    ['Authorizer.decide, 20 rules, 20th matches', fmt(nsPerOp(() => authorizer.decide(svc19, { method: 'POST', path: '/things19/7' })))],
    ['ApiMatcher.match, 200 templates, hit', fmt(nsPerOp(() => catalog.match('GET', '/r199/42/items/7')))],
    ['ApiMatcher.match, 200 templates, miss', fmt(nsPerOp(() => catalog.match('GET', '/nothing/here')))],
  ];
  return [`## Auth: signed identity and decisions (${machine()})`, '', table(['operation', 'ns/op (median)'], rows)].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await authIdentity());
