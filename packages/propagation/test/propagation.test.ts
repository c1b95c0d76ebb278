import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter, EventEmitterAsyncResource, once } from 'node:events';
import { describe, it } from 'node:test';
import { createContext, currentContext, MemoryLogger, runWithContext, TAG_HEADER, TagLimits, withTags } from '@meshlet/core';
import {
  attachRequestTags,
  type HeaderBag,
  ONCE_TAG_HEADER,
  requestTagsOf,
  setScopedTag,
  TagPropagation,
  TagScopes,
} from '../src/index.js';

const lower = (h: Record<string, string>): HeaderBag => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));

/** One service: reads its inbound headers, lets `handle` add tags, and returns what it sends on. */
function hop(propagation: TagPropagation, inbound: HeaderBag, handle: () => void = () => {}): Record<string, string> {
  const got = propagation.extract(inbound);
  const ctx = createContext({ tags: got.tags, logger: new MemoryLogger() });
  attachRequestTags(ctx, { scopes: got.scopes, passThrough: got.passThrough });
  return runWithContext(ctx, () => {
    handle();
    const state = requestTagsOf();
    return propagation.emit(currentContext().tags, state?.scopes, state?.passThrough).headers;
  });
}

describe('TagPropagation', () => {
  it('reads every accepted dialect; the later dialect wins a shared key', () => {
    const p = new TagPropagation();
    const got = p.extract({
      'tsf-tags': '[{"k":"tier","v":"from-tsf","f":["0"]},{"k":"only-tsf","v":"1","f":["0"]}]',
      'sct-custom-metadata': '{"tier":"from-sct"}',
      'x-polaris-metadata-transitive-tier': 'from-polaris',
      [TAG_HEADER]: 'tier=from-meshlet',
    });
    assert.equal(got.tags.get('tier'), 'from-meshlet');
    assert.equal(got.tags.get('only-tsf'), '1');
    const noMeshlet = new TagPropagation({ accept: ['meshlet', 'polaris', 'sct', 'tsf'] }).extract({
      'tsf-tags': '[{"k":"tier","v":"from-tsf","f":["0"]}]',
      [TAG_HEADER]: 'tier=from-meshlet',
    });
    assert.equal(noMeshlet.tags.get('tier'), 'from-tsf');
  });

  it('ignores dialects it does not accept', () => {
    const got = new TagPropagation({ accept: ['meshlet'] }).extract({ 'sct-custom-metadata': '{"a":"1"}' });
    assert.equal(got.tags.size, 0);
  });

  it('a tag sent transitive by any dialect stays transitive', () => {
    const got = new TagPropagation().extract({
      'tsf-tags': '[{"k":"a","v":"1","f":["0"]}]',
      'sct-custom-disposable-metadata': '{"a":"1"}',
    });
    assert.equal(got.scopes.get('a'), undefined);
  });

  it('scopes one dialect’s one-hop tags local, and a second dialect’s transitive copy makes them transitive again, whichever comes first', () => {
    const p = new TagPropagation();
    const alone = p.extract({ [ONCE_TAG_HEADER]: 'a=1,b=2', [TAG_HEADER]: 'b=3,c=4' });
    assert.deepEqual(
      [...alone.tags],
      [
        ['a', '1'],
        ['b', '3'],
        ['c', '4'],
      ],
    );
    assert.deepEqual(
      ['a', 'b', 'c'].map((k) => alone.scopes.get(k)),
      ['local', undefined, undefined],
    );
    // One-hop in SCT (read before Meshlet's header), transitive in Meshlet's; one-hop in both.
    const two = p.extract({ 'sct-custom-disposable-metadata': '{"a":"1","d":"5"}', [TAG_HEADER]: 'a=2', [ONCE_TAG_HEADER]: 'd=6' });
    assert.deepEqual(
      [...two.tags],
      [
        ['a', '2'],
        ['d', '6'],
      ],
    );
    assert.deepEqual(
      ['a', 'd'].map((k) => two.scopes.get(k)),
      [undefined, 'local'],
    );
    // Transitive first (TSF), one-hop later (SCT): transitive.
    const later = p.extract({ 'tsf-tags': '[{"k":"e","v":"1","f":["0"]}]', 'sct-custom-disposable-metadata': '{"e":"2","f":"3"}' });
    assert.deepEqual(
      ['e', 'f'].map((k) => later.scopes.get(k)),
      [undefined, 'local'],
    );
    // Each request's tags are its own: changing one request's does not reach the next.
    (alone.tags as Map<string, string>).set('x', 'y');
    assert.equal(p.extract({ [TAG_HEADER]: 'b=3,c=4' }).tags.has('x'), false);
    assert.notEqual(p.extract({}).tags, p.extract({}).tags);
  });

  it('keeps the tag count bound across dialects, the first dialect’s tags first', () => {
    const many = Array.from({ length: TagLimits.maxTags }, (_, i) => `k${i}=v`).join(',');
    const got = new TagPropagation().extract({ 'sct-custom-metadata': '{"s1":"1","s2":"2"}', [TAG_HEADER]: many });
    assert.equal(got.tags.size, TagLimits.maxTags);
    assert.equal(got.tags.get('s1'), '1');
    assert.equal(got.dropped.filter((d) => d.reason === 'too-many-tags' && d.header === 'meshlet').length, 2);
  });

  it('takes the caller from tsf-metadata', () => {
    const got = new TagPropagation().extract({ 'tsf-metadata': '{"sn":"gateway","ni":"ns-1"}' });
    assert.deepEqual(got.caller, { service: 'gateway', namespace: 'ns-1' });
  });

  it('emits every configured dialect from one call', () => {
    const p = new TagPropagation({ emit: ['meshlet', 'tsf', 'sct', 'polaris'] });
    const { headers } = p.emit([['tier', 'vip']]);
    assert.deepEqual(Object.keys(headers).sort(), ['X-Polaris-Metadata-Transitive-tier', 'sct-custom-metadata', 'tsf-tags', TAG_HEADER]);
  });

  it('rejects an unknown dialect and a bad configured scope at construction', () => {
    assert.throws(() => new TagPropagation({ emit: ['nope' as 'tsf'] }), {
      code: 'MESHLET_BAD_OPTION',
      message: 'emit[0]: unknown dialect "nope" (known: meshlet, tsf, polaris, sct)',
    });
    assert.throws(() => new TagPropagation({ scopes: { a: 'far' as 'local' } }), /scopes\.a/);
  });
});

