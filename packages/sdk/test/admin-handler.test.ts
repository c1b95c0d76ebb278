import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { adminToken, type Instance } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { type AdminStatus, AdminTokenError, createAdminHandler, publicStatus } from '../src/admin-handler.js';
import { renderStatusMetrics } from '../src/admin-metrics.js';
import { assertFamiliesContiguous } from './prometheus-text.js';

/** The operator's admin secret; callers send adminToken(TOKEN, "<address>:<port>"). */
const TOKEN = 'a-long-enough-admin-token-0123';

const registered = (port: number, metadata: Record<string, string> = { 'meshlet-admin': '/_meshlet' }): Instance => ({
  id: `orders-${port}`,
  service: 'orders',
  address: '127.0.0.1',
  port,
  tags: [],
  metadata,
  health: 'passing',
});
/** An admin handler on its own server, registered at that server's address. */
async function serveAdmin(options: Omit<Parameters<typeof createAdminHandler>[0], 'token' | 'instance'>) {
  let self: Instance | undefined;
  const admin = createAdminHandler({ token: TOKEN, instance: () => self, ...options });
  const s = await listen((req, res) => admin(req, res));
  self = registered(s.port);
  return { ...s, auth: { authorization: `Bearer ${adminToken(TOKEN, `127.0.0.1:${s.port}`)}` } };
}

const status = (): AdminStatus => ({
  service: 'orders',
  instance: 'orders-8080',
  rules: [{ service: 'orders', revision: 42, rejected: 1, lastError: { revision: 43, path: 'route.rules[0]', message: 'bad' } }],
  breakers: [
    {
      breaker: { level: 'instance', service: 'payments', instance: 'payments-1' },
      state: 'open',
      calls: 5,
      failures: 5,
      failureRate: 100,
      slowCallRate: 0,
      consecutiveFailures: 5,
      retryAt: 1000,
      rejected: 2,
      opened: 1,
    },
  ],
  breakerShadow: [{ service: 'payments', wouldReject: 4, wouldOpen: 1, wouldExclude: 2, wouldTimeOut: 0 }],
  retries: [{ service: 'payments', sent: { 'not-sent': 3, stale: 1 }, budgetRefused: { '5xx': 2 } }],
  limiter: {
    allowed: 10,
    refused: 3,
    degraded: false,
    outages: 0,
    degradedDecisions: 0,
    buckets: 2,
    inFlight: 1,
    redisKeys: 10_000,
    redisKeysOverflowed: 77,
    rules: [
      { name: 'per-user', allowed: 10, refused: 3, shadowRefused: 0 },
      { name: 'uploads', allowed: 2, refused: 0, shadowRefused: 0 },
    ],
  },
  registry: { mode: 'consul', degraded: false, errors: 0 },
  degraded: { registry: false, ratelimitRedis: true },
});

