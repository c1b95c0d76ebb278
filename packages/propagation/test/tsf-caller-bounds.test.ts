// The caller TSF's tsf-metadata names passes the checks the caller header (x-meshlet-caller)
// gets: core's checkTag, so a field over 512 bytes or with a control character is not taken.
// It labels the server metrics and, without auth, anyone can type it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkTag, TagLimits } from '@meshlet/core';
import { TagPropagation, tsfDialect } from '../src/index.js';

const extract = (meta: Record<string, string>) => tsfDialect().extract({ 'tsf-metadata': JSON.stringify(meta) });

describe('tsf-metadata caller bounds', () => {
  it('an sn of 8 KiB with control characters is not the caller (nor the tag), as checkTag refuses it', () => {
    const sn = `${'T'.repeat(8000)}\r\n# HELP injected`;
    const raw = JSON.stringify({ sn, ni: 'ns-1' });
    assert.ok(raw.length <= TagLimits.maxHeaderBytes, 'within the header bound: read, not refused whole');
    const got = tsfDialect().extract({ 'tsf-metadata': raw });
    assert.deepEqual(got.caller, { namespace: 'ns-1' });
    assert.equal(got.tags.has('source.service.name'), false);
    assert.deepEqual(
      got.dropped.map((d) => [d.key, d.reason]),
      [['source.service.name', 'value-too-long']],
    );
  });

  it('each caller field is taken exactly when checkTag takes it, as the caller header’s are', () => {
    const values = [
      'gw',
      'a'.repeat(TagLimits.maxValueBytes),
      'a'.repeat(TagLimits.maxValueBytes + 1),
      'é'.repeat(257),
      'gw\rx',
      'gw\u007f',
      'gw\tx',
    ];
    for (const v of values) {
      const ok = checkTag('service', v) === undefined;
      const got = extract({ sn: v, av: v, ni: v, ii: v });
      const expected = ok ? { service: v, version: v, namespace: v, instance: v } : {};
      assert.deepEqual(got.caller, expected, JSON.stringify(v.slice(0, 20)));
    }
  });

  it('TagPropagation gives the checked caller too', () => {
    const got = new TagPropagation().extract({ 'tsf-metadata': JSON.stringify({ sn: 'gw\r\nx', ni: 'ns-1' }) });
    assert.deepEqual(got.caller, { namespace: 'ns-1' });
  });
});
