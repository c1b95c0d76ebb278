// Anyone who can register in Consul writes what the registry reads: an entry whose address or
// port makes no URL (Port 0, which Consul omits from its JSON; 70000; "[::1]"; user info; a
// path) is left out of the instances and of the snapshot file, logged at most once a minute
// whatever their number. The agent here is a fetch that answers each health query with the
// next answer the test gives it, and otherwise waits as a blocking query does.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { type Instance, ManualClock, MemoryLogger, throttledLogger } from '@meshlet/core';
import { ConsulRegistry, callableInstances, type HealthEntry } from '../src/index.js';

let dir = '';
let deadAddress = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-bad-instances-'));
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  deadAddress = `127.0.0.1:${(probe.address() as { port: number }).port}`;
  await new Promise<void>((r) => probe.close(() => r()));
});
after(() => rm(dir, { recursive: true, force: true }));

/** A health entry as Consul gives it; `port: undefined` is Consul's JSON for Port 0. */
const entry = (service: string, id: string, address: string, port: number | undefined): HealthEntry => ({
  Node: { Node: 'n', Address: '10.0.0.9' },
  Service: {
    ID: id,
    Service: service,
    Address: address,
    ...(port === undefined ? {} : { Port: port }),
    Tags: [],
    Meta: {},
  } as HealthEntry['Service'],
  Checks: [{ Status: 'passing', ServiceID: id }],
});

it('callableInstances keeps the entries routing can call and tells each one left out, with its id and field', () => {
  const told: string[] = [];
  const tagged = {
    ...entry('orders', 'orders-tagged', '10.0.0.3', 8082),
    Service: { ...entry('orders', 'x', '10.0.0.3', 8082).Service, ID: 'orders-tagged', Tags: ['zone=a'] },
  };
  const entries = [
    entry('orders', 'orders-1', '10.0.0.1', 8080),
    entry('orders', 'orders-0', '10.0.0.2', undefined),
    tagged,
    entry('orders', 'orders-v6', '[::1]', 8081),
  ];
  const kept = callableInstances(entries, (id, problem) => told.push(`${id} ${problem.field}`), { metadataFromTags: true });
  assert.deepEqual(
    kept.map((i) => [i.id, i.metadata]),
    [
      ['orders-1', {}],
      ['orders-tagged', { zone: 'a' }],
    ],
  );
  assert.deepEqual(told, ['orders-0 port', 'orders-v6 address']);
});

/** An agent whose health queries are answered, per service, with the answers pushed, one per query. */
function agent() {
  const queues = new Map<string, { answers: HealthEntry[][]; waiting: (() => void) | undefined }>();
  let index = 10;
  const queue = (service: string) => {
    const q = queues.get(service) ?? { answers: [], waiting: undefined };
    queues.set(service, q);
    return q;
  };
  const fetchVia = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const service = decodeURIComponent(url.pathname.replace('/v1/health/service/', ''));
    if (!url.pathname.startsWith('/v1/health/service/')) return new Response('"127.0.0.1:8300"', { status: 200 });
    const q = queue(service);
    while (q.answers.length === 0) {
      const signal = init?.signal;
      if (signal?.aborted) throw signal.reason;
      await new Promise<void>((resolve, reject) => {
        q.waiting = resolve;
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
    const body = q.answers.shift();
    return new Response(JSON.stringify(body), {
      status: 200,
      headers: { 'content-type': 'application/json', 'x-consul-index': String(++index) },
    });
  }) as typeof globalThis.fetch;
  return {
    fetchVia,
    answer(service: string, entries: HealthEntry[]) {
      const q = queue(service);
      q.answers.push(entries);
      q.waiting?.();
    },
  };
}

/** The next list the watch delivers. */
function next(registry: ConsulRegistry, service: string, seen: number): Promise<readonly Instance[]> {
  return new Promise((resolve) => {
    let n = 0;
    let off: (() => void) | undefined;
    off = registry.watch(service, (list) => {
      if (++n <= seen) return;
      queueMicrotask(() => off?.());
      resolve(list);
    });
  });
}

const badCodes = (logger: MemoryLogger) => logger.entries.filter((e) => e.fields?.code === 'MESHLET_REGISTRY_BAD_INSTANCE');

it('entries whose address or port make no URL are left out, naming the field; IPv4, bare IPv6 and host names stay', async () => {
  const a = agent();
  const logger = new MemoryLogger();
  const registry = new ConsulRegistry({ fetch: a.fetchVia, logger, clock: new ManualClock() });
  const good = [
    entry('shop', 'v4', '10.0.0.1', 8080),
    entry('shop', 'v6', '::1', 8080),
    entry('shop', 'v6-full', 'fd00:0:0:0:0:0:0:1', 8080),
    entry('shop', 'name', 'shop-1.dc1.internal', 8080),
    entry('shop', 'underscore', 'shop_1', 8080),
    entry('shop', 'node-address', '', 8080), // Spring's rule: the node's address then
  ];
  const bad: [HealthEntry, string][] = [
    [entry('shop', 'port-0', '10.0.0.1', undefined), 'port'],
    [entry('shop', 'port-big', '10.0.0.1', 70_000), 'port'],
    [entry('shop', 'port-neg', '10.0.0.1', -5), 'port'],
    [entry('shop', 'v6-bracketed', '[::1]', 8080), 'address'],
    [entry('shop', 'v6-zone', 'fe80::1%eth0', 8080), 'address'],
    [entry('shop', 'userinfo', 'user:pw@127.0.0.1', 8080), 'address'],
    [entry('shop', 'path', '127.0.0.1/x?', 8080), 'address'],
    [entry('shop', 'reads-as-ipv4', '1.2.3', 8080), 'address'],
    [entry('shop', 'no-ipv4', '999.1.1.1', 8080), 'address'],
    [entry('shop', 'space', 'a b', 8080), 'address'],
    [entry('shop', 'long', `${'a'.repeat(254)}`, 8080), 'address'],
  ];
  a.answer('shop', [...good, ...bad.map(([e]) => e)]);
  const got = await registry.healthyInstances('shop');
  assert.deepEqual(
    got.map((i) => `${i.id} ${i.address}`),
    good.map((e) => `${e.Service.ID} ${e.Service.Address || '10.0.0.9'}`),
  );
  // One line (the first bad entry, named), the others counted in the next.
  const lines = badCodes(logger);
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.fields?.service, 'shop');
  assert.equal(lines[0]?.fields?.instanceId, 'port-0');
  assert.equal(lines[0]?.fields?.field, 'port');
  await registry.close();
});

