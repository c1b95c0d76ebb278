// Shadow decisions of every kind on the console's limits view: counted from each instance's
// admin status (its conditions, MESHLET_<KIND>_SHADOW), read over HTTP on 127.0.0.1.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadRuleKinds, type RegistryView } from '@meshlet/cli';
import { FileKvStore, type Instance, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
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
      if (req.headers.authorization !== `Bearer ${ADMIN_TOKEN}`) {
        res.statusCode = 401;
        res.end();
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          service: 'gateway',
          limiter: { allowed: 10, refused: 0, shadowRefused: 2 },
          conditions: { MESHLET_RATELIMIT_SHADOW: 2, MESHLET_BREAKER_SHADOW: 7, MESHLET_FAULT_SHADOW: 3 },
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
      services: async () => ['gateway'],
      instances: async (service) => (service === 'gateway' ? [instance] : []),
    };
    dir = await mkdtemp(join(tmpdir(), 'meshlet-console-shadow-'));
    running = await startConsole({
      kv: new FileKvStore(dir),
      storeDescription: `directory ${dir}`,
      kinds: await loadRuleKinds(),
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

  it('counts breaker and fault shadow decisions beside the limit ones, per instance and in total', async () => {
    const origin = running.url.replace(/\/$/, '');
    const login = await fetch(`${origin}/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin },
      body: JSON.stringify({ token: TOKEN, author: 'alice' }),
    });
    assert.equal(login.status, 200);
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const res = await fetch(`${origin}/api/limits?service=gateway`, { headers: { cookie } });
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
});
