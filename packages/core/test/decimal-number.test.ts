import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decimalNumber } from '../src/index.js';

describe('decimalNumber', () => {
  it('reads decimal text, blanks around it allowed', () => {
    for (const [text, n] of [
      ['0', 0],
      ['1', 1],
      ['0.25', 0.25],
      ['.5', 0.5],
      ['1.', 1],
      ['-3', -3],
      ['+8080', 8080],
      [' 0.25\t', 0.25],
      ['0.000', 0],
    ] as const)
      assert.equal(decimalNumber(text), n, JSON.stringify(text));
  });

  it("refuses what Number() reads otherwise: blanks, 0x/0b/0o, exponents, Infinity, NaN, a value past a double's range, one not 0 read as 0", () => {
    for (const text of [
      '',
      ' ',
      '\t',
      '0x1',
      '0b1',
      '0o7',
      '1e3',
      '1e-400',
      'Infinity',
      'NaN',
      '1_000',
      '1 2',
      '..5',
      `1${'0'.repeat(400)}`,
      `0.${'0'.repeat(400)}1`,
    ])
      assert.equal(decimalNumber(text), undefined, JSON.stringify(text.slice(0, 20)));
  });
});
