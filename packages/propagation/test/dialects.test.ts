import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TAG_HEADER, TagLimits } from '@meshlet/core';
import {
  formDecode,
  formEncode,
  meshletDialect,
  ONCE_TAG_HEADER,
  polarisDialect,
  type ScopeLookup,
  sctDialect,
  type TagDialect,
  TagPropagation,
  type TagScope,
  tsfDialect,
} from '../src/index.js';

const allTransitive: ScopeLookup = () => 'transitive';
const scopes =
  (m: Record<string, TagScope>): ScopeLookup =>
  (k) =>
    m[k] ?? 'transitive';

// Values that broke gray releases elsewhere: separators, JSON syntax, quotes, non-ASCII, `+`, `%`.
const NASTY = ['a:b', '{"x":1}', 'say "hi"', "it's", '中文-😀', 'a,b,c', 'x+y z', '100%', 'k=v;p', 'a/b\\c'];

describe('form encoding (java.net.URLEncoder / URLDecoder)', () => {
  it('encodes exactly as URLEncoder.encode(s, "UTF-8")', () => {
    // Hand-encoded: space is "+", ":" %3A, "{" %7B, '"' %22, "," %2C, 中 E4 B8 AD, 文 E6 96 87.
    assert.equal(formEncode('a:b {"c"}, 中文'), 'a%3Ab+%7B%22c%22%7D%2C+%E4%B8%AD%E6%96%87');
    // URLEncoder leaves . - * _ and encodes ! ' ( ) ~, unlike encodeURIComponent.
    assert.equal(formEncode("a.b-c*d_e!f'g(h)i~"), 'a.b-c*d_e%21f%27g%28h%29i%7E');
  });

  it('decodes "+" as a space and refuses bad percent-encoding', () => {
    assert.equal(formDecode('x+y%2Bz'), 'x y+z');
    assert.equal(formDecode('%ZZ'), undefined);
    assert.equal(formDecode('%E4%B8'), undefined); // truncated UTF-8
    for (const v of NASTY) assert.equal(formDecode(formEncode(v)), v);
  });
});

describe('TSF dialect (tsf-tags, tsf-metadata)', () => {
  const tsf = tsfDialect({
    identity: { applicationId: 'application-a1', serviceName: 'orders', groupId: 'group-g1', namespaceId: 'namespace-n1' },
  });

  it('reads a golden tsf-tags: transitive with flag "0", one-hop without', () => {
    // [{"k":"user-tier","v":"vip","f":["0"]},{"k":"once","v":"1","f":[]}]
    const got = tsf.extract({
      'tsf-tags':
        '%5B%7B%22k%22%3A%22user-tier%22%2C%22v%22%3A%22vip%22%2C%22f%22%3A%5B%220%22%5D%7D%2C%7B%22k%22%3A%22once%22%2C%22v%22%3A%221%22%2C%22f%22%3A%5B%5D%7D%5D',
    });
    assert.deepEqual(
      [...got.tags],
      [
        ['user-tier', 'vip'],
        ['once', '1'],
      ],
    );
    assert.deepEqual([...got.arrivedOnce], ['once']);
    assert.deepEqual(got.warnings, []);
  });

  it('reads a golden tsf-metadata as source.* system tags that stop here, and the caller', () => {
    // {"ai":"application-a1","av":"v1","sn":"gateway","ii":"gw-1","gi":"group-g1","li":"10.0.0.9","ni":"namespace-n1"}
    const got = tsf.extract({
      'tsf-metadata':
        '%7B%22ai%22%3A%22application-a1%22%2C%22av%22%3A%22v1%22%2C%22sn%22%3A%22gateway%22%2C%22ii%22%3A%22gw-1%22%2C%22gi%22%3A%22group-g1%22%2C%22li%22%3A%2210.0.0.9%22%2C%22ni%22%3A%22namespace-n1%22%7D',
    });
    assert.equal(got.tags.get('source.application.id'), 'application-a1');
    assert.equal(got.tags.get('source.application.version'), 'v1');
    assert.equal(got.tags.get('source.service.name'), 'gateway');
    assert.equal(got.tags.get('source.instance.id'), 'gw-1');
    assert.equal(got.tags.get('source.group.id'), 'group-g1');
    assert.equal(got.tags.get('source.connection.ip'), '10.0.0.9');
    assert.equal(got.tags.get('source.namespace.id'), 'namespace-n1');
    assert.equal(got.arrivedOnce.size, 7);
    assert.deepEqual(got.caller, { service: 'gateway', version: 'v1', namespace: 'namespace-n1', instance: 'gw-1' });
  });

  it('accepts raw JSON as tsf-go does', () => {
    const got = tsf.extract({ 'tsf-tags': '[{"k":"a","v":"b","f":["0","2"]}]' });
    assert.equal(got.tags.get('a'), 'b');
    assert.equal(got.arrivedOnce.size, 0);
  });

  it('writes golden tsf-tags and tsf-metadata', () => {
    const { headers, dropped } = tsf.emit(
      [
        ['user-tier', 'vip'],
        ['once', '1'],
        ['secret', 'x'],
      ],
      scopes({ once: 'one-hop', secret: 'local' }),
    );
    assert.deepEqual(dropped, []);
    assert.equal(
      headers['tsf-tags'],
      '%5B%7B%22k%22%3A%22user-tier%22%2C%22v%22%3A%22vip%22%2C%22f%22%3A%5B%220%22%5D%7D%2C%7B%22k%22%3A%22once%22%2C%22v%22%3A%221%22%2C%22f%22%3A%5B%5D%7D%5D',
    );
    assert.equal(
      headers['tsf-metadata'],
      '%7B%22ai%22%3A%22application-a1%22%2C%22av%22%3A%22%22%2C%22sn%22%3A%22orders%22%2C%22ii%22%3A%22%22%2C%22gi%22%3A%22group-g1%22%2C%22li%22%3A%22%22%2C%22ni%22%3A%22namespace-n1%22%7D',
    );
  });
});

