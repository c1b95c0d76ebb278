// The schema check reads each kind's schema where the kind's own package says it is, not by
// resolving the package's name from the CLI: npm may nest a rule package where the CLI's
// resolution does not reach, and the check was then skipped without a word.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MeshletError, shippedSchema } from '@meshlet/core';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import { type CheckedRuleKind, checkRuleDocument, SCHEMA_UNAVAILABLE } from '../src/index.js';

const route = RULE_KINDS.find((k) => k.kind.name === 'route') as CheckedRuleKind & { schema: NonNullable<CheckedRuleKind['schema']> };
const doc = JSON.stringify({ service: 'orders', route: { rules: [] }, breaker: { rules: [] } });

it('checks every kind against its schema: all the kinds of a document are named checked', async () => {
  const checked = await checkRuleDocument(doc, RULE_KINDS, { schemas: true });
  assert.deepEqual([...checked.schemaChecked].sort(), ['breaker', 'route']);
});

it("checks a kind whose package name the CLI cannot resolve (nested by npm elsewhere), from the kind's own location", async () => {
  const nested: CheckedRuleKind = { kind: route.kind, schema: { ...route.schema, package: '@meshlet/route-nested-out-of-reach' } };
  const kinds = RULE_KINDS.map((k) => (k.kind.name === 'route' ? nested : k));
  assert.deepEqual([...(await checkRuleDocument(doc, kinds, { schemas: true })).schemaChecked].sort(), ['breaker', 'route']);
});

it('a kind whose schema cannot be read fails the check, naming the kind (not skipped)', async () => {
  const lost: CheckedRuleKind = {
    kind: route.kind,
    schema: shippedSchema('@meshlet/route', 'schema/missing.schema.json', route.schema.url.href),
  };
  const kinds = RULE_KINDS.map((k) => (k.kind.name === 'route' ? lost : k));
  await assert.rejects(
    checkRuleDocument(doc, kinds, { schemas: true }),
    (err: unknown) => err instanceof MeshletError && err.code === SCHEMA_UNAVAILABLE && /rule kind "route"/.test(err.message),
  );
});
