// mesh.request: undici's request shape through the same governance pipeline as mesh.fetch,
// on real node:http servers on 127.0.0.1.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CALLER_HEADER, createContext, InMemoryKvStore, InMemoryRegistry, MemoryLogger, runWithContext, TAG_HEADER } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { createMesh, type Mesh } from '../src/index.js';

type Echo = { id: string; path: string; method: string; headers: Record<string, string | string[] | undefined>; body: string };

/** An instance that echoes the request as JSON, or answers 503 while `failing`. */
async function instance(id: string) {
  const state = { failing: false, hits: 0 };
  const server = await listen((req, res) => {
    state.hits++;
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      res.statusCode = state.failing ? 503 : 200;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id, path: req.url, method: req.method, headers: req.headers, body }));
    });
  });
  return { id, server, state };
}

async function setup(tracing?: { exporters: InMemorySpanExporter[]; batch: { delayMs: number }; metrics: false }) {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const ups = [await instance('user-0'), await instance('user-1')];
  for (const u of ups)
    await registry.register({
      id: u.id,
      service: 'user-service',
      address: '127.0.0.1',
      port: u.server.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
  const caller = createMesh({
    service: 'gateway',
    version: '2.0.0',
    namespace: 'prod',
    registry,
    rules,
    logger: new MemoryLogger(),
    // Round robin named: calls in turn, so two calls reach the failing instance once (the span test needs that attempt).
    route: { loadBalancer: { type: 'roundRobin' } },
    ...(tracing ? { tracing } : {}),
  });
  await caller.register({ port: 1 });
  const retryOn503 = () =>
    caller.rules.apply(
      JSON.stringify({
        service: 'user-service',
        breaker: { rules: [{ level: 'service' }], retry: { maxRetries: 1, backoff: { baseMs: 1, maxMs: 1 } } },
      }),
      { author: 'test' },
    );
  return {
    ups,
    caller,
    retryOn503,
    async close() {
      await caller.close();
      for (const u of ups) await u.server.close();
    },
  };
}

describe('governed request (undici)', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let caller: Mesh;
  before(async () => {
    env = await setup();
    caller = env.caller;
  });
  after(() => env.close());

  it('resolves a service name to its instances, round robin, with undici’s ResponseData', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await caller.request('http://user-service/api/users/42?full=1');
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-type'], 'application/json');
      const echo = (await res.body.json()) as Echo;
      assert.equal(echo.path, '/api/users/42?full=1');
      ids.push(echo.id);
    }
    assert.deepEqual(ids.sort(), ['user-0', 'user-0', 'user-1', 'user-1']);
  });

  it('carries the request’s tags, its identity, and the caller’s method, body and headers', async () => {
    const ctx = createContext({ tags: [['user-tier', 'vip']] });
    const res = await runWithContext(ctx, () =>
      caller.request('http://user-service/orders', { method: 'POST', body: 'hello', headers: { 'X-Custom': '1' } }),
    );
    const echo = (await res.body.json()) as Echo;
    assert.deepEqual([echo.method, echo.body, echo.headers['x-custom']], ['POST', 'hello', '1']);
    assert.equal(echo.headers[TAG_HEADER], 'user-tier=vip');
    assert.equal(echo.headers[CALLER_HEADER], 'service=gateway,version=2.0.0,namespace=prod,instance=gateway-1');
    // Headers as a flat array, as undici also takes them; a tag header the app set is kept.
    const flat = await runWithContext(ctx, () => caller.request('http://user-service/x', { headers: ['x-a', '2', TAG_HEADER, 'mine=1'] }));
    const echo2 = (await flat.body.json()) as Echo;
    assert.deepEqual([echo2.headers['x-a'], echo2.headers[TAG_HEADER]], ['2', 'mine=1']);
  });

  it('retries a 503 on another instance under a breaker rule with retry', async () => {
    await env.retryOn503();
    const bad = env.ups[0];
    assert.ok(bad);
    bad.state.failing = true;
    bad.state.hits = 0;
    try {
      for (let i = 0; i < 4; i++) {
        const res = await caller.request('http://user-service/stock');
        assert.equal(res.statusCode, 200);
        assert.equal(((await res.body.json()) as Echo).id, 'user-1');
      }
      assert.ok(bad.state.hits >= 1, 'round robin sent some first attempts to the failing instance');
    } finally {
      bad.state.failing = false;
      await caller.rules.rollback('user-service', { author: 'test' });
    }
  });

  it('answers an injected fault as ResponseData without sending', async () => {
    await caller.rules.apply(
      JSON.stringify({ service: 'user-service', fault: { rules: [{ name: 'teapot', percentage: 100, abort: 418 }] } }),
      { author: 'test' },
    );
    for (const u of env.ups) u.state.hits = 0;
    try {
      const res = await caller.request('http://user-service/faulty');
      assert.equal(res.statusCode, 418);
      assert.equal(res.headers['x-meshlet-fault'], 'teapot');
      assert.equal(await res.body.text(), '');
      assert.equal(res.body.bodyUsed, true);
      assert.deepEqual(
        env.ups.map((u) => u.state.hits),
        [0, 0],
      );
    } finally {
      await caller.rules.rollback('user-service', { author: 'test' });
    }
  });

  it('passes a URL that is not a service to undici untouched', async () => {
    const port = env.ups[1]?.server.port;
    const res = await caller.request(`http://127.0.0.1:${port}/raw`, { headers: { 'x-b': '3' } });
    const echo = (await res.body.json()) as Echo;
    assert.deepEqual([echo.path, echo.headers['x-b'], echo.headers[CALLER_HEADER]], ['/raw', '3', undefined]);
  });
});

describe('governed request with tracing', () => {
  it('makes one client span per attempt', async () => {
    const exporter = new InMemorySpanExporter();
    const env = await setup({ exporters: [exporter], batch: { delayMs: 10 }, metrics: false });
    try {
      await env.retryOn503();
      const [bad, good] = env.ups;
      assert.ok(bad && good);
      bad.state.failing = true;
      for (let i = 0; i < 2; i++) {
        const res = await env.caller.request('http://user-service/traced');
        assert.equal(res.statusCode, 200);
        await res.body.dump();
      }
      await env.caller.tracing?.forceFlush();
      const spans = exporter.getFinishedSpans().filter((s) => s.kind === 2);
      assert.equal(spans.length, bad.state.hits + good.state.hits, 'a span for every attempt sent');
      const failed = spans.filter((s) => s.attributes['http.response.status_code'] === 503);
      assert.equal(failed.length, bad.state.hits);
      assert.ok(failed.length >= 1);
      assert.ok(spans.some((s) => s.attributes['http.request.resend_count'] === 1));
      assert.ok(spans.every((s) => s.attributes['service.peer.name'] === 'user-service'));
    } finally {
      await env.close();
    }
  });
});
