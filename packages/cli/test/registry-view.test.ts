// The CLI's registry views read as ConsulRegistry reads: Consul's answers checked for their
// shape, each entry routing cannot call left out (and said so), the snapshot file bounded.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { listen } from '@meshlet/core/testing';
import { ConsulBadAnswerError } from '@meshlet/registry';
import { ConsulRegistryView, SnapshotRegistryView } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-registry-view-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const entry = (id: string, address: string, port: number) => ({
  Node: { Address: '10.0.0.1' },
  Service: { ID: id, Service: 'orders', Address: address, Port: port, Tags: [], Meta: {} },
  Checks: [{ Status: 'passing' }],
});

/** A Consul agent that answers each path with the given JSON. */
async function fakeConsul(answers: Record<string, unknown>) {
  return listen((req, res) => {
    const path = (req.url ?? '').split('?')[0] as string;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(answers[path] ?? null));
  });
}

describe('ConsulRegistryView', () => {
  it('leaves out the entries routing cannot call, and says so once per read', async () => {
    const consul = await fakeConsul({
      '/v1/health/service/orders': [
        entry('orders-2', '10.0.0.8', 8080),
        entry('orders-bad', '1.2.3', 8080),
        entry('orders-0', '10.0.0.9', 0),
        entry('orders-1', 'my_host', 8080),
      ],
    });
    try {
      const said: string[] = [];
      const view = new ConsulRegistryView({ address: `http://127.0.0.1:${consul.port}`, leftOut: (l) => said.push(l) });
      const list = await view.instances('orders');
      assert.deepEqual(
        list.map((i) => i.id),
        ['orders-1', 'orders-2'],
      );
      assert.equal(said.length, 1);
      assert.match(
        said[0] as string,
        /^orders: 2 catalog entries routing cannot call, left out \(orders-bad address: "1\.2\.3" is not a host name/,
      );
    } finally {
      await consul.close();
    }
  });

  it('refuses a catalog that is not an object and a health answer that is not a list', async () => {
    const consul = await fakeConsul({ '/v1/catalog/services': ['orders'], '/v1/health/service/orders': { orders: [] } });
    try {
      const view = new ConsulRegistryView({ address: `http://127.0.0.1:${consul.port}` });
      await assert.rejects(view.services(), (err: unknown) => err instanceof ConsulBadAnswerError && /not an object/.test(err.message));
      await assert.rejects(
        view.instances('orders'),
        (err: unknown) => err instanceof ConsulBadAnswerError && /not a list/.test(err.message),
      );
    } finally {
      await consul.close();
    }
  });
});

describe('SnapshotRegistryView', () => {
  const good = { id: 'orders-1', service: 'orders', address: '10.0.0.7', port: 8080, tags: [], metadata: {}, health: 'passing' };

  it('reads the instances routing can call, and says what it left out', async () => {
    const file = join(dir, 'snapshot.json');
    writeFileSync(file, JSON.stringify({ services: { orders: [good, { ...good, id: 'orders-2', port: 0 }] } }));
    const said: string[] = [];
    const view = new SnapshotRegistryView(file, { leftOut: (l) => said.push(l) });
    assert.deepEqual(await view.services(), ['orders']);
    assert.deepEqual(
      (await view.instances('orders')).map((i) => i.id),
      ['orders-1'],
    );
    assert.equal(said.length, 1);
    assert.match(said[0] as string, /1 snapshot entry routing cannot call, left out \(services\.orders\[1\] port: 0 is not a port/);
  });

  it('refuses a snapshot that is a FIFO rather than wait on it, and one that is not a snapshot', { timeout: 20_000 }, async () => {
    const fifo = join(dir, 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    await assert.rejects(new SnapshotRegistryView(fifo).services(), (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'MESHLET_CLI_READ');
      assert.match((err as Error).message, /is not a regular file/);
      return true;
    });
    const corrupt = join(dir, 'corrupt.json');
    writeFileSync(corrupt, '{"services": [');
    await assert.rejects(new SnapshotRegistryView(corrupt).services(), /cannot read the registry snapshot \(not JSON/);
  });
});
