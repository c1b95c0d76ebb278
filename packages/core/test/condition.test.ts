import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Condition, compileConditions, parseCondition, REGEX_MAX_LENGTH, RuleValidationError } from '../src/index.js';

const tags: Record<string, string> = { 'ua.family': 'Chrome', 'user-tier': 'vip', age: '42', empty: '', uid: 'u-1234' };
const lookup = (t: string) => tags[t];
const matches = (raw: unknown) => compileConditions([parseCondition(raw, 'when[0]')])(lookup);

describe('conditions', () => {
  it('equals / notEquals; a missing tag never matches either', () => {
    assert.equal(matches({ tag: 'ua.family', op: 'equals', value: 'Chrome' }), true);
    assert.equal(matches({ tag: 'ua.family', op: 'equals', value: 'chrome' }), false, 'case-sensitive');
    assert.equal(matches({ tag: 'ua.family', op: 'notEquals', value: 'Firefox' }), true);
    assert.equal(matches({ tag: 'ua.family', op: 'notEquals', value: 'Chrome' }), false);
    assert.equal(matches({ tag: 'missing', op: 'notEquals', value: 'x' }), false);
    assert.equal(matches({ tag: 'empty', op: 'equals', value: '' }), true);
  });

  it('in / notIn', () => {
    assert.equal(matches({ tag: 'user-tier', op: 'in', values: ['gold', 'vip'] }), true);
    assert.equal(matches({ tag: 'user-tier', op: 'in', values: ['gold'] }), false);
    assert.equal(matches({ tag: 'user-tier', op: 'notIn', values: ['free'] }), true);
    assert.equal(matches({ tag: 'missing', op: 'notIn', values: ['free'] }), false);
  });

  it('regex, compiled once', () => {
    assert.equal(matches({ tag: 'uid', op: 'regex', pattern: '^u-\\d{4}$' }), true);
    assert.equal(matches({ tag: 'uid', op: 'regex', pattern: '^x' }), false);
    assert.equal(matches({ tag: 'missing', op: 'regex', pattern: '.*' }), false);
  });

  it('exists', () => {
    assert.equal(matches({ tag: 'empty', op: 'exists' }), true);
    assert.equal(matches({ tag: 'missing', op: 'exists' }), false);
  });

  it('range is inclusive, needs a number, and takes open ends', () => {
    assert.equal(matches({ tag: 'age', op: 'range', min: 42, max: 42 }), true);
    assert.equal(matches({ tag: 'age', op: 'range', min: 43 }), false);
    assert.equal(matches({ tag: 'age', op: 'range', max: 41.9 }), false);
    assert.equal(matches({ tag: 'ua.family', op: 'range', min: 0 }), false, 'not a number');
    assert.equal(matches({ tag: 'empty', op: 'range', max: 1 }), false, 'empty is not zero');
  });

  it('ANDs a list; an empty list matches everything', () => {
    const both: Condition[] = [
      { tag: 'ua.family', op: 'equals', value: 'Chrome' },
      { tag: 'user-tier', op: 'equals', value: 'free' },
    ];
    assert.equal(compileConditions(both)(lookup), false);
    assert.equal(compileConditions([])(lookup), true);
  });

  const rejects = (raw: unknown, path: RegExp) =>
    assert.throws(
      () => parseCondition(raw, 'route.rules[0].when[1]'),
      (err: unknown) => err instanceof RuleValidationError && path.test(err.message),
    );

  it('rejects bad conditions naming the field', () => {
    rejects({ tag: 'a', op: 'eq', value: 'x' }, /^route\.rules\[0\]\.when\[1\]\.op: must be one of/);
    rejects({ tag: '', op: 'exists' }, /\.tag: must not be empty/);
    rejects({ op: 'exists' }, /\.tag: must be a string/);
    rejects({ tag: 'a', op: 'equals' }, /\.value: must be a string/);
    rejects({ tag: 'a', op: 'in', values: [] }, /\.values: must not be empty/);
    rejects({ tag: 'a', op: 'in', values: ['x', 3] }, /\.values\[1\]: must be a string/);
    rejects({ tag: 'a', op: 'range' }, /range needs min, max or both/);
    rejects({ tag: 'a', op: 'range', min: 3, max: 1 }, /\.min: must not be greater than max/);
    rejects({ tag: 'a', op: 'equals', value: 'x', valu: 'typo' }, /\.valu: unknown field/);
    rejects('nope', /when\[1\]: must be an object/);
  });

  it('rejects regexes that are too long, invalid, or can backtrack catastrophically', () => {
    rejects({ tag: 'a', op: 'regex', pattern: 'a'.repeat(REGEX_MAX_LENGTH + 1) }, /\.pattern: regex longer than 256/);
    rejects({ tag: 'a', op: 'regex', pattern: '(' }, /\.pattern: invalid regex/);
    for (const evil of ['(a+)+$', '(a*)*', '(a|a)*', '(\\w+\\s?)+$', '((ab)*)+', '(x+x+)+y', '(a|b){2,}']) {
      rejects({ tag: 'a', op: 'regex', pattern: evil }, /catastrophic backtracking/);
    }
    rejects({ tag: 'a', op: 'regex', pattern: '(a)\\1' }, /back-references/);
    rejects({ tag: 'a', op: 'regex', pattern: '(?=a)a' }, /lookarounds/);
    for (const fine of ['^Chrome/\\d+', '(ab)+', '[a-z]+(-[0-9])?', '(?:foo|bar)', '^(v1\\.2[0-9])$', '[(+*)]+']) {
      assert.doesNotThrow(() => parseCondition({ tag: 'a', op: 'regex', pattern: fine }, 'p'), fine);
    }
  });
});
