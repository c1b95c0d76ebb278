// createMesh refuses out-of-range overrides of the router and of the safe defaults, naming
// the field, as it does for its other options (found by a stranger's review: a panic
// threshold of 500 and negative retries were taken silently).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { InMemoryKvStore, InMemoryRegistry } from '@meshlet/core';
import { createMesh, type MeshOptions } from '../src/index.js';

const cases: readonly [string, Partial<MeshOptions> & Record<string, unknown>, string][] = [
  ['a panic threshold over 100', { route: { panicThresholdPercent: 500 } }, 'route.panicThresholdPercent'],
  ['a negative departed grace', { route: { departedGraceMs: -1 } }, 'route.departedGraceMs'],
  ['negative default retries', { callDefaults: { retries: -1 } }, 'callDefaults.retries'],
  ['fractional default retries', { callDefaults: { retries: 1.5 } }, 'callDefaults.retries'],
  [
    'outlier detection that is neither a rule nor false',
    { callDefaults: { outlierDetection: 'off' as never } },
    'callDefaults.outlierDetection',
  ],
  ['a version that is a number', { version: 7 as never }, 'version'],
];

for (const [what, options, field] of cases) {
  it(`refuses ${what}, naming ${field}`, () => {
    assert.throws(
      () => createMesh({ service: 'options-check', registry: new InMemoryRegistry(), rules: new InMemoryKvStore(), ...options }),
      (err: unknown) => (err as { code?: string }).code === 'MESHLET_BAD_OPTION' && (err as Error).message.startsWith(`${field}:`),
    );
  });
}

it('takes the overrides in range, and false for the defaults', async () => {
  const mesh = createMesh({
    service: 'options-check',
    registry: new InMemoryRegistry(),
    rules: new InMemoryKvStore(),
    version: '1.0.0',
    route: { panicThresholdPercent: 0, departedGraceMs: 0 },
    callDefaults: { retries: 0, outlierDetection: false },
  });
  assert.equal(mesh.service, 'options-check');
  await mesh.close();
  const off = createMesh({ service: 'options-off', registry: new InMemoryRegistry(), rules: new InMemoryKvStore(), callDefaults: false });
  assert.equal(off.service, 'options-off');
  await off.close();
});
