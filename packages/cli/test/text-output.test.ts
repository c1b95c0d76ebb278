import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Instance } from '@meshlet/core';
import { adminStatusUrl, canonicalDocument, diffLines, renderTable, unifiedDiff } from '../src/index.js';
import { breakersCell, outboundCell } from '../src/registry-commands.js';
import { changeSummary } from '../src/rules-commands.js';

describe('text output', () => {
  it('diffs lines by their longest common subsequence', () => {
    const ops = diffLines(['a', 'b', 'c', 'd'], ['a', 'x', 'c', 'd', 'e']).map((l) => `${l.op}${l.text}`);
    assert.deepEqual(ops, [' a', '-b', '+x', ' c', ' d', '+e']);
    assert.deepEqual(diffLines([], ['a']), [{ op: '+', text: 'a' }]);
  });

  it('shows a unified diff with context, and nothing for a change of formatting only', () => {
    const before = canonicalDocument('{"service":"a","x":[1,2,3,4,5,6,7,8,9]}');
    const after = canonicalDocument('{"service":"a","x":[1,2,3,4,5,6,7,8,10]}');
    const diff = unifiedDiff(before, after, { from: 'old', to: 'new' }, 1);
    assert.equal(diff, '--- old\n+++ new\n@@\n     8,\n-    9\n+    10\n   ]\n');
    assert.equal(unifiedDiff(canonicalDocument('{"a": 1}'), canonicalDocument('{\n  "a":1}'), { from: 'x', to: 'y' }), '');
  });

  it('aligns table columns without trailing spaces', () => {
    assert.equal(
      renderTable(
        ['id', 'state', 'note'],
        [
          ['a-long-id', 'open', ''],
          ['b', 'closed', 'x\ny'],
        ],
      ),
      'ID         STATE   NOTE\na-long-id  open\nb          closed  x y\n',
    );
  });

  it('prints no control character a cell holds: a stored author cannot rewrite the rows above it', () => {
    // The reviewer's author: cursor up a line, erase it, then a row that looks like alice's.
    const author = 'bob\x1b[1A\x1b[2K\r2  2024-01-01 00:00:00Z  alice  apply';
    const out = renderTable(
      ['version', 'author'],
      [
        ['1', 'alice'],
        ['2', author],
        ['3', 'c\x9b2J\x07\x7f\x00'],
      ],
    );
    assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, 'no control character but the line ends');
    assert.equal(out.split('\n').length, 5, 'one line a row');
    assert.match(out, /^2 +bob\\x1b\[1A\\x1b\[2K 2 {2}2024/m);
    assert.match(out, /^3 +c\\x9b2J\\x07\\x7f\\x00$/m);
  });

  it('summarises what a version changed, section by section', () => {
    assert.equal(changeSummary(undefined, '{"service":"a","route":{}}'), 'created: route');
    assert.equal(
      changeSummary('{"service":"a","route":{},"breaker":{"x":1}}', '{"service":"a","breaker":{"x":2},"ratelimit":{}}'),
      '-route ~breaker +ratelimit',
    );
    assert.equal(changeSummary('{"service":"a"}', null), 'deleted');
  });

  it('finds an instance admin endpoint on its own origin or on another port', () => {
    const i = (meta: Record<string, string>): Instance => ({
      id: 'a-1',
      service: 'a',
      address: '10.0.0.1',
      port: 8080,
      tags: [],
      metadata: meta,
      health: 'passing',
    });
    assert.equal(adminStatusUrl(i({ 'meshlet-admin': '/_meshlet/' })), 'http://10.0.0.1:8080/_meshlet/status');
    assert.equal(adminStatusUrl(i({ 'meshlet-admin': ':9901/admin', secure: 'true' })), 'https://10.0.0.1:9901/admin/status');
    assert.equal(adminStatusUrl(i({ 'meshlet-admin': ':9901' })), 'http://10.0.0.1:9901/_meshlet/status');
    assert.equal(adminStatusUrl(i({})), undefined);
    assert.equal(adminStatusUrl(i({}), '/_meshlet'), 'http://10.0.0.1:8080/_meshlet/status');
  });

  it('names the breakers that are not closed', () => {
    const b = (level: string, state: string, extra: Record<string, string> = {}) => ({
      breaker: { level, service: 'pay', ...extra },
      state,
    });
    assert.equal(breakersCell({ breakers: [b('service', 'closed'), b('instance', 'closed', { instance: 'p-1' })] }), 'closed (2)');
    assert.equal(
      breakersCell({
        breakers: [b('instance', 'open', { instance: 'p-1' }), b('api', 'half-open', { api: 'GET /x' }), b('service', 'closed')],
      }),
      'pay[p-1] open, pay GET /x half-open',
    );
    assert.equal(breakersCell({}), '-');
  });

  it('outbound limits: each destination with its limit, in flight and refused', () => {
    assert.equal(
      outboundCell({
        outboundAdaptive: [
          { service: 'orders', limit: 12, inFlight: 3, admitted: 100, refused: 40, mode: 'track' },
          { service: 'users', limit: 20, inFlight: 0, admitted: 5, refused: 0, mode: 'probe' },
        ],
      }),
      'orders limit 12, 3 in flight, 40 refused; users limit 20 (probing), 0 in flight, 0 refused',
    );
    assert.equal(outboundCell({}), '-');
  });
});
