import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadTagHeaderError, decodeTagPairs, decodeTags, encodeTags, putTag, seededRandom, TagLimits } from '../src/index.js';

const roundTrip = (tags: [string, string][]) => decodeTags(encodeTags(tags).header).tags;

describe('tag header encoding', () => {
  it('round-trips values with separators, quotes, braces, non-ASCII and percent signs', () => {
    const tags: [string, string][] = [
      ['user-tier', 'vip'],
      ['json', '{"a":1,"b":[2,3]}'],
      ['eq', 'a=b=c'],
      ['comma', 'x, y,z'],
      ['colon', 'http://host:80/p?q=1&r=2'],
      ['unicode', '灰度发布 ✓ ünïcödé'],
      ['percent', '100%25 %zz'],
      ['space', '  padded  '],
      ['k,e=y', 'v'],
    ];
    assert.deepEqual([...roundTrip(tags)], tags);
  });

  it('documents its wire format: percent-encoded key=value joined by commas', () => {
    assert.equal(
      encodeTags([
        ['user-tier', 'vip'],
        ['note', 'a,b'],
      ]).header,
      'user-tier=vip,note=a%2Cb',
    );
    assert.deepEqual(
      [...decodeTags(' a=1 , b=2 ,').tags],
      [
        ['a', '1'],
        ['b', '2'],
      ],
    );
  });

  it('keeps an empty value and lets a later duplicate win', () => {
    assert.deepEqual(
      [...decodeTags('a=,a=2,b=').tags],
      [
        ['a', '2'],
        ['b', ''],
      ],
    );
  });

  it('rejects a malformed header whole, naming the header', () => {
    for (const bad of ['novalue', '=v', 'a=%E0%A4%A', 'a=1,%zz=2']) {
      assert.throws(
        () => decodeTags(bad, 'x-meshlet-tags'),
        (err: unknown) => {
          assert.ok(err instanceof BadTagHeaderError);
          assert.equal(err.code, 'MESHLET_BAD_TAG_HEADER');
          assert.match(err.message, /^x-meshlet-tags: /);
          return true;
        },
      );
    }
  });

  it('rejects a header over the header bound without parsing it', () => {
    const big = `a=${'x'.repeat(TagLimits.maxHeaderBytes)}`;
    assert.throws(() => decodeTags(big), BadTagHeaderError);
  });

  it('drops, and reports, decoded tags over the per-tag bounds', () => {
    const header = [
      `${'k'.repeat(TagLimits.maxKeyBytes + 1)}=v`,
      `long=${'v'.repeat(TagLimits.maxValueBytes + 1)}`,
      'ctl=a%0Ab',
      'ok=1',
    ].join(',');
    const { tags, dropped } = decodeTags(header);
    assert.deepEqual([...tags], [['ok', '1']]);
    assert.deepEqual(
      dropped.map((d) => d.reason),
      ['key-too-long', 'value-too-long', 'control-character'],
    );
  });

  it('counts bounds in UTF-8 bytes, not characters', () => {
    const value = 'é'.repeat(TagLimits.maxValueBytes / 2); // exactly the bound
    assert.equal(decodeTags(encodeTags([['a', value]]).header).tags.get('a'), value);
    const over = `${value}x`;
    assert.equal(decodeTags(`a=${encodeURIComponent(over)}`).dropped[0]?.reason, 'value-too-long');
  });

  it('keeps at most maxTags tags on decode and on encode', () => {
    const many: [string, string][] = Array.from({ length: TagLimits.maxTags + 5 }, (_, i) => [`k${i}`, 'v']);
    const encoded = encodeTags(many);
    assert.equal(encoded.dropped.length, 5);
    assert.ok(encoded.dropped.every((d) => d.reason === 'too-many-tags'));
    const header = many.map(([k, v]) => `${k}=${v}`).join(',');
    const decoded = decodeTags(header);
    assert.equal(decoded.tags.size, TagLimits.maxTags);
    assert.equal(decoded.dropped.length, 5);
  });

  it('never encodes a header over the header bound', () => {
    const tags: [string, string][] = Array.from({ length: 40 }, (_, i) => [`key${i}`, '✓'.repeat(170)]);
    const { header, dropped } = encodeTags(tags);
    assert.ok(header.length <= TagLimits.maxHeaderBytes, `header is ${header.length} bytes`);
    assert.ok(dropped.length > 0);
    assert.ok(dropped.every((d) => d.reason === 'header-too-long'));
    assert.equal(decodeTags(header).tags.size, 40 - dropped.length);
  });
});

