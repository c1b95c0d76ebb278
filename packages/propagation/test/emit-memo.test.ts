import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createContext, MemoryLogger, runWithContext, setTag, TAG_HEADER } from '@meshlet/core';
import { attachRequestTags, ONCE_TAG_HEADER, requestTagsOf, setScopedTag, TagPropagation, TagScopes } from '../src/index.js';

/** emit for the current request, as the governed call does it. */
function emitNow(p: TagPropagation, tags: ReadonlyMap<string, string>): Record<string, string> {
  const state = requestTagsOf();
  return p.emit(tags, state?.scopes, state?.passThrough).headers;
}

describe('TagPropagation.emit reuse per request', () => {
  it('returns the same headers for unchanged tags, and sees every change between calls', () => {
    const p = new TagPropagation({ emit: ['meshlet', 'tsf'] });
    const ctx = createContext({ tags: [['tier', 'vip']], logger: new MemoryLogger() });
    attachRequestTags(ctx, { scopes: new TagScopes(), passThrough: new Map([['x-uid', '7']]) });
    runWithContext(ctx, () => {
      const first = emitNow(p, ctx.tags);
      assert.equal(emitNow(p, ctx.tags), first, 'unchanged tags: the encoded headers are reused');
      assert.equal(first[TAG_HEADER], 'tier=vip');

      setTag('tier', 'gold'); // same size, new value
      const replaced = emitNow(p, ctx.tags);
      assert.equal(replaced[TAG_HEADER], 'tier=gold');
      assert.match(replaced['tsf-tags'] ?? '', /gold/);

      setTag('lane', 'blue'); // new key
      assert.equal(emitNow(p, ctx.tags)[TAG_HEADER], 'tier=gold,lane=blue');

      setScopedTag('lane', 'blue', { scope: 'one-hop' }); // same tags, new scope
      const scoped = emitNow(p, ctx.tags);
      assert.equal(scoped[TAG_HEADER], 'tier=gold');
      assert.equal(scoped[ONCE_TAG_HEADER], 'lane=blue');

      setScopedTag('lane', 'blue', { scope: 'local' });
      const local = emitNow(p, ctx.tags);
      assert.equal(local[TAG_HEADER], 'tier=gold');
      assert.equal(local[ONCE_TAG_HEADER], undefined);
      assert.equal(local['x-uid'], '7');
    });
  });

  it('sees a changed pass-through header and a different scopes object', () => {
    const p = new TagPropagation();
    const tags = new Map([['tier', 'vip']]);
    const pass = new Map([['x-uid', '7']]);
    assert.equal(p.emit(tags, undefined, pass).headers['x-uid'], '7');
    pass.set('x-uid', '8');
    assert.equal(p.emit(tags, undefined, pass).headers['x-uid'], '8');
    assert.equal(p.emit(tags).headers['x-uid'], undefined);
    const oneHop = new TagScopes([['tier', 'one-hop']]);
    assert.equal(p.emit(tags, oneHop).headers[ONCE_TAG_HEADER], 'tier=vip');
    assert.equal(p.emit(tags).headers[TAG_HEADER], 'tier=vip');
  });

  it('keeps requests apart and refuses changes to the shared result', () => {
    const p = new TagPropagation();
    const a = new Map([['tier', 'vip']]);
    const b = new Map([['tier', 'free']]);
    assert.equal(p.emit(a).headers[TAG_HEADER], 'tier=vip');
    assert.equal(p.emit(b).headers[TAG_HEADER], 'tier=free');
    assert.equal(p.emit(a).headers[TAG_HEADER], 'tier=vip');
    assert.throws(() => {
      (p.emit(a).headers as Record<string, string>)[TAG_HEADER] = 'x';
    }, TypeError);
  });

  it('keeps two TagPropagations’ results for one Map apart, and encodes a frozen Map every time', () => {
    const meshlet = new TagPropagation({ emit: ['meshlet'] });
    const tsf = new TagPropagation({ emit: ['tsf'] });
    const tags = new Map([['tier', 'vip']]);
    const a = meshlet.emit(tags);
    const b = tsf.emit(tags);
    assert.equal(a.headers[TAG_HEADER], 'tier=vip');
    assert.equal(b.headers[TAG_HEADER], undefined);
    assert.equal(meshlet.emit(tags), a);
    assert.equal(tsf.emit(tags), b);
    const frozen = Object.freeze(new Map([['tier', 'vip']]));
    assert.equal(meshlet.emit(frozen).headers[TAG_HEADER], 'tier=vip');
    assert.equal(meshlet.emit(frozen).headers[TAG_HEADER], 'tier=vip');
  });
});
