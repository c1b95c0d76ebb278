// Against a real Consul dev agent (see src/testing/consul-agent.ts): no fakes.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { field, type Instance, MemoryLogger, RULES_PREFIX, type RuleKind, RuleWatcher } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry, InvalidMetadataError } from '../src/index.js';
import { type ConsulAgent, startConsulAgent } from '../src/testing/consul-agent.js';

const limitKind: RuleKind<{ max: number }> = {
  name: 'limit',
  parse(raw, path) {
    const obj = field.object(raw, path);
    field.onlyKeys(obj, path, ['max']);
    return { max: field.integer(obj.max, `${path}.max`, 1, 100) };
  },
};

const instance = (id: string, port: number, metadata: Record<string, string> = {}): Instance => ({
  id,
  service: 'orders',
  address: '127.0.0.1',
  port,
  tags: ['blue'],
  metadata: { version: '1.2.0', zone: 'zone-a', ...metadata },
  health: 'passing',
});

/** Resolves with the first value the watch delivers that passes `test`. */
function until<T>(subscribe: (cb: (v: T) => void) => () => void, test: (v: T) => boolean): Promise<T> {
  return new Promise((resolve) => {
    let off: (() => void) | undefined;
    let done = false;
    off = subscribe((v) => {
      if (done || !test(v)) return;
      done = true;
      queueMicrotask(() => off?.());
      resolve(v);
    });
    if (done) off();
  });
}

