// Issue 17: a process started while Consul does not answer uses its snapshot files within
// `snapshotWaitMs`, on the injected clock. Consul here is a fetch that never answers (an
// agent that accepts connections and says nothing) or a fake agent's KV that answers at once.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { type Instance, type KvEntry, ManualClock, MemoryLogger } from '@meshlet/core';
import { ConsulKvStore, ConsulRegistry } from '../src/index.js';
import { fakeConsulKv } from './fake-consul-kv.js';

/** An agent that accepts every request and never answers (until the caller gives up). */
const silent = ((_input: string | URL | Request, init?: RequestInit) =>
  new Promise<Response>((_resolve, reject) => {
    const signal = init?.signal;
    signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
  })) as typeof globalThis.fetch;

/** Calls to a listener, and a promise for the n-th. */
function recorder<T>() {
  const calls: T[] = [];
  const waiting: { n: number; resolve: () => void }[] = [];
  return {
    calls,
    listener: (v: T) => {
      calls.push(v);
      for (const w of waiting.filter((w) => w.n === calls.length)) w.resolve();
    },
    nth: (n: number) => (calls.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ n, resolve }))),
  };
}

const rules: KvEntry[] = [{ key: 'meshlet/rules/stock', value: '{"service":"stock"}', revision: 42 }];
const stock: Instance = {
  id: 'stock-1',
  service: 'stock',
  address: '127.0.0.1',
  port: 9001,
  tags: [],
  metadata: { version: '2' },
  health: 'passing',
};

let dir: string;
let kvFile: string;
let registryFile: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-snapshot-wait-'));
  kvFile = join(dir, 'rules.json');
  registryFile = join(dir, 'registry.json');
  await writeFile(kvFile, JSON.stringify({ savedAt: 'then', prefixes: { 'meshlet/rules/stock': rules } }));
  await writeFile(registryFile, JSON.stringify({ savedAt: 'then', services: { stock: [stock] } }));
});
after(() => rm(dir, { recursive: true, force: true }));

it('KV: a silent agent; the snapshot’s entries are delivered when snapshotWaitMs has passed, not before', async () => {
  const clock = new ManualClock();
  const logger = new MemoryLogger();
  const kv = new ConsulKvStore({ fetch: silent, snapshotFile: kvFile, snapshotWaitMs: 100, clock, logger });
  const seen = recorder<readonly KvEntry[]>();
  const off = kv.watch('meshlet/rules/stock', seen.listener);
  clock.advance(99);
  assert.equal(seen.calls.length, 0);
  clock.advance(1);
  await seen.nth(1);
  assert.deepEqual(seen.calls[0], rules);
  assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_KV_SNAPSHOT'));
  off();
});

it('KV: a prefix the snapshot does not have is not answered from it while Consul may still answer', async () => {
  const clock = new ManualClock();
  const kv = new ConsulKvStore({ fetch: silent, snapshotFile: kvFile, clock, logger: new MemoryLogger() });
  const unknown = recorder<readonly KvEntry[]>();
  const known = recorder<readonly KvEntry[]>();
  const offUnknown = kv.watch('meshlet/rules/other', unknown.listener);
  const offKnown = kv.watch('meshlet/rules/stock', known.listener);
  clock.advance(100); // the default wait
  await known.nth(1); // both read the same loaded file; the unknown prefix's turn came first
  assert.equal(unknown.calls.length, 0);
  offUnknown();
  offKnown();
});

it('KV: Consul answering first wins, and the snapshot is not delivered after it', async () => {
  const clock = new ManualClock();
  const file = join(dir, 'rules-live.json');
  await writeFile(file, await readFile(kvFile, 'utf8'));
  const live = [{ Key: 'meshlet/rules/stock', Value: Buffer.from('{"live":true}').toString('base64'), ModifyIndex: 50 }];
  const kv = new ConsulKvStore({ fetch: fakeConsulKv(live).fetch, snapshotFile: file, clock, logger: new MemoryLogger() });
  const seen = recorder<readonly KvEntry[]>();
  const off = kv.watch('meshlet/rules/stock', seen.listener);
  await seen.nth(1);
  clock.advance(1_000);
  off();
  await kv.flush();
  assert.deepEqual(seen.calls, [[{ key: 'meshlet/rules/stock', value: '{"live":true}', revision: 50 }]]);
  // …and the file now holds what Consul said.
  const saved = JSON.parse(await readFile(file, 'utf8')) as { prefixes: Record<string, KvEntry[]> };
  assert.deepEqual(saved.prefixes['meshlet/rules/stock'], seen.calls[0]);
  assert.equal((await stat(file)).mode & 0o777, 0o600, 'readable by the service’s user only');
});

it('KV: without a snapshot file, nothing is delivered on the clock', async () => {
  const clock = new ManualClock();
  const kv = new ConsulKvStore({ fetch: silent, clock, logger: new MemoryLogger() });
  const seen = recorder<readonly KvEntry[]>();
  const off = kv.watch('meshlet/rules/stock', seen.listener);
  assert.equal(clock.pendingTimers, 0);
  off();
  assert.equal(seen.calls.length, 0);
});

it('registry: a silent agent; the snapshot’s instances and service names after snapshotWaitMs', async () => {
  const clock = new ManualClock();
  const logger = new MemoryLogger();
  const registry = new ConsulRegistry({ fetch: silent, snapshotFile: registryFile, snapshotWaitMs: 100, clock, logger });
  const instances = recorder<readonly Instance[]>();
  const names = recorder<readonly string[]>();
  const offInstances = registry.watch('stock', instances.listener);
  const offNames = registry.watchServices(names.listener);
  clock.advance(99);
  assert.equal(instances.calls.length + names.calls.length, 0);
  clock.advance(1);
  await Promise.all([instances.nth(1), names.nth(1)]);
  assert.deepEqual(instances.calls[0], [stock]);
  assert.deepEqual(names.calls[0], ['stock']);
  assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_REGISTRY_SNAPSHOT'));
  offInstances();
  offNames();
  await registry.close();
});

// Found reviewing the registry's bounded snapshot read: the KV store's own snapshot was read
// with an unbounded readFile, so a FIFO named as its file hung every snapshot write for good.
it('KV: a snapshot file that is a FIFO is refused unread: the next snapshot write replaces it', async () => {
  const { execFileSync } = await import('node:child_process');
  const fifo = join(dir, 'rules-fifo.json');
  execFileSync('mkfifo', [fifo]);
  const live = [{ Key: 'meshlet/rules/stock', Value: Buffer.from('{"live":true}').toString('base64'), ModifyIndex: 50 }];
  const kv = new ConsulKvStore({
    fetch: fakeConsulKv(live).fetch,
    snapshotFile: fifo,
    clock: new ManualClock(),
    logger: new MemoryLogger(),
  });
  const seen = recorder<readonly KvEntry[]>();
  const off = kv.watch('meshlet/rules/stock', seen.listener);
  await seen.nth(1);
  off();
  await kv.flush(); // read the FIFO whole, this never ended
  assert.ok((await stat(fifo)).isFile(), 'replaced by a regular snapshot file');
  assert.equal(JSON.parse(await readFile(fifo, 'utf8')).prefixes['meshlet/rules/stock'][0].revision, 50);
});
