// The one bound on ids a span attribute names (routing's ejected instances, the breaker's
// refused ones): at most MAX_NAMED_IDS, then an ellipsis.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_NAMED_IDS, namedIds } from '../src/index.js';

describe('namedIds', () => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `i${i}`);
  const rows: { name: string; ids: string[]; want: string }[] = [
    { name: 'none: empty', ids: [], want: '' },
    { name: 'one', ids: ['a'], want: 'a' },
    { name: 'exactly the bound: all, no ellipsis', ids: ids(MAX_NAMED_IDS), want: ids(10).join(' ') },
    { name: 'one over the bound: the first ten, then …', ids: ids(MAX_NAMED_IDS + 1), want: `${ids(10).join(' ')} …` },
    { name: 'a thousand: still ten', ids: ids(1000), want: `${ids(10).join(' ')} …` },
  ];
  for (const row of rows) {
    it(row.name, () => {
      assert.equal(MAX_NAMED_IDS, 10);
      assert.equal(namedIds(row.ids), row.want);
    });
  }
});
