// Path rules against the path the framework routes on. An auth rule denying /internal/**
// and a limit of 1 a minute on POST /login, on real Express, Fastify and node:http servers,
// sent raw request lines (absolute-form targets, case, percent-escapes, dot segments) over
// a socket: every spelling that reaches a handler under /internal is denied (403) or
// refused (400), and every spelling of /login counts against the one limit (429).
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry } from '@meshlet/core';
import { listen } from '@meshlet/core/testing';
import express from 'express';
import fc from 'fast-check';
import Fastify from 'fastify';
import { createMesh, type Mesh } from '../src/index.js';

/** Sends one request line as given and reads the status and body (Connection: close). */
function raw(port: number, target: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      got += d;
    });
    socket.on('error', reject);
    socket.on('end', () => {
      const status = Number(got.slice(9, 12));
      const at = got.indexOf('\r\n\r\n');
      const body = at < 0 ? '' : got.slice(at + 4);
      resolve({ status, body });
    });
    socket.write(`${method} ${target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  });
}

const INTERNAL = 'INTERNAL REACHED';

interface App {
  readonly name: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Express with its defaults (case-insensitive routing); `mesh` undefined: the same app ungoverned. */
async function expressApp(mesh: Mesh | undefined): Promise<App> {
  const app = express();
  app.set('env', 'test'); // no stack on stderr for the targets Express refuses (a bad escape)
  if (mesh) app.use(mesh.express());
  app.all('/internal', (_q, r) => r.send(INTERNAL));
  app.all('/internal/*rest', (_q, r) => r.send(INTERNAL));
  app.post('/login', (_q, r) => r.send('login'));
  app.all('/keys', (_q, r) => r.send(INTERNAL));
  app.all('/admin/*rest', (_q, r) => r.send(INTERNAL));
  app.all('/', (_q, r) => r.send('other'));
  app.all('/*rest', (_q, r) => r.send('other'));
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    name: 'express',
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Fastify with its defaults (case-sensitive, percent-decoded routing). */
async function fastifyApp(mesh: Mesh | undefined): Promise<App> {
  const app = Fastify();
  if (mesh) await app.register(mesh.fastify);
  app.all('/internal', async () => INTERNAL);
  app.all('/internal/*', async () => INTERNAL);
  app.post('/login', async () => 'login');
  app.all('/*', async () => 'other');
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { name: 'fastify', port: (app.server.address() as AddressInfo).port, close: () => app.close() };
}

/** A node:http app that routes as many do: WHATWG URL's pathname, lower-cased. */
async function nodeApp(mesh: Mesh | undefined): Promise<App> {
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://h').pathname.toLowerCase();
    res.end(path === '/internal' || path.startsWith('/internal/') ? INTERNAL : path === '/login' ? 'login' : 'other');
  };
  const s = await listen(mesh ? mesh.httpHandler(listener) : listener);
  return { name: 'node:http', port: s.port, close: () => s.close() };
}

async function governedMesh(service: string): Promise<Mesh> {
  const mesh = createMesh({ service, port: 1, rules: new InMemoryKvStore(), registry: new InMemoryRegistry() });
  await mesh.rules.apply(
    JSON.stringify({
      service,
      auth: {
        rules: [
          { name: 'no-internal', action: 'deny', apis: [{ path: '/internal/**' }] },
          // A condition on request.path (as TSF's destination.interface converts), not a template.
          { name: 'no-keys', action: 'deny', when: [{ tag: 'request.path', op: 'equals', value: '/keys' }] },
          { name: 'no-admin', action: 'deny', when: [{ tag: 'request.path', op: 'regex', pattern: '^/admin(/|$)' }] },
        ],
      },
      ratelimit: { rules: [{ name: 'login', api: { method: 'POST', path: '/login' }, rate: 1, unit: 'minute', burst: 1 }] },
    }),
    { author: 'test' },
  );
  await mesh.rulesInForce(service);
  return mesh;
}

const starters = [expressApp, fastifyApp, nodeApp];

describe('path rules match the path the framework routes on', () => {
  // One mesh per framework: each has its own /login bucket.
  const meshes: Mesh[] = [];
  const apps: App[] = [];
  before(async () => {
    for (const start of starters) {
      const mesh = await governedMesh('orders');
      meshes.push(mesh);
      apps.push(await start(mesh));
    }
  });
  after(async () => {
    for (const app of apps) await app.close();
    for (const mesh of meshes) await mesh.close();
  });

  it('denies every spelling of a path under /internal that reaches a handler (was 200)', async () => {
    const denied = [
      '/internal/secrets',
      '/INTERNAL/secrets',
      '/Internal/Secrets',
      '/%69nternal/secrets',
      '/%49NTERNAL/secrets',
      'http://x/internal/secrets',
      'HTTP://X:8080/INTERNAL/secrets?q=1',
      '//internal/secrets',
      '/internal//secrets',
      '/internal/secrets#x',
      '/internal',
    ];
    const refused = [
      '/internal/..',
      '/internal/%2e%2e',
      '/public/../internal/secrets',
      '/internal\\secrets#x',
      'http://x\\internal/secrets',
      '*',
    ];
    for (const [i, app] of apps.entries()) {
      for (const target of denied) {
        const r = await raw(app.port, target);
        assert.equal(r.status, 403, `${app.name} ${target}: ${r.status} ${r.body}`);
        assert.match(r.body, /MESHLET_AUTH_DENIED/);
      }
      for (const target of refused) {
        const r = await raw(app.port, target);
        assert.equal(r.status, 400, `${app.name} ${target}: ${r.status} ${r.body}`);
        assert.doesNotMatch(r.body, new RegExp(INTERNAL));
      }
      // Each refusal counted (a per-request code: logged once per interval). `*` node answers itself.
      const counts = ((meshes[i] as Mesh).logger as unknown as { counts: ReadonlyMap<string, number> }).counts;
      assert.ok(
        (counts.get('MESHLET_BAD_REQUEST_TARGET') ?? 0) >= refused.length - 1,
        `${app.name}: ${counts.get('MESHLET_BAD_REQUEST_TARGET')}`,
      );
      for (const target of ['/public/x', '/internals', '/internal%2Fsecrets', '/Public/Internal/x']) {
        const r = await raw(app.port, target);
        assert.equal(r.status, 200, `${app.name} ${target}: ${r.status} ${r.body}`);
        assert.equal(r.body, 'other');
      }
    }
  });

  it('denies every spelling of a path a request.path condition names (was 200 for /KEYS, /keys/, /Admin/x)', async () => {
    const express = apps.find((a) => a.name === 'express') as App;
    for (const target of ['/keys', '/KEYS', '/keys/', '/k%65ys', '//Keys/', '/admin/x', '/Admin/x', '/ADMIN', 'http://x/AdMin/x?y']) {
      const r = await raw(express.port, target);
      assert.equal(r.status, 403, `${target}: ${r.status} ${r.body}`);
      assert.match(r.body, /MESHLET_AUTH_DENIED/);
    }
    for (const target of ['/keys/x', '/keysx', '/administrator']) {
      const r = await raw(express.port, target);
      assert.equal(r.status, 200, `${target}: ${r.status} ${r.body}`);
    }
  });

  it('refuses a path longer than 4,096 characters 414 before any rule or handler; its query is not counted', async () => {
    const at = `/${'a'.repeat(4095)}`;
    for (const [i, app] of apps.entries()) {
      const ok = await raw(app.port, `${at}?${'q'.repeat(8000)}`);
      assert.equal(ok.status, 200, `${app.name}: ${ok.status}`);
      const r = await raw(app.port, `${at}b`);
      assert.equal(r.status, 414, `${app.name}: ${r.status} ${r.body}`);
      assert.match(r.body, /MESHLET_REQUEST_PATH_TOO_LONG/);
      const counts = ((meshes[i] as Mesh).logger as unknown as { counts: ReadonlyMap<string, number> }).counts;
      assert.equal(counts.get('MESHLET_REQUEST_PATH_TOO_LONG'), 1, app.name);
    }
  });

  it('counts every spelling of POST /login against the one limit (was a fresh budget per spelling)', async () => {
    for (const app of apps) {
      const first = await raw(app.port, '/login', 'POST');
      assert.equal(first.status, 200, `${app.name}: ${first.body}`);
      for (const target of [
        '/login',
        '/Login',
        '/LOGIN',
        '/l%6Fgin',
        '/L%6fGiN/',
        'http://x/login',
        'HTTP://X/Login?next=1',
        '/login#x',
        '//login',
      ]) {
        const r = await raw(app.port, target, 'POST');
        assert.equal(r.status, 429, `${app.name} ${target}: ${r.status} ${r.body}`);
      }
    }
  });
});

describe('property: whatever the target, a handler under a denied prefix is not reached', () => {
  const SEGMENTS = [
    'internal',
    'INTERNAL',
    'iNtErNaL',
    '%69nternal',
    '%49NTERNAL',
    'intern%61l',
    'internal%2Fx',
    'internal;x',
    'internal\\x',
    'secrets',
    'public',
    '..',
    '.',
    '%2e%2e',
    '%2E',
    '.%2e',
    '',
    'a',
    '%',
    '%zz',
    '%C3%A9',
  ];
  const target = fc
    .tuple(
      fc.constantFrom('', 'http://x', 'HTTP://h:1', 'http://u@h'),
      fc.array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 4 }),
      fc.constantFrom('', '/', '?q=1', '#f', '?/internal/x', '//'),
    )
    .map(([prefix, segments, suffix]) => `${prefix}/${segments.join('/')}${suffix}`);

  for (const start of starters) {
    it(`on ${start.name.replace('App', '')}`, async () => {
      const mesh = await governedMesh('props');
      const governed = await start(mesh);
      const bare = await start(undefined);
      let reachedBare = 0;
      try {
        await fc.assert(
          fc.asyncProperty(target, async (t) => {
            const plain = await raw(bare.port, t);
            if (plain.body === INTERNAL) reachedBare++;
            const r = await raw(governed.port, t);
            // Denied (403), refused (400), or answered by node / the framework before any handler (400, 404).
            assert.notEqual(r.body, INTERNAL, `${t} reached the handler under /internal (${r.status})`);
            assert.notEqual(r.status, 500, t);
            if (plain.body === INTERNAL) assert.ok(r.status === 403 || r.status === 400, `${t}: ${r.status}`);
          }),
          { seed: 0x1f1f, numRuns: 150 },
        );
        // Not vacuous: the ungoverned app is reached by many of the targets.
        assert.ok(reachedBare >= 20, `only ${reachedBare} targets reached /internal on the bare app`);
      } finally {
        await governed.close();
        await bare.close();
        await mesh.close();
      }
    });
  }
});
