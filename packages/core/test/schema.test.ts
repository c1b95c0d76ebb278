// The published JSON Schema and the parser must agree: the same documents pass and fail.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parseCondition, parseRuleDocument } from '../src/index.js';

const load = (name: string) => JSON.parse(readFileSync(new URL(`../../schema/${name}`, import.meta.url), 'utf8'));
const ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false });
const conditionSchema = ajv.compile(load('condition.schema.json'));
const documentSchema = ajv.compile(load('rules.schema.json'));

const parses = (f: () => unknown) => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

it('the condition schema accepts exactly what parseCondition accepts', () => {
  const cases: unknown[] = [
    { tag: 'a', op: 'equals', value: 'x' },
    { tag: 'a', op: 'notEquals', value: '' },
    { tag: 'a', op: 'in', values: ['x', 'y'] },
    { tag: 'a', op: 'notIn', values: ['x'] },
    { tag: 'a', op: 'regex', pattern: '^v1' },
    { tag: 'a', op: 'exists' },
    { tag: 'a', op: 'range', min: 1 },
    { tag: 'a', op: 'range', min: 1, max: 2 },
    { tag: 'a', op: 'eq', value: 'x' },
    { tag: '', op: 'exists' },
    { tag: 'a', op: 'equals' },
    { tag: 'a', op: 'in', values: [] },
    { tag: 'a', op: 'in', values: [1] },
    { tag: 'a', op: 'range' },
    { tag: 'a', op: 'exists', value: 'x' },
    { tag: 'a', op: 'regex', pattern: 'x'.repeat(300) },
    { op: 'exists' },
  ];
  for (const c of cases) {
    assert.equal(
      conditionSchema(c),
      parses(() => parseCondition(c, 'c')),
      JSON.stringify(c),
    );
  }
});

it('the document schema accepts exactly what parseRuleDocument accepts (envelope)', () => {
  const cases: unknown[] = [
    { service: 'orders' },
    { service: 'orders', description: 'x', route: {} },
    { service: 'user_service' },
    {},
    { service: 'orders', 'Bad-Section': {} },
  ];
  for (const c of cases) {
    assert.equal(
      documentSchema(c),
      parses(() => parseRuleDocument(JSON.stringify(c), [], undefined, { unknownSections: 'keep' })),
      JSON.stringify(c),
    );
  }
});
