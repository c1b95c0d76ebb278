// The API catalog endpoint (/meshlet/apis) is an API of the service: answered only once the
// request is admitted by the service's auth rules and rate limits. It was answered before
// them, so a default-deny service listed its internal APIs to every anonymous client, and
// no limit counted it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { meshKey } from '@meshlet/auth';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import express from 'express';
import Fastify from 'fastify';
import { createMesh, type Mesh } from '../src/index.js';

type Started = { port: number; close: () => Promise<void> };
const frameworks: readonly { name: string; start: (mesh: Mesh) => Promise<Started> }[] = [
  { name: 'node:http', start: (mesh) => listen(mesh.httpHandler((_req, res) => res.end('app'))) },
  {
    name: 'express',
    async start(mesh) {
      const app = express();
      app.use(mesh.express());
      app.use((_req, res) => {
        res.send('app');
      });
      const server = app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      return { port: (server.address() as AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
    },
  },
  {
    name: 'fastify',
    async start(mesh) {
      const app = Fastify();
      await app.register(mesh.fastify);
      app.all('/*', async () => 'app');
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
    },
  },
];

const routes = [{ method: 'POST', path: '/internal/refunds/{id}', summary: 'Refund an order (ops only)' }];

describe('the API catalog endpoint with auth on', () => {
  for (const framework of frameworks) {
    it(`is behind the service's auth rules and limits (${framework.name})`, async () => {
      const key = meshKey('k1', randomBytes(32).toString('base64'));
      const registry = new InMemoryRegistry();
      const rules = new InMemoryKvStore();
      await rules.put(
        'meshlet/rules/payment',
        JSON.stringify({
          service: 'payment',
          auth: {
            default: 'deny',
            rules: [{ name: 'catalog-readers', action: 'allow', services: ['ops'], apis: [{ method: 'GET', path: '/meshlet/apis' }] }],
          },
          ratelimit: { rules: [{ name: 'catalog', rate: 1, unit: 'minute', api: { method: 'GET', path: '/meshlet/apis' } }] },
        }),
      );
      const payment = createMesh({ service: 'payment', registry, rules, auth: { keys: [key], routes }, logger: new MemoryLogger() });
      const server = await framework.start(payment);
      const ops = createMesh({ service: 'ops', registry, rules, auth: { keys: [key] }, logger: new MemoryLogger() });
      const orders = createMesh({ service: 'orders', registry, rules, auth: { keys: [key] }, logger: new MemoryLogger() });
      try {
        await payment.rulesInForce('payment');
        // register() publishes the catalog, so it is loaded by then.
        await payment.register({ port: server.port });
        const anonymous = await fetch(`http://127.0.0.1:${server.port}/meshlet/apis`);
        assert.equal(anonymous.status, 403, await anonymous.text());
        const other = await orders.fetch('http://payment/meshlet/apis');
        assert.equal(other.status, 403, 'a verified caller no rule lets in');
        await other.arrayBuffer();
        const allowed = await ops.fetch('http://payment/meshlet/apis');
        assert.equal(allowed.status, 200);
        const body = (await allowed.json()) as { service: string; apis: { method: string; path: string }[] };
        assert.deepEqual(
          body.apis.map((a) => `${a.method} ${a.path}`),
          ['POST /internal/refunds/{id}'],
        );
        const limited = await ops.fetch('http://payment/meshlet/apis');
        assert.equal(limited.status, 429, 'the second within the minute');
        await limited.arrayBuffer();
      } finally {
        await server.close();
        await ops.close();
        await orders.close();
        await payment.close();
      }
    });
  }

  it('answers HEAD, a matching ETag and another method once admitted', async () => {
    const key = meshKey('k1', randomBytes(32).toString('base64'));
    const registry = new InMemoryRegistry();
    const payment = createMesh({
      service: 'payment',
      registry,
      rules: new InMemoryKvStore(),
      auth: { keys: [key], routes },
      logger: new MemoryLogger(),
    });
    const server = await listen(payment.httpHandler((_req, res) => res.end('app')));
    try {
      await payment.register({ port: server.port });
      const url = `http://127.0.0.1:${server.port}/meshlet/apis`;
      const get = await fetch(url);
      const text = await get.text();
      const etag = get.headers.get('etag') ?? '';
      assert.equal(get.status, 200);
      const head = await fetch(url, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(text)));
      assert.equal(await head.text(), '');
      const again = await fetch(url, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304);
      const post = await fetch(url, { method: 'POST' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('allow'), 'GET, HEAD');
      assert.equal(await (await fetch(`http://127.0.0.1:${server.port}/other`)).text(), 'app');
    } finally {
      await server.close();
      await payment.close();
    }
  });

  it('under an Express mount, is at the whole path the rules compare: a rule on that path covers it', async () => {
    const logger = new MemoryLogger();
    const rules = new InMemoryKvStore();
    await rules.put(
      'meshlet/rules/payment',
      JSON.stringify({
        service: 'payment',
        auth: { rules: [{ name: 'no-catalog', action: 'deny', apis: [{ path: '/api/meshlet/apis' }] }] },
      }),
    );
    const mounted = async (mesh: Mesh) => {
      const app = express();
      app.use('/api', mesh.express());
      app.use((_req, res) => {
        res.send('app');
      });
      const server = app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      return { port: (server.address() as AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
    };
    const registry = new InMemoryRegistry();
    // The default path, /meshlet/apis: Express hands the mounted middleware /meshlet/apis for
    // /api/meshlet/apis, which the rules see whole; the catalog is not there.
    const byDefault = createMesh({ service: 'payment', registry, rules: new InMemoryKvStore(), catalog: { routes }, logger });
    const atMount = createMesh({ service: 'payment', registry, rules, catalog: { routes, path: '/api/meshlet/apis' }, logger });
    const unruled = createMesh({
      service: 'payment',
      registry,
      rules: new InMemoryKvStore(),
      catalog: { routes, path: '/api/meshlet/apis' },
      logger,
    });
    const servers = [await mounted(byDefault), await mounted(atMount), await mounted(unruled)];
    try {
      await atMount.rulesInForce('payment');
      for (const [i, m] of [byDefault, atMount, unruled].entries()) await m.register({ port: (servers[i] as Started).port });
      const get = async (server: Started, path: string) => {
        const r = await fetch(`http://127.0.0.1:${server.port}${path}`);
        return `${r.status} ${(await r.text()).slice(0, 10)}`;
      };
      const [d, m, u] = servers as [Started, Started, Started];
      assert.equal(await get(d, '/api/meshlet/apis'), '200 app', 'not the catalog: the rules saw /api/meshlet/apis');
      assert.equal((await get(m, '/api/meshlet/apis')).slice(0, 3), '403');
      assert.equal((await get(m, '/api/meshlet/apis/')).slice(0, 3), '403');
      assert.equal(await get(u, '/api/meshlet/apis'), '200 {"service"', 'no rule: the catalog');
      assert.equal(await get(u, '/api/meshlet//apis'), '200 {"service"', 'its canonical path: the one the rules compare');
    } finally {
      for (const s of servers) await s.close();
      for (const m of [byDefault, atMount, unruled]) await m.close();
    }
  });
});
