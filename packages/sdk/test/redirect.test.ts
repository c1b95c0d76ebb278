// Issue #16 item 5: the mesh headers (identity, caller, tags, trace context) go only to the
// routed instance. A redirect off the mesh must not carry them, so a host outside the mesh
// has nothing to replay. Real servers on 127.0.0.1.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { IDENTITY_HEADER, meshKey } from '@meshlet/auth';
import { CALLER_HEADER, createContext, InMemoryKvStore, InMemoryRegistry, MemoryLogger, runWithContext, TAG_HEADER } from '@meshlet/core';
import { adminAuthorization, listen, type TestServer } from '@meshlet/core/testing';
import { Agent, interceptors } from 'undici';
import { createMesh, MAX_REDIRECTS, type Mesh, RedirectRefusedError } from '../src/index.js';

const ADMIN_TOKEN = 'redirect-test-admin-token-0123';
const MESH_HEADERS = [IDENTITY_HEADER, CALLER_HEADER, TAG_HEADER, 'traceparent', 'tracestate'];

describe('redirects and the mesh headers', () => {
  const registry = new InMemoryRegistry();
  const rules = new InMemoryKvStore();
  const auth = { keys: [meshKey('k1', randomBytes(32).toString('base64'))] };
  const meshes: Mesh[] = [];
  const servers: TestServer[] = [];
  /** What the host outside the mesh received, request by request. */
  const outside: { url: string; method: string; headers: IncomingHttpHeaders; body: string }[] = [];
  let outsidePort = 0;
  let gateway: Mesh;
  let redirectorPort = 0;

  const serve = async (mesh: Mesh, handler: Parameters<Mesh['httpHandler']>[0]) => {
    const s = await listen(mesh.httpHandler(handler));
    servers.push(s);
    await mesh.register({ port: s.port });
    return s.port;
  };

  before(async () => {
    const evil = await listen((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        outside.push({ url: req.url ?? '', method: req.method ?? '', headers: req.headers, body });
        res.end('outside');
      });
    });
    servers.push(evil);
    outsidePort = evil.port;

    // The service the attacker wants to be admitted to: only gateway may call it.
    const payment = createMesh({ service: 'payment', registry, rules, auth, logger: new MemoryLogger() });
    meshes.push(payment);
    await serve(payment, (req, res) =>
      res.end(
        JSON.stringify({
          caller: payment.contextOf(req).caller.service ?? null,
          authorization: req.headers.authorization ?? null,
          cookie: req.headers.cookie ?? null,
        }),
      ),
    );
    await rules.put(
      'meshlet/rules/payment',
      JSON.stringify({
        service: 'payment',
        auth: { default: 'deny', rules: [{ name: 'gateway-only', action: 'allow', services: ['gateway'] }] },
      }),
    );
    await rules.put(
      'meshlet/rules/redirector',
      JSON.stringify({
        service: 'redirector',
        auth: { default: 'deny', rules: [{ name: 'gateway-only', action: 'allow', services: ['gateway'] }] },
      }),
    );

    // A service that redirects: off the mesh, to itself (relative), to another service by name.
    const redirector = createMesh({
      service: 'redirector',
      registry,
      rules,
      auth,
      logger: new MemoryLogger(),
      admin: { token: ADMIN_TOKEN },
    });
    meshes.push(redirector);
    redirectorPort = await serve(redirector, (req, res) => {
      const to = (location: string, status = 302) => {
        res.writeHead(status, { location });
        res.end();
      };
      const u = req.url ?? '/';
      if (u.startsWith('/out'))
        return to(`http://127.0.0.1:${outsidePort}/steal`, Number(new URL(u, 'http://x').searchParams.get('s') ?? 302));
      if (u === '/relative') return to('/echo');
      if (u === '/to-payment') return to('http://payment/pay');
      if (u === '/loop') return to('/loop');
      if (u === '/echo') {
        res.setHeader('content-type', 'application/json');
        return res.end(
          JSON.stringify({
            caller: redirector.contextOf(req).caller.service ?? null,
            identity: req.headers[IDENTITY_HEADER] ?? null,
            authorization: req.headers.authorization ?? null,
          }),
        );
      }
      res.statusCode = 404;
      res.end();
    });
    gateway = createMesh({ service: 'gateway', registry, rules, auth, tracing: { sampleRatio: 1 }, logger: new MemoryLogger() });
    meshes.push(gateway);
    await gateway.register({ port: 1 });
  });
  after(async () => {
    for (const m of meshes) await m.close();
    for (const s of servers) await s.close();
  });

  const inRequest = <T>(fn: () => Promise<T>) =>
    runWithContext(
      createContext({ tags: [['user-tier', 'vip']], trace: { traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01` } }),
      fn,
    );

  it('a 302 to a host outside the mesh gets none of the mesh headers, and it has nothing to replay', async () => {
    outside.length = 0;
    // The app forwards headers it received, mesh headers among them: those stop here too.
    const forwarded = {
      'x-app': 'mine',
      authorization: 'Bearer app',
      [TAG_HEADER]: 'lane=blue',
      'tsf-tags': '[]',
      'x-polaris-metadata-transitive-lane': 'blue',
    };
    const res = await inRequest(() => gateway.fetch('http://redirector/out', { headers: forwarded }));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'outside');
    assert.equal(outside.length, 1);
    const got = outside[0]?.headers ?? {};
    for (const h of MESH_HEADERS) assert.equal(got[h], undefined, `${h} reached the host outside the mesh`);
    // The application's own header goes on; its credentials do not cross origins (as fetch does).
    assert.equal(got['x-app'], 'mine');
    assert.equal(got.authorization, undefined);
    assert.equal(got['tsf-tags'], undefined);
    assert.equal(got['x-polaris-metadata-transitive-lane'], undefined);

    // The replay: the outside host calls the mesh services with what it received.
    const replayed: Record<string, string> = {};
    for (const [k, v] of Object.entries(got))
      if (typeof v === 'string' && !['host', 'connection', 'content-length'].includes(k)) replayed[k] = v;
    for (const port of [redirectorPort, servers[1]?.port ?? 0]) {
      const replay = await globalThis.fetch(`http://127.0.0.1:${port}/echo`, { headers: replayed });
      assert.equal(replay.status, 403, 'the replayed request was admitted');
    }
    // The anonymous attempt is counted by the service that refused it.
    const metrics = await (
      await globalThis.fetch(`http://127.0.0.1:${redirectorPort}/_meshlet/metrics`, {
        headers: adminAuthorization(ADMIN_TOKEN, redirectorPort),
      })
    ).text();
    assert.match(metrics, /meshlet_identity_checks_total\{outcome="unsigned"\} [1-9]/);
    assert.match(metrics, /meshlet_identity_checks_total\{outcome="verified"\} [1-9]/);
  });

  it('307 and 308 keep the method and body, 303 becomes a GET; still no mesh headers', async () => {
    for (const [status, method, body] of [
      [307, 'POST', 'payload'],
      [308, 'PUT', 'payload'],
      [303, 'GET', ''],
    ] as const) {
      outside.length = 0;
      const res = await inRequest(() =>
        gateway.fetch(`http://redirector/out?s=${status}`, { method: status === 308 ? 'PUT' : 'POST', body: 'payload' }),
      );
      assert.equal(res.status, 200);
      await res.text();
      assert.equal(outside[0]?.method, method, String(status));
      assert.equal(outside[0]?.body, body, String(status));
      for (const h of MESH_HEADERS) assert.equal(outside[0]?.headers[h], undefined, `${status}: ${h}`);
    }
  });

  it('a relative redirect stays in the mesh: governed again, with an identity signed for the service', async () => {
    const res = await inRequest(() => gateway.fetch('http://redirector/relative'));
    assert.equal(res.status, 200);
    const echo = (await res.json()) as { caller: string; identity: string };
    assert.equal(echo.caller, 'gateway');
    assert.match(echo.identity, /^v1\|k1\|redirector\|gateway\|/);
  });

  it("a redirect to another service by name is governed again, with an identity for that service and none of the app's credentials", async () => {
    const credentials = { authorization: 'Bearer for-redirector', cookie: 'sid=for-redirector', 'proxy-authorization': 'Basic x' };
    const res = await inRequest(() => gateway.fetch('http://redirector/to-payment', { headers: credentials }));
    assert.equal(res.status, 200);
    // Given for redirector: another origin, as fetch drops them across origins.
    assert.deepEqual(await res.json(), { caller: 'gateway', authorization: null, cookie: null });
  });

  it("a relative redirect keeps the app's credentials: the same service, the same origin to the app", async () => {
    const res = await inRequest(() => gateway.fetch('http://redirector/relative', { headers: { authorization: 'Bearer for-redirector' } }));
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { authorization: string | null }).authorization, 'Bearer for-redirector');
  });

  it('a token the outside host could have kept is refused by any other service (audience)', async () => {
    const res = await inRequest(() => gateway.fetch('http://redirector/relative'));
    const { identity } = (await res.json()) as { identity: string };
    const replay = await globalThis.fetch(`http://127.0.0.1:${servers[1]?.port}/pay`, { headers: { [IDENTITY_HEADER]: identity } });
    assert.equal(replay.status, 403);
  });

  it('a redirect loop stops after MAX_REDIRECTS with a coded error; manual mode hands the 3xx back', async () => {
    await assert.rejects(gateway.fetch('http://redirector/loop'), (err: unknown) => {
      assert.ok(err instanceof RedirectRefusedError);
      assert.equal(err.code, 'MESHLET_REDIRECT_REFUSED');
      assert.match(err.message, new RegExp(`more than ${MAX_REDIRECTS}`));
      return true;
    });
    outside.length = 0;
    const manual = await gateway.fetch('http://redirector/out', { redirect: 'manual' });
    assert.equal(manual.status, 302);
    assert.equal(outside.length, 0);
  });

  it("redirect: 'error' fails the call as fetch does, and does not count against the instance that answered", async () => {
    outside.length = 0;
    for (let i = 0; i < 8; i++)
      await assert.rejects(gateway.fetch('http://redirector/out', { redirect: 'error' }), (err: unknown) => {
        assert.ok(err instanceof TypeError);
        assert.match(String((err as Error & { cause?: Error }).cause?.message), /unexpected redirect/);
        return true;
      });
    assert.equal(outside.length, 0);
    // Counted as failures, eight in a row would eject it (5, the default outlier detection;
    // with one instance, the 10% bound vetoes the trip, so the count is what is read).
    const states = gateway.breakers.snapshot().filter((s) => s.breaker.service === 'redirector' && s.breaker.instance !== undefined);
    assert.ok(states.length > 0, 'the instance has a breaker');
    for (const s of states) assert.deepEqual([s.failures, s.consecutiveFailures, s.state], [0, 0, 'closed'], `${s.breaker.instance}`);
  });

  it("an application's dispatcher that follows redirects (undici's interceptor) does not follow one for a governed call", async () => {
    const following = new Agent().compose(interceptors.redirect({ maxRedirections: 3 }));
    try {
      outside.length = 0;
      // mesh.request never follows: the 302 comes back, and nothing went to the host outside.
      const res = await inRequest(() => gateway.request('http://redirector/out', { dispatcher: following }));
      assert.equal(res.statusCode, 302);
      await res.body.dump();
      // mesh.fetch with it in init: the 3xx as given with 'manual'; followed by the mesh (no mesh headers) by default.
      const manual = await inRequest(() =>
        gateway.fetch('http://redirector/out', { dispatcher: following, redirect: 'manual' } as unknown as RequestInit),
      );
      assert.equal(manual.status, 302);
      assert.equal(outside.length, 0, 'the dispatcher followed the redirect');
      const followed = await inRequest(() => gateway.fetch('http://redirector/out', { dispatcher: following } as unknown as RequestInit));
      assert.equal(await followed.text(), 'outside');
      assert.equal(outside.length, 1);
      for (const h of MESH_HEADERS) assert.equal(outside[0]?.headers[h], undefined, h);
    } finally {
      await following.close();
    }
  });

  it("takes any object with undici's dispatch as the application's dispatcher, telling it maxRedirections 0", async () => {
    const agent = new Agent();
    const seen: unknown[] = [];
    // Not a Dispatcher of this undici (no compose): a wrapper of the app's own, as a test stub or another undici's would be.
    const plain = {
      dispatch(options: Record<string, unknown>, handler: unknown) {
        seen.push(options.maxRedirections);
        return agent.dispatch(options as never, handler as never);
      },
    };
    try {
      const res = await inRequest(() => gateway.request('http://redirector/out', { dispatcher: plain as never }));
      assert.equal(res.statusCode, 302);
      await res.body.dump();
      assert.deepEqual(seen, [0]);
    } finally {
      await agent.close();
    }
  });

  it('a streamed body is not sent a second time on a 307: refused with a code', async () => {
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode('once'));
        c.close();
      },
    });
    await assert.rejects(
      gateway.fetch('http://redirector/out?s=307', { method: 'POST', body: stream, duplex: 'half' } as unknown as RequestInit),
      (err: unknown) => err instanceof RedirectRefusedError,
    );
  });
});
