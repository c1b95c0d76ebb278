// RuleWatcher.until (an await on the watch, not a poll) and the typed follow(kind, …).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { field, InMemoryKvStore, MemoryLogger, RULES_PREFIX, type RuleKind, RuleWatcher } from '../src/index.js';

const limitKind: RuleKind<{ max: number }> = {
  name: 'limit',
  parse(raw, path) {
    const obj = field.object(raw, path);
    field.onlyKeys(obj, path, ['max']);
    return { max: field.integer(obj.max, `${path}.max`, 1, 100) };
  },
};
const otherKind: RuleKind<string> = { name: 'other', parse: (raw, path) => field.string(raw, path, 10) };
const KEY = `${RULES_PREFIX}orders`;
const doc = (max: number) => JSON.stringify({ service: 'orders', limit: { max } });

/** Writes `text` and returns the revision it got. */
async function write(kv: InMemoryKvStore, text: string): Promise<number> {
  await kv.put(KEY, text);
  return (await kv.get(KEY))?.revision ?? 0;
}

function setup() {
  const kv = new InMemoryKvStore();
  const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [limitKind, otherKind], logger: new MemoryLogger() }).start();
  return { kv, watcher };
}

/** Whether `p` has settled after every pending callback of this turn has run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('RuleWatcher.until', () => {
  const cases: {
    name: string;
    writes: readonly string[];
    /** Which write's revision to wait for (index), or 0 for "no document". */
    waitFor: number | 'none';
    expect: 'resolve' | 'MESHLET_RULES_REJECTED';
    inForceMax?: number;
  }[] = [
    { name: 'a good document', writes: [doc(5)], waitFor: 0, expect: 'resolve', inForceMax: 5 },
    { name: 'a later document also means this one was seen', writes: [doc(5), doc(6)], waitFor: 0, expect: 'resolve', inForceMax: 6 },
    {
      name: 'a refused document rejects, naming the field',
      writes: [doc(5), doc(500)],
      waitFor: 1,
      expect: 'MESHLET_RULES_REJECTED',
      inForceMax: 5,
    },
    { name: 'no document at all', writes: [], waitFor: 'none', expect: 'resolve' },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { kv, watcher } = setup();
      const revisions: number[] = [];
      for (const w of c.writes) revisions.push(await write(kv, w));
      const revision = c.waitFor === 'none' ? 0 : (revisions[c.waitFor] as number);
      const waiting = watcher.until(revision, { timeoutMs: 60_000 });
      if (c.expect === 'resolve') {
        const status = await waiting;
        assert.ok(status.revision >= revision);
      } else {
        await assert.rejects(waiting, (err: Error & { code?: string }) => {
          assert.equal(err.code, c.expect);
          assert.match(err.message, /limit\.max/);
          return true;
        });
      }
      assert.equal(watcher.section(limitKind)?.max, c.inForceMax);
      watcher.close();
    });
  }

  it('waits for the watch, and settles on the change itself (no timer involved)', async () => {
    const kv = new InMemoryKvStore();
    // A store whose watch is held: the document is written, the watcher has not heard it.
    let deliver: (() => void) | undefined;
    const held = {
      ...kv,
      get: kv.get.bind(kv),
      list: kv.list.bind(kv),
      put: kv.put.bind(kv),
      delete: kv.delete.bind(kv),
      putAll: kv.putAll.bind(kv),
      watch: (prefix: string, listener: Parameters<InMemoryKvStore['watch']>[1]) =>
        kv.watch(prefix, (entries) => {
          if (entries.length === 0) return listener(entries);
          deliver = () => listener(entries);
        }),
    };
    const watcher = new RuleWatcher({ kv: held, service: 'orders', kinds: [limitKind], logger: new MemoryLogger() }).start();
    const revision = await write(kv, doc(7));
    const waiting = watcher.until(revision, { timeoutMs: 60_000 });
    assert.equal(await settled(waiting), false, 'not before the watch has the document');
    assert.ok(deliver);
    deliver();
    assert.equal(await settled(waiting), true);
    assert.equal((await waiting).revision, revision);
    watcher.close();
  });

  it('rejects after timeoutMs, and on close', async () => {
    const { kv, watcher } = setup();
    const revision = await write(kv, doc(5));
    await assert.rejects(watcher.until(revision + 10, { timeoutMs: 1 }), { code: 'MESHLET_RULES_NOT_IN_FORCE' });
    const pending = watcher.until(revision + 10, { timeoutMs: 60_000 });
    watcher.close();
    await assert.rejects(pending, { code: 'MESHLET_CLOSED' });
  });
});

describe('RuleWatcher.follow', () => {
  it("hands each listener its kind's section, typed, now and on change; the unsubscribe stops it", async () => {
    const { kv, watcher } = setup();
    const seen: (number | undefined)[] = [];
    const others: (string | undefined)[] = [];
    const off = watcher.follow(limitKind, (section) => seen.push(section?.max));
    watcher.follow(otherKind, (section) => others.push(section));
    assert.equal(watcher.service, 'orders');
    await watcher.until(await write(kv, JSON.stringify({ service: 'orders', limit: { max: 3 }, other: 'x' })));
    off();
    await watcher.until(await write(kv, doc(4)));
    assert.deepEqual(seen, [undefined, 3]);
    assert.deepEqual(others, [undefined, 'x', undefined]);
    watcher.close();
  });
});