describe('Spring Cloud Tencent dialect (SCT-CUSTOM-METADATA, SCT-CUSTOM-DISPOSABLE-METADATA)', () => {
  it('reads golden headers: custom is transitive, disposable one-hop', () => {
    const got = sctDialect.extract({
      'sct-custom-metadata': '%7B%22user-tier%22%3A%22vip%22%7D', // {"user-tier":"vip"}
      'sct-custom-disposable-metadata': '%7B%22canary%22%3A%22on%22%7D', // {"canary":"on"}
    });
    assert.deepEqual(Object.fromEntries(got.tags), { canary: 'on', 'user-tier': 'vip' });
    assert.deepEqual([...got.arrivedOnce], ['canary']);
  });

  it('writes golden headers', () => {
    const { headers } = sctDialect.emit(
      [
        ['user-tier', 'vip'],
        ['canary', 'on'],
      ],
      scopes({ canary: 'one-hop' }),
    );
    assert.deepEqual(headers, {
      'sct-custom-metadata': '%7B%22user-tier%22%3A%22vip%22%7D',
      'sct-custom-disposable-metadata': '%7B%22canary%22%3A%22on%22%7D',
    });
  });
});

describe('PolarisMesh dialect (X-Polaris-Metadata-Transitive-<key>)', () => {
  const polaris = polarisDialect({ laneGroup: 'tsf' });

  it('reads one header per key, URL-decoded, and follows the lane in service-lane', () => {
    const got = polaris.extract({
      'x-polaris-metadata-transitive-user-tier': 'vip',
      'x-polaris-metadata-transitive-service-lane': 'tsf%2Fgray', // as Spring Cloud Tencent writes tsf/gray
      'x-sct-metadata-transitive-region': 'sh',
      'x-other': 'ignored',
    });
    assert.deepEqual(Object.fromEntries(got.tags), { 'user-tier': 'vip', 'service-lane': 'tsf/gray', region: 'sh', lane: 'gray' });
  });

  it('reads header names in any case, as their lower-case form, and passes over every other name', () => {
    const got = polaris.extract({
      'X-Polaris-Metadata-Transitive-User-Tier': 'vip',
      'X-SCT-Metadata-Transitive-Region': 'sh',
      'x-polaris-metadata-transitive-ÄRGER': 'x',
      Accept: 'ignored',
      'X-Other': 'ignored',
      xpolaris: 'ignored',
    });
    assert.deepEqual(Object.fromEntries(got.tags), { 'user-tier': 'vip', region: 'sh', ärger: 'x' });
  });

  it('writes golden headers, and a service-lane for a lane set here', () => {
    const { headers } = polaris.emit(
      [
        ['user-tier', 'a b:c'],
        ['lane', 'gray'],
        ['once', '1'],
      ],
      scopes({ once: 'one-hop' }),
    );
    assert.deepEqual(headers, {
      'X-Polaris-Metadata-Transitive-user-tier': 'a+b%3Ac',
      'X-Polaris-Metadata-Transitive-lane': 'gray',
      'X-Polaris-Metadata-Transitive-service-lane': 'tsf%2Fgray',
    });
  });

  it('drops a key that cannot be a header name', () => {
    const { headers, dropped } = polaris.emit([['user tier', 'x']], allTransitive);
    assert.deepEqual(headers, {});
    assert.equal(dropped[0]?.reason, 'not-a-header-name');
  });
});