describe('admin handler', () => {
  let server: Awaited<ReturnType<typeof listen>>;
  let base: string;
  let calls = 0;
  let fallthrough = 0;
  let self: Instance | undefined;
  /** This instance's token: the secret's HMAC of the address it is registered at. */
  let own: { authorization: string };

  before(async () => {
    const admin = createAdminHandler({
      token: TOKEN,
      instance: () => self,
      path: '/_meshlet',
      metrics: () => 'meshlet_client_requests_total{service="payments",api="GET /pay"} 7\n',
      status: () => {
        calls++;
        // A provider that hands over more than the interface: none of it may be sent.
        return { ...status(), config: { 'db.password': 's3cret' }, token: TOKEN } as AdminStatus;
      },
    });
    server = await listen((req, res) =>
      admin(req, res, () => {
        fallthrough++;
        res.end('app');
      }),
    );
    base = `http://127.0.0.1:${server.port}`;
    self = registered(server.port);
    own = { authorization: `Bearer ${adminToken(TOKEN, `127.0.0.1:${server.port}`)}` };
  });
  after(() => server.close());

  const get = (path: string, headers: Record<string, string> = {}) => fetch(`${base}${path}`, { headers });

  it("answers the status as JSON to a caller with this instance's token", async () => {
    const res = await get('/_meshlet/status', own);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const body = (await res.json()) as AdminStatus;
    assert.deepEqual(body, status());
  });

  it('serves the status as Prometheus metrics too, degraded states and breakers as numbers', async () => {
    assert.equal((await get('/_meshlet/metrics')).status, 401);
    const res = await get('/_meshlet/metrics', own);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const lines = (await res.text()).split('\n');
    for (const expected of [
      'meshlet_degraded{what="registry"} 0',
      'meshlet_degraded{what="ratelimitRedis"} 1',
      'meshlet_rules_revision{service="orders"} 42',
      'meshlet_rules_rejected_total{service="orders"} 1',
      'meshlet_breaker_open{level="instance",service="payments",instance="payments-1"} 1',
      'meshlet_ratelimit_refused_total 3',
      'meshlet_ratelimit_in_flight 1',
      'meshlet_ratelimit_redis_keys 10000',
      'meshlet_ratelimit_redis_keys_overflowed_total 77',
      'meshlet_ratelimit_rule_allowed_total{rule="per-user"} 10',
      'meshlet_ratelimit_rule_refused_total{rule="per-user"} 3',
      'meshlet_ratelimit_rule_refused_total{rule="uploads"} 0',
      'meshlet_ratelimit_rule_shadow_refused_total{rule="uploads"} 0',
      'meshlet_breaker_shadow_rejected_total{service="payments"} 4',
      'meshlet_breaker_shadow_opened_total{service="payments"} 1',
      'meshlet_breaker_shadow_excluded_total{service="payments"} 2',
      'meshlet_breaker_shadow_timed_out_total{service="payments"} 0',
      'meshlet_retries_total{service="payments",reason="not-sent"} 3',
      'meshlet_retries_total{service="payments",reason="stale"} 1',
      'meshlet_retries_budget_refused_total{service="payments",reason="5xx"} 2',
      'meshlet_client_requests_total{service="payments",api="GET /pay"} 7',
    ])
      assert.ok(lines.includes(expected), `missing: ${expected}`);
    assert.ok(!lines.some((l) => l.includes('s3cret')));
  });

  it("keeps each metric family's HELP, TYPE and samples together, breakers' two families included", () => {
    const full: AdminStatus = {
      ...status(),
      registry: { mode: 'consul', degraded: false, errors: 1, snapshotErrors: 0 },
      conditions: { MESHLET_BAD_HEADER: 2 },
      identity: { verified: 3 },
      breakers: [
        ...status().breakers,
        { ...(status().breakers[0] as AdminStatus['breakers'][number]), breaker: { level: 'service', service: 'stock' }, state: 'closed' },
      ],
      outboundAdaptive: [
        {
          service: 'payments',
          limit: 10,
          mode: 'track',
          minRttMs: 2,
          sampleRttMs: 3,
          eventLoopDelayMs: 0,
          probes: 1,
          busyProbes: 0,
          inFlight: 1,
          admitted: 5,
          refused: 0,
        },
      ],
    };
    const text = renderStatusMetrics(full);
    const families = assertFamiliesContiguous(text);
    assert.ok(families.includes('meshlet_breaker_open') && families.includes('meshlet_breaker_opened_total'));
    // Closed breakers are there too (0): the HELP says what the gauge is, not "not closed".
    assert.match(text, /^meshlet_breaker_open\{level="service",service="stock"\} 0$/m);
    assert.match(text, /^# HELP meshlet_breaker_open Breaker state, by breaker: 1 open, 0\.5 half-open, 0 closed\.$/m);
  });

  it('never sends fields beyond AdminStatus, so config values and the token stay in', async () => {
    const text = await (await get('/_meshlet/status', own)).text();
    assert.doesNotMatch(text, /s3cret|db\.password|config/);
    assert.equal(text.includes(TOKEN), false);
  });

  it('refuses a missing, wrong or differently sized token with 401 and does not ask the provider', async () => {
    const before = calls;
    const token = own.authorization.slice('Bearer '.length);
    for (const headers of [
      {},
      { authorization: `Bearer ${token}x` },
      { authorization: `Bearer ${token.slice(0, -1)}` },
      { authorization: `Basic ${Buffer.from(`u:${token}`).toString('base64')}` },
      { authorization: token },
    ]) {
      const res = await get('/_meshlet/status', headers);
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal((await res.text()).includes(TOKEN), false);
    }
    assert.equal(calls, before);
  });

  it('refuses the secret itself, the token of another address and one made with another secret, all alike', async () => {
    const before = calls;
    const bodies = new Set<string>();
    for (const token of [
      TOKEN,
      adminToken(TOKEN, '127.0.0.1:1'),
      adminToken(TOKEN, `localhost:${server.port}`),
      adminToken('another-admin-secret-0123', `127.0.0.1:${server.port}`),
    ]) {
      const res = await get('/_meshlet/status', { authorization: `Bearer ${token}` });
      assert.equal(res.status, 401, token);
      bodies.add(await res.text());
    }
    assert.equal(calls, before);
    // One answer for every wrong token (no oracle): how a token is made, nothing sent echoed.
    assert.equal(bodies.size, 1);
    const body = JSON.parse([...bodies][0] as string) as { error: string; code: string };
    assert.equal(body.code, 'MESHLET_ADMIN_UNAUTHORIZED');
    assert.ok(body.error.includes('adminToken(secret, "<address>:<port>") (HMAC-SHA256 in hex'), body.error);
    assert.match(body.error, /"Admin tokens"/);
    assert.doesNotMatch(body.error, new RegExp(`127\\.0\\.0\\.1|${server.port}`));
  });

  it('hides even which admin paths exist from a caller without the token', async () => {
    assert.equal((await get('/_meshlet/other')).status, 401);
    assert.equal((await get('/_meshlet/other', own)).status, 404);
  });

  it('passes requests outside its path to the app', async () => {
    const before = fallthrough;
    const res = await get('/orders/1');
    assert.equal(await res.text(), 'app');
    assert.equal((await get('/_meshletx/status')).status, 200);
    assert.equal(fallthrough, before + 2);
  });

  it('answers only GET and HEAD', async () => {
    const res = await fetch(`${base}/_meshlet/status`, { method: 'POST', headers: own });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET, HEAD');
  });

  it('answers 500 without details when the provider throws', async () => {
    const s = await serveAdmin({
      status: () => {
        throw new Error('secret detail');
      },
    });
    try {
      const res = await fetch(`http://127.0.0.1:${s.port}/_meshlet/status`, {
        headers: { authorization: s.auth.authorization.replace('Bearer', 'bearer') },
      });
      assert.equal(res.status, 500);
      assert.doesNotMatch(await res.text(), /secret detail/);
      assert.equal((await fetch(`http://127.0.0.1:${s.port}/elsewhere`)).status, 404);
    } finally {
      await s.close();
    }
  });

  it('answers 500, and keeps the process up, when the metrics source throws', async () => {
    const s = await serveAdmin({
      status,
      metrics: () => {
        throw new Error('renderer broke');
      },
    });
    try {
      const res = await fetch(`http://127.0.0.1:${s.port}/_meshlet/metrics`, { headers: s.auth });
      assert.equal(res.status, 500);
      assert.doesNotMatch(await res.text(), /renderer broke/);
    } finally {
      await s.close();
    }
  });

  it('stays off without a token of at least 16 characters', () => {
    const instance = () => registered(8080);
    assert.throws(() => createAdminHandler({ token: '', status, instance }), AdminTokenError);
    assert.throws(
      () => createAdminHandler({ token: 'short', status, instance }),
      (err: AdminTokenError) =>
        err.code === 'MESHLET_ADMIN_TOKEN' &&
        /^admin\.token: .* at least 16 characters/.test(err.message) &&
        !err.message.includes('short'),
    );
    assert.throws(() => createAdminHandler({ token: TOKEN, status, instance, path: 'no-slash' }), /must start with "\/"/);
    assert.throws(
      () => createAdminHandler({ token: TOKEN, status } as unknown as Parameters<typeof createAdminHandler>[0]),
      (err: Error & { code?: string }) => err.code === 'MESHLET_BAD_OPTION' && /^instance:/.test(err.message),
    );
  });

  it('answers 503 not registered to every caller until registered, and takes the admin port from a `:<port>` registration', async () => {
    let self: Instance | undefined;
    const admin = createAdminHandler({ token: TOKEN, status, instance: () => self });
    const s = await listen((req, res) => admin(req, res));
    try {
      const at = (authority: string) => ({ authorization: `Bearer ${adminToken(TOKEN, authority)}` });
      const url = `http://127.0.0.1:${s.port}/_meshlet/status`;
      // The right token, a wrong one and none: one answer, which says what to do (not a 401 that blames the token).
      const answers = new Set<string>();
      for (const headers of [at(`127.0.0.1:${s.port}`), at('127.0.0.1:1'), {}]) {
        const res = await fetch(url, { headers });
        assert.equal(res.status, 503);
        assert.equal(res.headers.get('www-authenticate'), null);
        answers.add(await res.text());
      }
      assert.equal(answers.size, 1);
      const body = JSON.parse([...answers][0] as string) as { error: string; code: string };
      assert.equal(body.code, 'MESHLET_ADMIN_NOT_REGISTERED');
      assert.match(body.error, /^not registered yet: .*call mesh\.register\(\) or mesh\.serve\(\)$/);
      // Registered with its app on port 1 and this admin server named by `:<port>`.
      self = registered(1, { 'meshlet-admin': `:${s.port}/_meshlet` });
      assert.equal((await fetch(url, { headers: at('127.0.0.1:1') })).status, 401);
      assert.equal((await fetch(url, { headers: at(`127.0.0.1:${s.port}`) })).status, 200);
    } finally {
      await s.close();
    }
  });

  it('publicStatus fills what a loose provider left out', () => {
    const loose = { service: 'a', rules: [], breakers: [{ breaker: { level: 'bogus', service: 'b' }, state: 'weird' }], degraded: {} };
    const out = publicStatus(loose as unknown as AdminStatus);
    assert.equal(out.breakers[0]?.state, 'closed');
    assert.equal(out.breakers[0]?.breaker.level, 'service');
    assert.deepEqual(out.registry, { mode: 'unknown', degraded: false });
  });
});
