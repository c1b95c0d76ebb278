// Sections in shadow mode (ratelimit, auth, route, breaker, fault) through createMesh on real servers on 127.0.0.1:
// every call served as if the section were absent; what it would have done is counted
// (admin status, metrics, conditions), logged once per interval, and put on the span.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, type Mesh } from '../src/index.js';
import { assertFamiliesContiguous } from './prometheus-text.js';

const TOKEN = 'shadow-test-admin-token-0123';
const exporter = new InMemorySpanExporter();
const logger = new MemoryLogger();
const registry = new InMemoryRegistry();
const store = new InMemoryKvStore();
let shop: Mesh;
let server: Awaited<ReturnType<typeof listen>>;
const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;
const limit = (mode?: string) =>
  JSON.stringify({
    service: 'shop',
    ratelimit: {
      ...(mode ? { mode } : {}),
      rules: [{ name: 'one-cart', api: { method: 'GET', path: '/cart' }, rate: 1, unit: 'minute', burst: 1 }],
    },
  });

before(async () => {
  shop = createMesh({
    service: 'shop',
    registry,
    rules: store,
    tracing: { exporters: [exporter], batch: { delayMs: 10 } },
    admin: { token: TOKEN },
    logger,
  });
  server = await listen(shop.httpHandler((_req, res) => res.end('ok')));
  await shop.register({ port: server.port });
});
after(async () => {
  await server.close();
  await shop.close();
});

it('admits every request, and counts, logs and traces what the shadow rule would have refused', async () => {
  await shop.rules.apply(limit('shadow'), { author: 'test' });
  await shop.rulesInForce('shop');
  const statuses = [];
  for (let i = 0; i < 3; i++) statuses.push((await globalThis.fetch(url('/cart'))).status);
  assert.deepEqual(statuses, [200, 200, 200]);

  await shop.tracing?.forceFlush();
  const shadow = exporter
    .getFinishedSpans()
    .filter((s) => s.attributes['url.path'] === '/cart')
    .map((s) => s.attributes['io.meshlet.shadow'] ?? '-');
  assert.deepEqual(shadow, ['-', 'ratelimit:one-cart:would-refuse', 'ratelimit:one-cart:would-refuse']);

  const status = (await (await globalThis.fetch(url('/_meshlet/status'), { headers: adminAuthorization(TOKEN, server.port) })).json()) as {
    limiter: { allowed: number; refused: number; shadowRefused: number };
  };
  assert.deepEqual([status.limiter.refused, status.limiter.shadowRefused], [0, 2]);
  const metrics = await (await globalThis.fetch(url('/_meshlet/metrics'), { headers: adminAuthorization(TOKEN, server.port) })).text();
  assert.match(metrics, /^meshlet_ratelimit_shadow_refused_total 2$/m);
  // The whole text, the status's families and the tracing's call metrics: each family together.
  assert.ok(assertFamiliesContiguous(metrics).includes('meshlet_server_request_duration_seconds'));
  // Per rule too: the rule that would have refused, admitted all three.
  assert.match(metrics, /^meshlet_ratelimit_rule_shadow_refused_total\{rule="one-cart"\} 2$/m);
  assert.match(metrics, /^meshlet_ratelimit_rule_allowed_total\{rule="one-cart"\} 3$/m);
  assert.match(metrics, /^meshlet_ratelimit_rule_refused_total\{rule="one-cart"\} 0$/m);
  // A per-request condition: one line per interval, whatever the traffic.
  assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_RATELIMIT_SHADOW').length, 1);
});

it('auth in shadow mode allows the call it would deny, and says so on the span and in the conditions', async () => {
  exporter.reset();
  await shop.rules.apply(
    JSON.stringify({
      service: 'shop',
      auth: { mode: 'shadow', rules: [{ name: 'no-admin', action: 'deny', apis: [{ method: '*', path: '/admin' }] }] },
    }),
    { author: 'test' },
  );
  await shop.rulesInForce('shop');
  assert.equal((await globalThis.fetch(url('/admin'))).status, 200);
  assert.equal((await globalThis.fetch(url('/admin'))).status, 200);
  await shop.tracing?.forceFlush();
  const span = exporter.getFinishedSpans().find((s) => s.attributes['url.path'] === '/admin');
  assert.equal(span?.attributes['io.meshlet.shadow'], 'auth:no-admin:would-deny');
  const status = (await (await globalThis.fetch(url('/_meshlet/status'), { headers: adminAuthorization(TOKEN, server.port) })).json()) as {
    conditions: Record<string, number>;
  };
  assert.equal(status.conditions.MESHLET_AUTH_SHADOW, 2);
  assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_AUTH_SHADOW').length, 1);
});

