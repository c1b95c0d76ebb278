// Shadow decisions of every kind on the console's limits view: counted from each instance's
// admin status (its conditions, MESHLET_<KIND>_SHADOW), read over HTTP on 127.0.0.1.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RegistryView } from '@meshlet/cli';
import { FileKvStore, type Instance, MemoryLogger } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import { type RunningConsole, SHADOW_KINDS, shadowCounts, startConsole } from '../src/index.js';

const TOKEN = 'console-test-token-0123456789';
const ADMIN_TOKEN = 'admin-test-token-0123456789';

describe('shadowCounts', () => {
  const cases: ReadonlyArray<[string, Record<string, number> | undefined, Record<string, number>]> = [
    ['no conditions', undefined, { route: 0, ratelimit: 0, auth: 0, breaker: 0, fault: 0 }],
    [
      'every kind, other codes left out',
      {
        MESHLET_ROUTE_SHADOW: 1,
        MESHLET_RATELIMIT_SHADOW: 2,
        MESHLET_AUTH_SHADOW: 3,
        MESHLET_BREAKER_SHADOW: 4,
        MESHLET_FAULT_SHADOW: 5,
        MESHLET_RETRY_BUDGET: 9,
      },
      { route: 1, ratelimit: 2, auth: 3, breaker: 4, fault: 5 },
    ],
    [
      'nonsense counts ignored',
      { MESHLET_BREAKER_SHADOW: -1, MESHLET_FAULT_SHADOW: Number.NaN },
      { route: 0, ratelimit: 0, auth: 0, breaker: 0, fault: 0 },
    ],
  ];
  for (const [name, conditions, want] of cases) it(name, () => assert.deepEqual(shadowCounts(conditions), want));
  it('covers the five kinds with a shadow mode', () =>
    assert.deepEqual([...SHADOW_KINDS], ['route', 'ratelimit', 'auth', 'breaker', 'fault']));
});

