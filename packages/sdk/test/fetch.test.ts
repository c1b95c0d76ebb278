import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CALLER_HEADER, createContext, InMemoryRegistry, MemoryLogger, runWithContext, setTag, TAG_HEADER } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh, type Mesh, fetch as meshFetch, NoInstanceError, UnknownServiceError } from '../src/index.js';

type Echo = { port: number; path: string; method: string; headers: Record<string, string | string[] | undefined>; body: string };

async function echoServer() {
  return listen((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ port: req.socket.localPort, path: req.url, method: req.method, headers: req.headers, body }));
    });
  });
}

describe('governed fetch', () => {
  const registry = new InMemoryRegistry();
  const servers: Awaited<ReturnType<typeof echoServer>>[] = [];
  const meshes: Mesh[] = [];
  let caller: Mesh;

  before(async () => {
    for (let i = 0; i < 2; i++) {
      const s = await echoServer();
      servers.push(s);
      const m = createMesh({ service: 'user-service', version: '1.0.0', registry, instanceId: `user-${i}` });
      await m.register({ port: s.port });
      meshes.push(m);
    }
    // Round robin named: the first test checks its alternation.
    caller = createMesh({
      service: 'gateway',
      version: '2.0.0',
      namespace: 'prod',
      registry,
      logger: new MemoryLogger(),
      route: { loadBalancer: { type: 'roundRobin' } },
    });
    await caller.register({ port: 1 });
  });
  after(async () => {
    for (const m of [...meshes, caller]) await m.close();
    for (const s of servers) await s.close();
  });

  it('resolves a service name to its healthy instances, round robin', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await caller.fetch('http://user-service/api/users/42?full=1');
      assert.equal(res.status, 200);
      const echo = (await res.json()) as Echo;
      assert.equal(echo.path, '/api/users/42?full=1');
      ports.push(echo.port);
    }
    const [a, b] = servers.map((s) => s.port);
    assert.deepEqual(ports.sort(), [a, a, b, b].sort());
  });

  it('carries the current request’s tags and its own identity', async () => {
    const ctx = createContext({
      tags: [
        ['user-tier', 'vip'],
        ['note', 'a,b={"x"}'],
      ],
    });
    const echo = (await runWithContext(ctx, () => caller.fetch('http://user-service/x').then((r) => r.json()))) as Echo;
    assert.equal(echo.headers[TAG_HEADER], 'user-tier=vip,note=a%2Cb%3D%7B%22x%22%7D');
    assert.equal(echo.headers[CALLER_HEADER], 'service=gateway,version=2.0.0,namespace=prod,instance=gateway-1');
  });

  it('sends a tag set (or replaced) between two calls of one request, and keeps the app’s own tag header', async () => {
    const ctx = createContext({ tags: [['user-tier', 'vip']] });
    const sent = await runWithContext(ctx, async () => {
      const tagsOf = async (init?: RequestInit) =>
        ((await caller.fetch('http://user-service/x', init).then((r) => r.json())) as Echo).headers[TAG_HEADER];
      const out = [await tagsOf(), await tagsOf()];
      setTag('user-tier', 'gold');
      out.push(await tagsOf());
      setTag('lane', 'blue');
      out.push(await tagsOf(), await tagsOf({ headers: { [TAG_HEADER]: 'own=1' } }), await tagsOf());
      return out;
    });
    assert.deepEqual(sent, [
      'user-tier=vip',
      'user-tier=vip',
      'user-tier=gold',
      'user-tier=gold,lane=blue',
      'own=1',
      'user-tier=gold,lane=blue',
    ]);
  });

  it('keeps method, body and the caller’s headers; a Request object works too', async () => {
    const res = await caller.fetch('http://user-service/orders', {
      method: 'POST',
      body: 'hello',
      headers: { 'x-custom': '1' },
    });
    const echo = (await res.json()) as Echo;
    assert.deepEqual([echo.method, echo.body, echo.headers['x-custom']], ['POST', 'hello', '1']);
    const req = new Request('http://user-service/req', { method: 'PUT', body: 'b', headers: { 'x-r': '2' } });
    const echo2 = (await (await caller.fetch(req)).json()) as Echo;
    assert.deepEqual([echo2.method, echo2.path, echo2.body, echo2.headers['x-r']], ['PUT', '/req', 'b', '2']);
  });

  it('passes any other host through untouched: no tags, no identity', async () => {
    const direct = `http://127.0.0.1:${servers[0]?.port}/direct`;
    const ctx = createContext({ tags: [['secret', 'x']] });
    const echo = (await runWithContext(ctx, () => caller.fetch(direct).then((r) => r.json()))) as Echo;
    assert.equal(echo.path, '/direct');
    assert.equal(echo.headers[TAG_HEADER], undefined);
    assert.equal(echo.headers[CALLER_HEADER], undefined);
  });

  it('fails with NoInstanceError when a known service has no healthy instance', async () => {
    const r = new InMemoryRegistry();
    const m = createMesh({ service: 'lonely', registry: r });
    await r.register({ id: 'o-1', service: 'orders', address: '127.0.0.1', port: 9, tags: [], metadata: {}, health: 'passing' });
    r.setHealth('o-1', 'critical');
    await assert.rejects(m.fetch('http://orders/'), (err: unknown) => err instanceof NoInstanceError && err.code === 'MESHLET_NO_INSTANCE');
    await r.deregister('o-1');
    await assert.rejects(m.fetch('http://orders/'), NoInstanceError, 'a service seen once stays a service');
    await assert.rejects(
      m.resolve('nobody'),
      (err: unknown) => err instanceof UnknownServiceError && err.code === 'MESHLET_UNKNOWN_SERVICE',
    );
    await m.close();
  });

  it('follows registry changes on the next call', async () => {
    const r = new InMemoryRegistry();
    const m = createMesh({ service: 'watcher', registry: r });
    const s = servers[0];
    assert.ok(s);
    await r.register({ id: 'p-1', service: 'pay', address: '127.0.0.1', port: s.port, tags: [], metadata: {}, health: 'passing' });
    assert.equal((await m.fetch('http://pay/')).status, 200);
    r.setHealth('p-1', 'critical');
    await assert.rejects(m.fetch('http://pay/'), NoInstanceError);
    r.setHealth('p-1', 'passing');
    assert.equal((await m.fetch('http://pay/')).status, 200);
    await m.close();
  });

  it('module-level fetch uses the mesh serving the current request', async () => {
    const r = new InMemoryRegistry();
    const s = servers[1];
    assert.ok(s);
    await r.register({ id: 'q-1', service: 'quotes', address: '127.0.0.1', port: s.port, tags: [], metadata: {}, health: 'passing' });
    const owner = createMesh({ service: 'owner', registry: r });
    // A later mesh on another registry: the module-level fetch must still pick `owner` inside its request.
    const other = createMesh({ service: 'other', registry: new InMemoryRegistry() });
    const ctx = createContext({ owner });
    const res = await runWithContext(ctx, () => meshFetch('http://quotes/q'));
    assert.equal(res.status, 200);
    await other.close();
    await owner.close();
  });

  it('rejects a service name Spring clients could not call', () => {
    assert.throws(() => createMesh({ service: 'user_service' }), /service: "user_service" is not a DNS label/);
    assert.throws(() => createMesh({ service: 'ok', port: 70000 }), /port: 70000/);
  });
});
