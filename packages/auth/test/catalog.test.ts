import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  MAX_CATALOG_VALUE,
  OPENAPI_FILE_BOUNDS,
  publishCatalog,
  readCatalog,
  routesFromOpenApi,
} from '../src/index.js';

const fixture = (name: string) => fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url));

/** A fresh temporary directory, removed after the test. */
function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-catalog-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An `@openapi` block declaring `GET <path>`. */
const annotated = (path: string) => `/**\n * @openapi\n * ${path}:\n *   get:\n *     summary: ok\n */\n`;

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
    assert.equal(logger.entries.filter((e) => e.level === 'warn').length, 1);
  });

  it('logs 10,000 bad entries once, with their count and the first five', () => {
    const logger = new MemoryLogger();
    const routes = Array.from({ length: 10_000 }, (_, i) => ({ method: 'GET', path: `/r${i}/{a}{b}` }));
    const catalog = createCatalog([...routes, { method: 'FETCH', path: '/x' }, { method: 'GET', path: '/ok' }], logger);
    assert.deepEqual(catalog.apis, [{ method: 'GET', path: '/ok' }]);
    assert.equal(logger.entries.length, 1);
    const [warn] = logger.entries;
    assert.equal(warn?.fields?.code, 'MESHLET_BAD_CATALOG');
    assert.equal(warn?.fields?.skipped, 10_001);
    const first = warn?.fields?.first as { path: string; reason: string }[];
    assert.deepEqual(
      first.map((e) => e.path),
      ['/r0/{a}{b}', '/r1/{a}{b}', '/r2/{a}{b}', '/r3/{a}{b}', '/r4/{a}{b}'],
    );
    assert.match(first[0]?.reason ?? '', /^bad path template/);
  });

  it('reads openapiFiles bounded: a file past maxFileBytes, a FIFO and a directory skipped with one warning', {
    timeout: 30_000,
  }, async (t) => {
    const dir = tempDir(t);
    copyFileSync(fixture('users-routes.js'), join(dir, 'users.js'));
    // Past the bound by one byte, and its annotation would parse: skipped for its size alone.
    writeFileSync(join(dir, 'big.js'), annotated('/big'));
    truncateSync(join(dir, 'big.js'), OPENAPI_FILE_BOUNDS.maxFileBytes + 1);
    execFileSync('mkfifo', [join(dir, 'pipe.js')]);
    mkdirSync(join(dir, 'dir.js'));
    const logger = new MemoryLogger();
    const catalog = await loadCatalog({ openapiFiles: [join(dir, '*.js')], routes: [], logger });
    assert.deepEqual(
      catalog.apis.map((a) => `${a.method} ${a.path}`),
      ['GET /files/{name}.{ext}', 'POST /users', 'DELETE /users/{id}', 'GET /users/{id}'],
    );
    assert.equal(logger.entries.length, 1);
    const [warn] = logger.entries;
    assert.equal(warn?.level, 'warn');
    assert.equal(warn?.fields?.code, 'MESHLET_BAD_CATALOG');
    assert.equal(warn?.fields?.skipped, 3);
    const first = [...((warn?.fields?.first as string[] | undefined) ?? [])].sort();
    assert.match(first[0] ?? '', /big\.js" is 1048577 bytes; at most 1048576$/);
    assert.match(first[1] ?? '', /dir\.js" is not a regular file$/);
    assert.match(first[2] ?? '', /pipe\.js" is not a regular file$/);
  });

  it('bounds the number of files matched, the bytes and the JSDoc blocks read in all', async (t) => {
    const { maxFileBytes, maxFiles, maxTotalBytes, maxJsdocBlocks } = OPENAPI_FILE_BOUNDS;
    const many = join(tempDir(t), 'many');
    const large = join(tempDir(t), 'large');
    const dense = join(tempDir(t), 'dense');
    mkdirSync(many);
    mkdirSync(large);
    mkdirSync(dense);
    for (let i = 0; i < maxFiles + 1; i++) writeFileSync(join(many, `f${i}.js`), annotated(`/f${i}`));
    const largeFiles = Math.floor(maxTotalBytes / maxFileBytes) + 1;
    for (let i = 0; i < largeFiles; i++) {
      writeFileSync(join(large, `l${i}.js`), annotated(`/l${i}`));
      truncateSync(join(large, `l${i}.js`), maxFileBytes);
    }
    writeFileSync(join(dense, 'd0.js'), Array.from({ length: maxJsdocBlocks }, (_, i) => annotated(`/d${i}`)).join(''));
    writeFileSync(join(dense, 'd1.js'), annotated('/d1'));
    const given: string[][] = [];
    const fake = async () => (options: { apis: string[] }) => {
      given.push(options.apis);
      return { paths: {} };
    };
    const logger = new MemoryLogger();
    await loadCatalog({ openapiFiles: [join(many, '*.js')], routes: [], logger, loadSwaggerJsdoc: fake });
    await loadCatalog({ openapiFiles: [join(large, '*.js')], routes: [], logger, loadSwaggerJsdoc: fake });
    await loadCatalog({ openapiFiles: [join(dense, 'd0.js'), join(dense, 'd1.js')], routes: [], logger, loadSwaggerJsdoc: fake });
    assert.equal(given[0]?.length, maxFiles);
    assert.equal(given[1]?.length, largeFiles - 1);
    assert.deepEqual(given[2], [join(dense, 'd0.js')]);
    assert.deepEqual(
      logger.entries.map((e) => [e.fields?.code, e.fields?.skipped]),
      [
        ['MESHLET_BAD_CATALOG', 1],
        ['MESHLET_BAD_CATALOG', 1],
        ['MESHLET_BAD_CATALOG', 1],
      ],
    );
    assert.deepEqual(logger.entries[0]?.fields?.first, [`more than ${maxFiles} files matched: the rest not read`]);
    assert.match(String((logger.entries[1]?.fields?.first as string[] | undefined)?.[0]), /past 4194304 bytes in all$/);
    assert.match(
      String((logger.entries[2]?.fields?.first as string[] | undefined)?.[0]),
      /d1\.js" would take the files read past 4096 JSDoc blocks in all$/,
    );
  });

  it('hands swagger-jsdoc each matched file as itself, glob characters in its name included', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'a[1].js'), annotated('/bracket'));
    writeFileSync(join(dir, 'a1.js'), annotated('/plain'));
    const logger = new MemoryLogger();
    const catalog = await loadCatalog({ openapiFiles: [join(dir, 'a[[]1].js')], routes: [], logger });
    assert.deepEqual(
      catalog.apis.map((a) => a.path),
      ['/bracket'],
    );
    assert.deepEqual(logger.entries, []);
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

  it('measures the catalog in bytes of UTF-8, as Consul does', async () => {
    // 2,000 summaries of 80 CJK characters: under the bound in characters, over it in bytes.
    const cjk = createCatalog(Array.from({ length: 2000 }, (_, i) => ({ method: 'GET', path: `/a${i}`, summary: '概'.repeat(80) })));
    const value = JSON.stringify({ service: 's', hash: cjk.hash, apis: cjk.apis });
    assert.ok(value.length < MAX_CATALOG_VALUE && Buffer.byteLength(value) > MAX_CATALOG_VALUE);
    await assert.rejects(publishCatalog(new InMemoryKvStore(), 's', cjk), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'MESHLET_CATALOG_TOO_LARGE');
      assert.match((e as Error).message, /is \d+ bytes of UTF-8 \(limit 262144\)/);
      return true;
    });
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