it('enforces the same rule once the section leaves shadow mode', async () => {
  await shop.rules.apply(limit(), { author: 'test' });
  await shop.rulesInForce('shop');
  // A fresh bucket (the rule left the document in between): its one token, then 429.
  assert.deepEqual([(await globalThis.fetch(url('/cart'))).status, (await globalThis.fetch(url('/cart'))).status], [200, 429]);
  await shop.rules.apply(
    JSON.stringify({ service: 'shop', auth: { rules: [{ name: 'no-admin', action: 'deny', apis: [{ method: '*', path: '/admin' }] }] } }),
    {
      author: 'test',
    },
  );
  exporter.reset();
  const inForce = await shop.rulesInForce('shop');
  assert.equal((await globalThis.fetch(url('/admin'))).status, 403);
  assert.equal((await globalThis.fetch(url('/other'))).status, 200);
  // The SERVER spans say which auth rule decided, under which revision of the rule document.
  await shop.tracing?.forceFlush();
  const spans = exporter
    .getFinishedSpans()
    .filter((x) => x.attributes['url.path'] !== '/cart')
    .map((x) => [x.attributes['url.path'], x.attributes['io.meshlet.auth'], x.attributes['io.meshlet.rules.revision']]);
  assert.deepEqual(spans, [
    ['/admin', 'no-admin:denied', inForce.revision],
    ['/other', undefined, inForce.revision],
  ]);
});

it('route rules in shadow mode: the call routed without them, the rule they would apply on the client span', async () => {
  const own = new InMemorySpanExporter();
  const frontLogger = new MemoryLogger();
  const front = createMesh({
    service: 'front',
    registry,
    rules: store,
    tracing: { exporters: [own], batch: { delayMs: 10 } },
    logger: frontLogger,
  });
  try {
    await shop.rules.apply(
      JSON.stringify({
        service: 'shop',
        route: { mode: 'shadow', rules: [{ name: 'all-to-v9', destinations: [{ group: { version: '9' }, weight: 100 }] }] },
      }),
      { author: 'test' },
    );
    await front.rulesInForce('shop');
    for (let i = 0; i < 3; i++) assert.equal((await front.fetch('http://shop/x')).status, 200);
    await front.tracing?.forceFlush();
    const client = own.getFinishedSpans().filter((x) => x.kind === 2);
    assert.deepEqual(
      client.map((x) => [x.attributes['io.meshlet.shadow'], x.attributes['io.meshlet.route']]),
      Array.from({ length: 3 }, () => ['route:all-to-v9:would-route', undefined]),
    );
    assert.equal(frontLogger.entries.filter((e) => e.fields?.code === 'MESHLET_ROUTE_SHADOW').length, 1);
  } finally {
    await front.close();
  }
});

