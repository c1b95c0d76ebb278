import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ruleKinds } from 'meshlet';
import { loadRuleKinds } from '../src/index.js';

it('the CLI checks exactly the rule kinds a mesh reads, each with a published schema', async () => {
  const checked = await loadRuleKinds();
  assert.deepEqual(
    checked.map((c) => c.kind.name),
    ruleKinds.map((k) => k.name),
  );
  for (const c of checked) assert.ok(c.schema, `${c.kind.name}: no schema`);
});
