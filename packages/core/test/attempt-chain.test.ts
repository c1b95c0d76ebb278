// The attempt chain's two kinds of stage, table-driven with fakes: observers (told when an
// attempt starts and when it settles, no promise of theirs) and interceptors (around the
// send), composed once (`composeAttempt`, settled by whoever awaits the attempt) or as a
// self-settling handler (`chainAttempt`). No executor, no mesh: a record, a fake transport,
// a ManualClock.
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { describe, it } from 'node:test';
import {
  type Attempt,
  type AttemptChain,
  type AttemptHandler,
  type AttemptInterceptor,
  type AttemptObserver,
  type AttemptResult,
  type AttemptStage,
  aroundObserver,
  chainAttempt,
  composeAttempt,
  type Instance,
  ManualClock,
  noteAttempt,
  type OutboundCall,
  sendAttempt,
  sleep,
} from '../src/index.js';

interface Res {
  readonly status: number;
}

const instance: Instance = {
  id: 'i1',
  service: 'orders',
  address: '10.0.0.1',
  port: 8080,
  tags: [],
  metadata: {},
  health: 'passing',
};

type Answer = { status: number } | 'reject' | 'throw';

function attemptOf(answer: Answer, log: string[]): Attempt<Res> {
  const call: OutboundCall<Res> = {
    service: 'orders',
    method: 'GET',
    path: '/x',
    search: '',
    headers: {},
    tags: () => undefined,
    transport: (a) => {
      log.push('transport');
      if (answer === 'throw') throw new Error('refused at once');
      if (answer === 'reject') return Promise.reject(new TypeError('fetch failed'));
      noteAttempt(a, 'transport-note');
      return Promise.resolve(answer);
    },
    fromResponse: (r) => ({ status: r.status }),
  };
  return {
    call,
    target: { id: 'i1', instance, rule: undefined, lane: undefined },
    number: 0,
    signal: undefined,
    breaker: undefined,
    notes: undefined,
    attributes: undefined,
    settled: undefined,
    injected: false,
  };
}

/** An observer that logs, and what it saw when told the attempt settled. */
function observer(name: string, log: string[], throws?: 'started' | 'settled'): AttemptObserver {
  return {
    started(attempt) {
      log.push(`started ${name}`);
      if (throws === 'started') throw new Error(`${name} broke`);
      attempt.spanStart = 1;
    },
    settled(attempt, result, error) {
      const outcome = result !== undefined ? `status ${result.status}` : `error ${(error as Error).message}`;
      log.push(`settled ${name} ${outcome} notes=${attempt.notes?.join(',') ?? ''}`);
      if (throws === 'settled') throw new Error(`${name} broke`);
    },
  };
}

function interceptor(name: string, log: string[]): AttemptInterceptor {
  return (<R extends AttemptResult>(attempt: Attempt<R>, next: AttemptHandler): Promise<R> => {
    log.push(`enter ${name}`);
    return next(attempt).finally(() => log.push(`leave ${name}`));
  }) as AttemptInterceptor;
}

/** Sends through the chain and settles after the await, as the call executor does. */
async function runAsExecutor(chain: AttemptChain, attempt: Attempt<Res>): Promise<string> {
  const p = chain.send(attempt);
  assert.ok(p instanceof Promise, 'send returns a promise, whatever throws below');
  try {
    const res = await p;
    chain.settle(attempt, res, undefined);
    return `status ${res.status}`;
  } catch (error) {
    chain.settle(attempt, undefined, error);
    return `error ${(error as Error).message}`;
  }
}

