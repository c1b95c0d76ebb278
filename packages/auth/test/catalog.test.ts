import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { InMemoryKvStore, MemoryLogger } from '@meshlet/core';
import {
  ApiMatcher,
  CATALOG_PATH,
  CATALOG_PREFIX,
  catalogAnswers,
  catalogHandler,
  createCatalog,
  declaredRoutes,
  declareRoutes,
  listCatalogs,
  loadCatalog,
  publishCatalog,
  readCatalog,
  routesFromOpenApi,
} from '../src/index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url));

describe('API catalog', () => {
  it('reads OpenAPI JSDoc with swagger-jsdoc and merges declared routes', async () => {
    const logger = new MemoryLogger();
    const catalog = await loadCatalog({
      openapiFiles: [fixture('users-routes.js')],
      routes: [
        { method: 'get', path: '/health/' },
        { method: 'GET', path: '/users/:id', summary: 'duplicate of the JSDoc one' },
      ],
      logger,
    });
    assert.deepEqual(catalog.apis, [
      { method: 'GET', path: '/files/{name}.{ext}', operationId: 'getFile' },
      { method: 'GET', path: '/health' },
      { method: 'POST', path: '/users', summary: 'Create a user' },
      { method: 'DELETE', path: '/users/{id}', operationId: 'deleteUser' },
      { method: 'GET', path: '/users/{id}', summary: 'duplicate of the JSDoc one' },
    ]);
    assert.match(catalog.hash, /^[0-9a-f]{16}$/);
    assert.equal(logger.entries.filter((e) => e.level === 'error').length, 0);
    // The catalog's templates drive API-level matching.
    assert.equal(new ApiMatcher(catalog.apis).match('GET', '/files/a.txt')?.entry.operationId, 'getFile');
  });

  it('logs a file that does not parse and goes on with the declared routes', async () => {
    const logger = new MemoryLogger();
    const catalog = await loadCatalog({
      openapiFiles: [fixture('broken-routes.js')],
      routes: [{ method: 'GET', path: '/health' }],
      logger,
    });
    assert.deepEqual(catalog.apis, [{ method: 'GET', path: '/health' }]);
    const err = logger.entries.find((e) => e.level === 'error');
    assert.equal(err?.fields?.code, 'MESHLET_BAD_CATALOG');
    assert.match(String(err?.message), /could not be parsed/);
  });

  it('logs a missing swagger-jsdoc and goes on', async () => {
    const logger = new MemoryLogger();
    const catalog = await loadCatalog({
      openapiFiles: [fixture('users-routes.js')],
      routes: [],
      logger,
      loadSwaggerJsdoc: () => Promise.reject(new Error("Cannot find package 'swagger-jsdoc'")),
    });
    assert.deepEqual(catalog.apis, []);
    assert.match(String(logger.entries[0]?.message), /swagger-jsdoc is not available/);
  });

  it('skips bad declared entries with a warning, never throwing', () => {
    const logger = new MemoryLogger();
    const catalog = createCatalog(
      [
        { method: 'FETCH', path: '/a' },
        { method: 'GET', path: 'no-slash' },
        { method: 'GET', path: '/a/{x}{y}' },
        { method: 'GET', path: '/ok' },
      ],
      logger,
    );
    assert.deepEqual(catalog.apis, [{ method: 'GET', path: '/ok' }]);
    assert.equal(logger.entries.filter((e) => e.level === 'warn').length, 3);
  });

  it('hashes the content, not the order', () => {
    const a = createCatalog([
      { method: 'GET', path: '/a' },
      { method: 'POST', path: '/b' },
    ]);
    const b = createCatalog([
      { method: 'post', path: '/b/' },
      { method: 'GET', path: '/a' },
    ]);
    const c = createCatalog([
      { method: 'GET', path: '/a', summary: 'changed' },
      { method: 'POST', path: '/b' },
    ]);
    assert.equal(a.hash, b.hash);
    assert.notEqual(a.hash, c.hash);
  });

  it('takes the operations of an OpenAPI document, nothing else', () => {
    const routes = routesFromOpenApi({
      openapi: '3.0.0',
      paths: {
        '/pets/{petId}': { parameters: [{ name: 'petId' }], summary: 'pets', get: { operationId: 'showPet' }, put: {} },
        '/bad': 'not an object',
      },
    });
    assert.deepEqual(routes, [
      { method: 'GET', path: '/pets/{petId}', operationId: 'showPet' },
      { method: 'PUT', path: '/pets/{petId}' },
    ]);
    assert.deepEqual(routesFromOpenApi('garbage'), []);
    assert.deepEqual(routesFromOpenApi({ paths: [] }), []);
  });

  it('collects declareRoutes() for loadCatalog by default', async () => {
    declareRoutes([{ method: 'GET', path: '/declared/{id}', summary: 'declared in code' }]);
    assert.ok(declaredRoutes().some((r) => r.path === '/declared/{id}'));
    const catalog = await loadCatalog();
    assert.ok(catalog.apis.some((a) => a.path === '/declared/{id}' && a.summary === 'declared in code'));
  });
});