describe('propagation scopes', () => {
  for (const emit of [['meshlet'], ['tsf'], ['sct']] as const) {
    it(`${emit[0]}: a one-hop tag reaches the next service and stops there`, () => {
      const p = new TagPropagation({ emit });
      let seenAtB: string | undefined;
      let seenAtC: string | undefined;
      const fromA = hop(p, {}, () => {
        assert.ok(setScopedTag('canary', 'on', { scope: 'one-hop' }));
        assert.ok(setScopedTag('tier', 'vip', { scope: 'transitive' }));
      });
      const fromB = hop(p, lower(fromA), () => {
        seenAtB = currentContext().tags.get('canary');
      });
      hop(p, lower(fromB), () => {
        seenAtC = currentContext().tags.get('canary');
        assert.equal(currentContext().tags.get('tier'), 'vip');
      });
      assert.equal(seenAtB, 'on');
      assert.equal(seenAtC, undefined);
    });
  }

  it('a local tag never leaves the process', () => {
    const p = new TagPropagation({ emit: ['meshlet', 'tsf', 'sct', 'polaris'] });
    const out = hop(p, {}, () => {
      assert.ok(setScopedTag('debug-user', 'alice', { scope: 'local' }));
    });
    assert.deepEqual(out, {});
  });

  it('configuration sets scopes by tag name; code overrides it for one request', () => {
    const p = new TagPropagation({ scopes: { 'user-id': 'local', canary: 'one-hop' } });
    const first = hop(p, { [TAG_HEADER]: 'user-id=42,canary=on,tier=vip' });
    assert.equal(first[TAG_HEADER], 'tier=vip');
    assert.equal(first[ONCE_TAG_HEADER], 'canary=on');
    const second = hop(p, {}, () => setScopedTag('user-id', '7', { scope: 'transitive' }));
    assert.equal(second[TAG_HEADER], 'user-id=7');
  });

  it('setScopedTag refuses a non-transitive tag on a request without propagation state', () => {
    const logger = new MemoryLogger();
    runWithContext(createContext({ logger }), () => {
      assert.equal(setScopedTag('a', '1', { scope: 'one-hop' }), false);
      assert.equal(currentContext().tags.has('a'), false);
    });
    assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_NO_TAG_SCOPES'));
  });

  it('withTags keeps the scopes and pass-through headers; the child scopes its own tags without touching the parent', () => {
    const p = new TagPropagation({ passThroughHeaders: ['x-uid'] });
    const send = () => {
      const state = requestTagsOf();
      return p.emit(currentContext().tags, state?.scopes, state?.passThrough).headers;
    };
    hop(p, { 'x-uid': '7' }, () => {
      assert.ok(setScopedTag('debug-user', 'alice', { scope: 'local' }));
      const inChild = withTags({ tier: 'vip' }, () => {
        assert.ok(setScopedTag('canary', 'on', { scope: 'one-hop' }));
        return send();
      });
      assert.equal(inChild[TAG_HEADER], 'tier=vip');
      assert.equal(inChild[ONCE_TAG_HEADER], 'canary=on');
      assert.equal(inChild['x-uid'], '7');
      assert.equal(requestTagsOf()?.scopes.get('canary'), undefined);
      assert.deepEqual(send(), { 'x-uid': '7' });
    });
  });

  it('says when an untagged call still gets headers (TSF identity), so callers do not skip emit then', () => {
    assert.equal(new TagPropagation({ emit: ['meshlet', 'tsf', 'sct', 'polaris'] }).emitsWithoutTags, false);
    const tsf = new TagPropagation({ emit: ['tsf'], tsf: { identity: { serviceName: 'billing' } } });
    assert.equal(tsf.emitsWithoutTags, true);
    assert.ok(tsf.emit(new Map()).headers['tsf-metadata']?.includes('billing'));
  });

  it('TagScopes.fork copies, then the two go their own ways', () => {
    const parent = new TagScopes([['a', 'local']]);
    const child = parent.fork();
    child.set('b', 'one-hop');
    assert.equal(child.get('a'), 'local');
    assert.equal(parent.get('b'), undefined);
  });

  it('TagScopes with nothing set is empty, and its fork too, until a scope is set', () => {
    const empty = new TagScopes();
    assert.equal(empty.size, 0);
    assert.equal(empty.get('a'), undefined);
    const child = empty.fork();
    child.set('a', 'local');
    assert.equal(child.size, 1);
    assert.equal(empty.size, 0);
    assert.equal(empty.get('a'), undefined);
  });
});