describe('Meshlet dialect (x-meshlet-tags, x-meshlet-tags-once)', () => {
  it('gives each result with a one-hop tag a set of its own, and leaves the others’ empty', () => {
    assert.equal(meshletDialect.extract({ 'x-meshlet-tags': 'a=1' }).arrivedOnce.size, 0);
    const once = meshletDialect.extract({ 'x-meshlet-tags-once': 'a=1,b=2', 'x-meshlet-tags': 'b=3' });
    assert.deepEqual([...once.arrivedOnce], ['a']);
    const after = meshletDialect.extract({ 'x-meshlet-tags': 'a=1' });
    assert.equal(after.arrivedOnce.size, 0, 'no one-hop key of another request');
    assert.notEqual(once.arrivedOnce, meshletDialect.extract({ 'x-meshlet-tags-once': 'a=1' }).arrivedOnce);
  });

  it('writes one-hop tags to x-meshlet-tags-once and never writes local ones', () => {
    const { headers } = meshletDialect.emit(
      [
        ['a', 'x,y'],
        ['b', '2'],
        ['c', '3'],
      ],
      scopes({ b: 'one-hop', c: 'local' }),
    );
    assert.deepEqual(headers, { [TAG_HEADER]: 'a=x%2Cy', [ONCE_TAG_HEADER]: 'b=2' });
    const back = meshletDialect.extract(headers);
    assert.deepEqual(Object.fromEntries(back.tags), { a: 'x,y', b: '2' });
    assert.deepEqual([...back.arrivedOnce], ['b']);
  });
});

const dialects: readonly [string, TagDialect][] = [
  ['meshlet', meshletDialect],
  ['tsf', tsfDialect()],
  ['sct', sctDialect],
  ['polaris', polarisDialect()],
];

describe('every dialect', () => {
  for (const [name, dialect] of dialects) {
    it(`${name}: values with ":", "{}", quotes, non-ASCII, commas round-trip intact`, () => {
      const tags = NASTY.map((v, i) => [`k${i}`, v] as const);
      const { headers, dropped } = dialect.emit(tags, allTransitive);
      assert.deepEqual(dropped, []);
      // Header values must be sendable: visible ASCII only.
      for (const v of Object.values(headers)) assert.match(v, /^[\x21-\x7e]*$/);
      const back = dialect.extract(lower(headers));
      assert.deepEqual(back.warnings, []);
      for (const [k, v] of tags) assert.equal(back.tags.get(k), v, `${name} ${k}`);
    });

    it(`${name}: keeps to core's bounds on the way out and in`, () => {
      const many = Array.from({ length: 100 }, (_, i) => [`key-${i}`, 'v'.repeat(100)] as const);
      const { headers, dropped } = dialect.emit(many, allTransitive);
      assert.ok(dropped.length > 0, 'some tags must be left out');
      const total = Object.entries(headers).reduce((n, [k, v]) => n + (name === 'polaris' ? k.length + 2 : 0) + v.length, 0);
      assert.ok(total <= TagLimits.maxHeaderBytes, `${total} bytes`);
      const back = dialect.extract(lower(headers));
      assert.ok(back.tags.size <= TagLimits.maxTags);
      assert.equal(back.tags.size + dropped.length, 100);
    });
  }
});

describe("a request without a dialect's headers", () => {
  for (const [name, dialect] of dialects) {
    it(`${name}: reads nothing, and what it reads from the next request is that request's alone`, () => {
      const none = dialect.extract({ accept: 'application/json', 'x-other': 'a=b' });
      assert.equal(none.tags.size, 0);
      assert.equal(none.arrivedOnce.size, 0);
      assert.deepEqual([...none.dropped, ...none.warnings], []);
      // A request with the dialect's headers (a good tag, a bad header), then one without:
      // the empty result of the first is not where the second's findings went.
      const { headers } = dialect.emit([['tier', 'gold']], allTransitive);
      const some = dialect.extract(lower(headers));
      assert.equal(some.tags.get('tier'), 'gold');
      const again = dialect.extract({ accept: 'application/json' });
      assert.equal(again.tags.size, 0);
      assert.equal(none.tags.size, 0);
    });
  }
});

