import assert from 'node:assert/strict';
import { it } from 'node:test';
import { emptyGroups, parseRouteSection } from '../src/index.js';
import { instance } from './fixtures.js';

const SVC = 'orders';

it('names the groups with traffic that no passing instance outside a lane serves', () => {
  const instances = [
    instance(SVC, 'a', { version: 'v1' }),
    { ...instance(SVC, 'b', { version: 'v2' }), health: 'critical' as const },
    // In a lane: it never serves requests outside it, so it does not fill the v3 group.
    instance(SVC, 'c', { version: 'v3', lane: 'gray' }),
  ];
  const to = (version: string, weight = 100) => ({ group: { version }, weight });
  const section = parseRouteSection({
    rules: [
      { name: 'split', destinations: [to('v1', 50), to('v2', 50)], fallback: [to('v3')] },
      { name: 'unused', destinations: [to('v1', 100), to('v9', 0)] },
    ],
    default: [to('v1')],
  });
  assert.deepEqual(emptyGroups(section, instances), [
    { rule: 'split', list: 'destinations', group: { version: 'v2' }, registered: 1 },
    { rule: 'split', list: 'fallback', group: { version: 'v3' }, registered: 0 },
  ]);
  assert.deepEqual(emptyGroups(parseRouteSection({ rules: [], default: [to('v9')] }), instances), [
    { rule: undefined, list: 'default', group: { version: 'v9' }, registered: 0 },
  ]);
});
