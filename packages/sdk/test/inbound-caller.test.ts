// The caller header (`x-meshlet-caller`) as the inbound context reads it, held to what
// reading it through decodeTags gives: the last value within the per-tag bounds wins,
// other keys are ignored, a malformed header is no caller at all.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Caller, decodeTags, seededRandom, silentLogger, TagLimits } from '@meshlet/core';
import { TagPropagation } from '@meshlet/propagation';
import { inboundContext } from '../src/inbound.js';

const options = { tagsFromHeaders: [], propagation: new TagPropagation(), logger: silentLogger, owner: undefined };
const callerOf = (header: string): Caller => inboundContext({ 'x-meshlet-caller': header }, 'GET', '/', options).caller;

/** The caller as decodeTags reads the header. */
function expected(header: string): Caller {
  let tags: Map<string, string>;
  try {
    tags = decodeTags(header).tags;
  } catch {
    return {};
  }
  const out: Record<string, string> = {};
  for (const k of ['service', 'version', 'namespace', 'instance']) {
    const v = tags.get(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

describe('the caller header', () => {
  it('reads the fields in order, the last good value of each, and nothing else', () => {
    const caller = callerOf(`instance=i-1,service=a,version=1,service=b,service=${'x'.repeat(600)},other=z,namespace=n%2C1`);
    assert.deepEqual(caller, { service: 'b', version: '1', namespace: 'n,1', instance: 'i-1' });
    assert.deepEqual(Object.keys(caller), ['service', 'version', 'namespace', 'instance']);
  });

  it('reads every header as decodeTags would, over the tag count bound too', () => {
    const random = seededRandom(7);
    const pieces = [
      'service',
      'version',
      'namespace',
      'instance',
      'other',
      '=',
      '=',
      ',',
      ' ',
      'a',
      '%41',
      '%zz',
      'v'.repeat(600),
      '\u0001',
    ];
    for (let n = 0; n < 5_000; n++) {
      let header = '';
      const length = Math.floor(random() * 16);
      for (let i = 0; i < length; i++) header += pieces[Math.floor(random() * pieces.length)];
      assert.deepEqual(callerOf(header), expected(header), JSON.stringify(header));
    }
    const many = `${Array.from({ length: TagLimits.maxTags }, (_, i) => `k${i}=v`).join(',')},service=late,version=2`;
    assert.deepEqual(callerOf(many), expected(many));
    assert.deepEqual(callerOf(many), {});
  });
});
