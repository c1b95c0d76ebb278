// Koa on the shared inbound pipeline, with real Koa on 127.0.0.1: context and tags through
// `await next()`, the health path, 429 from a rule and from @RateLimit, other errors to Koa.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Router from '@koa/router';
import { getTag, InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import Koa from 'koa';
import { createMesh, type Mesh, RateLimit } from '../src/index.js';

class Quotes {
  @RateLimit({ name: 'quotes-method', rate: 1, unit: 'minute', burst: 1 })
  async quote(): Promise<string> {
    return 'to be';
  }
}

describe('Koa middleware', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  let mesh: Mesh;
  let backend: TestServer;
  let server: ReturnType<Koa['listen']>;
  let port = 0;
  const quotes = new Quotes();

  before(async () => {
    backend = await listen((req, res) => res.end(String(req.headers['x-meshlet-tags'] ?? '')));
    await registry.register({
      id: 'back-1',
      service: 'back',
      address: '127.0.0.1',
      port: backend.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
    mesh = createMesh({ service: 'koa-app', registry, rules, logger: new MemoryLogger() });
    const app = new Koa();
    app.use(mesh.koa());
    // A later middleware that awaits: the context must survive it.
    app.use(async (ctx, next) => {
      await new Promise((r) => setImmediate(r));
      await next();
      ctx.set('x-after', 'yes');
    });
    app.use(async (ctx) => {
      if (ctx.path === '/tag') ctx.body = `tier=${getTag('user-tier') ?? ''}`;
      else if (ctx.path === '/call') ctx.body = await (await mesh.fetch('http://back/x')).text();
      else if (ctx.path === '/quote') ctx.body = await quotes.quote();
      else if (ctx.path === '/boom') throw new Error('boom');
      else ctx.body = 'ok';
    });
    app.silent = true;
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await backend.close();
    await mesh.close();
  });

  const get = (path: string, headers: Record<string, string> = {}) => globalThis.fetch(`http://127.0.0.1:${port}${path}`, { headers });

  it('runs the app in the request context: tags from the header, carried on a governed call', async () => {
    const res = await get('/tag', { 'x-meshlet-tags': 'user-tier=vip' });
    assert.equal(await res.text(), 'tier=vip');
    assert.equal(res.headers.get('x-after'), 'yes', 'Koa still writes the response');
    const call = await get('/call', { 'x-meshlet-tags': 'user-tier=gold' });
    assert.match(await call.text(), /user-tier=gold/);
  });

  it('answers the health path itself', async () => {
    const res = await get('/health');
    assert.deepEqual([res.status, await res.json()], [200, { status: 'UP' }]);
  });

  it('answers 429 from a rate-limit rule before the app', async () => {
    await mesh.rules.apply(
      JSON.stringify({
        service: 'koa-app',
        ratelimit: { rules: [{ name: 'limited', api: { method: 'GET', path: '/limited' }, rate: 1, unit: 'minute', burst: 1 }] },
      }),
      { author: 'test' },
    );
    await mesh.rulesInForce('koa-app');
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const res = await get('/limited');
      statuses.push(res.status);
      await res.text();
    }
    assert.deepEqual(statuses, [200, 429, 429]);
  });

  it('turns a @RateLimit a handler threw into 429; other errors stay Koa errors', async () => {
    const first = await get('/quote');
    assert.equal(await first.text(), 'to be');
    const second = await get('/quote');
    assert.equal(second.status, 429);
    assert.equal(((await second.json()) as { rule: string }).rule, 'quotes-method');
    const boom = await get('/boom');
    assert.equal(boom.status, 500);
    await boom.text();
  });

  it("names the server span by @koa/router's route template", async () => {
    const exporter = new InMemorySpanExporter();
    const traced = createMesh({
      service: 'koa-routed',
      registry,
      rules,
      logger: new MemoryLogger(),
      tracing: { exporters: [exporter], batch: { delayMs: 10 }, metrics: false },
    });
    const app = new Koa();
    const router = new Router();
    router.get('/items/:id', (ctx) => {
      ctx.body = `item ${ctx.params.id}`;
    });
    app.use(traced.koa());
    app.use(router.routes());
    const routed = app.listen(0, '127.0.0.1');
    await new Promise((r) => routed.once('listening', r));
    const res = await globalThis.fetch(`http://127.0.0.1:${(routed.address() as AddressInfo).port}/items/42`);
    assert.equal(await res.text(), 'item 42');
    routed.closeAllConnections();
    await new Promise((r) => routed.close(r));
    await traced.tracing?.forceFlush();
    const server = exporter.getFinishedSpans().find((s) => s.kind === 1);
    await traced.close();
    assert.equal(server?.attributes['http.route'], '/items/:id');
  });
});