async function healthServer(): Promise<{ server: Server; port: number; setHealthy: (ok: boolean) => void }> {
  let healthy = true;
  const server = createServer((req, res) => {
    res.statusCode = req.url === '/health' && !healthy ? 503 : 200;
    res.end(healthy ? 'UP' : 'DOWN');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, setHealthy: (ok) => (healthy = ok) };
}

describe('ConsulRegistry and ConsulKvStore on a real Consul agent', () => {
  let agent: ConsulAgent;
  let app: Awaited<ReturnType<typeof healthServer>>;
  let dir: string;
  before(async () => {
    agent = await startConsulAgent();
    app = await healthServer();
    dir = await mkdtemp(join(tmpdir(), 'meshlet-consul-'));
  });
  after(async () => {
    await agent.stop();
    app.server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('registers the way Spring Cloud Consul does', async () => {
    const registry = new ConsulRegistry({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
    await registry.register(instance('orders-1', app.port));
    const services = (
      await registry.client.request<
        Record<string, { ID: string; Service: string; Meta: Record<string, string>; Tags: string[]; Port: number }>
      >('GET', '/v1/agent/services')
    ).body;
    const svc = services['orders-1'];
    assert.ok(svc);
    assert.equal(svc.Service, 'orders');
    assert.equal(svc.Port, app.port);
    assert.deepEqual(svc.Tags, ['blue']);
    assert.deepEqual(svc.Meta, { secure: 'false', version: '1.2.0', zone: 'zone-a' });
    const checks = (
      await registry.client.request<Record<string, { ServiceID: string; Type: string; Status: string; Interval?: string }>>(
        'GET',
        '/v1/agent/checks',
      )
    ).body;
    const check = Object.values(checks).find((c) => c.ServiceID === 'orders-1');
    assert.equal(check?.Type, 'http');
    assert.equal(check?.Status, 'passing', 'registered after readiness: starts passing');
    const found = await registry.healthyInstances('orders');
    assert.deepEqual(
      found.map((i) => [i.id, i.address, i.port, i.metadata.zone]),
      [['orders-1', '127.0.0.1', app.port, 'zone-a']],
    );
    assert.ok((await registry.services()).includes('orders'));
    await registry.deregister('orders-1');
    await registry.close();
  });

  it('a watch listener that throws, or rejects, is logged (MESHLET_REGISTRY_LISTENER_FAILED); the others are still told and the watch goes on', async () => {
    const logger = new MemoryLogger();
    const registry = new ConsulRegistry({ address: agent.address, waitSeconds: 5, logger });
    try {
      const offThrow = registry.watch('listened', (list) => {
        if (list.length > 0) throw new Error('app listener broke');
      });
      const offReject = registry.watch('listened', async (list) => {
        if (list.length > 0) throw new Error('async app listener broke');
      });
      const seen: number[] = [];
      const offSeen = registry.watch('listened', (list) => seen.push(list.length));
      await registry.register({ ...instance('listened-1', app.port), service: 'listened' });
      await until<readonly Instance[]>(
        (cb) => registry.watch('listened', cb),
        (l) => l.length === 1,
      );
      await registry.register({ ...instance('listened-2', app.port), service: 'listened' });
      await until<readonly Instance[]>(
        (cb) => registry.watch('listened', cb),
        (l) => l.length === 2,
      );
      const failed = () => logger.entries.filter((e) => e.fields?.code === 'MESHLET_REGISTRY_LISTENER_FAILED');
      // Each change told the failing listeners (both failures logged) and the last listener too.
      while (failed().length < 4) await new Promise((r) => setImmediate(r));
      assert.ok(seen.includes(1) && seen.includes(2), `the third listener saw ${seen}`);
      offThrow();
      offReject();
      offSeen();
    } finally {
      await registry.deregister('listened-1');
      await registry.deregister('listened-2');
      await registry.close();
    }
  });

  it('an instance at an IPv6 address: registered bare, its HTTP check calls http://[::1]:<port>/health, callers read it bare', async () => {
    const v6 = createServer((_req, res) => res.end('UP')).listen(0, '::1');
    await once(v6, 'listening');
    const port = (v6.address() as AddressInfo).port;
    const registry = new ConsulRegistry({
      address: agent.address,
      waitSeconds: 5,
      logger: new MemoryLogger(),
      healthCheck: { type: 'http', interval: '1s' },
    });
    try {
      await registry.register({ ...instance('orders-v6', port), address: '::1' });
      // The check's output, once it has run, names the URL it called.
      let output = '';
      while (output === '') {
        const checks = (await registry.client.request<Record<string, { Output: string }>>('GET', '/v1/agent/checks')).body;
        output = checks['service:orders-v6']?.Output ?? '';
        if (output === '') await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(output, new RegExp(`^HTTP GET http://\\[::1\\]:${port}/health: 200 OK`));
      const found = await registry.healthyInstances('orders');
      assert.deepEqual(
        found.filter((i) => i.id === 'orders-v6').map((i) => [i.address, i.port]),
        [['::1', port]],
      );
    } finally {
      await registry.deregister('orders-v6');
      await registry.close();
      v6.close();
    }
  });

  it('metadataInTags: writes metadata as key=value tags too, and reads a Hoxton-style registration’s tags as metadata', async () => {
    const hoxton = new ConsulRegistry({ address: agent.address, waitSeconds: 5, metadataInTags: true, logger: new MemoryLogger() });
    const plain = new ConsulRegistry({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
    try {
      await hoxton.register(instance('orders-h', app.port));
      const written = (await hoxton.client.request<Record<string, { Tags: string[] }>>('GET', '/v1/agent/services')).body['orders-h'];
      assert.deepEqual(written?.Tags.sort(), ['blue', 'secure=false', 'version=1.2.0', 'zone=zone-a']);
      await hoxton.deregister('orders-h');

      // As Spring Cloud Consul 2.2 registers: metadata in tags, Meta (if any) beside them.
      await hoxton.client.request('PUT', '/v1/agent/service/register', {
        body: JSON.stringify({
          ID: 'legacy-1',
          Name: 'legacy',
          Address: '127.0.0.1',
          Port: app.port,
          Tags: ['zone=zone-h', 'version=1.0', 'secure=false', 'plain', '=odd'],
          Meta: { version: '2.0' },
        }),
      });
      const [read] = await hoxton.healthyInstances('legacy');
      assert.deepEqual(read?.metadata, { zone: 'zone-h', version: '2.0', secure: 'false' }, 'Meta wins a key both have');
      const [untouched] = await plain.healthyInstances('legacy');
      assert.deepEqual(untouched?.metadata, { version: '2.0' }, 'off by default: tags stay tags');
      await hoxton.client.request('PUT', '/v1/agent/service/deregister/legacy-1');
    } finally {
      await hoxton.close();
      await plain.close();
    }
  });

  it('refuses metadata Consul would reject, naming the key, before asking Consul', async () => {
    const registry = new ConsulRegistry({ address: agent.address });
    for (const bad of [{ 'app.version': '1' }, { 'consul-x': '1' }, { ok: 'v'.repeat(513) }]) {
      await assert.rejects(registry.register(instance('bad-1', app.port, bad)), InvalidMetadataError);
    }
    const many = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, 'v']));
    await assert.rejects(registry.register(instance('bad-2', app.port, many)), /at most 64/);
    await registry.close();
  });

  it('measures a metadata value in UTF-8 bytes, as Consul does: 171 × "€" (513 bytes) refused naming the key, 128 × "😀" (512) registered', async () => {
    const registry = new ConsulRegistry({ address: agent.address });
    const over = '€'.repeat(171);
    const direct = { ID: 'bytes-0', Name: 'orders', Address: '127.0.0.1', Port: app.port, Meta: { zone: over } };
    await assert.rejects(
      registry.client.request('PUT', '/v1/agent/service/register', { body: JSON.stringify(direct) }),
      /HTTP 400/,
      'Consul itself refuses 171 characters of 3 bytes each',
    );
    await assert.rejects(
      registry.register(instance('bytes-1', app.port, { zone: over })),
      (err: unknown) => err instanceof InvalidMetadataError && err.key === 'zone' && /512 bytes/.test(err.message),
    );
    await registry.register(instance('bytes-2', app.port, { zone: '😀'.repeat(128) }));
    const services = (await registry.client.request<Record<string, { Meta: Record<string, string> }>>('GET', '/v1/agent/services')).body;
    assert.equal(services['bytes-2']?.Meta.zone, '😀'.repeat(128));
    await registry.deregister('bytes-2');
    await registry.close();
  });

  it('follows health: a failing check removes the instance, recovery brings it back, deregister removes it', async () => {
    const registry = new ConsulRegistry({
      address: agent.address,
      waitSeconds: 5,
      healthCheck: { type: 'http', interval: '1s', timeout: '1s' },
      logger: new MemoryLogger(),
    });
    await registry.register(instance('orders-2', app.port));
    const watch = (cb: (v: readonly Instance[]) => void) => registry.watch('orders', cb);
    await until(watch, (list) => list.some((i) => i.id === 'orders-2'));
    app.setHealthy(false);
    await until(watch, (list) => !list.some((i) => i.id === 'orders-2'));
    app.setHealthy(true);
    await until(watch, (list) => list.some((i) => i.id === 'orders-2'));
    await registry.deregister('orders-2');
    const after = await until(watch, (list) => !list.some((i) => i.id === 'orders-2'));
    assert.equal(after.length, 0);
    await registry.close();
  });

  it('keeps a TTL-checked instance passing with its heartbeat', async () => {
    const registry = new ConsulRegistry({ address: agent.address, waitSeconds: 5, healthCheck: { type: 'ttl', ttl: '3s' } });
    await registry.register(instance('orders-ttl', app.port));
    const checks = (
      await registry.client.request<Record<string, { ServiceID: string; Type: string; Status: string }>>('GET', '/v1/agent/checks')
    ).body;
    const check = Object.values(checks).find((c) => c.ServiceID === 'orders-ttl');
    assert.deepEqual([check?.Type, check?.Status], ['ttl', 'passing']);
    await registry.deregister('orders-ttl');
    await registry.close();
  });

  it('KV: compare-and-set, prefix lists, and watches by blocking query', async () => {
    const kv = new ConsulKvStore({ address: agent.address, waitSeconds: 5 });
    assert.equal(await kv.get('meshlet/rules/orders'), undefined);
    assert.equal(await kv.put('meshlet/rules/orders', '{"v":1} ✓', { ifRevision: 0 }), true);
    assert.equal(await kv.put('meshlet/rules/orders', 'x', { ifRevision: 0 }), false);
    const e = await kv.get('meshlet/rules/orders');
    assert.equal(e?.value, '{"v":1} ✓');
    const seen: string[] = [];
    const changed = until<readonly { value: string }[]>(
      (cb) =>
        kv.watch('meshlet/rules/', (entries) => {
          seen.push(entries.map((x) => x.value).join('+'));
          cb(entries);
        }),
      (entries) => entries.length === 2,
    );
    assert.equal(await kv.put('meshlet/rules/orders', '{"v":2}', { ifRevision: e?.revision ?? -1 }), true);
    await kv.put('meshlet/rules/users', 'u');
    await changed;
    assert.equal(seen.at(-1), '{"v":2}+u');
    assert.deepEqual(
      (await kv.list('meshlet/rules/')).map((x) => x.key),
      ['meshlet/rules/orders', 'meshlet/rules/users'],
    );
    assert.equal(await kv.delete('meshlet/rules/users'), true);
    assert.deepEqual(
      (await kv.list('meshlet/rules/')).map((x) => x.key),
      ['meshlet/rules/orders'],
    );
  });

  it('KV: putAll is one transaction; a failed compare-and-set writes nothing', async () => {
    const kv = new ConsulKvStore({ address: agent.address });
    assert.equal(
      await kv.putAll([
        { key: 'txn/doc', value: 'v1 ✓', ifRevision: 0 },
        { key: 'txn/history/1', value: 'h1', ifRevision: 0 },
        { key: 'txn/plain', value: 'p' },
      ]),
      true,
    );
    const doc = await kv.get('txn/doc');
    assert.equal(doc?.value, 'v1 ✓');
    const stale = (doc?.revision ?? 0) - 1;
    assert.equal(
      await kv.putAll([
        { key: 'txn/doc', value: 'v2', ifRevision: stale },
        { key: 'txn/history/2', value: 'h2', ifRevision: 0 },
        { key: 'txn/plain', value: null },
      ]),
      false,
    );
    assert.deepEqual(
      (await kv.list('txn/')).map((e) => `${e.key}=${e.value}`),
      ['txn/doc=v1 ✓', 'txn/history/1=h1', 'txn/plain=p'],
    );
    // delete with ifRevision 0 holds only while the key is absent, as delete() does.
    assert.equal(await kv.putAll([{ key: 'txn/plain', value: null, ifRevision: 0 }]), false);
    assert.equal(await kv.putAll([{ key: 'txn/absent', value: null, ifRevision: 0 }]), true);
    assert.equal(await kv.putAll([{ key: 'txn/doc', value: null, ifRevision: doc?.revision ?? -1 }]), true);
    assert.equal(await kv.get('txn/doc'), undefined);
    // Past Consul's 64 operations a transaction: refused with a code before it is sent, nothing written.
    const many = Array.from({ length: 65 }, (_, i) => ({ key: `txn/many/${i}`, value: 'x' }));
    await assert.rejects(kv.putAll(many), (err: unknown) => (err as { code?: string }).code === 'MESHLET_KV_TOO_MANY_WRITES');
    assert.deepEqual(await kv.list('txn/many/'), []);
  });

  it("KV: the watches of 100 services' rules ride on one blocking query of meshlet/rules/; a change reaches only its own watch", async (t) => {
    const store = new ConsulKvStore({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
    // Every KV read the store sends, counted where it leaves for the agent.
    const reads: string[] = [];
    const request = store.client.request.bind(store.client);
    store.client.request = ((method, target, options) => {
      if (method === 'GET' && target.startsWith('/v1/kv/')) reads.push(target);
      return request(method, target, options);
    }) as typeof store.client.request;
    const N = 100;
    const key = (i: number) => `${RULES_PREFIX}shared-${String(i).padStart(3, '0')}`;
    await Promise.all(Array.from({ length: N }, (_, i) => store.put(key(i), JSON.stringify({ limit: { max: (i % 100) + 1 } }))));
    const told: (readonly { key: string; value: string }[])[][] = Array.from({ length: N }, () => []);
    const waiting = new Map<number, { n: number; resolve: () => void }>();
    /** Resolves once watch `i` has been told `n` times. */
    const heard = (i: number, n: number) =>
      (told[i]?.length ?? 0) >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.set(i, { n, resolve }));
    const offs = Array.from({ length: N }, (_, i) =>
      store.watch(key(i), (entries) => {
        told[i]?.push(entries);
        const w = waiting.get(i);
        if (w && (told[i]?.length ?? 0) >= w.n) w.resolve();
      }),
    );
    t.after(() => {
      for (const off of offs) off();
    });
    await Promise.all(Array.from({ length: N }, (_, i) => heard(i, 1)));
    assert.deepEqual([...store.queries], [[RULES_PREFIX, N]]);
    assert.equal(reads.filter((r) => r.includes('index=0')).length, 1, 'one first read for every watch');

    // One document written: its watch alone is told, with the new text.
    await store.put(key(7), '{"limit":{"max":70}}');
    await heard(7, 2);
    assert.equal(told[7]?.[1]?.[0]?.value, '{"limit":{"max":70}}');
    // A key nobody follows, then one that is: the shared query wakes for both, and tells only the second's watch.
    await store.put(`${RULES_PREFIX}not-followed`, '{}');
    await store.put(key(7), '{"limit":{"max":71}}');
    await heard(7, 3);
    // A document deleted: its watch hears "none".
    await store.delete(key(8));
    await heard(8, 2);
    assert.deepEqual(told[8]?.[1], []);
    assert.deepEqual(
      told.map((t) => t.length),
      Array.from({ length: N }, (_, i) => (i === 7 ? 3 : i === 8 ? 2 : 1)),
    );

    // A watch started now is told at once from the last answer: no read of its own.
    const before = reads.length;
    let late: readonly { value: string }[] | undefined;
    const offLate = store.watch(key(50), (entries) => {
      late = entries;
    });
    assert.deepEqual(
      late?.map((e) => e.value),
      ['{"limit":{"max":51}}'],
    );
    assert.equal(reads.length, before);
    offLate();
    for (const off of offs) off();
    assert.equal(store.queries.size, 0, 'the query ends with its last watch');
    await store.delete(`${RULES_PREFIX}not-followed`);
    await Promise.all(Array.from({ length: N }, (_, i) => store.delete(key(i))));
  });

  it('KV snapshot: holds the last rule document the watcher accepted, never one it refused', async (t) => {
    const snapshotFile = join(dir, 'rules-snapshot.json');
    const key = `${RULES_PREFIX}orders`;
    const doc = (max: number) => JSON.stringify({ service: 'orders', limit: { max } });
    const watchRules = (store: ConsulKvStore) => {
      const watcher = new RuleWatcher({ kv: store, service: 'orders', kinds: [limitKind], logger: new MemoryLogger() }).start();
      t.after(() => watcher.close()); // also when an assertion fails: a watch keeps the process alive
      return watcher;
    };
    const saved = async () =>
      (JSON.parse(await readFile(snapshotFile, 'utf8')) as { prefixes: Record<string, { value: string }[]> }).prefixes[key]?.map(
        (e) => e.value,
      );
    const store = new ConsulKvStore({ address: agent.address, waitSeconds: 5, snapshotFile, logger: new MemoryLogger() });
    const watcher = watchRules(store);
    await store.put(key, doc(5));
    const good = (await store.get(key))?.revision ?? 0;
    await watcher.until(good);
    // A document the validator refuses (max over 100): the good one stays in force here…
    await store.put(key, doc(500));
    const refused = (await store.get(key))?.revision ?? 0;
    await assert.rejects(watcher.until(refused), { code: 'MESHLET_RULES_REJECTED' });
    await store.flush();
    // …and in the snapshot, so that a restart during an outage applies the good one too.
    assert.deepEqual(await saved(), [doc(5)]);
    watcher.close();

    // Started with Consul unreachable: the snapshot's document is in force.
    const offline = new ConsulKvStore({ address: '127.0.0.1:1', waitSeconds: 1, snapshotFile, logger: new MemoryLogger() });
    const restarted = watchRules(offline);
    await restarted.ready;
    assert.deepEqual(restarted.section(limitKind), { max: 5 });
    assert.equal(restarted.status.rejected, 0);
    restarted.close();

    // Accepted again: the snapshot follows.
    const back = watchRules(store);
    await store.put(key, doc(7));
    await back.until((await store.get(key))?.revision ?? 0);
    await store.flush();
    assert.deepEqual(await saved(), [doc(7)]);
    back.close();
    await store.delete(key);
  });

  it('the snapshot file keeps the services other processes (or an earlier run) wrote: each write merges', async () => {
    const snapshotFile = join(dir, 'merged-snapshot.json');
    const saved = async () =>
      Object.fromEntries(
        Object.entries((JSON.parse(await readFile(snapshotFile, 'utf8')) as { services: Record<string, Instance[]> }).services).map(
          ([service, list]) => [service, list.map((i) => i.id)],
        ),
      );
    const follow = (registry: ConsulRegistry, service: string, id: string) =>
      until(
        (cb: (v: readonly Instance[]) => void) => registry.watch(service, cb),
        (l) => l.some((i) => i.id === id),
      );
    const writer = new ConsulRegistry({ address: agent.address, waitSeconds: 5, logger: new MemoryLogger() });
    await writer.register(instance('orders-7', app.port));
    await writer.register({ ...instance('payments-7', app.port), service: 'payments' });

    // Two processes on one host, one file: one follows orders, the other payments.
    const a = new ConsulRegistry({ address: agent.address, waitSeconds: 5, snapshotFile, logger: new MemoryLogger() });
    const b = new ConsulRegistry({ address: agent.address, waitSeconds: 5, snapshotFile, logger: new MemoryLogger() });
    await follow(a, 'orders', 'orders-7');
    await a.close(); // flushes
    await follow(b, 'payments', 'payments-7');
    await b.close();
    assert.deepEqual(await saved(), { orders: ['orders-7'], payments: ['payments-7'] });

    // A restart that follows payments only (so far) keeps orders in the file for the next outage.
    const restarted = new ConsulRegistry({ address: agent.address, waitSeconds: 5, snapshotFile, logger: new MemoryLogger() });
    await follow(restarted, 'payments', 'payments-7');
    await restarted.close();
    assert.deepEqual(await saved(), { orders: ['orders-7'], payments: ['payments-7'] });

    await writer.deregister('orders-7');
    await writer.deregister('payments-7');
    await writer.close();
  });

  it('survives a Consul outage on the last known instances, and a restart during it from the snapshot', async () => {
    const snapshotFile = join(dir, 'registry-snapshot.json');
    const logger = new MemoryLogger();
    const registry = new ConsulRegistry({ address: agent.address, waitSeconds: 5, snapshotFile, logger });
    await registry.register(instance('orders-3', app.port));
    await until(
      (cb: (v: readonly Instance[]) => void) => registry.watch('orders', cb),
      (l) => l.some((i) => i.id === 'orders-3'),
    );
    await registry.close(); // flushes the snapshot

    const live = new ConsulRegistry({ address: agent.address, waitSeconds: 5, snapshotFile, logger });
    const seen: string[][] = [];
    live.watch('orders', (l) => seen.push(l.map((i) => i.id)));
    await until(
      (cb: (v: readonly Instance[]) => void) => live.watch('orders', cb),
      (l) => l.length === 1,
    );

    await agent.stop();
    // A process started during the outage routes from the snapshot.
    const restarted = new ConsulRegistry({ address: agent.address, waitSeconds: 5, snapshotFile, logger });
    assert.deepEqual(
      (await restarted.healthyInstances('orders')).map((i) => i.id),
      ['orders-3'],
    );
    assert.ok((await restarted.services()).includes('orders'));
    // The running one keeps the last known instances and says it is degraded.
    assert.deepEqual(
      (await live.healthyInstances('orders')).map((i) => i.id),
      ['orders-3'],
    );
    await until<boolean>(
      (cb) => {
        const t = setInterval(() => cb(live.status.degraded), 20);
        return () => clearInterval(t);
      },
      (d) => d,
    );
    assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_REGISTRY_DEGRADED'));

    // Consul comes back (empty, as a dev agent does); the app registers again; watches resync.
    await agent.restart();
    await live.register(instance('orders-4', app.port));
    await until(
      (cb: (v: readonly Instance[]) => void) => live.watch('orders', cb),
      (l) => l.some((i) => i.id === 'orders-4'),
    );
    await until<boolean>(
      (cb) => {
        const t = setInterval(() => cb(live.status.degraded), 20);
        return () => clearInterval(t);
      },
      (d) => !d,
    );
    assert.deepEqual(seen.at(-1), ['orders-4']);
    await live.deregister('orders-4');
    await Promise.all([live.close(), restarted.close()]);
  });
});
