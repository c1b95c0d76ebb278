import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  FileKvStore,
  field,
  InMemoryKvStore,
  MAX_AUTHOR_LENGTH,
  ManualClock,
  MemoryLogger,
  parseRuleDocument,
  RULES_HISTORY_PREFIX,
  RULES_PREFIX,
  RuleConflictError,
  type RuleKind,
  RuleRepository,
  RuleValidationError,
  RuleWatcher,
} from '../src/index.js';
import { assertRuleRefused } from '../src/testing/index.js';

/** A tiny rule kind for these tests: `limit: { max: <1..100> }`. */
const limitKind: RuleKind<{ max: number }> = {
  name: 'limit',
  parse(raw, path) {
    const obj = field.object(raw, path);
    field.onlyKeys(obj, path, ['max']);
    return { max: field.integer(obj.max, `${path}.max`, 1, 100) };
  },
};
const doc = (max: unknown, service = 'orders') => JSON.stringify({ service, limit: { max } });

describe('rule documents', () => {
  it('parses the sections of loaded kinds; keeps others raw only when told to', () => {
    const text = JSON.stringify({ service: 'orders', limit: { max: 5 }, route: { x: 1 } });
    const d = parseRuleDocument(text, [limitKind], undefined, { unknownSections: 'keep' });
    assert.deepEqual(d.sections.get('limit'), { max: 5 });
    assert.deepEqual(d.sections.get('route'), { x: 1 });
    assertRuleRefused(() => parseRuleDocument(text, [limitKind]), 'route', /unknown rule section \(known: limit\)/);
  });

  it('names the failing field', () => {
    const fails = (text: string, message: RegExp) =>
      assert.throws(
        () => parseRuleDocument(text, [limitKind], 'orders'),
        (e: unknown) => e instanceof RuleValidationError && message.test(e.message),
      );
    fails('{"service":', /^\(document\): not valid JSON/);
    fails('[]', /must be an object/);
    fails(doc(500), /^limit\.max: must be between 1 and 100/);
    fails(doc(5, 'payments'), /^service: document is for "payments", stored under "orders"/);
    fails(JSON.stringify({ service: 'orders', 'bad key': 1 }), /^bad key: not a rule section name/);
  });
});

describe('RuleWatcher', () => {
  it('applies good documents hot and keeps the last good one when a bad one arrives', async () => {
    const kv = new InMemoryKvStore();
    const logger = new MemoryLogger();
    const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [limitKind], logger }).start();
    const seen: (number | undefined)[] = [];
    watcher.subscribe((d) => seen.push((d?.sections.get('limit') as { max: number } | undefined)?.max));

    await kv.put(`${RULES_PREFIX}orders`, doc(10));
    assert.equal(watcher.section(limitKind)?.max, 10);

    await kv.put(`${RULES_PREFIX}orders`, doc(-1));
    assert.equal(watcher.section(limitKind)?.max, 10, 'last good rules stay in force');
    assert.equal(watcher.status.rejected, 1);
    assert.equal(watcher.status.lastError?.path, 'limit.max');
    await kv.put(`${RULES_PREFIX}orders`, '{not json');
    assert.equal(watcher.status.rejected, 2);
    const errors = logger.entries.filter((e) => e.level === 'error');
    assert.equal(errors.length, 2, 'each bad revision is logged once');
    assert.equal(errors[0]?.fields?.path, 'limit.max');

    await kv.put(`${RULES_PREFIX}orders`, doc(20));
    assert.equal(watcher.section(limitKind)?.max, 20);
    assert.equal(watcher.status.lastError, undefined);
    await kv.delete(`${RULES_PREFIX}orders`);
    assert.equal(watcher.document, undefined, 'a deleted document means no rules');
    assert.deepEqual(seen, [undefined, 10, 20, undefined]);
    watcher.close();
  });

  it('does not mistake another service with the same prefix for its own', async () => {
    const kv = new InMemoryKvStore();
    const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [limitKind], logger: new MemoryLogger() }).start();
    await kv.put(`${RULES_PREFIX}orders-v2`, doc(7, 'orders-v2'));
    assert.equal(watcher.document, undefined);
    assert.equal(watcher.status.rejected, 0);
  });
});

