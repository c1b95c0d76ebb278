import assert from 'node:assert/strict';
import { it } from 'node:test';
import { hasControlCharacter } from '../src/index.js';

it('hasControlCharacter: C0 (U+0000–U+001F) and DEL (U+007F), not C1 nor the characters around', () => {
  for (const c of ['\u0000', '\t', '\n', '\r', '\u001b', '\u001f', '\u007f'])
    assert.equal(hasControlCharacter(`a${c}b`), true, JSON.stringify(c));
  for (const s of ['', 'plain', ' ', '~', '\u0080', '\u009b', 'é', '中', '😀'])
    assert.equal(hasControlCharacter(s), false, JSON.stringify(s));
});
