// Real axios 1.x through the mesh's adapter, against real servers on 127.0.0.1: the same
// governance as mesh.fetch (routing, retries, breakers, timeouts, tags, identity, spans)
// and axios's own behaviour (interceptors, validateStatus, signal, streams, AxiosError).
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { text } from 'node:stream/consumers';
import { after, before, beforeEach, describe, it } from 'node:test';
import { CircuitOpenError, TimeoutError } from '@meshlet/breaker';
import { createContext, InMemoryKvStore, InMemoryRegistry, MemoryLogger, runWithContext, setTag } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import axios, { AxiosError, type AxiosInstance } from 'axios';
import { axiosAdapter, governedAxios } from '../src/axios.js';
import { createMesh, type Mesh, meshKey } from '../src/index.js';

interface Upstream {
  readonly id: string;
  readonly server: TestServer;
  /** 'ok' answers its id as JSON; 'fail' 503; 'hang' never answers. */
  mode: 'ok' | 'fail' | 'hang';
  hits: number;
  lastHeaders: IncomingHttpHeaders | undefined;
}

async function upstream(id: string): Promise<Upstream> {
  const u = { id, mode: 'ok', hits: 0 } as { -readonly [K in keyof Upstream]: Upstream[K] };
  u.server = await listen((req, res) => {
    u.hits++;
    u.lastHeaders = req.headers;
    const path = req.url ?? '/';
    if (u.mode === 'hang') return;
    if (u.mode === 'fail') {
      res.statusCode = 503;
      res.end('down');
    } else if (path.startsWith('/missing')) {
      res.statusCode = 404;
      res.end(JSON.stringify({ error: 'not here' }));
    } else if (path.startsWith('/loop')) {
      res.writeHead(302, { location: '/loop' }).end();
    } else if (path.startsWith('/redirect')) {
      res.writeHead(302, { location: new URL(path, 'http://upstream').searchParams.get('to') ?? '/' }).end();
    } else {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id, path, tier: req.headers['x-meshlet-tags'] ?? null }));
    }
  });
  return u;
}

