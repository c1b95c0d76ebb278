// Server spans for every request the pipeline admits or refuses, and what client spans and
// metrics record, through createMesh on real servers on 127.0.0.1.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { CATALOG_META_KEY } from '@meshlet/auth';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import Fastify from 'fastify';
import { createMesh, type Mesh } from '../src/index.js';

const SERVER = 1;
const CLIENT = 2;
const registry = new InMemoryRegistry();
const rules = new InMemoryKvStore();
const exporter = new InMemorySpanExporter();
const tracing = { exporters: [exporter], batch: { delayMs: 10 } };
let shop: Mesh;
let server: Awaited<ReturnType<typeof listen>>;

before(async () => {
  shop = createMesh({ service: 'shop', registry, rules, tracing, logger: new MemoryLogger() });
  server = await listen(shop.httpHandler((_req, res) => res.end('ok')));
  await shop.register({ port: server.port });
  await rules.put(
    'meshlet/rules/shop',
    JSON.stringify({
      service: 'shop',
      ratelimit: {
        rules: [
          { name: 'one-cart', api: { method: 'GET', path: '/cart' }, rate: 1, unit: 'minute', burst: 1 },
          { name: 'per-user-hits', api: { method: 'GET', path: '/hits' }, by: ['user-id'], rate: 1, unit: 'minute', burst: 1 },
        ],
      },
      auth: { rules: [{ name: 'no-admin', action: 'deny', apis: [{ method: '*', path: '/admin' }] }] },
    }),
  );
});
after(async () => {
  await server.close();
  await shop.close();
});

async function spans(mesh: Mesh, from = exporter): Promise<ReadableSpan[]> {
  await mesh.tracing?.forceFlush();
  return from.getFinishedSpans();
}

/** Tracing of its own for a mesh a test closes: closing shuts its exporters down. */
function ownTracing() {
  const own = new InMemorySpanExporter();
  return { exporter: own, tracing: { exporters: [own], batch: { delayMs: 10 } } };
}

it('a refused request has its server span: error.type rate_limited or auth_denied, status unset for a 4xx', async () => {
  exporter.reset();
  const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;
  assert.equal((await globalThis.fetch(url('/cart'))).status, 200);
  assert.equal((await globalThis.fetch(url('/cart'))).status, 429);
  assert.equal((await globalThis.fetch(url('/admin'))).status, 403);
  const got = (await spans(shop)).filter((s) => s.kind === SERVER);
  const summary = got.map((s) => [
    s.attributes['url.path'],
    s.attributes['http.response.status_code'],
    s.attributes['error.type'],
    s.status.code,
  ]);
  assert.deepEqual(summary, [
    ['/cart', 200, undefined, 0],
    ['/cart', 429, 'rate_limited', 0],
    ['/admin', 403, 'auth_denied', 0],
  ]);
  assert.equal(got[1]?.attributes['io.meshlet.limiter'], 'one-cart:rejected');
  const errors = shop.tracing?.serverMetrics?.snapshot().flatMap((s) => [...Object.entries(s.errors)].map(([t, n]) => `${t}=${n}`));
  assert.deepEqual(errors?.sort(), ['auth_denied=1', 'rate_limited=1']);
});

it("a refusal by a rule's shared bucket (requests without its `by` tag) says so on the span and in the 429 body", async () => {
  exporter.reset();
  const url = `http://127.0.0.1:${server.port}/hits`;
  assert.equal((await globalThis.fetch(url)).status, 200);
  const refused = await globalThis.fetch(url);
  assert.equal(refused.status, 429);
  assert.equal(((await refused.json()) as { bucket?: string }).bucket, 'shared');
  const got = (await spans(shop)).filter((s) => s.kind === SERVER);
  assert.deepEqual(
    got.map((s) => [s.attributes['io.meshlet.limiter'], s.attributes['io.meshlet.limiter.bucket']]),
    [
      [undefined, undefined],
      ['per-user-hits:rejected', 'shared'],
    ],
  );
});

