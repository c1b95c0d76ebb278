import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Instance } from '@meshlet/core';
import { CounterHistory, parsePrometheus } from '../src/metrics.js';
import { ruleSplit, servedRequests, TrafficSplits } from '../src/traffic.js';

const instance = (id: string, version: string): Instance =>
  ({ id, service: 'users', address: '127.0.0.1', port: 1, metadata: { version }, health: 'passing' }) as unknown as Instance;

describe('traffic split from metrics', () => {
  it('sums the inbound request counters of an admin endpoint', () => {
    const text = [
      '# HELP meshlet_server_requests_total Requests served, by calling service ("" when the caller is not known: an edge request) and API (the route, or the method when the framework gives no route).',
      '# TYPE meshlet_server_requests_total counter',
      'meshlet_server_requests_total{service="gateway",api="GET /users/{id}"} 12',
      'meshlet_server_requests_total{service="",api="GET"} 3',
      'meshlet_client_requests_total{service="orders",api="GET"} 99',
      'meshlet_server_request_duration_seconds_count{service="gateway",api="GET"} 15',
    ].join('\n');
    assert.equal(servedRequests(text), 15);
    // An instance that has served nothing yet has no series: zero, not unknown (the bug the
    // browser test found: the first sample after the change became the baseline).
    assert.equal(servedRequests('meshlet_degraded{what="registry"} 0\n'), 0);
  });

  it('counts by version what was served since the revision in force was first seen', () => {
    const splits = new TrafficSplits();
    const a = instance('a', '1.20.0');
    const c = instance('c', '1.21.0');
    assert.deepEqual(
      splits.observe('users', 5, 1000, [
        { instance: a, served: 100 },
        { instance: c, served: 7 },
      ]).byVersion,
      [
        { version: '1.20.0', requests: 0 },
        { version: '1.21.0', requests: 0 },
      ],
    );
    const moved = splits.observe('users', 5, 2000, [
      { instance: a, served: 180 },
      { instance: c, served: 27 },
    ]);
    assert.deepEqual(moved.byVersion, [
      { version: '1.20.0', requests: 80 },
      { version: '1.21.0', requests: 20 },
    ]);
    assert.equal(moved.since, 1000);
    // A new revision starts again from zero.
    const reset = splits.observe('users', 6, 3000, [
      { instance: a, served: 180 },
      { instance: c, served: 27 },
    ]);
    assert.deepEqual([reset.since, reset.byVersion.map((v) => v.requests)], [3000, [0, 0]]);
    // A restarted instance counts from zero; one without metrics is not measured.
    const later = splits.observe('users', 6, 4000, [
      { instance: a, served: 5 },
      { instance: c, served: undefined },
    ]);
    assert.deepEqual([later.measured, later.byVersion.map((v) => v.requests)], [1, [5, 0]]);
  });

  it('reads the split the route section says', () => {
    const rows = ruleSplit(
      JSON.stringify({
        service: 'users',
        route: {
          rules: [
            {
              name: 'chrome',
              when: [{ tag: 'ua.family', op: 'equals', value: 'Chrome' }],
              destinations: [{ group: { version: '1.21.0' }, weight: 100 }],
            },
            {
              name: 'beta',
              stickyBy: 'user-id',
              destinations: [
                { group: { version: '1.21.0' }, weight: 10 },
                { group: { version: '1.20.0' }, weight: 90 },
              ],
            },
          ],
          default: [{ group: { version: '1.20.0' }, weight: 100 }],
        },
      }),
    );
    assert.deepEqual(rows, [
      { name: 'chrome', when: 'ua.family equals "Chrome"', destinations: [{ group: 'version=1.21.0', weight: 100 }] },
      {
        name: 'beta',
        when: 'always',
        destinations: [
          { group: 'version=1.21.0', weight: 10 },
          { group: 'version=1.20.0', weight: 90 },
        ],
        stickyBy: 'user-id',
      },
      { name: 'default', when: 'no rule matched', destinations: [{ group: 'version=1.20.0', weight: 100 }] },
    ]);
  });
});

describe('metrics for the topology and limits pages', () => {
  it('reads samples with labels, skipping comments, other families and malformed lines', () => {
    const text = [
      '# HELP meshlet_client_requests_total Calls.',
      'meshlet_client_requests_total{service="user-service",api="GET /a\\"b"} 42',
      'meshlet_client_errors_total{service="user-service",api="GET",error_type="timeout"} 3',
      'meshlet_client_requests_total{service="x"} not-a-number',
      'meshlet_server_requests_total{service="gateway"} 9',
    ].join('\n');
    assert.deepEqual(parsePrometheus(text, ['meshlet_client_']), [
      { name: 'meshlet_client_requests_total', labels: { service: 'user-service', api: 'GET /a"b' }, value: 42 },
      { name: 'meshlet_client_errors_total', labels: { service: 'user-service', api: 'GET', error_type: 'timeout' }, value: 3 },
    ]);
  });

  it('keeps a counter’s increases per poll, bounded, and its last rate', () => {
    const h = new CounterHistory(2);
    h.record('k', 0, 10);
    assert.equal(h.rate('k'), undefined);
    h.record('k', 500, 15); // closer than a second to the last poll: merged into the next
    h.record('k', 2_000, 30);
    h.record('k', 4_000, 31);
    h.record('k', 6_000, 4); // the process restarted
    assert.deepEqual(
      h.steps('k').map((s) => [s.delta, s.seconds]),
      [
        [1, 2],
        [4, 2],
      ],
    );
    assert.equal(h.rate('k'), 2);
  });
});