describe('axios through the mesh', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const exporter = new InMemorySpanExporter();
  const ups: Upstream[] = [];
  let outside: Upstream;
  let mesh: Mesh;
  let client: AxiosInstance;

  before(async () => {
    for (const id of ['inv-0', 'inv-1']) {
      const u = await upstream(id);
      ups.push(u);
      await registry.register({
        id,
        service: 'inventory',
        address: '127.0.0.1',
        port: u.server.port,
        tags: [],
        metadata: { version: '1.0' },
        health: 'passing',
      });
    }
    outside = await upstream('outside');
    mesh = createMesh({
      service: 'shop',
      registry,
      rules,
      logger: new MemoryLogger(),
      auth: { keys: [meshKey('k1', Buffer.alloc(32, 7).toString('base64'))] },
      tracing: { exporters: [exporter], batch: { delayMs: 10 }, metrics: false },
    });
    client = axios.create({ adapter: axiosAdapter(mesh) });
  });
  after(async () => {
    await mesh.close();
    for (const u of [...ups, outside]) await u.server.close();
  });
  beforeEach(async () => {
    for (const u of ups) {
      u.mode = 'ok';
      u.hits = 0;
    }
    await rules.delete('meshlet/rules/inventory');
    await mesh.rulesInForce('inventory');
  });

  const breakerRules = async (breaker: unknown) => {
    await mesh.rules.apply(JSON.stringify({ service: 'inventory', breaker }), { author: 'test' });
    await mesh.rulesInForce('inventory');
  };

  it('calls a service by name with the tags, the caller, a signed identity and interceptors', async () => {
    const seen: string[] = [];
    client.interceptors.request.use((config) => {
      config.headers.set('x-app', 'from-interceptor');
      return config;
    });
    const id = client.interceptors.response.use((res) => {
      seen.push(String(res.config.url));
      return res;
    });
    const res = await runWithContext(createContext(), async () => {
      setTag('user-tier', 'vip');
      return client.get<{ id: string; path: string }>('http://inventory/api/items/1', { params: { q: 'x y' } });
    });
    client.interceptors.response.eject(id);
    assert.equal(res.status, 200);
    assert.match(res.data.id, /^inv-/, 'JSON parsed by axios');
    assert.equal(res.data.path, '/api/items/1?q=x+y');
    assert.deepEqual(seen, ['http://inventory/api/items/1'], 'interceptors see the caller config');
    const headers = ups.find((u) => u.id === res.data.id)?.lastHeaders;
    assert.ok(headers);
    assert.equal(headers['x-app'], 'from-interceptor');
    assert.match(String(headers['x-meshlet-tags']), /user-tier=vip/);
    assert.match(String(headers['x-meshlet-caller']), /service=shop/);
    assert.ok(headers['x-meshlet-identity'], 'a signed identity');
    assert.ok(headers.traceparent, 'trace context');
  });

  it('leaves other hosts to axios untouched', async () => {
    const res = await client.get(`http://127.0.0.1:${outside.server.port}/plain`);
    assert.equal(res.data.id, 'outside');
    assert.equal(outside.lastHeaders?.['x-meshlet-caller'], undefined);
    assert.equal(outside.lastHeaders?.['x-meshlet-identity'], undefined);
  });

  it('retries a 503 on the other instance', async () => {
    await breakerRules({ retry: { maxRetries: 1, backoff: { baseMs: 1, maxMs: 1 } } });
    const [bad, good] = ups as [Upstream, Upstream];
    bad.mode = 'fail';
    // Six calls, and on until the failing instance was tried (the default balancer draws at random).
    for (let i = 0; i < 6 || (bad.hits === 0 && i < 200); i++) {
      const res = await client.get('http://inventory/api/items/2');
      assert.equal(res.data.id, good.id);
    }
    assert.ok(bad.hits > 0, 'the failing instance was tried');
  });

  it('answers an open breaker with an AxiosError whose cause is the CircuitOpenError', async () => {
    await breakerRules({ rules: [{ level: 'service', consecutiveFailures: 2, sleepWindowMs: 60_000 }] });
    for (const u of ups) u.mode = 'fail';
    for (let i = 0; i < 2; i++) {
      await assert.rejects(client.get('http://inventory/api/items/3'), (err: AxiosError) => err.response?.status === 503);
    }
    const hits = ups.reduce((n, u) => n + u.hits, 0);
    const err = await client.get('http://inventory/api/items/3').catch((e: unknown) => e);
    assert.ok(axios.isAxiosError(err));
    assert.equal(err.code, 'MESHLET_CIRCUIT_OPEN');
    assert.ok(err.cause instanceof CircuitOpenError);
    assert.equal(err.config?.url, 'http://inventory/api/items/3');
    assert.equal(
      ups.reduce((n, u) => n + u.hits, 0),
      hits,
      'nothing sent while open',
    );
  });

  it('times an attempt out with MESHLET_TIMEOUT', async () => {
    await breakerRules({ timeoutMs: 50 });
    for (const u of ups) u.mode = 'hang';
    const err = await client.get('http://inventory/slow').catch((e: unknown) => e);
    assert.ok(err instanceof AxiosError);
    assert.equal(err.code, 'MESHLET_TIMEOUT');
    assert.ok(err.cause instanceof TimeoutError);
  });

  it('applies the caller validateStatus to the final response', async () => {
    const err = await client.get('http://inventory/missing').catch((e: unknown) => e);
    assert.ok(err instanceof AxiosError);
    assert.equal(err.code, AxiosError.ERR_BAD_REQUEST);
    assert.equal(err.response?.status, 404);
    assert.deepEqual(err.response?.data, { error: 'not here' }, 'the error body through transformResponse');
    const ok = await client.get('http://inventory/missing', { validateStatus: () => true });
    assert.equal(ok.status, 404);
  });

  it('cancels with the caller signal as axios does (axios.isCancel)', async () => {
    for (const u of ups) u.mode = 'hang';
    const controller = new AbortController();
    const pending = client.get('http://inventory/hang', { signal: controller.signal });
    // Abort once the request reached an instance: the upstream counts it.
    await waitFor(() => ups.some((u) => u.hits > 0));
    controller.abort();
    const err = await pending.catch((e: unknown) => e);
    assert.ok(axios.isCancel(err), String(err));
  });

  it('streams a response (responseType stream)', async () => {
    const res = await client.get('http://inventory/api/stream', { responseType: 'stream' });
    const body = JSON.parse(await text(res.data)) as { path: string };
    assert.equal(body.path, '/api/stream');
  });

  it('keeps the mesh headers from a redirect to another origin', async () => {
    const to = `http://127.0.0.1:${outside.server.port}/landed`;
    const res = await client.get(`http://inventory/redirect?to=${encodeURIComponent(to)}`);
    assert.equal(res.data.id, 'outside');
    assert.equal(outside.lastHeaders?.['x-meshlet-caller'], undefined);
    assert.equal(outside.lastHeaders?.['x-meshlet-identity'], undefined);
  });

  it('follows a redirect off the mesh without the mesh headers or credentials, whichever adapter, whoever set them', async () => {
    const to = `http://127.0.0.1:${outside.server.port}/landed`;
    // The app forwards headers it received, a mesh header among them, and a credential.
    const headers = { 'x-app': 'mine', authorization: 'Bearer for-inventory', 'x-meshlet-identity': 'forwarded' };
    for (const adapter of ['http', 'fetch'] as const) {
      outside.lastHeaders = undefined;
      const c = axios.create({ adapter: axiosAdapter(mesh, { adapter }) });
      const res = await c.get(`http://inventory/redirect?to=${encodeURIComponent(to)}`, { headers });
      assert.equal(res.data.id, 'outside', adapter);
      const got: IncomingHttpHeaders = outside.lastHeaders ?? {};
      assert.equal(got['x-app'], 'mine', adapter);
      for (const h of ['x-meshlet-caller', 'x-meshlet-identity', 'x-meshlet-tags', 'authorization', 'traceparent'])
        assert.equal(got[h], undefined, `${adapter}: ${h}`);
    }
  });

  it('follows a redirect within the service governed again, and hands it back with maxRedirects 0', async () => {
    const res = await client.get(`http://inventory/redirect?to=${encodeURIComponent('/api/after')}`);
    assert.equal(res.data.path, '/api/after');
    // The hop was a governed call of its own: the mesh's identity on it, as on the first.
    const landed = ups.find((u) => u.id === res.data.id);
    assert.match(String(landed?.lastHeaders?.['x-meshlet-identity']), /^v1\|k1\|inventory\|shop\|/);
    const manual = await client.get('http://inventory/redirect?to=/api/after', { maxRedirects: 0, validateStatus: () => true });
    assert.equal(manual.status, 302);
    await assert.rejects(client.get('http://inventory/loop', { maxRedirects: 3 }), (err: unknown) => {
      assert.ok(err instanceof AxiosError);
      assert.equal(err.code, 'MESHLET_REDIRECT_REFUSED');
      assert.match(err.message, /more than 3 redirects/);
      return true;
    });
  });

  it('records a CLIENT span per attempt, as mesh.fetch does', async () => {
    exporter.reset();
    await client.get('http://inventory/api/traced');
    await mesh.tracing?.forceFlush();
    const spans = exporter.getFinishedSpans().filter((s) => s.kind === 2 && String(s.attributes['url.full']).endsWith('/api/traced'));
    assert.equal(spans.length, 1);
    assert.equal(spans[0]?.attributes['service.peer.name'], 'inventory');
    assert.equal(spans[0]?.attributes['http.response.status_code'], 200);
  });

  it('answers an injected fault as axios would answer the status (a Response the mesh made)', async () => {
    await mesh.rules.apply(JSON.stringify({ service: 'inventory', fault: { rules: [{ name: 'teapot', percentage: 100, abort: 418 }] } }), {
      author: 'test',
    });
    await mesh.rulesInForce('inventory');
    const err = await client.get('http://inventory/api/items/9').catch((e: unknown) => e);
    assert.ok(err instanceof AxiosError);
    assert.equal(err.code, AxiosError.ERR_BAD_REQUEST);
    assert.equal(err.response?.status, 418);
    assert.equal(
      ups.reduce((n, u) => n + u.hits, 0),
      0,
      'nothing sent',
    );
    const streamed = await client.get('http://inventory/api/items/9', { responseType: 'stream', validateStatus: () => true });
    assert.equal(streamed.status, 418);
    assert.equal(typeof (await text(streamed.data)), 'string', 'a readable stream, as for a real response');
  });

  it('governedAxios: an instance with the adapter in place', async () => {
    const api = governedAxios(mesh, { baseURL: 'http://inventory/api', timeout: 5_000 });
    const res = await api.post('/items', { name: 'a' });
    assert.equal(res.data.path, '/api/items');
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setImmediate(r));
}
