// The profile tables' arithmetic (profile-governed's `analyse`), not a profile.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { analyse, type CpuProfile, MAX_SAMPLE_INTERVALS, sampleWeights } from '../profile-governed.js';

const frame = (id: number, functionName: string, children?: number[]) => ({
  id,
  callFrame: { functionName, url: functionName === '(root)' ? '' : `file:///app/packages/sdk/dist/src/${functionName}.js`, lineNumber: 0 },
  ...(children ? { children } : {}),
});

describe('analyse', () => {
  it('counts a sample taken after the process was descheduled as a few intervals, not the whole gap', () => {
    // 100 samples of `work` 200 µs apart, and one of `stalled` stamped 190 ms after the one before it.
    const profile: CpuProfile = {
      nodes: [frame(1, '(root)', [2, 3]), frame(2, 'work'), frame(3, 'stalled')],
      samples: [...Array(100).fill(2), 3],
      timeDeltas: [...Array(100).fill(200), 190_000],
    };
    const { byFn, total } = analyse(profile);
    const time = new Map(byFn.map(([f, t]) => [f.split(' ')[0], t]));
    assert.equal(time.get('work'), 20_000);
    assert.equal(time.get('stalled'), 200 * MAX_SAMPLE_INTERVALS);
    assert.equal(total, 20_000 + 200 * MAX_SAMPLE_INTERVALS);
  });
});

describe('sampleWeights', () => {
  it('keeps deltas up to the cap as they are, negative ones as zero', () => {
    assert.deepEqual(sampleWeights([100, 120, 90, 110, -5, 500]), [100, 120, 90, 110, 0, 440]);
  });

  it('weighs nothing in a profile without samples', () => {
    assert.deepEqual(sampleWeights([]), []);
  });
});
