import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Condition, compileConditions, seededRandom } from '@meshlet/core';

import { RuleIndex } from '../src/rule-index.js';

const TAGS = ['a', 'b', 'c', 'd'];
const VALUES = ['x', 'y', 'z', '5', '50'];

function randomCondition(random: () => number): Condition {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)] as T;
  const tag = pick(TAGS);
  switch (Math.floor(random() * 7)) {
    case 0:
      return { tag, op: 'equals', value: pick(VALUES) };
    case 1:
      return { tag, op: 'notEquals', value: pick(VALUES) };
    case 2:
      return { tag, op: 'in', values: [pick(VALUES), pick(VALUES)] };
    case 3:
      return { tag, op: 'notIn', values: [pick(VALUES)] };
    case 4:
      return { tag, op: 'regex', pattern: `^${pick(VALUES)}` };
    case 5:
      return { tag, op: 'exists' };
    default:
      return { tag, op: 'range', min: 1, max: 10 };
  }
}

describe('rule index', () => {
  it('finds the same first rule as testing every rule in order', () => {
    const random = seededRandom(2024);
    for (let set = 0; set < 200; set++) {
      const rules = Array.from({ length: 1 + Math.floor(random() * 30) }, () => {
        const when = Array.from({ length: Math.floor(random() * 3) }, () => randomCondition(random));
        return { when, matches: compileConditions(when) };
      });
      const index = new RuleIndex(rules);
      for (let q = 0; q < 50; q++) {
        const request: Record<string, string> = {};
        for (const t of TAGS) if (random() < 0.6) request[t] = VALUES[Math.floor(random() * VALUES.length)] as string;
        const lookup = (t: string) => request[t];
        const expected = rules.findIndex((r) => r.matches(lookup));
        assert.equal(index.first(lookup), expected, JSON.stringify({ request, rules: rules.map((r) => r.when) }));
      }
    }
  });

  it('tests only the rules filed under the request’s tags', () => {
    let tested = 0;
    const counted = (when: Condition[]) => {
      const m = compileConditions(when);
      return {
        when,
        matches: (l: (t: string) => string | undefined) => {
          tested++;
          return m(l);
        },
      };
    };
    const rules = [
      ...Array.from({ length: 98 }, (_, i) => counted([{ tag: 'user', op: 'equals', value: `u${i}` }])),
      counted([{ tag: 'ua', op: 'regex', pattern: '^Chrome' }]),
      counted([{ tag: 'user', op: 'in', values: ['u7', 'alice'] }]),
    ];
    const index = new RuleIndex(rules);
    assert.equal(
      index.first((t) => ({ user: 'alice' })[t]),
      99,
    );
    assert.equal(tested, 1);
  });
});