describe('RuleRepository', () => {
  it("stamps a version with the wall clock's time, not the monotonic one", async () => {
    const clock = new ManualClock(1_000);
    clock.stepWall(3_600_000); // NTP stepped the host's clock an hour on since the start
    const repo = new RuleRepository({ kv: new InMemoryKvStore(), kinds: [limitKind], clock });
    assert.equal((await repo.apply(doc(10), { author: 'ana' })).at, 3_601_000);
  });

  it('validates before writing, keeps history, and rolls back in one call', async () => {
    const kv = new InMemoryKvStore();
    const clock = new ManualClock(1_000);
    const repo = new RuleRepository({ kv, kinds: [limitKind], clock });
    const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [limitKind], logger: new MemoryLogger() }).start();

    await repo.apply(doc(10), { author: 'ana' });
    clock.advance(1_000);
    await repo.apply(doc(20), { author: 'bo' });
    await assert.rejects(repo.apply(doc(0), { author: 'bo' }), RuleValidationError);
    assert.equal(watcher.section(limitKind)?.max, 20);

    const back = await repo.rollback('orders', { author: 'ops' });
    assert.deepEqual([back.version, back.action, back.restored], [3, 'rollback', 1]);
    assert.equal(watcher.section(limitKind)?.max, 10, 'rollback is in force at once');

    const history = await repo.history('orders');
    assert.deepEqual(
      history.map((v) => [v.version, v.author, v.action, v.at]),
      [
        [1, 'ana', 'apply', 1_000],
        [2, 'bo', 'apply', 2_000],
        [3, 'ops', 'rollback', 2_000],
      ],
    );
    await repo.rollback('orders', { author: 'ops', to: 2 });
    assert.equal(watcher.section(limitKind)?.max, 20);
    await assert.rejects(repo.rollback('orders', { author: 'ops', to: 99 }), /no version 99 to roll back to \(versions: 1, 2, 3, 4\)/);
  });

  it('records a reason, and a rollback with ifRevision refuses when the rules moved on', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [limitKind] });
    await repo.apply(doc(10), { author: 'a', reason: 'first' });
    const { revision } = await repo.current('orders');
    await repo.apply(doc(20), { author: 'b', reason: `${'x'.repeat(2_000)}` });
    await assert.rejects(repo.rollback('orders', { author: 'c', to: 1, ifRevision: revision }), RuleConflictError);
    const now = await repo.current('orders');
    const back = await repo.rollback('orders', { author: 'c', to: 1, ifRevision: now.revision, reason: 'way back' });
    const history = await repo.history('orders');
    assert.deepEqual(
      history.map((v) => [v.author, v.reason?.length === 1_000 ? 'capped' : v.reason]),
      [
        ['a', 'first'],
        ['b', 'capped'],
        ['c', 'way back'],
      ],
    );
    assert.equal(back.restored, 1);
  });

  it('refuses to overwrite a change made since the rules were read', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [limitKind] });
    await repo.apply(doc(10), { author: 'a' });
    const { revision } = await repo.current('orders');
    await repo.apply(doc(11), { author: 'b' });
    await assert.rejects(repo.apply(doc(12), { author: 'a', ifRevision: revision }), RuleConflictError);
    assert.equal((await repo.current('orders')).text, doc(11));
  });

  const raceDir = mkdtempSync(join(tmpdir(), 'meshlet-race-'));
  after(() => rmSync(raceDir, { recursive: true, force: true }));
  for (const [name, store] of [
    ['in memory', () => new InMemoryKvStore()],
    ['in a directory', () => new FileKvStore(join(raceDir, 'kv'))],
  ] as const) {
    it(`two writers racing from the same read (${name}): one wins, the other writes neither rules nor history`, async () => {
      const kv = store();
      const repo = new RuleRepository({ kv, kinds: [limitKind] });
      await repo.apply(doc(10), { author: 'a' });
      const { revision } = await repo.current('orders');
      const results = await Promise.allSettled([
        repo.apply(doc(11), { author: 'b', ifRevision: revision }),
        repo.apply(doc(12), { author: 'c', ifRevision: revision }),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1);
      assert.ok(lost[0]?.status === 'rejected' && lost[0].reason instanceof RuleConflictError);
      const history = await repo.history('orders');
      assert.deepEqual(
        history.map((v) => [v.version, v.author]),
        [
          [1, 'a'],
          [2, won[0]?.status === 'fulfilled' ? won[0].value.author : '?'],
        ],
      );
      assert.equal((await repo.current('orders')).text, history[1]?.document);
    });
  }

  for (const [name, store] of [
    ['in memory', () => new InMemoryKvStore()],
    ['in a directory', () => new FileKvStore(join(raceDir, 'versions'))],
  ] as const) {
    it(`finds the version in force from the store revision a span names (${name})`, async () => {
      const kv = store();
      const repo = new RuleRepository({ kv, kinds: [limitKind] });
      const revisions: number[] = [];
      for (const max of [10, 20]) {
        await repo.apply(doc(max), { author: `author-${max}`, reason: `max ${max}` });
        revisions.push((await repo.current('orders')).revision);
      }
      await repo.rollback('orders', { author: 'ops' });
      revisions.push((await repo.current('orders')).revision);
      const found = await Promise.all(revisions.map((r) => repo.versionAt('orders', r)));
      assert.deepEqual(
        found.map((v) => [v?.version, v?.author, v?.document]),
        [
          [1, 'author-10', doc(10)],
          [2, 'author-20', doc(20)],
          [3, 'ops', doc(10)],
        ],
      );
      // A document written to the store by hand has no version; nor does revision 0.
      await kv.put(`${RULES_PREFIX}orders`, doc(30));
      assert.equal(await repo.versionAt('orders', (await repo.current('orders')).revision), undefined);
      assert.equal(await repo.versionAt('orders', 0), undefined);
    });
  }

  it('rolls the first version back to no rules at all', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [limitKind] });
    await repo.apply(doc(10), { author: 'a' });
    const back = await repo.rollback('orders', { author: 'a' });
    assert.deepEqual([back.restored, back.document], [0, null]);
    assert.equal((await repo.current('orders')).text, undefined);
  });

  it('rolls back to no rules only after a first version: without history it refuses, keeping the rules in force', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [limitKind] });
    // Written outside the repository (consul kv put, an editor): no version to roll back from.
    await kv.put(`${RULES_PREFIX}orders`, doc(10));
    for (const to of [0, undefined]) {
      await assert.rejects(repo.rollback('orders', { author: 'a', ...(to === undefined ? {} : { to }) }), {
        code: 'MESHLET_NO_RULE_VERSION',
      });
    }
    assert.equal((await repo.current('orders')).text, doc(10));
    assert.deepEqual(await repo.history('orders'), []);
  });

  it('records a removal, which can be rolled back too', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [limitKind] });
    await repo.apply(doc(10), { author: 'a' });
    await repo.remove('orders', { author: 'a' });
    assert.equal((await repo.current('orders')).text, undefined);
    await repo.rollback('orders', { author: 'a' });
    assert.equal((await repo.current('orders')).text, doc(10));
  });
});