describe('tag header decoding by index (decodeTagPairs)', () => {
  /** decodeTags as it was written before it walked the header by index: split, trim, slice. */
  function decodeBySplit(header: string): { tags: [string, string][]; dropped: unknown[] } | string {
    if (header.length > TagLimits.maxHeaderBytes) return 'too long';
    const tags = new Map<string, string>();
    const dropped: unknown[] = [];
    for (const raw of header.split(',')) {
      const entry = raw.trim();
      if (entry.length === 0) continue;
      const eq = entry.indexOf('=');
      if (eq <= 0) return `entry "${entry.slice(0, 40)}" is not key=value`;
      let key: string;
      let value: string;
      try {
        key = decodeURIComponent(entry.slice(0, eq).trim());
        value = decodeURIComponent(entry.slice(eq + 1).trim());
      } catch {
        return `entry "${entry.slice(0, 40)}" is not valid percent-encoding`;
      }
      const reason = putTag(tags, key, value);
      if (reason) dropped.push({ key: key.slice(0, TagLimits.maxKeyBytes), reason });
    }
    return { tags: [...tags], dropped };
  }
  const decodeNow = (header: string) => {
    try {
      const { tags, dropped } = decodeTags(header);
      return { tags: [...tags], dropped };
    } catch (err) {
      assert.ok(err instanceof BadTagHeaderError);
      return err.message.replace(/^.*?: /, '');
    }
  };
  // Every kind of white space trim removes, separators, escapes good and bad, control characters.
  const pieces = [
    'a',
    'k',
    'tier',
    '=',
    '=',
    ',',
    ',',
    ' ',
    '\t',
    '\n',
    '\u00a0',
    '\u2003',
    '\u2028',
    '\ufeff',
    '\u180e',
    '\u200b',
    '%2C',
    '%3D',
    '%20',
    '%E7%81%B0',
    '%zz',
    '%',
    '%E7',
    'é',
    '灰',
    '\u0001',
    'x'.repeat(130),
    'v'.repeat(600),
  ];

  it('decodes every header exactly as splitting and trimming did: tags, drops and errors', () => {
    const random = seededRandom(20261204);
    for (let n = 0; n < 20_000; n++) {
      let header = '';
      const length = Math.floor(random() * 14);
      for (let i = 0; i < length; i++) header += pieces[Math.floor(random() * pieces.length)];
      const before = decodeBySplit(header);
      const now = decodeNow(header);
      if (typeof before === 'string') assert.ok(typeof now === 'string' && now.endsWith(before), `${JSON.stringify(header)}: ${now}`);
      else assert.deepEqual(now, before, JSON.stringify(header));
    }
  });

  it('gives the entries flat and in order, repeats kept, bounds not applied', () => {
    assert.deepEqual(decodeTagPairs(` a = 1 , b=%2C,a=2,,k=${'v'.repeat(600)}`), ['a', '1', 'b', ',', 'a', '2', 'k', 'v'.repeat(600)]);
    assert.deepEqual(decodeTagPairs(''), []);
    assert.throws(
      () => decodeTagPairs('a=1,=2', 'x-h'),
      (e: BadTagHeaderError) => e.message.includes('x-h'),
    );
  });
});
