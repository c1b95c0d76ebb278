// The executor hands each attempt down as a record (number, signal, service breaker state,
// notes, injected) and tells the call of a refused connection once; table-driven with fakes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { type AttemptRecord, CallExecutor, type CallExecutorOptions, type GovernedCall, parseBreakerRules } from '../src/index.js';

type Inst = { id: string };
const ids = ['a', 'b', 'c'];
const refused = () => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED', syscall: 'connect' } });

interface Row {
  name: string;
  section?: unknown;
  options?: CallExecutorOptions;
  /** Per attempt: a status, 'refused', or 'boom' (an error that says nothing about sending). */
  answers: (number | 'refused' | 'boom')[];
  want: {
    /** [target, number, breaker state, has a signal] per attempt. */
    records: [string, number, string | undefined, boolean][];
    unreachable: string[];
    outcome: number | string;
  };
}

const rows: Row[] = [
  {
    name: 'a service breaker, a timeout, a retry: the records carry number, state and the timeout’s signal',
    section: { rules: [{ level: 'service' }], timeoutMs: 1_000, retry: { maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 } } },
    answers: [503, 200],
    want: {
      records: [
        ['a', 0, 'closed', true],
        ['b', 1, 'closed', true],
      ],
      unreachable: [],
      outcome: 200,
    },
  },
  {
    name: 'no rules (the defaults): a refused connection is told once and retried elsewhere',
    answers: ['refused', 200],
    want: {
      records: [
        ['a', 0, undefined, false],
        ['b', 1, undefined, false],
      ],
      unreachable: ['a'],
      outcome: 200,
    },
  },
  {
    name: 'defaults off and no rules: still told of a refused connection',
    options: { defaults: false },
    answers: ['refused'],
    want: { records: [['a', 0, undefined, false]], unreachable: ['a'], outcome: 'TypeError' },
  },
  {
    name: 'an error that says nothing about sending is not told',
    answers: ['boom'],
    want: { records: [['a', 0, undefined, false]], unreachable: [], outcome: 'Error' },
  },
];

describe('CallExecutor hands each attempt down as a record', () => {
  for (const row of rows) {
    it(row.name, async () => {
      const executor = new CallExecutor({ clock: new ManualClock(), random: () => 0.5, ...row.options });
      if (row.section) executor.setRules('orders', parseBreakerRules(row.section, 'breaker'));
      executor.setInstances('orders', ids);
      const records: AttemptRecord<Inst>[] = [];
      const unreachable: string[] = [];
      const call: GovernedCall<Inst, Response> = {
        service: 'orders',
        method: 'GET',
        path: '/x',
        pick: (tried) => ids.map((id) => ({ id })).find((i) => !tried.has(i.id)),
        send: async (instance, signal, attempt) => {
          records.push(attempt);
          assert.equal(attempt.target, instance);
          assert.equal(attempt.signal, signal);
          assert.equal(attempt.call, call);
          const answer = row.answers[records.length - 1] ?? 200;
          if (answer === 'refused') throw refused();
          if (answer === 'boom') throw new Error('boom');
          return new Response(null, { status: answer });
        },
        unreachable: (i) => unreachable.push(i.id),
      };
      let outcome: number | string;
      try {
        outcome = (await executor.call(call)).status;
      } catch (err) {
        outcome = (err as Error).name;
      }
      assert.equal(outcome, row.want.outcome);
      assert.deepEqual(
        records.map((r) => [r.target.id, r.number, r.breaker, r.signal !== undefined]),
        row.want.records,
      );
      assert.deepEqual(unreachable, row.want.unreachable);
    });
  }

  it('an injected result (the record marked by a layer below) counts against no instance', async () => {
    const executor = new CallExecutor({ clock: new ManualClock() });
    executor.setRules(
      'orders',
      parseBreakerRules({ rules: [{ level: 'instance', consecutiveFailures: 1, sleepWindowMs: 60_000 }] }, 'breaker'),
    );
    executor.setInstances('orders', ids);
    const call: GovernedCall<Inst, Response> = {
      service: 'orders',
      method: 'POST',
      pick: () => ({ id: 'a' }),
      send: async (_i, _s, attempt) => {
        attempt.injected = true;
        return new Response(null, { status: 503 });
      },
    };
    for (let n = 0; n < 3; n++) assert.equal((await executor.call(call)).status, 503);
    assert.equal(executor.instanceBreakers.isExcluded('a'), false);
  });
});

describe('CallExecutor puts its clock reading at the start of each attempt on its record (startedAt)', () => {
  it('the first attempt’s is the call’s start, a retry’s the reading after its backoff', async () => {
    const clock = new ManualClock(5_000);
    const executor = new CallExecutor({ clock, random: () => 0.5 });
    executor.setRules(
      'orders',
      parseBreakerRules({ rules: [{ level: 'service' }], retry: { maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 } } }, 'breaker'),
    );
    executor.setInstances('orders', ids);
    const started: (number | undefined)[] = [];
    const call: GovernedCall<Inst, Response> = {
      service: 'orders',
      method: 'GET',
      path: '/x',
      pick: (tried) => ids.map((id) => ({ id })).find((i) => !tried.has(i.id)),
      send: async (_instance, _signal, attempt) => {
        started.push(attempt.startedAt);
        clock.advance(10);
        return new Response(null, { status: started.length === 1 ? 503 : 200 });
      },
    };
    const res = await executor.call(call);
    assert.equal(res.status, 200);
    assert.deepEqual(started, [5_000, 5_010]);
  });
});