describe('the shared empty results', () => {
  for (const [name, dialect] of dialects) {
    it(`${name}: cannot be filled, so one request's tag never reaches the next`, () => {
      const none = dialect.extract({ accept: 'text/plain' });
      assert.throws(() => (none.tags as Map<string, string>).set('lane', 'attacker'), TypeError);
      assert.throws(() => (none.arrivedOnce as Set<string>).add('lane'), TypeError);
      assert.equal(dialect.extract({ accept: 'text/plain' }).tags.get('lane'), undefined);
    });
  }

  it('pass-through headers of a request that has none cannot be filled', () => {
    const p = new TagPropagation({ passThroughHeaders: ['x-uid'] });
    const got = p.extract({ accept: 'text/plain' });
    assert.throws(() => (got.passThrough as Map<string, string>).set('x-uid', 'attacker'), TypeError);
    assert.equal(p.extract({ accept: 'text/plain' }).passThrough.get('x-uid'), undefined);
  });

  it("polaris reads the request's own headers, not names inherited from a polluted prototype", () => {
    const proto = Object.prototype as Record<string, unknown>;
    proto['x-polaris-metadata-transitive-lane'] = 'polluted';
    try {
      assert.equal(polarisDialect().extract({ accept: 'text/plain' }).tags.get('lane'), undefined);
      assert.equal(new TagPropagation().extract({ accept: 'text/plain' }).tags.get('lane'), undefined);
    } finally {
      delete proto['x-polaris-metadata-transitive-lane'];
    }
  });
});

describe('header bombs: dropped with a warning, never thrown', () => {
  const bombs: [string, Record<string, string>][] = [
    ['meshlet oversized', { [TAG_HEADER]: `a=${'x'.repeat(9000)}` }],
    ['meshlet bad percent-encoding', { [TAG_HEADER]: 'a=%ZZ' }],
    ['meshlet malformed', { [ONCE_TAG_HEADER]: 'no-equals-sign' }],
    ['tsf-tags oversized', { 'tsf-tags': `%5B${'%7B%7D%2C'.repeat(1000)}%5D` }],
    ['tsf-tags malformed JSON', { 'tsf-tags': '%5B%7B%22k%22%3A' }],
    ['tsf-tags bad percent-encoding', { 'tsf-tags': '%5B%E4%B8%5D' }],
    ['tsf-tags not an array', { 'tsf-tags': '%7B%7D' }],
    ['tsf-metadata malformed JSON', { 'tsf-metadata': '%7B%22ai%22' }],
    ['tsf-metadata bad percent-encoding', { 'tsf-metadata': '%7B%ZZ' }],
    ['sct oversized', { 'sct-custom-metadata': `%7B%22a%22%3A%22${'x'.repeat(9000)}%22%7D` }],
    ['sct malformed JSON', { 'sct-custom-metadata': '%7B%22a%22' }],
    ['sct bad percent-encoding', { 'sct-custom-disposable-metadata': '%7B%G1' }],
    ['sct not an object', { 'sct-custom-metadata': '%5B%5D' }],
    ['polaris oversized', { 'x-polaris-metadata-transitive-a': 'x'.repeat(9000) }],
    ['polaris bad percent-encoding', { 'x-polaris-metadata-transitive-a': '100%' }],
  ];
  for (const [label, headers] of bombs) {
    it(label, () => {
      for (const [, dialect] of dialects) {
        const got = dialect.extract({ ...headers, 'x-polaris-metadata-transitive-ok': 'yes' });
        for (const w of got.warnings) assert.equal(w.code, 'MESHLET_BAD_TAG_HEADER');
        if (dialect.name === 'polaris') assert.equal(got.tags.get('ok'), 'yes', 'good headers beside the bomb are still read');
      }
      const owner = dialects.find(([, d]) => d.extract(headers).warnings.length > 0);
      assert.ok(owner, `no dialect warned about ${label}`);
      assert.equal(owner[1].extract(headers).tags.size, 0);
    });
  }

  it('a tsf-tags entry of the wrong shape is skipped with a warning, the rest kept', () => {
    const got = tsfDialect().extract({ 'tsf-tags': '[{"k":"a","v":"1","f":["0"]},{"k":2},"x",null]' });
    assert.equal(got.tags.get('a'), '1');
    assert.match(got.warnings[0]?.reason ?? '', /3 entries/);
  });

  it('a tag over a per-tag bound is dropped alone', () => {
    const got = sctDialect.extract({ 'sct-custom-metadata': JSON.stringify({ ok: '1', big: 'v'.repeat(600), 'ctl\n': 'x' }) });
    assert.deepEqual(Object.fromEntries(got.tags), { ok: '1' });
    assert.deepEqual(got.dropped.map((d) => d.reason).sort(), ['control-character', 'value-too-long']);
  });
});

function lower(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}