describe('RuleRepository reading history back', () => {
  const entry = (fields: Record<string, unknown>) =>
    JSON.stringify({ version: 3, at: 0, author: 'x', action: 'apply', document: doc(30), ...fields });
  // The reviewer's entries (a hand edit, a partial restore, another tool), each under a stray
  // key or under the key of the version an apply would write next.
  const strays: [label: string, key: string, value: string, reason: RegExp][] = [
    ['not JSON', 'zzz', 'oops', /key does not name a version/],
    ['not JSON, under the next version key', '0000000003', 'oops', /^not JSON$/],
    ['version null', '0000000003', entry({ version: null }), /^version is not a whole number/],
    ['version "3" (a string)', '0000000003', entry({ version: '3' }), /^version is not a whole number/],
    ['version 1e21', '0000000003', entry({ version: 1e21 }), /^version is not a whole number/],
    ['a version its key does not name', '0000000003', entry({ version: 7 }), /^version 7 is not the one its key names/],
    ['at 1e20 (no Date shows it)', '0000000003', entry({ at: 1e20 }), /^at is not a time/],
    ['author a number', '0000000003', entry({ author: 5 }), /^author is not text/],
    ['document an object', '0000000003', entry({ document: {} }), /^document is not text or null/],
    ['action unknown', '0000000003', entry({ action: 'merge' }), /^action is not one of/],
  ];
  for (const [label, key, value, reason] of strays) {
    it(`skips an entry that is not a version (${label}), reports it, and applies and rolls back as before`, async () => {
      const kv = new InMemoryKvStore();
      const logger = new MemoryLogger();
      const repo = new RuleRepository({ kv, kinds: [limitKind], logger });
      await repo.apply(doc(10), { author: 'ops' });
      await repo.apply(doc(20), { author: 'ops' });
      await kv.put(`${RULES_HISTORY_PREFIX}orders/${key}`, value);

      const read = await repo.readHistory('orders');
      assert.deepEqual(
        read.versions.map((v) => v.version),
        [1, 2],
      );
      assert.equal(read.skipped, 1);
      assert.equal(read.skippedEntries[0]?.key, `${RULES_HISTORY_PREFIX}orders/${key}`);
      assert.match(read.skippedEntries[0]?.reason ?? '', reason);

      const next = key === 'zzz' ? 3 : 4;
      const applied = await repo.apply(doc(40), { author: 'ops' });
      assert.equal(applied.version, next, 'the next version follows the highest valid one, and any key that names one');
      assert.equal((await repo.apply(doc(50), { author: 'ops' })).version, next + 1);
      const back = await repo.rollback('orders', { author: 'ops' });
      assert.deepEqual([back.version, back.restored], [next + 2, next]);
      assert.equal((await repo.current('orders')).text, doc(40));
      assert.equal(await repo.versionAt('orders', (await kv.get(`${RULES_HISTORY_PREFIX}orders/${key}`))?.revision ?? 0), undefined);

      // Logged with a code, once while the skipped entries stay the same (five reads above).
      const logged = logger.entries.filter((e) => e.fields?.code === 'MESHLET_BAD_RULE_HISTORY');
      assert.equal(logged.length, 1);
      assert.equal(logged[0]?.fields?.skipped, 1);
    });
  }

  it('reports at most a few skipped entries by key and counts the rest', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [limitKind] });
    await repo.apply(doc(10), { author: 'ops' });
    for (let i = 0; i < 50; i++) await kv.put(`${RULES_HISTORY_PREFIX}orders/x${i}`, 'oops');
    const read = await repo.readHistory('orders');
    assert.deepEqual([read.versions.length, read.skipped, read.skippedEntries.length], [1, 50, 5]);
  });

  it('a version whose key is the last one a key can name refuses the next apply with a code', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [limitKind] });
    await kv.put(`${RULES_HISTORY_PREFIX}orders/9999999999`, 'oops');
    await assert.rejects(
      repo.apply(doc(10), { author: 'ops' }),
      (err: unknown) => (err as { code?: string }).code === 'MESHLET_RULE_HISTORY_FULL',
    );
    assert.equal((await repo.current('orders')).text, undefined);
  });

  it('keeps an author to MAX_AUTHOR_LENGTH characters, written and read back', async () => {
    const kv = new InMemoryKvStore();
    const repo = new RuleRepository({ kv, kinds: [limitKind] });
    const written = await repo.apply(doc(10), { author: 'a'.repeat(100_000) });
    assert.equal(written.author.length, MAX_AUTHOR_LENGTH);
    assert.equal((await repo.history('orders'))[0]?.author.length, MAX_AUTHOR_LENGTH);
    await kv.put(`${RULES_HISTORY_PREFIX}orders/0000000002`, entry({ version: 2, author: 'b'.repeat(100_000) }));
    assert.equal((await repo.history('orders'))[1]?.author, 'b'.repeat(MAX_AUTHOR_LENGTH));
  });
});

describe('RuleWatcher deletes', () => {
  it('applies the deletion of a document that was there at start', async () => {
    const kv = new InMemoryKvStore();
    await kv.put(`${RULES_PREFIX}orders`, doc(10));
    const watcher = new RuleWatcher({ kv, service: 'orders', kinds: [limitKind], logger: new MemoryLogger() }).start();
    assert.equal(watcher.section(limitKind)?.max, 10);
    await kv.delete(`${RULES_PREFIX}orders`);
    assert.equal(watcher.document, undefined);
    await kv.put(`${RULES_PREFIX}orders`, doc(12));
    assert.equal(watcher.section(limitKind)?.max, 12);
  });
});
