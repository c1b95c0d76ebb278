// The admin endpoint is found by the request's canonical path, the one the pipeline computes
// once for the rules and the API catalog (core's requestPath of the whole target: Express's
// originalUrl under a mount). It matched the raw req.url: `//_meshlet/status` and
// `/%5fmeshlet/status` went to the app though the rules saw `/_meshlet/status`, and under
// `app.use('/api', mesh.express())` the endpoint answered `/api/_meshlet/status` while its
// registration said `/_meshlet`, where `meshlet instances` then looked.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { adminEndpoint, InMemoryKvStore, InMemoryRegistry, type Instance, MemoryLogger } from '@meshlet/core';
import { adminAuthorization, listen } from '@meshlet/core/testing';
import express from 'express';
import Fastify from 'fastify';
import { createAdminHandler } from '../src/admin-handler.js';
import { createMesh, type Mesh } from '../src/index.js';

const TOKEN = 'a-long-enough-admin-token-0123';

/** GET `target` sent as it is (no URL parsing on the way): the status and the body's start. */
function get(port: number, target: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: target, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve(`${res.statusCode} ${body.slice(0, 10)}`));
    });
    req.on('error', reject);
    req.end();
  });
}

type Started = { port: number; close: () => Promise<void> };

async function expressApp(mesh: Mesh, mount?: string): Promise<Started> {
  const app = express();
  if (mount === undefined) app.use(mesh.express());
  else app.use(mount, mesh.express());
  app.use((_req, res) => {
    res.send('app');
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const frameworks: readonly { name: string; start: (mesh: Mesh) => Promise<Started> }[] = [
  { name: 'node:http', start: (mesh) => listen(mesh.httpHandler((_req, res) => res.end('app'))) },
  { name: 'express', start: (mesh) => expressApp(mesh) },
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

/** A mesh with the admin endpoint (at `path`), started by `start` and registered at its port. */
async function withAdmin(start: (mesh: Mesh) => Promise<Started>, test: (port: number, mesh: Mesh) => Promise<void>, path?: string) {
  const registry = new InMemoryRegistry();
  const admin = path === undefined ? { token: TOKEN } : { token: TOKEN, path };
  const mesh = createMesh({ service: 'orders', registry, rules: new InMemoryKvStore(), admin, logger: new MemoryLogger() });
  const server = await start(mesh);
  try {
    await mesh.register({ port: server.port });
    await test(server.port, mesh);
  } finally {
    await server.close();
    await mesh.close();
  }
}

describe('the admin endpoint by the canonical request path', () => {
  for (const framework of frameworks)
    it(`answers every spelling of its path the rules read as it, and no other (${framework.name})`, async () => {
      await withAdmin(framework.start, async (port) => {
        const auth = adminAuthorization(TOKEN, port);
        for (const target of ['/_meshlet/status', '//_meshlet/status', '/%5fmeshlet/status', '/_meshlet/%73tatus', '/_meshlet//status?x=1'])
          assert.equal(await get(port, target, auth), '200 {"service"', target);
        assert.equal(await get(port, '//_meshlet/status'), '401 {"error":"', 'the token is still asked for');
        // Case is kept, as for the API catalog's path: not the endpoint, the app's (under the rules).
        assert.equal(await get(port, '/_MESHLET/status', auth), '200 app');
        assert.equal(await get(port, '/_meshletx/status', auth), '200 app');
        // A target with no one path is refused before the endpoint, as before the app.
        assert.equal((await get(port, '/_meshlet/status/..', auth)).slice(0, 3), '400');
      });
    });

  it("under an Express mount, answers the whole path, as its registration names it (`admin.path` given with the mount's prefix)", async () => {
    await withAdmin(
      (mesh) => expressApp(mesh, '/api'),
      async (port, mesh) => {
        const auth = adminAuthorization(TOKEN, port);
        assert.equal(await get(port, '/api/_meshlet/status', auth), '200 {"service"');
        assert.equal(await get(port, '/api//_meshlet/metrics', auth), '200 # HELP mes');
        // Where `meshlet instances` and the console look: the path the registration names.
        const registered = (await mesh.registry.healthyInstances('orders'))[0] as Instance;
        assert.equal(adminEndpoint(registered)?.path, '/api/_meshlet');
      },
      '/api/_meshlet',
    );
    // The default path is the whole path `/_meshlet`, which the mount never hands the mesh:
    // `/api/_meshlet/status` is the app's.
    await withAdmin(
      (mesh) => expressApp(mesh, '/api'),
      async (port) => {
        assert.equal(await get(port, '/api/_meshlet/status', adminAuthorization(TOKEN, port)), '200 app');
      },
    );
  });

  it('createAdminHandler on its own reads the canonical path too', async () => {
    let self: Instance | undefined;
    const admin = createAdminHandler({
      token: TOKEN,
      instance: () => self,
      status: () => ({ service: 'orders', rules: [], breakers: [], registry: { mode: 'memory', degraded: false }, degraded: {} }),
    });
    const s = await listen((req, res) => admin(req, res));
    try {
      self = { id: 'o', service: 'orders', address: '127.0.0.1', port: s.port, tags: [], metadata: {}, health: 'passing' };
      const auth = adminAuthorization(TOKEN, s.port);
      assert.equal(await get(s.port, '//_meshlet/status', auth), '200 {"service"');
      assert.equal(await get(s.port, '/%5Fmeshlet/status', auth), '200 {"service"');
      assert.equal(await get(s.port, '/_MESHLET/status', auth), '404 {"error":"');
    } finally {
      await s.close();
    }
  });
});