it('thousands of bad entries: one line a minute, counting the new ones; one seen again is not counted again', async () => {
  const a = agent();
  const logger = new MemoryLogger();
  const clock = new ManualClock();
  const registry = new ConsulRegistry({ fetch: a.fetchVia, logger, clock });
  const bad = Array.from({ length: 5_000 }, (_, i) => entry('shop', `bad-${i}`, '10.0.0.1', 0));
  const good = entry('shop', 'good', '10.0.0.1', 8080);
  const hold = registry.watch('shop', () => {}); // one watch throughout: its answers follow each other
  a.answer('shop', [good, ...bad]);
  assert.equal((await next(registry, 'shop', 0)).length, 1);
  assert.equal(badCodes(logger).length, 1);
  // The same bad entries in the next answer (a health change of the good one) are not new.
  clock.advance(60_000);
  a.answer('shop', [{ ...good, Checks: [{ Status: 'warning', ServiceID: 'good' }] }, ...bad]);
  await next(registry, 'shop', 1);
  a.answer('shop', [good, ...bad, entry('shop', 'bad-new', '[::1]', 80)]);
  assert.equal((await next(registry, 'shop', 1)).length, 1);
  const lines = badCodes(logger);
  assert.equal(lines.length, 2);
  // The 4,999 not written in the first minute, and the new one.
  assert.equal(lines[1]?.fields?.count, 5_000);
  assert.equal(lines[1]?.fields?.instanceId, 'bad-new');
  hold();
  await registry.close();
});

it("built without a logger, adopted by a mesh: the mesh's logger counts every entry left out and writes one line a minute", async () => {
  const a = agent();
  const registry = new ConsulRegistry({ fetch: a.fetchVia });
  // What a mesh adopts: its logger, counting every coded entry (meshlet_conditions_total).
  const written = new MemoryLogger();
  const mesh = throttledLogger(written, { clock: new ManualClock() });
  registry.adoptLogger(mesh);
  const bad = Array.from({ length: 50 }, (_, i) => entry('shop', `bad-${i}`, '10.0.0.1', 0));
  a.answer('shop', [entry('shop', 'good', '10.0.0.1', 8080), ...bad]);
  assert.equal((await registry.healthyInstances('shop')).length, 1);
  assert.equal(mesh.counts.get('MESHLET_REGISTRY_BAD_INSTANCE'), 50);
  assert.equal(badCodes(written).length, 1);
  await registry.close();
});

it('a bad entry does not reach the snapshot file: a restart during an outage routes every service from it', async () => {
  const snapshotFile = join(dir, 'poison.json');
  const a = agent();
  const writer = new ConsulRegistry({ fetch: a.fetchVia, logger: new MemoryLogger(), snapshotFile });
  a.answer('orders', [entry('orders', 'orders-1', '127.0.0.1', 8080)]);
  a.answer('junk', [entry('junk', 'junk-0', '127.0.0.1', undefined)]);
  assert.equal((await writer.healthyInstances('orders')).length, 1);
  assert.equal((await writer.healthyInstances('junk')).length, 0);
  await writer.close(); // flushes the file
  const saved = JSON.parse(await readFile(snapshotFile, 'utf8')) as { services: Record<string, Instance[]> };
  assert.deepEqual(saved.services.junk, []);

  const logger = new MemoryLogger();
  const restarted = new ConsulRegistry({ address: deadAddress, waitSeconds: 1, snapshotFile, logger });
  assert.deepEqual(
    (await restarted.healthyInstances('orders')).map((i) => i.id),
    ['orders-1'],
  );
  assert.ok(!logger.entries.some((e) => e.fields?.code === 'MESHLET_REGISTRY_SNAPSHOT_UNREADABLE'));
  await restarted.close();
});
