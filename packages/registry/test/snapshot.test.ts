// Issue #16 item 7: a corrupt or unreadable registry snapshot is logged once and counted,
// never silently an empty registry. Consul is unreachable here on purpose: a port on
// 127.0.0.1 that nothing listens on (the snapshot is read only during an outage).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { MemoryLogger } from '@meshlet/core';
import { ConsulRegistry, readSnapshotFile, snapshotServices } from '../src/index.js';

let dir = '';
let deadAddress = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-snapshot-'));
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((r) => probe.close(() => r()));
  deadAddress = `127.0.0.1:${port}`;
});
after(() => rm(dir, { recursive: true, force: true }));

const instance = { id: 'orders-1', service: 'orders', address: '127.0.0.1', port: 8080, tags: [], metadata: {}, health: 'passing' };

const startDuringOutage = async (content: string | undefined, name: string) => {
  const snapshotFile = join(dir, `${name}.json`);
  if (content !== undefined) await writeFile(snapshotFile, content);
  const logger = new MemoryLogger();
  const registry = new ConsulRegistry({ address: deadAddress, waitSeconds: 1, snapshotFile, logger });
  const orders = await registry.healthyInstances('orders');
  const payments = await registry.healthyInstances('payments');
  const codes = logger.entries.map((e) => e.fields?.code).filter((c) => typeof c === 'string' && c.includes('SNAPSHOT'));
  const bad = logger.entries
    .filter((e) => e.fields?.code === 'MESHLET_REGISTRY_BAD_INSTANCE')
    .map((e) => ({ skipped: e.fields?.skipped, first: e.fields?.first }));
  const status = registry.status;
  await registry.close();
  return { orders, payments, codes, bad, status };
};

it('a corrupt snapshot: no instances, one log line with a code, one count', async () => {
  const got = await startDuringOutage('{"services": {"orders": [', 'corrupt');
  assert.deepEqual(got.orders, []);
  assert.deepEqual(got.payments, []);
  assert.deepEqual(got.codes, ['MESHLET_REGISTRY_SNAPSHOT_UNREADABLE']);
  assert.equal(got.status.snapshotErrors, 1);
});

it('entries of a snapshot that are not instances routing can call are left out, counted in one line; the rest routes', async () => {
  const entries = [instance, { id: 7 }, { ...instance, id: 'orders-2', port: 0 }, { ...instance, id: 'orders-3', address: '[::1]' }];
  const got = await startDuringOutage(JSON.stringify({ services: { orders: entries, payments: 'x' } }), 'shape');
  assert.deepEqual(
    got.orders.map((i) => i.id),
    ['orders-1'],
  );
  assert.deepEqual(got.codes, ['MESHLET_REGISTRY_SNAPSHOT']);
  assert.deepEqual(got.bad, [{ skipped: 4, first: 'services.orders[1] id: is not a non-empty string' }]);
  assert.equal(got.status.snapshotErrors, 0);
});

it('an unreadable snapshot (a directory) is logged and counted; a missing one is logged, not an error', async () => {
  await mkdir(join(dir, 'a-directory.json'));
  const unreadable = await startDuringOutage(undefined, 'a-directory');
  assert.deepEqual(unreadable.codes, ['MESHLET_REGISTRY_SNAPSHOT_UNREADABLE']);
  assert.equal(unreadable.status.snapshotErrors, 1);
  const missing = await startDuringOutage(undefined, 'missing');
  assert.deepEqual(missing.codes, ['MESHLET_REGISTRY_NO_SNAPSHOT']);
  assert.equal(missing.status.snapshotErrors, 0);
});

it('a good snapshot routes, with one line saying so', async () => {
  const got = await startDuringOutage(JSON.stringify({ services: { orders: [instance] } }), 'good');
  assert.deepEqual(
    got.orders.map((i) => i.id),
    ['orders-1'],
  );
  assert.deepEqual(got.codes, ['MESHLET_REGISTRY_SNAPSHOT']);
  assert.equal(got.status.snapshotErrors, 0);
});

it('snapshotServices names what is wrong', () => {
  assert.match(snapshotServices('nope') as string, /not JSON/);
  assert.match(snapshotServices('{"services": []}') as string, /not an object/);
  assert.deepEqual(snapshotServices('{"services": {"a": {}}}'), { services: {}, skipped: 1, firstSkipped: 'services.a is not a list' });
  assert.deepEqual(snapshotServices('{"services": {}}'), { services: {}, skipped: 0, firstSkipped: undefined });
});

it('a snapshot that is a FIFO is refused as unreadable, not waited on', { timeout: 20_000 }, async () => {
  execFileSync('mkfifo', [join(dir, 'a-fifo.json')]);
  const got = await startDuringOutage(undefined, 'a-fifo');
  assert.deepEqual(got.codes, ['MESHLET_REGISTRY_SNAPSHOT_UNREADABLE']);
  assert.equal(got.status.snapshotErrors, 1);
});

it('readSnapshotFile reads at most its bound, and tells a missing file from a broken one', async () => {
  const file = join(dir, 'bounded.json');
  const text = JSON.stringify({ services: { orders: [instance] } });
  await writeFile(file, text);
  const read = readSnapshotFile(file, Buffer.byteLength(text));
  assert.ok(read.ok);
  assert.deepEqual(
    read.content.services.orders?.map((i) => i.id),
    ['orders-1'],
  );
  const over = readSnapshotFile(file, Buffer.byteLength(text) - 1);
  assert.ok(!over.ok && !over.missing && /bytes; at most/.test(over.reason), JSON.stringify(over));
  const missing = readSnapshotFile(join(dir, 'none.json'));
  assert.ok(!missing.ok && missing.missing, JSON.stringify(missing));
  await writeFile(join(dir, 'half.json'), text.slice(0, 10));
  const corrupt = readSnapshotFile(join(dir, 'half.json'));
  assert.ok(!corrupt.ok && !corrupt.missing && /not JSON/.test(corrupt.reason), JSON.stringify(corrupt));
});
