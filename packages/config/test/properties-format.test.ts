import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigParseError, parseProperties } from '../src/index.js';

describe('parseProperties', () => {
  it('reads =, : and whitespace separators, skipping comments and blank lines', () => {
    const text = ['# a comment', '! also a comment', '', 'a=1', 'b : 2', 'c 3', '  d=  spaced value  ', 'e=', 'f'].join('\n');
    assert.deepEqual(Object.fromEntries(parseProperties(text)), { a: '1', b: '2', c: '3', d: 'spaced value  ', e: '', f: '' });
  });

  it('only the first separator counts; the rest belongs to the value', () => {
    assert.deepEqual(Object.fromEntries(parseProperties('url=jdbc:mysql://db:3306/x?a=b\nk = = v\nq==w')), {
      url: 'jdbc:mysql://db:3306/x?a=b',
      k: '= v',
      q: '=w',
    });
  });

  it('joins continuation lines and drops their leading whitespace', () => {
    const text = 'list=a,\\\n    b,\\\n\tc\nnext=1\neven=x\\\\\nafter=2';
    assert.deepEqual(Object.fromEntries(parseProperties(text)), { list: 'a,b,c', next: '1', even: 'x\\', after: '2' });
  });

  it('a comment line ending in a backslash does not continue', () => {
    assert.deepEqual(Object.fromEntries(parseProperties('# note \\\nkey=v')), { key: 'v' });
  });

  it('decodes escapes in keys and values', () => {
    const text = 'a\\=b\\:c\\ d=x\\ty\\nz\ncaf\\u00e9=\\u4e2d\\q\r\nwin=crlf';
    assert.deepEqual(Object.fromEntries(parseProperties(text)), { 'a=b:c d': 'x\ty\nz', café: '中q', win: 'crlf' });
  });

  it('a later key wins', () => {
    assert.equal(parseProperties('a=1\na=2').get('a'), '2');
  });

  it('rejects a malformed \\u escape naming the line', () => {
    assert.throws(
      () => parseProperties('ok=1\nbad=\\u12G4', 'config/orders/data'),
      (err: unknown) => err instanceof ConfigParseError && err.source === 'config/orders/data' && /line 2/.test(err.message),
    );
  });
});