describe('raw pass-through headers', () => {
  it('passes configured headers on unchanged, and only those', () => {
    const p = new TagPropagation({ passThroughHeaders: ['X-Uid', 'x-env'] });
    const out = hop(p, { 'x-uid': 'u:1, {"a"} 中', 'x-env': 'gray', 'x-other': 'no' });
    assert.deepEqual(out, { 'x-uid': 'u:1, {"a"} 中', 'x-env': 'gray' });
  });

  it('refuses an oversized pass-through header with a warning', () => {
    const got = new TagPropagation({ passThroughHeaders: ['x-uid'] }).extract({ 'x-uid': 'x'.repeat(9000) });
    assert.equal(got.passThrough.size, 0);
    assert.equal(got.warnings[0]?.header, 'x-uid');
  });

  it('gives each request that carries pass-through headers a Map of its own', () => {
    const p = new TagPropagation({ passThroughHeaders: ['x-uid'] });
    const a = p.extract({ 'x-uid': '1' });
    const b = p.extract({ 'x-uid': '2' });
    assert.notEqual(a.passThrough, b.passThrough);
    assert.equal(a.passThrough.get('x-uid'), '1');
    assert.equal(b.passThrough.get('x-uid'), '2');
    // Requests without any share one empty Map, which stays empty.
    assert.equal(p.extract({}).passThrough.size, 0);
    assert.equal(p.extract({}).passThrough, p.extract({ other: 'x' }).passThrough);
  });
});

describe('tags across async boundaries', () => {
  const p = new TagPropagation({ emit: ['meshlet'] });
  const inbound = { [TAG_HEADER]: 'tier=vip', 'x-uid': '7' };

  function request() {
    const got = new TagPropagation({ passThroughHeaders: ['x-uid'] }).extract(inbound);
    const ctx = createContext({ tags: got.tags, logger: new MemoryLogger() });
    attachRequestTags(ctx, { scopes: got.scopes, passThrough: got.passThrough });
    return ctx;
  }
  const outbound = () => {
    const s = requestTagsOf();
    return p.emit(currentContext().tags, s?.scopes, s?.passThrough).headers;
  };

  it('survive a second AsyncLocalStorage user (an APM agent) inside and outside the request', async () => {
    const apm = new AsyncLocalStorage<{ span: string }>();
    const ctx = request();
    const inside = await runWithContext(ctx, () =>
      apm.run({ span: 's1' }, async () => {
        apm.enterWith({ span: 's2' });
        await new Promise((r) => setImmediate(r));
        return { apm: apm.getStore()?.span, headers: outbound() };
      }),
    );
    assert.equal(inside.apm, 's2');
    assert.deepEqual(inside.headers, { [TAG_HEADER]: 'tier=vip', 'x-uid': '7' });
    const outside = await apm.run({ span: 'outer' }, () =>
      runWithContext(ctx, async () => {
        await Promise.resolve();
        return outbound();
      }),
    );
    assert.deepEqual(outside, { [TAG_HEADER]: 'tier=vip', 'x-uid': '7' });
  });

  it('survive setTimeout', async () => {
    const headers = await runWithContext(request(), () => new Promise((resolve) => setTimeout(() => resolve(outbound()), 0)));
    assert.deepEqual(headers, { [TAG_HEADER]: 'tier=vip', 'x-uid': '7' });
  });

  it('survive an event emitted later in the request', async () => {
    const emitter = new EventEmitter();
    const seen = runWithContext(request(), async () => {
      const got = once(emitter, 'ready');
      setImmediate(() => emitter.emit('ready'));
      await got;
      return outbound();
    });
    assert.deepEqual(await seen, { [TAG_HEADER]: 'tier=vip', 'x-uid': '7' });
  });

  it('survive an event emitted from outside the request, with EventEmitterAsyncResource', async () => {
    // A pooled client emits from its own callbacks; bind its emitter to the request that created it.
    let fire: () => void = () => {};
    const seen = runWithContext(request(), () => {
      const emitter = new EventEmitterAsyncResource({ name: 'pooled-client' });
      fire = () => emitter.emit('data');
      return new Promise((resolve) => emitter.on('data', () => resolve(outbound())));
    });
    // Outside any request: the plain context would be empty here.
    assert.equal(currentContext().tags.size, 0);
    fire();
    assert.deepEqual(await seen, { [TAG_HEADER]: 'tier=vip', 'x-uid': '7' });
  });
});