describe('GET /api/limits: shadow decisions of every kind', () => {
  let dir: string;
  let running: RunningConsole;
  let admin: Awaited<ReturnType<typeof listen>>;

  before(async () => {
    // A fake instance's admin endpoint: the status an SDK instance serves, with its conditions.
    admin = await listen((req, res) => {
      // The token for this address, as the SDK's admin handler checks it.
      if (req.headers.authorization !== adminAuthorization(ADMIN_TOKEN, admin.port).authorization) {
        res.statusCode = 401;
        res.end();
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          service: 'gateway',
          limiter: {
            allowed: 10,
            refused: 0,
            shadowRefused: 2,
            rules: [
              { name: 'per-user', allowed: 10, refused: 0, shadowRefused: 2 },
              { name: 'uploads', allowed: 4, refused: 1, shadowRefused: 0 },
              // From another process: what is not a rule's counts is left out.
              { name: 42, allowed: 1, refused: 1, shadowRefused: 1 },
              { name: 'odd', allowed: -3, refused: 'x', shadowRefused: null },
            ],
          },
          // ratelimit.outboundAdaptive on: one limit per destination called (and one that is not a limit's counts).
          outboundAdaptive: [
            { service: 'user-service', limit: 12, inFlight: 3, admitted: 100, refused: 40, mode: 'track' },
            { service: 7, limit: 1, inFlight: 1, admitted: 1, refused: 1, mode: 'track' },
          ],
          conditions: { MESHLET_RATELIMIT_SHADOW: 2, MESHLET_BREAKER_SHADOW: 7, MESHLET_FAULT_SHADOW: 3 },
          // The gateway calls user-service: its enforced breakers, and its breaker section in shadow mode.
          breakers: [
            { breaker: { level: 'service', service: 'user-service' }, state: 'closed', rejected: 0, opened: 0 },
            { breaker: { level: 'instance', service: 'user-service', instance: 'user-a' }, state: 'open', rejected: 0, opened: 1 },
            { breaker: { level: 'service', service: 'other' }, state: 'open', rejected: 9, opened: 9 },
          ],
          breakerShadow: [
            { service: 'user-service', wouldReject: 5, wouldOpen: 2, wouldExclude: 3, wouldTimeOut: 1 },
            { service: 'other', wouldReject: 99, wouldOpen: 99, wouldExclude: 99, wouldTimeOut: 99 },
          ],
        }),
      );
    });
    const instance: Instance = {
      id: 'gateway-1',
      service: 'gateway',
      address: '127.0.0.1',
      port: admin.port,
      tags: [],
      metadata: { 'meshlet-admin': '/_meshlet' },
      health: 'passing',
    };
    const registry: RegistryView = {
      description: 'fake',
      services: async () => ['gateway', 'user-service'],
      instances: async (service) => (service === 'gateway' ? [instance] : []),
    };
    dir = await mkdtemp(join(tmpdir(), 'meshlet-console-shadow-'));
    running = await startConsole({
      kv: new FileKvStore(dir),
      storeDescription: `directory ${dir}`,
      kinds: RULE_KINDS,
      registry,
      adminToken: ADMIN_TOKEN,
      token: TOKEN,
      port: 0,
      logger: new MemoryLogger(),
    });
  });
  after(async () => {
    await running?.close();
    await admin?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function limits(service: string): Promise<Response> {
    const origin = running.url.replace(/\/$/, '');
    const login = await fetch(`${origin}/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin },
      body: JSON.stringify({ token: TOKEN, author: 'alice' }),
    });
    assert.equal(login.status, 200);
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    return fetch(`${origin}/api/limits?service=${service}`, { headers: { cookie } });
  }

  it('counts admitted, refused and would-have-refused per rule, leaving out what is not a count', async () => {
    const res = await limits('gateway');
    assert.equal(res.status, 200);
    const body = (await res.json()) as {
      byRule: { name: string; allowed: number; refused: number; shadowRefused: number; over: Record<string, unknown[]> }[];
    };
    assert.deepEqual(
      body.byRule.map(({ over: _o, ...counts }) => counts),
      [
        { name: 'per-user', allowed: 10, refused: 0, shadowRefused: 2 },
        { name: 'uploads', allowed: 4, refused: 1, shadowRefused: 0 },
        { name: 'odd', allowed: 0, refused: 0, shadowRefused: 0 },
      ],
    );
    assert.deepEqual(Object.keys(body.byRule[0]?.over ?? {}), ['allowed', 'refused', 'shadow']);
  });

  it("shows a called service's breakers as its callers report them: what happened beside what the shadow section would have done", async () => {
    const body = (await (await limits('user-service')).json()) as { breakers: unknown };
    assert.deepEqual(body.breakers, {
      callers: 1,
      opened: 1,
      rejected: 0,
      shadow: { wouldOpen: 2, wouldReject: 5, wouldExclude: 3, wouldTimeOut: 1 },
    });
    const gateway = (await (await limits('gateway')).json()) as { breakers: unknown };
    assert.deepEqual(gateway.breakers, { callers: 0, opened: 0, rejected: 0, shadow: null }, 'nobody calls the gateway');
  });

  it('counts breaker and fault shadow decisions beside the limit ones, per instance and in total', async () => {
    const res = await limits('gateway');
    assert.equal(res.status, 200);
    const body = (await res.json()) as {
      totals: { shadowRefused: number; shadow: Record<string, number> };
      instances: { id: string; admin: string; shadow: Record<string, number> | null }[];
    };
    const want = { route: 0, ratelimit: 2, auth: 0, breaker: 7, fault: 3 };
    assert.deepEqual(body.totals.shadow, want);
    assert.equal(body.totals.shadowRefused, 2);
    assert.deepEqual(
      body.instances.map((i) => [i.id, i.admin, i.shadow]),
      [['gateway-1', 'ok', want]],
    );
  });

  it("shows each instance's outbound adaptive limit per destination, with its refusals over time", async () => {
    const body = (await (await limits('gateway')).json()) as { outbound: { over: { refused: unknown[] } }[] };
    assert.deepEqual(
      body.outbound.map(({ over: _o, ...o }) => o),
      [{ instance: 'gateway-1', service: 'user-service', limit: 12, inFlight: 3, admitted: 100, refused: 40, probing: false }],
    );
    assert.ok(Array.isArray(body.outbound[0]?.over.refused));
  });
});
