import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadTagHeaderError, decodeTags, encodeTags, TagLimits } from '../src/index.js';

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