describe('catalog in the KvStore', () => {
  it('publishes under meshlet/catalog/<service>, reads back and lists', async () => {
    const kv = new InMemoryKvStore();
    const users = createCatalog([{ method: 'GET', path: '/users/{id}', operationId: 'getUser' }]);
    const orders = createCatalog([{ method: 'POST', path: '/orders' }]);
    const hash = await publishCatalog(kv, 'users', users);
    assert.equal(hash, users.hash);
    await publishCatalog(kv, 'orders', orders);
    const stored = await kv.get(`${CATALOG_PREFIX}users`);
    assert.ok(stored);
    assert.deepEqual(await readCatalog(kv, 'users'), { service: 'users', apis: users.apis, hash: users.hash });
    assert.equal(await readCatalog(kv, 'nobody'), undefined);

    // Publishing the same catalog again does not write.
    await publishCatalog(kv, 'users', users);
    assert.equal((await kv.get(`${CATALOG_PREFIX}users`))?.revision, stored.revision);

    await kv.put(`${CATALOG_PREFIX}broken`, '{not json');
    const logger = new MemoryLogger();
    const all = await listCatalogs(kv, logger);
    assert.deepEqual(
      all.map((c) => [c.service, c.hash]),
      [
        ['orders', orders.hash],
        ['users', users.hash],
      ],
    );
    assert.equal(logger.entries[0]?.fields?.key, `${CATALOG_PREFIX}broken`);
  });

  it('refuses a catalog too large for a Consul value', async () => {
    const big = createCatalog(Array.from({ length: 2000 }, (_, i) => ({ method: 'GET', path: `/r${i}`, summary: 'x'.repeat(200) })));
    await assert.rejects(
      publishCatalog(new InMemoryKvStore(), 's', big),
      (e: unknown) => (e as { code?: string }).code === 'MESHLET_CATALOG_TOO_LARGE',
    );
  });
});

describe('catalogHandler', () => {
  it(`serves the catalog at ${CATALOG_PATH} and passes other paths on`, async () => {
    const catalog = createCatalog([{ method: 'GET', path: '/users/{id}' }]);
    const serve = catalogHandler(catalog, { service: 'users' });
    const server = createServer((req, res) => {
      if (!serve(req, res)) res.writeHead(200).end('app');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const r = await fetch(`${base}${CATALOG_PATH}?x=1`);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), 'application/json');
      const etag = r.headers.get('etag');
      assert.equal(etag, `"${catalog.hash}"`);
      assert.deepEqual(await r.json(), { service: 'users', hash: catalog.hash, apis: [{ method: 'GET', path: '/users/{id}' }] });
      assert.equal((await fetch(`${base}${CATALOG_PATH}`, { headers: { 'if-none-match': etag ?? '' } })).status, 304);
      const head = await fetch(`${base}${CATALOG_PATH}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), '');
      const post = await fetch(`${base}${CATALOG_PATH}`, { method: 'POST' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('allow'), 'GET, HEAD');
      assert.equal(await (await fetch(`${base}/users/1`)).text(), 'app');
      assert.equal((await fetch(`${base}//meshlet//apis/`)).status, 200, 'its canonical path');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('catalogAnswers', () => {
  it('answers the canonical path it is given when it is its own path (a trailing / the same), nothing else', () => {
    const catalog = createCatalog([{ method: 'GET', path: '/users/{id}' }]);
    const answer = catalogAnswers(catalog, { path: '/api//meshlet/apis' });
    assert.equal(answer('GET', '/api/meshlet/apis', {})?.status, 200, 'its path, made canonical once');
    assert.equal(answer('GET', '/api/meshlet/apis/', {})?.status, 200);
    assert.equal(answer('HEAD', '/api/meshlet/apis', { 'if-none-match': `"${catalog.hash}"` })?.status, 304);
    assert.equal(answer('GET', '/meshlet/apis', {}), undefined, 'the path without its mount is another path');
    assert.equal(answer('GET', '/api/meshlet/apis/x', {}), undefined);
  });
});
