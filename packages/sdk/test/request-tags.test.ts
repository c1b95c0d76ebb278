// tagsFromHeaders: tags lifted from a header, a cookie or a query parameter at the edge.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry, MemoryLogger } from '@meshlet/core';
import { TagPropagation } from '@meshlet/propagation';
import { type HeaderTag, inboundContext } from '../src/inbound.js';
import { createMesh } from '../src/index.js';

const tagsOf = (headers: Record<string, string>, url: string, tagsFromHeaders: readonly HeaderTag[]) =>
  Object.fromEntries(
    inboundContext(headers, 'GET', url, {
      tagsFromHeaders,
      propagation: new TagPropagation(),
      logger: new MemoryLogger(),
      owner: undefined,
    }).tags,
  );

it('lifts a header, a cookie and a query parameter into tags, decoded', () => {
  const rules: HeaderTag[] = [
    { header: 'X-Tier', tag: 'tier' },
    { cookie: 'uid', tag: 'user' },
    { cookie: 'region', tag: 'region' },
    { query: 'canary', tag: 'canary', transform: (v) => (v === '1' ? 'on' : undefined) },
    { query: 'q', tag: 'search' },
  ];
  const tags = tagsOf(
    { 'x-tier': 'vip', cookie: 'session=abc; uid=u%3A42; region="eu west"; uid=second' },
    '/items?canary=1&q=red%20shoes',
    rules,
  );
  assert.deepEqual(tags, { tier: 'vip', user: 'u:42', region: 'eu west', canary: 'on', search: 'red shoes' });
});

it('sets nothing for what the request does not have, and keeps a cookie that does not decode as it came', () => {
  const rules: HeaderTag[] = [
    { cookie: 'uid', tag: 'user' },
    { query: 'canary', tag: 'canary', transform: (v) => (v === '1' ? 'on' : undefined) },
    { cookie: 'odd', tag: 'odd' },
  ];
  assert.deepEqual(tagsOf({ cookie: 'odd=%zz' }, '/items?canary=0', rules), { odd: '%zz' });
  assert.deepEqual(tagsOf({}, '/items', rules), {});
});

it('createMesh refuses an entry with no source or several, naming it', () => {
  const base = { service: 'edge', registry: new InMemoryRegistry(), rules: new InMemoryKvStore(), logger: new MemoryLogger() };
  const bad = [{ tag: 'x' }, { header: 'a', cookie: 'b', tag: 'x' }, { query: 'q', tag: '' }] as unknown as HeaderTag[];
  assert.throws(
    () => createMesh({ ...base, tagsFromHeaders: [bad[0] as HeaderTag] }),
    /tagsFromHeaders\[0\]: give exactly one of header, cookie or query \(got none\)/,
  );
  assert.throws(
    () => createMesh({ ...base, tagsFromHeaders: [{ header: 'ok', tag: 'ok' }, bad[1] as HeaderTag] }),
    /tagsFromHeaders\[1\].*got header, cookie/,
  );
  assert.throws(() => createMesh({ ...base, tagsFromHeaders: [bad[2] as HeaderTag] }), /tagsFromHeaders\[0\]\.tag: must be a tag name/);
});
