import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CALLER_HEADER, currentContext, getTag, InMemoryRegistry, MemoryLogger, SystemTag, TAG_HEADER } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import express from 'express';
import Fastify from 'fastify';
import { createMesh, fetch, type Mesh, setTag, userAgentFamily } from '../src/index.js';

const CHROME = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

/** What the downstream service saw. */
type Seen = { tags: string | undefined; caller: string | undefined };
/** What the handler answers. */
type Answer = { source?: string; path?: string; method?: string; ua?: string; downstream: Seen };

/** The handler every framework runs: read the context, set a tag, call downstream by name. */
async function handle(): Promise<string> {
  const ctx = currentContext();
  setTag('hop', 'api');
  await sleep(1);
  const res = await fetch('http://downstream/seen');
  const seen = (await res.json()) as Seen;
  return JSON.stringify({
    source: getTag(SystemTag.sourceService),
    path: ctx.request?.path,
    method: ctx.request?.method,
    ua: getTag('ua.family'),
    downstream: seen,
  });
}

type Framework = { name: string; start: (mesh: Mesh) => Promise<{ port: number; close: () => Promise<void> }> };

const frameworks: Framework[] = [
  {
    name: 'node:http',
    start: (mesh) =>
      listen(
        mesh.httpHandler((_req: IncomingMessage, res: ServerResponse) => {
          handle().then(
            (body) => res.end(body),
            (err) => {
              res.statusCode = 500;
              res.end(String(err));
            },
          );
        }),
      ),
  },
  {
    name: 'express',
    async start(mesh) {
      const app = express();
      app.use(mesh.express());
      app.get('/api/:id', async (_req, res) => {
        res.type('json').send(await handle());
      });
      const server = app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      return {
        port: (server.address() as AddressInfo).port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      };
    },
  },
  {
    name: 'fastify',
    async start(mesh) {
      const app = Fastify();
      await app.register(mesh.fastify);
      app.get('/api/:id', async (_req, reply) => {
        reply.type('application/json');
        return handle();
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
    },
  },
];

describe('inbound middleware', () => {
  const registry = new InMemoryRegistry();
  let downstream: Awaited<ReturnType<typeof listen>>;

  before(async () => {
    downstream = await listen((req, res) => {
      res.end(JSON.stringify({ tags: req.headers[TAG_HEADER], caller: req.headers[CALLER_HEADER] }));
    });
    await registry.register({
      id: 'downstream-1',
      service: 'downstream',
      address: '127.0.0.1',
      port: downstream.port,
      tags: [],
      metadata: {},
      health: 'passing',
    });
  });
  after(() => downstream.close());

  for (const fw of frameworks) {
    describe(fw.name, () => {
      let mesh: Mesh;
      let server: { port: number; close: () => Promise<void> };
      const logger = new MemoryLogger();

      before(async () => {
        mesh = createMesh({
          service: 'api',
          version: '3.1.0',
          registry,
          logger,
          tagsFromHeaders: [{ header: 'User-Agent', tag: 'ua.family', transform: userAgentFamily }],
        });
        server = await fw.start(mesh);
        await mesh.register({ port: server.port });
      });
      after(async () => {
        await server.close();
        await mesh.close();
      });

      it('runs the handler in the request context and carries tags on to the next hop', async () => {
        const res = await globalThis.fetch(`http://127.0.0.1:${server.port}/api/42?x=1`, {
          headers: {
            [TAG_HEADER]: 'user-tier=vip,ua.family=Firefox',
            [CALLER_HEADER]: 'service=gateway,version=1.0.0',
            'user-agent': CHROME,
          },
        });
        assert.equal(res.status, 200);
        const body = (await res.json()) as Answer;
        assert.equal(body.source, 'gateway');
        assert.equal(body.path, '/api/42');
        assert.equal(body.method, 'GET');
        assert.equal(body.ua, 'Firefox', 'a tag from upstream wins over one lifted here');
        assert.equal(body.downstream.tags, 'ua.family=Firefox,user-tier=vip,hop=api');
        assert.equal(body.downstream.caller, `service=api,version=3.1.0,namespace=default,instance=api-${server.port}`);
      });

      it('lifts configured headers into tags at the edge', async () => {
        const res = await globalThis.fetch(`http://127.0.0.1:${server.port}/api/1`, { headers: { 'user-agent': CHROME } });
        const body = (await res.json()) as Answer;
        assert.equal(body.ua, 'Chrome');
        assert.equal(body.downstream.tags, 'ua.family=Chrome,hop=api');
      });

      it('ignores a malformed tag header with a warning instead of failing the request', async () => {
        const before = logger.entries.length;
        const res = await globalThis.fetch(`http://127.0.0.1:${server.port}/api/1`, { headers: { [TAG_HEADER]: 'a=%zz' } });
        assert.equal(res.status, 200);
        const body = (await res.json()) as Answer;
        // Node's fetch says `user-agent: node`, which the edge lifts as family Other.
        assert.equal(body.downstream.tags, 'ua.family=Other,hop=api');
        const warned = logger.entries.slice(before).find((e) => e.fields?.code === 'MESHLET_BAD_TAG_HEADER');
        assert.ok(warned, 'a warning names the bad header');
      });

      it('keeps 200 concurrent requests apart', async () => {
        const results = await Promise.all(
          Array.from({ length: 200 }, async (_, i) => {
            const res = await globalThis.fetch(`http://127.0.0.1:${server.port}/api/${i}`, {
              headers: { [TAG_HEADER]: `req=${i}` },
            });
            return ((await res.json()) as Answer).downstream.tags;
          }),
        );
        for (const [i, tags] of results.entries()) assert.equal(tags, `ua.family=Other,req=${i},hop=api`);
      });
    });
  }
});