it('breaker and fault sections in shadow mode: every call reaches the server; what they would do is on the client span', async () => {
  const own = new InMemorySpanExporter();
  const frontLogger = new MemoryLogger();
  let hits = 0;
  let status = 503;
  const pay = createMesh({ service: 'pay', registry, rules: store, logger: new MemoryLogger() });
  const payServer = await listen(
    pay.httpHandler((_req, res) => {
      hits++;
      res.statusCode = status;
      res.end('pay');
    }),
  );
  await pay.register({ port: payServer.port });
  const front = createMesh({
    service: 'front',
    registry,
    rules: store,
    tracing: { exporters: [own], batch: { delayMs: 10 } },
    logger: frontLogger,
    admin: { token: TOKEN },
  });
  // The front's admin endpoint, to read what the breaker section would have done.
  const frontServer = await listen(front.httpHandler((_req, res) => res.end('front')));
  await front.register({ port: frontServer.port });
  const frontAdmin = async (what: 'status' | 'metrics') =>
    globalThis.fetch(`http://127.0.0.1:${frontServer.port}/_meshlet/${what}`, { headers: adminAuthorization(TOKEN, frontServer.port) });
  const shadowOfClientSpans = async () => {
    await front.tracing?.forceFlush();
    const spans = own.getFinishedSpans().filter((x) => x.kind === 2);
    own.reset();
    return spans.map((x) => x.attributes['io.meshlet.shadow'] ?? '-');
  };
  try {
    // A service breaker that opens on the first failure: enforced, the 2nd and 3rd calls would be rejected.
    await pay.rules.apply(
      JSON.stringify({
        service: 'pay',
        breaker: { mode: 'shadow', rules: [{ level: 'service', consecutiveFailures: 1, sleepWindowMs: 60_000 }] },
      }),
      { author: 'test' },
    );
    await front.rulesInForce('pay');
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await front.fetch('http://pay/charge')).status);
    assert.deepEqual(statuses, [503, 503, 503]);
    assert.equal(hits, 3);
    assert.deepEqual(await shadowOfClientSpans(), ['-', 'breaker:service:would-reject', 'breaker:service:would-reject']);
    assert.equal(frontLogger.entries.filter((e) => e.fields?.code === 'MESHLET_BREAKER_SHADOW').length, 1);
    // Counted apart from what happened: the breaker that would have opened and the calls it
    // would have rejected, while the enforced defaults opened and rejected nothing.
    const front1 = (await (await frontAdmin('status')).json()) as {
      breakerShadow: { service: string; wouldReject: number; wouldOpen: number; wouldExclude: number; wouldTimeOut: number }[];
      breakers: { breaker: { service: string }; rejected: number; opened: number }[];
    };
    assert.deepEqual(front1.breakerShadow, [{ service: 'pay', wouldReject: 2, wouldOpen: 1, wouldExclude: 0, wouldTimeOut: 0 }]);
    assert.equal(
      front1.breakers.filter((b) => b.breaker.service === 'pay').reduce((n, b) => n + b.rejected + b.opened, 0),
      0,
    );
    const frontMetrics = await (await frontAdmin('metrics')).text();
    assert.match(frontMetrics, /^meshlet_breaker_shadow_rejected_total\{service="pay"\} 2$/m);
    assert.match(frontMetrics, /^meshlet_breaker_shadow_opened_total\{service="pay"\} 1$/m);
    assert.match(frontMetrics, /^meshlet_breaker_shadow_timed_out_total\{service="pay"\} 0$/m);

    // A fault that would abort every call: none is aborted.
    status = 200;
    await pay.rules.apply(
      JSON.stringify({ service: 'pay', fault: { mode: 'shadow', rules: [{ name: 'break-all', percentage: 100, abort: 500 }] } }),
      { author: 'test' },
    );
    await front.rulesInForce('pay');
    const faulted = [];
    for (let i = 0; i < 2; i++) {
      const res = await front.fetch('http://pay/charge');
      faulted.push([res.status, res.headers.get('x-meshlet-fault'), await res.text()]);
    }
    assert.deepEqual(faulted, [
      [200, null, 'pay'],
      [200, null, 'pay'],
    ]);
    assert.equal(hits, 5);
    assert.deepEqual(await shadowOfClientSpans(), ['fault:break-all:would-abort-500', 'fault:break-all:would-abort-500']);
    assert.equal(frontLogger.entries.filter((e) => e.fields?.code === 'MESHLET_FAULT_SHADOW').length, 1);

    // Both in one document: each attempt's span lists every note, space-separated.
    status = 503;
    await pay.rules.apply(
      JSON.stringify({
        service: 'pay',
        breaker: { mode: 'shadow', rules: [{ level: 'service', consecutiveFailures: 1, sleepWindowMs: 60_000 }] },
        fault: { mode: 'shadow', rules: [{ name: 'break-all', percentage: 100, abort: 500 }] },
      }),
      { author: 'test' },
    );
    await front.rulesInForce('pay');
    for (let i = 0; i < 2; i++) assert.equal((await front.fetch('http://pay/charge')).status, 503);
    assert.equal(hits, 7);
    assert.deepEqual(await shadowOfClientSpans(), [
      'fault:break-all:would-abort-500',
      'breaker:service:would-reject fault:break-all:would-abort-500',
    ]);
  } finally {
    await frontServer.close();
    await front.close();
    await payServer.close();
    await pay.close();
  }
});
