// An instance the registry lists that cannot be called — its origin is no URL (user info in
// its address), or it is
// marked secure in front of plain HTTP — fails before anything is sent, so the default
// retry sends even a POST to another instance: the caller sees only answers. And an
// instance at an IPv6 address is called at it.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type Instance, MemoryLogger } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import { createMesh, type Mesh } from '../src/index.js';

const meshes: Mesh[] = [];
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const m of meshes) await m.close();
  for (const c of closers) await c();
});

const at = (id: string, address: string, port: number, metadata: Record<string, string> = {}): Instance => ({
  id,
  service: 'shop',
  address,
  port,
  tags: [],
  metadata,
  health: 'passing',
});

it('POSTs to a service with unusable instances are all answered by the good one; the bad ones received nothing', async () => {
  let plainSeen = 0;
  const plain = await listen((_req, res) => {
    plainSeen++;
    res.end('plain');
  });
  // Its own listener, so a call that dialled user:pw@127.0.0.1 would be counted, not answered 'good'.
  let userInfoSeen = 0;
  const userInfo = await listen((_req, res) => {
    userInfoSeen++;
    res.end('user-info');
  });
  const good = await listen((_req, res) => res.end('good'));
  closers.push(plain.close, userInfo.close, good.close);
  const registry = new InMemoryRegistry();
  await registry.register(at('good', '127.0.0.1', good.port));
  await registry.register(at('tls-to-plain', '127.0.0.1', plain.port, { secure: 'true' }));
  // Two: the default retries (2) reach the good one even when both are tried first.
  await registry.register(at('user-info', 'user:pw@127.0.0.1', userInfo.port));
  const mesh = createMesh({ service: 'caller', registry, rules: new InMemoryKvStore(), logger: new MemoryLogger() });
  meshes.push(mesh);
  const answers = new Map<string, number>();
  for (let i = 0; i < 40; i++) {
    const f = await mesh.fetch('http://shop/order', { method: 'POST', body: `order ${i}` });
    const r = await mesh.request('http://shop/order', { method: 'POST', body: `order ${i}` });
    for (const text of [await f.text(), await r.body.text()]) answers.set(text, (answers.get(text) ?? 0) + 1);
  }
  assert.deepEqual([...answers], [['good', 80]]);
  assert.equal(plainSeen, 0);
  assert.equal(userInfoSeen, 0);
});

it('an instance at an IPv6 address (::1) is called there, by fetch and by request', async () => {
  const server = createServer((_req, res) => res.end('v6')).listen(0, '::1');
  await once(server, 'listening');
  closers.push(() => new Promise((r) => server.close(r)));
  const registry = new InMemoryRegistry();
  await registry.register(at('v6', '::1', (server.address() as AddressInfo).port));
  const mesh = createMesh({ service: 'caller', registry, rules: new InMemoryKvStore(), logger: new MemoryLogger() });
  meshes.push(mesh);
  assert.equal(await (await mesh.fetch('http://shop/x')).text(), 'v6');
  assert.equal(await (await mesh.request('http://shop/x')).body.text(), 'v6');
});
