// One rule-kind contract: every kind in the one list is `{ kind, schema }` from its package's
// `<kind>-rule.ts`, with the JSON Schema of its section shipped where the entry says.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { it } from 'node:test';
import { RULE_KINDS, ruleKinds } from '../src/rule-kinds.js';

const require = createRequire(import.meta.url);

it('lists each kind once, each with its schema named after it and shipped by its package', () => {
  assert.deepEqual(
    RULE_KINDS.map((e) => e.kind.name),
    ['route', 'breaker', 'ratelimit', 'auth', 'fault'],
  );
  assert.deepEqual(
    ruleKinds.map((k) => k.name),
    RULE_KINDS.map((e) => e.kind.name),
  );
  for (const { kind, schema } of RULE_KINDS) {
    assert.equal(schema.file, `schema/${kind.name}.schema.json`, kind.name);
    const text = readFileSync(require.resolve(`${schema.package}/${schema.file}`), 'utf8');
    assert.equal(readFileSync(schema.url, 'utf8'), text, `${kind.name}: the url the CLI reads is the file the package exports`);
    assert.equal((JSON.parse(text) as { $schema?: string }).$schema, 'https://json-schema.org/draft/2020-12/schema', kind.name);
  }
});
