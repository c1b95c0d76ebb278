// The ways the README documents for governing ky (it takes a fetch) and got (a
// beforeRequest hook), each against real servers on 127.0.0.1.
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import got, { HTTPError } from 'got';
import ky from 'ky';
import { createMesh, gotHooks, type Mesh } from '../src/index.js';

describe('ky and got through the mesh', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const servers: TestServer[] = [];
  const seen: { id: string; headers: IncomingHttpHeaders; body: string }[] = [];
  let outsidePort = 0;
  let mesh: Mesh;

  before(async () => {
    for (const id of ['a-0', 'a-1', 'outside']) {
      const server = await listen((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => {
          body += c.toString();
        });
        req.on('end', () => {
          seen.push({ id, headers: req.headers, body });
          if (id === 'a-0' && req.url === '/flaky') {
            res.statusCode = 503;
            return res.end('down');
          }
          if (req.url === '/missing') {
            res.statusCode = 404;
            return res.end('{}');
          }
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ id, path: req.url, body }));
        });
      });
      servers.push(server);
      if (id === 'outside') outsidePort = server.port;
      else
        await registry.register({
          id,
          service: 'accounts',
          address: '127.0.0.1',
          port: server.port,
          tags: [],
          metadata: {},
          health: 'passing',
        });
    }
    mesh = createMesh({ service: 'web', registry, rules, logger: new MemoryLogger() });
    await mesh.rules.apply(
      JSON.stringify({ service: 'accounts', breaker: { retry: { maxRetries: 1, backoff: { baseMs: 1, maxMs: 1 } } } }),
      { author: 'test' },
    );
    await mesh.rulesInForce('accounts');
  });
  after(async () => {
    await mesh.close();
    for (const s of servers) await s.close();
  });
  const last = () => seen.at(-1) as (typeof seen)[number];

  it('ky: ky.create({ fetch: mesh.fetch }) governs calls by name, retries included', async () => {
    const api = ky.create({ fetch: mesh.fetch, retry: 0 });
    for (let i = 0; i < 4; i++) {
      const body = await api.get('http://accounts/flaky').json<{ id: string }>();
      assert.equal(body.id, 'a-1', 'a 503 from a-0 is retried on a-1 by the mesh');
    }
    const posted = await api.post('http://accounts/items', { json: { n: 1 } }).json<{ body: string }>();
    assert.equal(posted.body, '{"n":1}');
    assert.match(String(last().headers['x-meshlet-caller']), /service=web/);
    await assert.rejects(api.get('http://accounts/missing'), (err: Error) => err.name === 'HTTPError');
    await api.get(`http://127.0.0.1:${outsidePort}/plain`).json();
    assert.equal(last().id, 'outside');
    assert.equal(last().headers['x-meshlet-caller'], undefined, 'other hosts are not touched');
  });

  it('got: got.extend({ hooks: gotHooks(mesh) }) governs calls by name, retries included', async () => {
    const api = got.extend({ hooks: gotHooks(mesh), retry: { limit: 0 } });
    for (let i = 0; i < 4; i++) {
      const body = await api.get('http://accounts/flaky').json<{ id: string }>();
      assert.equal(body.id, 'a-1');
    }
    const posted = await api.post('http://accounts/items', { json: { n: 2 } }).json<{ body: string }>();
    assert.equal(posted.body, '{"n":2}');
    assert.match(String(last().headers['x-meshlet-caller']), /service=web/);
    await assert.rejects(api.get('http://accounts/missing'), (err: unknown) => err instanceof HTTPError && err.response.statusCode === 404);
    await api.get(`http://127.0.0.1:${outsidePort}/plain`).json();
    assert.equal(last().id, 'outside');
    assert.equal(last().headers['x-meshlet-caller'], undefined, 'other hosts are not touched');
  });
});
