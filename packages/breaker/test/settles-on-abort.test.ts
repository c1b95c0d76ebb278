// The `GovernedCall.settlesOnAbort` contract: a call that says its attempt settles by itself
// once the record's abort fires is awaited as it is, without runTimed's racing promise. An
// honest transport (it hooks the record's abort and rejects with its reason) gets the same
// outcomes as the race: a TimeoutError at the deadline, the caller's reason when the caller
// aborts, each attempt settled once. One that says so and does not is trusted: the call
// waits for it past its deadline, as documented on the flag.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import { type AttemptRecord, CallExecutor, type GovernedCall, parseBreakerRules, TimeoutError } from '../src/index.js';

type Inst = { id: string };

interface Sent {
  readonly rec: AttemptRecord<Inst>;
  answer(status: number): void;
}

function harness(opts: { settlesOnAbort: boolean; honest: boolean }) {
  const clock = new ManualClock();
  const executor = new CallExecutor({ clock, random: () => 0.5 });
  executor.setRules('orders', parseBreakerRules({ timeoutMs: 100, rules: [{ level: 'instance', consecutiveFailures: 0 }] }, 'breaker'));
  executor.setInstances('orders', ['a', 'b']);
  const caller = new AbortController();
  const sent: Sent[] = [];
  const settled: string[] = [];
  let outcome: string | undefined;
  const call: GovernedCall<Inst> = {
    service: 'orders',
    method: 'POST', // not retried: one attempt
    signal: caller.signal,
    abortsOnRecord: true,
    settlesOnAbort: opts.settlesOnAbort,
    pick: (tried) => (tried.has('a') ? undefined : { id: 'a' }),
    send: (_inst, _signal, rec) =>
      new Promise<Response>((resolve, reject) => {
        sent.push({ rec, answer: (status) => resolve(new Response(null, { status })) });
        if (opts.honest) rec.abort?.onAbort(reject);
      }),
    settled: (_rec, result, error) => {
      settled.push(result !== undefined ? `status ${result.status}` : `error ${(error as Error).name}`);
    },
  };
  const done = executor.call(call).then(
    (res) => {
      outcome = `status ${res.status}`;
    },
    (error: unknown) => {
      outcome = `error ${error instanceof TimeoutError ? 'TimeoutError' : (error as Error).message}`;
    },
  );
  const tick = async () => {
    for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
  };
  const failuresOfA = () => executor.instanceBreakers.forService('orders')?.breaker('a').snapshot().failures ?? 0;
  return { clock, caller, sent, settled, done, tick, failuresOfA, outcome: () => outcome };
}

describe('settlesOnAbort: the executor trusts the transport to settle on its abort', () => {
  it('honest, the deadline passes: rejected with the TimeoutError once, settled once, a failure of the instance, no timer left', async () => {
    const h = harness({ settlesOnAbort: true, honest: true });
    h.clock.advance(99);
    await h.tick();
    assert.equal(h.outcome(), undefined, 'pending before the deadline');
    h.clock.advance(1);
    await h.done;
    assert.equal(h.outcome(), 'error TimeoutError');
    assert.ok(h.sent[0]?.rec.abort?.reason instanceof TimeoutError, 'the transport was aborted with the TimeoutError');
    h.sent[0]?.answer(200); // too late: the promise settled already
    await h.tick();
    assert.deepEqual(h.settled, ['error TimeoutError'], 'settled once');
    assert.equal(h.failuresOfA(), 1);
    assert.equal(h.clock.pendingTimers, 0);
  });

  it("honest, the caller aborts: rejected with the caller's reason, settled once, counted against nobody", async () => {
    const h = harness({ settlesOnAbort: true, honest: true });
    h.caller.abort(new Error('caller left'));
    await h.done;
    assert.equal(h.outcome(), 'error caller left');
    assert.deepEqual(h.settled, ['error Error']);
    assert.equal(h.failuresOfA(), 0);
    h.clock.advance(1_000);
    assert.equal(h.clock.pendingTimers, 0);
  });

  it('honest, answered in time: the answer, settled once, the deadline let go', async () => {
    const h = harness({ settlesOnAbort: true, honest: true });
    h.sent[0]?.answer(200);
    await h.done;
    assert.equal(h.outcome(), 'status 200');
    assert.deepEqual(h.settled, ['status 200']);
    assert.equal(h.sent[0]?.rec.abort?.aborted, false);
    h.clock.advance(1_000);
    assert.equal(h.sent[0]?.rec.abort?.aborted, false, 'not aborted after the attempt settled');
  });

  it('a transport that ignores its abort without the flag: the race still ends the call at the deadline', async () => {
    const h = harness({ settlesOnAbort: false, honest: false });
    h.clock.advance(100);
    await h.done;
    assert.equal(h.outcome(), 'error TimeoutError');
  });

  it('a transport that says it settles on its abort and does not (a broken contract): the call waits for it past the deadline and the caller’s abort; its late answer is the result', async () => {
    const h = harness({ settlesOnAbort: true, honest: false });
    h.clock.advance(100);
    await h.tick();
    assert.ok(h.sent[0]?.rec.abort?.reason instanceof TimeoutError, 'the abort fired at the deadline');
    h.caller.abort(new Error('caller left'));
    h.clock.advance(10_000);
    await h.tick();
    assert.equal(h.outcome(), undefined, 'still pending: nothing races the transport');
    assert.deepEqual(h.settled, []);
    h.sent[0]?.answer(200);
    await h.done;
    assert.equal(h.outcome(), 'status 200', 'the late answer, not a TimeoutError');
    assert.deepEqual(h.settled, ['status 200'], 'settled once, when the transport settled');
  });
});
