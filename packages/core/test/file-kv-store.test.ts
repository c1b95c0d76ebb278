import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FileKvStore, type KvEntry, MeshletError } from '../src/index.js';

describe('FileKvStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-kv-'));
  after(() => rm(dir, { recursive: true, force: true }));

  it('stores keys as files, with compare-and-set', async () => {
    const kv = new FileKvStore(join(dir, 'a'));
    assert.equal(await kv.get('meshlet/rules/orders'), undefined);
    assert.equal(await kv.put('meshlet/rules/orders', '{"v":1}', { ifRevision: 0 }), true);
    const first = await kv.get('meshlet/rules/orders');
    assert.equal(first?.value, '{"v":1}');
    assert.equal(await kv.put('meshlet/rules/orders', 'x', { ifRevision: 0 }), false);
    assert.equal(await kv.put('meshlet/rules/orders', '{"v":2}', { ifRevision: first?.revision ?? -1 }), true);
    await kv.put('meshlet/rules/users', 'u');
    await kv.put('other/x', 'o');
    assert.deepEqual(
      (await kv.list('meshlet/rules/')).map((e) => e.key),
      ['meshlet/rules/orders', 'meshlet/rules/users'],
    );
    assert.equal(await kv.delete('meshlet/rules/users'), true);
    assert.deepEqual(
      (await kv.list('meshlet/')).map((e) => e.value),
      ['{"v":2}'],
    );
  });

  it('refuses keys that would leave the directory', async () => {
    const kv = new FileKvStore(join(dir, 'b'));
    for (const bad of ['../escape', 'a/../../b', '/abs', 'a//b', '.hidden', '']) {
      await assert.rejects(kv.put(bad, 'x'), (e: unknown) => e instanceof MeshletError && e.code === 'MESHLET_BAD_KEY', bad);
    }
  });

  it('tells watchers of changes made by another writer, such as an editor', async () => {
    const root = join(dir, 'c');
    const kv = new FileKvStore(root);
    await kv.put('meshlet/rules/orders', 'one');
    const seen: string[] = [];
    let wake: (() => void) | undefined;
    const next = () => new Promise<void>((r) => (wake = r));
    let arrived = next();
    const off = kv.watch('meshlet/rules/', (entries: readonly KvEntry[]) => {
      seen.push(entries.map((e) => e.value).join('+'));
      wake?.();
    });
    await arrived;
    arrived = next();
    await writeFile(join(root, 'meshlet/rules/orders'), 'two');
    await arrived;
    arrived = next();
    await kv.put('meshlet/rules/users', 'u');
    await arrived;
    off();
    assert.deepEqual(seen, ['one', 'two', 'two+u']);
  });
});
