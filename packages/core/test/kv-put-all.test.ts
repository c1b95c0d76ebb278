import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FileKvStore, InMemoryKvStore, type KvStore } from '../src/index.js';

const dir = await mkdtemp(join(tmpdir(), 'meshlet-putall-'));
after(() => rm(dir, { recursive: true, force: true }));

const stores: [string, () => KvStore][] = [
  ['InMemoryKvStore', () => new InMemoryKvStore()],
  ['FileKvStore', () => new FileKvStore(join(dir, String(Math.random()).slice(2)))],
];

for (const [name, make] of stores) {
  describe(`${name}.putAll`, () => {
    it('writes and deletes every key, or none when one compare-and-set does not match', async () => {
      const kv = make();
      await kv.put('a', '1');
      const a = await kv.get('a');
      assert.ok(a);
      assert.equal(
        await kv.putAll([
          { key: 'a', value: '2', ifRevision: a.revision },
          { key: 'b', value: 'new', ifRevision: 0 },
          { key: 'c', value: 'x' },
        ]),
        true,
      );
      assert.deepEqual(
        (await kv.list('')).map((e) => `${e.key}=${e.value}`),
        ['a=2', 'b=new', 'c=x'],
      );
      // b exists now: its create-only write fails, so neither a's delete nor d happens.
      const refused = await kv.putAll([
        { key: 'a', value: null },
        { key: 'd', value: 'd' },
        { key: 'b', value: 'again', ifRevision: 0 },
      ]);
      assert.equal(refused, false);
      assert.deepEqual(
        (await kv.list('')).map((e) => `${e.key}=${e.value}`),
        ['a=2', 'b=new', 'c=x'],
      );
      const c = await kv.get('c');
      assert.equal(await kv.putAll([{ key: 'c', value: null, ifRevision: c?.revision ?? -1 }]), true);
      assert.equal(await kv.get('c'), undefined);
    });
  });
}

it('InMemoryKvStore.putAll tells a watcher once, with every write in place', async () => {
  const kv = new InMemoryKvStore();
  const seen: string[] = [];
  kv.watch('r/', (entries) => seen.push(entries.map((e) => e.key).join('+')));
  await kv.putAll([
    { key: 'r/a', value: '1' },
    { key: 'r/b', value: '2' },
    { key: 'elsewhere', value: '3' },
  ]);
  assert.deepEqual(seen, ['', 'r/a+r/b']);
});
