// MeshletModule in real NestJS applications, compiled with experimentalDecorators and
// emitDecoratorMetadata as Nest projects are, on both platforms (Express and Fastify),
// with real HTTP on 127.0.0.1.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import { HttpModule, HttpService } from '@nestjs/axios';
import { Body, Controller, Get, type INestApplication, Injectable, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Authorize, getTag, InMemoryKvStore, InMemoryRegistry, type Mesh, RateLimit, setTag, Traced } from 'meshlet';
import { axiosAdapter } from 'meshlet/axios';
import { firstValueFrom } from 'rxjs';
import { InjectMesh, MESH, MeshletModule } from '../src/index.js';

/** A fresh app module per platform: the decorators' buckets belong to their class. */
function appModule(registry: InMemoryRegistry, rules: InMemoryKvStore) {
  @Injectable()
  class Greeter {
    @Traced('greet')
    async greet(): Promise<string> {
      return `hello ${getTag('user-tier') ?? 'anyone'}`;
    }
  }

  @Controller()
  class AppController {
    constructor(
      @InjectMesh() private readonly mesh: Mesh,
      private readonly http: HttpService,
      private readonly greeter: Greeter,
    ) {}

    @Get('tag')
    async tag() {
      return { tier: getTag('user-tier') ?? null, greeting: await this.greeter.greet(), service: this.mesh.service };
    }

    @Get('call')
    async call() {
      setTag('from-nest', 'yes');
      const res = await firstValueFrom(this.http.get<string>('http://back/echo'));
      return { back: res.data };
    }

    // Both orders: @Get applied first, and @Get applied last.
    @Get('once')
    @RateLimit({ name: 'once-below', rate: 1, unit: 'minute', burst: 1 })
    async once() {
      return 'first';
    }

    @RateLimit({ name: 'once-above', rate: 1, unit: 'minute', burst: 1 })
    @Get('once-more')
    async onceMore() {
      return 'first';
    }

    @Get('billing-only')
    @Authorize({ services: ['billing'] })
    async billingOnly() {
      return 'secret';
    }

    @Get('limited')
    limited() {
      return 'ok';
    }

    @Post('denied')
    denied(@Body() body: unknown) {
      return { body };
    }
  }

  @Module({
    imports: [
      MeshletModule.forRootAsync({
        useFactory: async () => ({ service: 'nest-app', registry, rules, logger: new MemoryLogger() }),
      }),
      HttpModule.registerAsync({ inject: [MESH], useFactory: (mesh: Mesh) => ({ adapter: axiosAdapter(mesh) }) }),
    ],
    controllers: [AppController],
    providers: [Greeter],
  })
  class AppModule {}
  return AppModule;
}

const platforms = [
  { name: 'Express', adapter: () => new ExpressAdapter() },
  { name: 'Fastify', adapter: () => new FastifyAdapter() },
];

for (const platform of platforms) {
  describe(`MeshletModule on ${platform.name}`, () => {
    const registry = new InMemoryRegistry();
    const rules = new InMemoryKvStore();
    let backend: TestServer;
    let app: INestApplication;
    let mesh: Mesh;
    let base = '';

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
      app = await NestFactory.create(appModule(registry, rules), platform.adapter(), { logger: false });
      await app.listen(0, '127.0.0.1');
      mesh = app.get<Mesh>(MESH);
      await mesh.serve(app.getHttpServer(), { signals: [] });
      base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    });
    after(async () => {
      await app.close();
      await backend.close();
    });

    const get = (path: string, headers: Record<string, string> = {}) => globalThis.fetch(`${base}${path}`, { headers });

    it('runs controllers and service methods in the request context, with its tags', async () => {
      const res = await get('/tag', { 'x-meshlet-tags': 'user-tier=vip' });
      assert.deepEqual(await res.json(), { tier: 'vip', greeting: 'hello vip', service: 'nest-app' });
    });

    it("governs @nestjs/axios's HttpService through the axios adapter, tags included", async () => {
      const res = await get('/call', { 'x-meshlet-tags': 'user-tier=gold' });
      const { back } = (await res.json()) as { back: string };
      assert.match(back, /user-tier=gold/);
      assert.match(back, /from-nest=yes/);
    });

    it('answers the health path, and 429 from the service rules before the controller', async () => {
      const health = await get('/health');
      assert.deepEqual([health.status, await health.json()], [200, { status: 'UP' }]);
      await mesh.rules.apply(
        JSON.stringify({
          service: 'nest-app',
          ratelimit: { rules: [{ name: 'limited', api: { method: 'GET', path: '/limited' }, rate: 1, unit: 'minute', burst: 1 }] },
        }),
        { author: 'test' },
      );
      await mesh.rulesInForce('nest-app');
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await get('/limited');
        statuses.push(res.status);
        await res.text();
      }
      assert.deepEqual(statuses, [200, 429, 429]);
    });

    // Found by a reviewer: on Express, Nest's body parsers ran before the pipeline, so a
    // refused request's body was read and parsed, and a malformed one answered 400, not 403.
    it("refuses a denied request before its body is parsed: 403 for malformed JSON, not the parser's 400", async () => {
      await mesh.rules.apply(
        JSON.stringify({
          service: 'nest-app',
          auth: { rules: [{ name: 'no-posts', action: 'deny', apis: [{ method: 'POST', path: '/denied' }] }] },
        }),
        { author: 'test' },
      );
      await mesh.rulesInForce('nest-app');
      try {
        const res = await globalThis.fetch(`${base}/denied`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{bad',
        });
        const text = await res.text();
        assert.equal(res.status, 403, text);
        assert.match(text, /MESHLET_AUTH_DENIED/);
      } finally {
        await mesh.rules.apply(JSON.stringify({ service: 'nest-app' }), { author: 'test' });
        await mesh.rulesInForce('nest-app');
      }
      // Admitted, the body is parsed as before.
      const ok = await globalThis.fetch(`${base}/denied`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
      });
      assert.deepEqual([ok.status, await ok.json()], [201, { body: { a: 1 } }]);
    });

    it('answers a decorated handler with 429 and Retry-After, in either decorator order', async () => {
      for (const path of ['/once', '/once-more']) {
        const first = await get(path);
        assert.equal(first.status, 200, `${path} is routed`);
        assert.equal(await first.text(), 'first');
        const second = await get(path);
        assert.equal(second.status, 429);
        assert.equal(second.headers.get('retry-after'), '60');
        assert.equal(((await second.json()) as { rule: string }).rule, path === '/once' ? 'once-below' : 'once-above');
      }
    });

    it('answers @Authorize with 403 for a caller that is not allowed', async () => {
      const res = await get('/billing-only');
      assert.equal(res.status, 403);
      assert.equal(((await res.json()) as { code: string }).code, 'MESHLET_AUTH_DENIED');
    });

    it("stops the mesh through Nest's shutdown hooks: deregistered", async () => {
      assert.equal((await registry.healthyInstances('nest-app')).length, 1);
      await app.close();
      assert.equal(mesh.stopping, true);
      assert.equal((await registry.healthyInstances('nest-app')).length, 0);
    });
  });
}