describe('composeAttempt: observers and interceptors', () => {
  interface Row {
    name: string;
    stages: (log: string[]) => AttemptStage[];
    answer: Answer;
    /** The record's own settle hook (the executor's shadow deadline check) adds a note. */
    hook?: boolean;
    want: { outcome: string; log: string[]; errors?: string[] };
  }
  const rows: Row[] = [
    {
      name: 'observers started outermost first, then the interceptors, then the transport; settled innermost first',
      stages: (log) => [observer('span', log), observer('inflight', log), interceptor('fault', log)],
      answer: { status: 200 },
      want: {
        outcome: 'status 200',
        log: [
          'started span',
          'started inflight',
          'enter fault',
          'transport',
          'leave fault',
          'settled inflight status 200 notes=transport-note',
          'settled span status 200 notes=transport-note',
        ],
      },
    },
    {
      name: 'a synchronous throw from the transport is the rejection, and the observers are settled with it',
      stages: (log) => [observer('span', log), observer('inflight', log)],
      answer: 'throw',
      want: {
        outcome: 'error refused at once',
        log: [
          'started span',
          'started inflight',
          'transport',
          'settled inflight error refused at once notes=',
          'settled span error refused at once notes=',
        ],
      },
    },
    {
      name: 'a synchronous throw under an interceptor is the rejection too',
      stages: (log) => [observer('span', log), interceptor('fault', log)],
      answer: 'throw',
      want: {
        outcome: 'error refused at once',
        log: ['started span', 'enter fault', 'transport', 'settled span error refused at once notes='],
      },
    },
    {
      name: 'a rejection settles the observers with its error',
      stages: (log) => [observer('span', log), interceptor('fault', log)],
      answer: 'reject',
      want: {
        outcome: 'error fetch failed',
        log: ['started span', 'enter fault', 'transport', 'leave fault', 'settled span error fetch failed notes='],
      },
    },
    {
      name: "the record's own settle hook runs first: its note is on the record when the observers are told",
      stages: (log) => [observer('span', log)],
      answer: { status: 200 },
      hook: true,
      want: {
        outcome: 'status 200',
        log: ['started span', 'transport', 'hook', 'settled span status 200 notes=transport-note,deadline-note'],
      },
    },
    {
      name: 'an observer that throws in started does not break the call: reported, the rest go on, it is still settled',
      stages: (log) => [observer('span', log, 'started'), observer('inflight', log)],
      answer: { status: 200 },
      want: {
        outcome: 'status 200',
        log: [
          'started span',
          'started inflight',
          'transport',
          'settled inflight status 200 notes=transport-note',
          'settled span status 200 notes=transport-note',
        ],
        errors: ['span broke'],
      },
    },
    {
      name: 'an observer that throws in settled does not stop the others being settled',
      stages: (log) => [observer('span', log), observer('inflight', log, 'settled')],
      answer: 'reject',
      want: {
        outcome: 'error fetch failed',
        log: [
          'started span',
          'started inflight',
          'transport',
          'settled inflight error fetch failed notes=',
          'settled span error fetch failed notes=',
        ],
        errors: ['inflight broke'],
      },
    },
    {
      name: 'an observer after an interceptor runs in its around form: the order of the list is the order of the chain',
      stages: (log) => [interceptor('fault', log), observer('late', log)],
      answer: { status: 200 },
      want: {
        outcome: 'status 200',
        log: ['enter fault', 'started late', 'transport', 'settled late status 200 notes=transport-note', 'leave fault'],
      },
    },
    {
      name: 'no stage: the transport alone',
      stages: () => [],
      answer: { status: 204 },
      want: { outcome: 'status 204', log: ['transport'] },
    },
  ];
  for (const row of rows) {
    it(row.name, async () => {
      const log: string[] = [];
      const errors: string[] = [];
      const chain = composeAttempt(row.stages(log), { onError: (e) => errors.push((e as Error).message) });
      const attempt = attemptOf(row.answer, log);
      if (row.hook)
        attempt.settled = () => {
          log.push('hook');
          noteAttempt(attempt, 'deadline-note');
        };
      assert.equal(await runAsExecutor(chain, attempt), row.want.outcome);
      assert.deepEqual(log, row.want.log);
      assert.deepEqual(errors, row.want.errors ?? []);
    });
  }

  it('the self-settling handler (chainAttempt) and the around form (aroundObserver) tell the same story in the same order', async () => {
    for (const make of [
      (log: string[]) => chainAttempt([observer('span', log), observer('inflight', log), interceptor('fault', log)]),
      (log: string[]): AttemptHandler => {
        const span = aroundObserver(observer('span', log));
        const inflight = aroundObserver(observer('inflight', log));
        const fault = interceptor('fault', log);
        return (attempt) => span(attempt, (a) => inflight(a, (b) => fault(b, sendAttempt)));
      },
    ]) {
      const log: string[] = [];
      const handler = make(log);
      assert.equal((await handler(attemptOf({ status: 200 }, log))).status, 200);
      assert.deepEqual(log, [
        'started span',
        'started inflight',
        'enter fault',
        'transport',
        'leave fault',
        'settled inflight status 200 notes=transport-note',
        'settled span status 200 notes=transport-note',
      ]);
    }
  });

  it('chainAttempt settles by itself whatever its first stage: the record’s hook runs once, before the observers, an interceptor first too', async () => {
    const rows: { stages: (log: string[]) => AttemptStage[]; want: string[] }[] = [
      {
        stages: (log) => [observer('span', log), interceptor('fault', log)],
        want: [
          'started span',
          'enter fault',
          'transport',
          'leave fault',
          'hook',
          'settled span status 200 notes=transport-note,deadline-note',
        ],
      },
      {
        // Before one way to build a chain, an interceptor first made a chain that never ran the record's hook.
        stages: (log) => [interceptor('fault', log)],
        want: ['enter fault', 'transport', 'leave fault', 'hook'],
      },
      {
        stages: (log) => [interceptor('fault', log), observer('late', log)],
        want: [
          'enter fault',
          'started late',
          'transport',
          'hook',
          'settled late status 200 notes=transport-note,deadline-note',
          'leave fault',
        ],
      },
    ];
    for (const row of rows) {
      const log: string[] = [];
      const attempt = attemptOf({ status: 200 }, log);
      let checked = false;
      // A hook that checks once however often it is called, as the executor's deadline check does.
      attempt.settled = () => {
        if (checked) return;
        checked = true;
        log.push('hook');
        noteAttempt(attempt, 'deadline-note');
      };
      assert.equal((await chainAttempt(row.stages(log))(attempt)).status, 200);
      assert.deepEqual(log, row.want);
    }
  });

  it('the span observer covers a delay an interceptor inside it waits (a fault’s), as the attempt’s own time', async () => {
    const clock = new ManualClock(1_000);
    const spans: { start: number; end?: number }[] = [];
    const span: AttemptObserver = {
      started(attempt) {
        attempt.spanStart = clock.now();
      },
      settled(attempt) {
        spans.push({ start: attempt.spanStart as number, end: clock.now() });
        attempt.spanStart = undefined;
      },
    };
    const delay: AttemptInterceptor = (async <R extends AttemptResult>(attempt: Attempt<R>, next: AttemptHandler): Promise<R> => {
      await sleep(clock, 250);
      return next(attempt);
    }) as AttemptInterceptor;
    const chain = composeAttempt([span, delay]);
    const log: string[] = [];
    const attempt = attemptOf({ status: 200 }, log);
    const done = runAsExecutor(chain, attempt);
    while (clock.pendingTimers === 0) await new Promise((r) => setImmediate(r));
    assert.deepEqual(log, [], 'not sent before the delay');
    clock.advance(250);
    assert.equal(await done, 'status 200');
    assert.deepEqual(spans, [{ start: 1_000, end: 1_250 }]);
  });

  it('observers cost no promise: send and settle make the transport’s promise only', async () => {
    const count = async (stages: AttemptStage[]) => {
      const chain = composeAttempt(stages);
      const attempt = attemptOf({ status: 200 }, []);
      let made = 0;
      const hook = createHook({
        init(_id, type) {
          if (type === 'PROMISE') made++;
        },
      });
      hook.enable();
      const p = chain.send(attempt);
      hook.disable();
      chain.settle(attempt, await p, undefined);
      return made;
    };
    const quiet: AttemptObserver = { started: () => {}, settled: () => {} };
    const through: AttemptInterceptor = (attempt, next) => next(attempt);
    assert.equal(await count([]), 1, 'the transport alone');
    assert.equal(await count([quiet, quiet, quiet, through]), 1, 'three observers: still the transport’s promise only');
    // The around form, for comparison (observers after an interceptor): a `.then`, a promise, each.
    assert.equal(await count([through, quiet, quiet]), 3);
  });
});