it('a Fastify route names the server span before the handler runs', async () => {
  const own = ownTracing();
  const api = createMesh({ service: 'api', registry, rules, tracing: own.tracing, logger: new MemoryLogger() });
  const app = Fastify();
  await app.register(api.fastify);
  app.get('/users/:id', async () => 'user');
  await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const port = (app.server.address() as { port: number }).port;
    assert.equal(await (await globalThis.fetch(`http://127.0.0.1:${port}/users/42`)).text(), 'user');
    const span = (await spans(api, own.exporter)).find((s) => s.kind === SERVER);
    assert.equal(span?.name, 'GET /users/:id');
    assert.equal(span?.attributes['http.route'], '/users/:id');
  } finally {
    await app.close();
    await api.close();
  }
});

it('client metrics key a path with ids by its shape, and a client span carries the service breaker state', async () => {
  await rules.put(
    'meshlet/rules/shop',
    JSON.stringify({ service: 'shop', breaker: { rules: [{ level: 'service', consecutiveFailures: 5 }] } }),
  );
  const own = ownTracing();
  const caller = createMesh({ service: 'caller', registry, rules, tracing: own.tracing, logger: new MemoryLogger() });
  try {
    for (const id of ['1', '2', '3f2504e0-4f89-11d3-9a0c-0305e82c3301'])
      assert.equal((await caller.fetch(`http://shop/items/${id}`)).status, 200);
    const apis = caller.tracing?.clientMetrics?.snapshot().map((s) => [s.api, s.requests]);
    assert.deepEqual(apis, [['GET /items/{id}', 3]]);
    const client = (await spans(caller, own.exporter)).find((s) => s.kind === CLIENT);
    assert.equal(client?.attributes['io.meshlet.breaker'], 'closed');
  } finally {
    await caller.close();
  }
});

it('the API catalog without auth: served, published with the registration, and naming node:http server spans', async () => {
  const own = ownTracing();
  const users = createMesh({
    service: 'users',
    registry,
    rules,
    tracing: own.tracing,
    catalog: { routes: [{ method: 'GET', path: '/users/{id}', summary: 'One user' }] },
    logger: new MemoryLogger(),
  });
  const usersServer = await listen(users.httpHandler((_req, res) => res.end('user')));
  try {
    const registered = await users.register({ port: usersServer.port });
    assert.match(registered.metadata[CATALOG_META_KEY] ?? '', /^[0-9a-f]{16}$/);
    const listed = (await (await globalThis.fetch(`http://127.0.0.1:${usersServer.port}/meshlet/apis`)).json()) as {
      apis: { method: string; path: string }[];
    };
    assert.deepEqual(
      listed.apis.map((a) => `${a.method} ${a.path}`),
      ['GET /users/{id}'],
    );
    assert.equal(await (await globalThis.fetch(`http://127.0.0.1:${usersServer.port}/users/7`)).text(), 'user');
    const span = (await spans(users, own.exporter)).find((s) => s.kind === SERVER && s.attributes['url.path'] === '/users/7');
    assert.equal(span?.name, 'GET /users/{id}');
  } finally {
    await usersServer.close();
    await users.close();
  }
});

it('a request whose caller gave up before the handler answered: server span error client_closed, no status code, counted as a server error', async () => {
  const own = ownTracing();
  const hung = createMesh({ service: 'hung', registry, rules, tracing: own.tracing, logger: new MemoryLogger() });
  let closed!: Promise<void>;
  let arrived!: () => void;
  const arrival = new Promise<void>((r) => {
    arrived = r;
  });
  // Never answers; the pipeline's close listener runs before this one (it was added first).
  const srv = await listen(
    hung.httpHandler((_req, res) => {
      closed = new Promise((r) => res.once('close', () => r()));
      arrived();
    }),
  );
  try {
    const gaveUp = new AbortController();
    const call = globalThis.fetch(`http://127.0.0.1:${srv.port}/orders/1`, { signal: gaveUp.signal }).catch((e: Error) => e.name);
    await arrival;
    gaveUp.abort();
    assert.equal(await call, 'AbortError');
    await closed;
    const span = (await spans(hung, own.exporter)).find((s) => s.kind === SERVER);
    assert.equal(span?.attributes['error.type'], 'client_closed');
    assert.equal(span?.attributes['http.response.status_code'], undefined);
    assert.equal(span?.status.code, 2);
    const errors = hung.tracing?.serverMetrics?.snapshot().map((s) => s.errors);
    assert.deepEqual(errors, [{ client_closed: 1 }]);
  } finally {
    await srv.close();
    await hung.close();
  }
});
