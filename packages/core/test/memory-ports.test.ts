import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, type Instance, ManualClock } from '../src/index.js';

const inst = (id: string, service = 'svc', port = 1000): Instance => ({
  id,
  service,
  address: '127.0.0.1',
  port,
  tags: [],
  metadata: {},
  health: 'passing',
});

describe('InMemoryRegistry', () => {
  it('lists healthy instances and tells watchers of every change', async () => {
    const r = new InMemoryRegistry();
    const seen: string[][] = [];
    const services: string[][] = [];
    r.watch('svc', (list) => seen.push(list.map((i) => i.id)));
    r.watchServices((s) => services.push([...s]));
    await r.register(inst('a'));
    await r.register(inst('b'));
    r.setHealth('a', 'critical');
    assert.deepEqual(
      (await r.healthyInstances('svc')).map((i) => i.id),
      ['b'],
    );
    await r.deregister('b');
    r.setHealth('a', 'passing');
    assert.deepEqual(seen, [[], ['a'], ['a', 'b'], ['b'], [], ['a']]);
    assert.deepEqual(services, [[], ['svc']]);
    assert.deepEqual(await r.services(), ['svc']);
  });

  it('tells watchers the registered instances that are not passing; a deregistered one is in neither list', async () => {
    const r = new InMemoryRegistry();
    for (const id of ['a', 'b', 'c']) await r.register(inst(id));
    const seen: [string[], string[] | undefined][] = [];
    r.watch('svc', (list, unhealthy) => seen.push([list.map((i) => i.id), unhealthy?.map((i) => i.id)]));
    r.setHealth('a', 'critical');
    await r.deregister('b');
    assert.deepEqual(seen, [
      [['a', 'b', 'c'], []],
      [['b', 'c'], ['a']],
      [['c'], ['a']],
    ]);
  });

  it('stops calling a watcher once unsubscribed', async () => {
    const r = new InMemoryRegistry();
    let calls = 0;
    const off = r.watch('svc', () => calls++);
    off();
    await r.register(inst('a'));
    assert.equal(calls, 1);
  });
});

describe('InMemoryKvStore', () => {
  it('puts with compare-and-set and lists by prefix in key order', async () => {
    const kv = new InMemoryKvStore();
    assert.equal(await kv.put('rules/b', '1', { ifRevision: 0 }), true);
    assert.equal(await kv.put('rules/b', '2', { ifRevision: 0 }), false, 'create-only refuses an existing key');
    const b = await kv.get('rules/b');
    assert.equal(b?.value, '1');
    assert.equal(await kv.put('rules/b', '3', { ifRevision: (b?.revision ?? 0) + 1 }), false);
    assert.equal(await kv.put('rules/b', '3', { ifRevision: b?.revision ?? 0 }), true);
    await kv.put('rules/a', 'x');
    await kv.put('other/c', 'y');
    assert.deepEqual(
      (await kv.list('rules/')).map((e) => `${e.key}=${e.value}`),
      ['rules/a=x', 'rules/b=3'],
    );
  });

  it('watches a prefix and ignores writes elsewhere', async () => {
    const kv = new InMemoryKvStore();
    const seen: string[] = [];
    kv.watch('rules/', (entries) => seen.push(entries.map((e) => e.value).join('+')));
    await kv.put('rules/a', '1');
    await kv.put('config/x', 'ignored');
    await kv.put('rules/b', '2');
    await kv.delete('rules/a');
    assert.deepEqual(seen, ['', '1', '1+2', '2']);
  });
});

describe('ManualClock', () => {
  it('fires timers in due order while advancing, and not before', () => {
    const clock = new ManualClock(1000);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    const cancel = clock.setTimeout(() => fired.push('never'), 15);
    cancel();
    clock.advance(9);
    assert.deepEqual(fired, []);
    clock.advance(11);
    assert.deepEqual(fired, ['a@1010', 'b@1020']);
    assert.equal(clock.now(), 1020);
    assert.equal(clock.pendingTimers, 0);
  });
});
