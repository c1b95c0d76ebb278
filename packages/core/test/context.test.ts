import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  attachExtension,
  type ContextExtension,
  createContext,
  currentContext,
  extensionOf,
  getTag,
  MemoryLogger,
  runWithContext,
  SystemTag,
  setTag,
  TagLimits,
  withTags,
} from '../src/index.js';

describe('request context', () => {
  it('is empty, not missing, outside a request', () => {
    const ctx = currentContext();
    assert.equal(ctx.tags.size, 0);
    assert.deepEqual(ctx.caller, {});
    assert.equal(ctx.request, undefined);
    assert.equal(getTag('anything'), undefined);
    assert.equal(setTag('a', 'b'), false);
  });

  it('follows async work started inside the request', async () => {
    const ctx = createContext({ tags: [['user', 'u1']] });
    const seen = await runWithContext(ctx, async () => {
      await sleep(1);
      return new Promise<string | undefined>((resolve) => setImmediate(() => resolve(getTag('user'))));
    });
    assert.equal(seen, 'u1');
  });

  it('never lets 1 000 interleaved requests see each other’s tags', async () => {
    const n = 1000;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        runWithContext(createContext({ tags: [['req', String(i)]] }), async () => {
          setTag('mine', `m${i}`);
          // Yield in different orders so that the requests really interleave.
          await sleep(i % 7);
          await new Promise((r) => setImmediate(r));
          const after = `${getTag('req')}/${getTag('mine')}`;
          await sleep((n - i) % 5);
          return `${after}|${getTag('req')}/${getTag('mine')}`;
        }),
      ),
    );
    for (const [i, r] of results.entries()) assert.equal(r, `${i}/m${i}|${i}/m${i}`);
    assert.equal(currentContext().tags.size, 0);
  });

  it('exposes system tags by their names', () => {
    const ctx = createContext({
      caller: { service: 'gateway', version: '1.2.0', namespace: 'prod', instance: 'gw-1' },
      request: { method: 'GET', path: '/api/users/42' },
    });
    assert.equal(getTag(SystemTag.sourceService, ctx), 'gateway');
    assert.equal(getTag(SystemTag.sourceVersion, ctx), '1.2.0');
    assert.equal(getTag(SystemTag.sourceNamespace, ctx), 'prod');
    assert.equal(getTag(SystemTag.sourceInstance, ctx), 'gw-1');
    assert.equal(getTag(SystemTag.requestMethod, ctx), 'GET');
    assert.equal(getTag(SystemTag.requestPath, ctx), '/api/users/42');
  });

  it('withTags adds tags for a scope without touching the parent', () => {
    runWithContext(createContext({ tags: [['a', '1']] }), () => {
      withTags({ b: '2' }, () => {
        assert.equal(getTag('a'), '1');
        assert.equal(getTag('b'), '2');
      });
      assert.equal(getTag('b'), undefined);
    });
  });

  it('an extension attached to a context reaches a withTags child as a fork of its own', () => {
    class Counter {
      constructor(public n: number) {}
      fork() {
        return new Counter(this.n);
      }
    }
    const key = Symbol('counter');
    const ctx = createContext();
    attachExtension(ctx, key, new Counter(1));
    runWithContext(ctx, () => {
      withTags({ b: '2' }, () => {
        const child = extensionOf<Counter>(currentContext(), key);
        assert.equal(child?.n, 1);
        if (child) child.n = 5;
      });
      assert.equal(extensionOf<Counter>(currentContext(), key)?.n, 1);
    });
    assert.equal(extensionOf(createContext(), key), undefined);
    assert.throws(() => attachExtension(currentContext(), key, new Counter(0)), /outside a request/);
  });

  it('finds an extension on a frozen context and one an older copy of core kept in the shared WeakMap, and forks both into a withTags child', () => {
    const key = Symbol('test');
    const counter = (n: number): ContextExtension & { n: number } => ({ n, fork: () => counter(n + 1) });
    const frozen = Object.freeze(createContext({ tags: [['a', '1']] }));
    attachExtension(frozen, key, counter(1));
    assert.equal(extensionOf<ReturnType<typeof counter>>(frozen, key)?.n, 1);
    // As a copy of core before the slot kept extensions: in the global WeakMap.
    const legacy = createContext();
    const shared = (globalThis as Record<symbol, WeakMap<object, Map<symbol, ContextExtension>>>)[Symbol.for('meshlet.context.extensions')];
    shared?.set(legacy, new Map([[key, counter(10)]]));
    assert.equal(extensionOf<ReturnType<typeof counter>>(legacy, key)?.n, 10);
    const other = Symbol('other');
    attachExtension(legacy, other, counter(20));
    assert.equal(extensionOf<ReturnType<typeof counter>>(legacy, other)?.n, 20);
    for (const [ctx, n] of [
      [frozen, 2],
      [legacy, 11],
    ] as const) {
      const seen = runWithContext(ctx, () => withTags({ b: '2' }, () => extensionOf<ReturnType<typeof counter>>(currentContext(), key)?.n));
      assert.equal(seen, n);
    }
    // Kept off the wire: a context serialized (a log line) does not carry its extensions.
    const plain = createContext();
    attachExtension(plain, key, counter(1));
    assert.equal(JSON.stringify(plain).includes('fork'), false);
  });

  it('takes an ownTags Map as its own, uncopied; copies one over the tag count bound under the bounds', () => {
    const own = new Map([['tier', 'vip']]);
    const ctx = createContext({ ownTags: own, tags: [['ignored', 'x']] });
    assert.equal(ctx.tags, own);
    assert.deepEqual([...ctx.tags], [['tier', 'vip']]);
    const many = new Map(Array.from({ length: TagLimits.maxTags + 3 }, (_, i) => [`k${i}`, 'v'] as [string, string]));
    const logger = new MemoryLogger();
    const bounded = createContext({ ownTags: many, logger });
    assert.notEqual(bounded.tags, many);
    assert.equal(bounded.tags.size, TagLimits.maxTags);
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_TAG_DROPPED').length, 3);
  });

  it('drops a tag over a bound with a warning, and keeps going', () => {
    const logger = new MemoryLogger();
    runWithContext(createContext({ logger }), () => {
      assert.equal(setTag('v', 'x'.repeat(TagLimits.maxValueBytes + 1)), false);
      assert.equal(setTag('', 'x'), false);
      for (let i = 0; i < TagLimits.maxTags; i++) assert.equal(setTag(`k${i}`, 'v'), true);
      assert.equal(setTag('one-too-many', 'v'), false);
      assert.equal(setTag('k0', 'replaced'), true, 'replacing a key is not a new tag');
      assert.equal(currentContext().tags.size, TagLimits.maxTags);
    });
    assert.deepEqual(
      logger.entries.map((e) => e.fields?.reason),
      ['value-too-long', 'empty-key', 'too-many-tags'],
    );
  });
});
