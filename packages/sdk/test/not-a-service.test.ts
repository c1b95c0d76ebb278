// A call to a single-label host that is not a service (a misspelt service name, one never
// registered) went out to DNS and failed as a bare `fetch failed` / ENOTFOUND, nothing
// logged. Every front end (fetch, request, axios, got) now says so through the mesh's
// throttled logger, MESHLET_NOT_A_SERVICE, counted, and so do the redirects mesh.fetch and
// axios follow themselves to such a host; nothing for a service, a host with a
// dot, an IP address or localhost. The calls here never reach DNS: the ungoverned send is
// the test's own (fetch, axios's adapter), aborted before it connects (request), or looked up
// by the test (got).
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, ManualClock, MemoryLogger, type ThrottledLogger } from '@meshlet/core';
import { listen, type TestServer } from '@meshlet/core/testing';
import axios, { type AxiosAdapter } from 'axios';
import got from 'got';
import { axiosAdapter } from '../src/axios.js';
import { createMesh, gotHooks, type Mesh } from '../src/index.js';
import { meshInternals } from '../src/mesh-internals.js';

const CODE = 'MESHLET_NOT_A_SERVICE';
const logger = new MemoryLogger();
const clock = new ManualClock(1_000_000);
/** URLs the mesh's fetch sent ungoverned. */
const sentOut: string[] = [];
let mesh: Mesh;
let users: TestServer;

before(async () => {
  const registry = new InMemoryRegistry();
  users = await listen((req, res) => {
    // A redirect off the mesh, to a single-label host that is no service.
    if (req.url === '/away') {
      res.writeHead(302, { location: 'http://orders-r/there' });
      res.end();
      return;
    }
    res.end('hi');
  });
  await registry.register({
    id: 'user-svc-1',
    service: 'user-svc',
    address: '127.0.0.1',
    port: users.port,
    tags: [],
    metadata: {},
    health: 'passing',
  });
  mesh = createMesh({
    service: 'gw',
    registry,
    rules: new InMemoryKvStore(),
    logger,
    clock,
    // Governed calls (to the instance) sent on; any other recorded and answered here.
    fetch: async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.startsWith(`http://127.0.0.1:${users.port}/`)) return globalThis.fetch(input, init);
      sentOut.push(url);
      return new Response('outside');
    },
  });
});
after(async () => {
  await mesh.close();
  await users.close();
});

const lines = () => logger.entries.filter((e) => e.fields?.code === CODE);
const counted = () => (meshInternals(mesh).logger as ThrottledLogger).counts.get(CODE) ?? 0;

it('says nothing of calls to a service, a host with a dot, an IP address or localhost', async () => {
  for (let i = 0; i < 2; i++) assert.equal(await (await mesh.fetch('http://user-svc/x')).text(), 'hi');
  for (const url of [
    'http://api.example.com/x',
    'http://127.0.0.1:1/x',
    'http://[::1]:1/x',
    'http://localhost:1/x',
    'http://user-svc.local/x',
  ])
    assert.equal(await (await mesh.fetch(url)).text(), 'outside', url);
  assert.equal(counted(), 0);
  assert.deepEqual(lines(), []);
});

it('logs a single-label host that is not a service at warn, once per host, naming it cut; each new host its own line', async () => {
  const res = await mesh.fetch('http://user-svcx/x');
  assert.equal(await res.text(), 'outside');
  assert.equal(sentOut.at(-1), 'http://user-svcx/x', 'sent as given, ungoverned');
  await mesh.fetch('http://user-svcx/y');
  const [line] = lines();
  assert.equal(line?.level, 'warn');
  assert.match(line?.message ?? '', /ungoverned.*not a service in the registry/);
  assert.deepEqual([line?.fields?.host, typeof line?.fields?.services], ['user-svcx', 'number']);
  // The message is fixed; the host in its field is cut, whatever length it was given. A
  // second host, within the same minute, has its own line (not throttled behind the first).
  const long = `h${'x'.repeat(5_000)}`;
  await mesh.fetch(`http://${long}/x`);
  assert.equal(lines().length, 2, 'a second host in the same minute is written');
  // A minute on, a host already said is not said again.
  clock.advance(60_000);
  await mesh.fetch('http://user-svcx/z');
  await mesh.fetch(`http://${long}/x`);
  const written = lines();
  assert.deepEqual(
    written.map((l) => l.fields?.host),
    ['user-svcx', long.slice(0, 128)],
    'once per host, whatever the time',
  );
  assert.equal(written[1]?.message, line?.message);
  assert.equal(counted(), 2);
});

it('is said by mesh.request, axios and got as by mesh.fetch', async () => {
  const before = counted();
  // Aborted before it connects: the host is never looked up.
  await assert.rejects(mesh.request('http://orders-a/x', { signal: AbortSignal.abort() }));
  assert.equal(counted(), before + 1, 'mesh.request');
  const outside: AxiosAdapter = async (config) => ({ data: 'outside', status: 200, statusText: 'OK', headers: {}, config });
  const client = axios.create({ adapter: axiosAdapter(mesh, { adapter: outside }) });
  assert.equal((await client.get('http://orders-b/x')).data, 'outside');
  assert.equal(counted(), before + 2, 'axios');
  const hooks = gotHooks(mesh);
  // The name looked up as 127.0.0.1 by the test, not DNS: got sends it itself, to the server here.
  const lookup = (_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
    options.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4);
  assert.equal(await got(`http://orders-c:${users.port}/x`, { hooks, dnsLookup: lookup as never, retry: { limit: 0 } }).text(), 'hi');
  assert.equal(counted(), before + 3, 'got');
});

it('is said of a redirect to a single-label host that is not a service, as of a call to it', async () => {
  const before = counted();
  const res = await mesh.fetch('http://user-svc/away');
  assert.equal(await res.text(), 'outside');
  assert.equal(sentOut.at(-1), 'http://orders-r/there', 'followed off the mesh');
  assert.equal(counted(), before + 1);
  assert.equal(lines().at(-1)?.fields?.host, 'orders-r');
  // axios follows a redirect through the same step: the instance's 302, then off the mesh.
  const adapter: AxiosAdapter = async (config) =>
    String(config.url).includes(`127.0.0.1:${users.port}/`)
      ? { data: '', status: 302, statusText: 'Found', headers: { location: 'http://orders-s/there' }, config }
      : { data: 'outside', status: 200, statusText: 'OK', headers: {}, config };
  const client = axios.create({ adapter: axiosAdapter(mesh, { adapter }) });
  assert.equal((await client.get('http://user-svc/away')).data, 'outside');
  assert.equal(counted(), before + 2, 'axios');
  assert.equal(lines().at(-1)?.fields?.host, 'orders-s');
});
