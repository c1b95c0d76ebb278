import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  FileKvStore,
  field,
  InMemoryKvStore,
  ManualClock,
  MemoryLogger,
  parseRuleDocument,
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
