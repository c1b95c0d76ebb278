import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, unlinkSync } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { restoreLock } from '../src/file-kv-store.js';
import {
  type Clock,
  FILE_KV_LOCK_RETRY_MS,
  FILE_KV_STALE_LOCK_WATCH_MS,
  FileKvLockedError,
  FileKvStore,
  type KvEntry,
  ManualClock,
  MeshletError,
} from '../src/index.js';

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

  it('refuses a bad lock option naming it (MESHLET_BAD_OPTION)', () => {
    for (const [field, value] of [
      ['staleLockMs', 0],
      ['staleLockMs', Number.POSITIVE_INFINITY],
      ['lockRetries', -1],
      ['lockRetries', 1.5],
    ] as const)
      assert.throws(
        () => new FileKvStore(tmpdir(), { [field]: value }),
        (e: unknown) => e instanceof MeshletError && e.code === 'MESHLET_BAD_OPTION' && e.message.startsWith(`${field}:`),
        `${field} ${value}`,
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

  it('keeps two stores on one directory from both winning a compare-and-set', async () => {
    // Two operators' CLIs: each has its own store object on the same directory.
    const root = join(dir, 'd');
    const [a, b] = [new FileKvStore(root), new FileKvStore(root)];
    for (let round = 0; round < 40; round++) {
      const key = `meshlet/rules-history/orders/${round}`;
      const results = await Promise.all(
        [a, b].map((kv, i) =>
          kv.putAll([
            { key: 'meshlet/rules/orders', value: `${round}:${i}` },
            { key, value: String(i), ifRevision: 0 },
          ]),
        ),
      );
      assert.deepEqual(results.filter(Boolean).length, 1, `round ${round}: one writer wins, the other is told`);
      assert.equal((await a.get(key))?.value, String(results.indexOf(true)), `round ${round}: the winner's entry stays`);
    }
  });

  it('keeps writers in separate processes from losing each other’s updates', async () => {
    const root = join(dir, 'e');
    await new FileKvStore(root).put('counter', '0');
    // Each process adds 1 to the counter 20 times by compare-and-set, reading again on a conflict.
    const script = `
      const { FileKvStore } = await import(${JSON.stringify(new URL('../src/index.js', import.meta.url).href)});
      const kv = new FileKvStore(${JSON.stringify(root)});
      for (let added = 0; added < 20; ) {
        const e = await kv.get('counter');
        if (await kv.put('counter', String(Number(e.value) + 1), { ifRevision: e.revision })) added++;
      }`;
    const run = () => promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    await Promise.all([run(), run()]);
    assert.equal((await new FileKvStore(root).get('counter'))?.value, '40');
  });

  it('gives each write a revision past the one it replaces, even when the file system clock did not move past it', async () => {
    // Two writes within the file system's clock tick got one modification time, so one
    // revision: a compare-and-set read first the second still matched second it.
    const root = join(dir, 'tick');
    const kv = new FileKvStore(root);
    await kv.put('k', 'one');
    const ahead = Date.now() / 1000 + 60;
    await utimes(join(root, 'k'), ahead, ahead);
    const first = (await kv.get('k'))?.revision ?? 0;
    assert.equal(await kv.put('k', 'two', { ifRevision: first }), true);
    const second = (await kv.get('k'))?.revision ?? 0;
    assert.ok(second > first, `revision ${second} is past ${first}`);
    assert.equal(await kv.put('k', 'three', { ifRevision: first }), false, 'the revision read before the write no longer matches');
    assert.equal(
      await kv.putAll([
        { key: 'k', value: 'four', ifRevision: second },
        { key: 'other', value: 'x' },
      ]),
      true,
    );
    assert.ok(((await kv.get('k'))?.revision ?? 0) > second, 'a putAll moves past it too');
  });

  it('waits for a lock another writer holds, then refuses with a typed error, writing nothing', async () => {
    const root = join(dir, 'f');
    await mkdir(root, { recursive: true });
    await writeFile(join(root, '.lock'), 'another writer');
    const kv = new FileKvStore(root, { lockRetries: 2 });
    await assert.rejects(kv.put('k', 'v'), (e: unknown) => e instanceof FileKvLockedError && e.code === 'MESHLET_KV_LOCKED');
    assert.equal(await kv.get('k'), undefined);
    await rm(join(root, '.lock'));
    assert.equal(await kv.put('k', 'v'), true);
    await assert.rejects(access(join(root, '.lock')), 'the lock is released after the write');
  });

  it('keeps a script whose only work is a waiting write alive until the write is done or refused', async () => {
    const root = join(dir, 'h');
    await mkdir(root, { recursive: true });
    await writeFile(join(root, '.lock'), 'another writer');
    const script = `
      const { FileKvStore } = await import(${JSON.stringify(new URL('../src/index.js', import.meta.url).href)});
      await new FileKvStore(${JSON.stringify(root)}, { lockRetries: 3 }).put('k', 'v').catch((e) => console.log(e.code));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
    assert.equal(stdout.trim(), 'MESHLET_KV_LOCKED');
  });

  it('takes over a lock older than staleLockMs (a crashed writer), not a fresher one', async () => {
    const root = join(dir, 'g');
    await mkdir(root, { recursive: true });
    const lock = join(root, '.lock');
    await writeFile(lock, 'crashed writer');
    const minuteAgo = Date.now() / 1000 - 60;
    await utimes(lock, minuteAgo, minuteAgo);
    await assert.rejects(new FileKvStore(root, { staleLockMs: 120_000, lockRetries: 1 }).put('k', 'v'), FileKvLockedError);
    assert.equal(await new FileKvStore(root).put('k', 'v'), true, 'older than the default 30 s: taken over');
    assert.deepEqual(
      (await new FileKvStore(root).list('')).map((e) => e.key),
      ['k'],
      'the lock file is no key',
    );
  });

  /**
   * A ManualClock at the wall time whose waits pass at once, a turn of the loop each;
   * `onWait(n)` runs at the n-th wait, before time moves.
   */
  function turningClock(onWait: (n: number) => void = () => {}) {
    const manual = new ManualClock(Date.now());
    let waits = 0;
    const clock: Clock = {
      now: () => manual.now(),
      wallNow: () => manual.wallNow(),
      setTimeout: (fn, ms) => {
        const cancel = manual.setTimeout(fn, ms);
        onWait(++waits);
        setImmediate(() => manual.advance(ms));
        return cancel;
      },
    };
    return { manual, clock, waits: () => waits };
  }

  async function heldLock(name: string, holder: string, ageS: number): Promise<string> {
    const root = join(dir, name);
    await mkdir(root, { recursive: true });
    const lock = join(root, '.lock');
    await writeFile(lock, holder);
    const stamped = Date.now() / 1000 - ageS;
    await utimes(lock, stamped, stamped);
    return root;
  }

  it(`takes over a lock its file says is a minute old once it has watched it ${FILE_KV_STALE_LOCK_WATCH_MS} ms on the store's clock`, async () => {
    const root = await heldLock('i', 'crashed writer', 60);
    const { clock, waits } = turningClock();
    assert.equal(await new FileKvStore(root, { clock }).put('k', 'v'), true);
    assert.equal(waits() * FILE_KV_LOCK_RETRY_MS, FILE_KV_STALE_LOCK_WATCH_MS);
  });

  it('takes over a lock its file says is an hour old with lockRetries 0: the watch is waited for, whatever lockRetries says', async () => {
    const root = await heldLock('i0', 'crashed writer', 3_600);
    const { clock, waits } = turningClock();
    assert.equal(await new FileKvStore(root, { clock, lockRetries: 0 }).put('k', 'v'), true);
    assert.equal(waits() * FILE_KV_LOCK_RETRY_MS, FILE_KV_STALE_LOCK_WATCH_MS);
  });

  it('does not take the lock of a live writer whose file looks an hour old (the wall clock stepped forward), if it is released within the watch', async () => {
    const root = await heldLock('i2', 'live writer', 3_600);
    const lock = join(root, '.lock');
    let atRelease: string | undefined;
    // The live writer finishes at the 50th wait (500 ms): its lock was never taken.
    const { clock, waits } = turningClock((n) => {
      if (n !== 50) return;
      atRelease = readFileSync(lock, 'utf8');
      unlinkSync(lock);
    });
    assert.equal(await new FileKvStore(root, { clock }).put('k', 'v'), true);
    assert.deepEqual([atRelease, waits()], ['live writer', 50]);
  });

  it("takes over a crashed writer's lock after staleLockMs of watching when the wall clock stepped back past it", async () => {
    const root = await heldLock('i3', 'crashed writer', 60);
    const { manual, clock, waits } = turningClock();
    // An hour back: the file's stamp is in the store's future, its age 0 when first seen.
    manual.stepWall(-3_600_000);
    assert.equal(await new FileKvStore(root, { clock, staleLockMs: 2_000, lockRetries: 1_000 }).put('k', 'v'), true);
    assert.equal(waits() * FILE_KV_LOCK_RETRY_MS, 2_000);
  });

  it('puts a lock moved aside back only where no lock was made since', async () => {
    const root = join(dir, 'j');
    await mkdir(root, { recursive: true });
    const lock = join(root, '.lock');
    const aside = join(root, '.lock.x.stale');
    await writeFile(aside, 'moved');
    assert.equal(await restoreLock(aside, lock), true);
    assert.equal(await readFile(lock, 'utf8'), 'moved');
    await writeFile(aside, 'moved again');
    assert.equal(await restoreLock(aside, lock), false, 'a lock is there now: it is kept');
    assert.equal(await readFile(lock, 'utf8'), 'moved');
    await assert.rejects(access(aside), 'nothing left aside');
  });
});
