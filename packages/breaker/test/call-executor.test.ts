import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, NoInstanceError } from '@meshlet/core';
import {
  CallExecutor,
  type CallExecutorOptions,
  CircuitOpenError,
  type GovernedCall,
  LOOP_LAG_GAP_MS,
  LOOP_LAG_QUIET_MS,
  LOOP_LAG_SPAN_MS,
  LOOP_LATE_MS,
  parseBreakerRules,
  TimeoutError,
} from '../src/index.js';

type Inst = { id: string };
const instances: Inst[] = [{ id: 'a' }, { id: 'b' }, { id: 'c' }];

/** Round robin over instances not excluded and not tried. */
function picker(executor: CallExecutor, list: Inst[] = instances) {
  let next = 0;
  return (tried: ReadonlySet<string>) => {
    for (let i = 0; i < list.length; i++) {
      const inst = list[(next + i) % list.length] as Inst;
      if (tried.has(inst.id) || executor.instanceBreakers.isExcluded(inst.id)) continue;
      next = (next + i + 1) % list.length;
      return inst;
    }
    return undefined;
  };
}

function setup(section: unknown, statusOf: (id: string, n: number) => number = () => 200, options: CallExecutorOptions = {}) {
  const clock = new ManualClock();
  const executor = new CallExecutor({ clock, random: () => 0.5, ...options });
  executor.setRules('orders', parseBreakerRules(section, 'breaker'));
  executor.setInstances(
    'orders',
    instances.map((i) => i.id),
  );
  const sent: string[] = [];
  const pick = picker(executor);
  const send = async (inst: Inst) => {
    sent.push(inst.id);
    return new Response(inst.id, { status: statusOf(inst.id, sent.length) });
  };
  const call = (method = 'GET', path = '/x', extra: Partial<GovernedCall<Inst>> = {}) =>
    executor.call<Inst>({ service: 'orders', method, path, pick, send, ...extra });
  return { clock, executor, sent, call, pick };
}

/**
 * A clock whose timers can run late, as in a blocked loop: `timerLate(ms, late)` moves the
 * clock `ms` and fires what is due with the clock reading `late` ms past it.
 */
function lateTimers() {
  const manual = new ManualClock();
  let blocked = 0;
  const clock = {
    now: () => manual.now() + blocked,
    wallNow: () => manual.wallNow() + blocked,
    setTimeout: manual.setTimeout.bind(manual),
  };
  const timerLate = (ms: number, late: number) => {
    blocked = late;
    manual.advance(ms);
  };
  return { clock, timerLate };
}

describe('CallExecutor', () => {
  it('without rules, passes the call straight to send', async () => {
    const executor = new CallExecutor();
    const res = await executor.call<Inst>({
      service: 'free',
      method: 'GET',
      pick: () => ({ id: 'z' }),
      send: async (i) => new Response(i.id),
    });
    assert.equal(await res.text(), 'z');
    await assert.rejects(
      executor.call<Inst>({ service: 'free', method: 'GET', pick: () => undefined, send: async () => new Response() }),
      NoInstanceError,
    );
  });

  it('a service breaker opens and rejects with CircuitOpenError, then its static fallback answers', async () => {
    const { call, clock, executor } = setup({ rules: [{ level: 'service', consecutiveFailures: 2, sleepWindowMs: 1_000 }] }, () => 503);
    assert.equal((await call()).status, 503);
    assert.equal((await call()).status, 503);
    clock.advance(200);
    await assert.rejects(call(), (e: unknown) => {
      assert.ok(e instanceof CircuitOpenError);
      assert.deepEqual([e.code, e.level, e.service, e.api, e.retryAfter], ['MESHLET_CIRCUIT_OPEN', 'service', 'orders', undefined, 800]);
      return true;
    });
    const viaFn = await call('GET', '/x', { fallback: (e) => new Response(`fallback ${e.level}`, { status: 200 }) });
    assert.equal(await viaFn.text(), 'fallback service');
    executor.setRules(
      'orders',
      parseBreakerRules(
        {
          rules: [
            {
              level: 'service',
              consecutiveFailures: 2,
              sleepWindowMs: 1_000,
              fallback: { status: 503, body: { busy: true }, headers: { 'retry-after': '1' } },
            },
          ],
        },
        'breaker',
      ),
    );
    assert.equal(executor.breaker('service', 'orders')?.state, 'open', 'an unchanged rule keeps its breaker state');
    const fb = await call();
    assert.deepEqual(
      [fb.status, fb.headers.get('retry-after'), fb.headers.get('content-type'), await fb.json()],
      [503, '1', 'application/json', { busy: true }],
    );
  });

  it('an API breaker covers its template only', async () => {
    const { call, executor } = setup(
      { rules: [{ level: 'api', apis: [{ method: 'GET', path: '/users/{id}' }], consecutiveFailures: 1 }], failureStatuses: [500] },
      () => 500,
    );
    await call('GET', '/users/1');
    await assert.rejects(
      call('GET', '/users/2'),
      (e: unknown) => e instanceof CircuitOpenError && e.level === 'api' && e.api === 'GET /users/{id}',
    );
    assert.equal((await call('GET', '/orders/1')).status, 500, 'other APIs still go through');
    assert.equal((await call('POST', '/users/1')).status, 500, 'other methods too');
    assert.equal(executor.breaker('api', 'orders', 'GET /users/{id}')?.state, 'open');
  });

  it('sends a request to the most specific API, whatever the order, and HEAD to the GET API', async () => {
    const { call, executor } = setup(
      {
        rules: [
          { level: 'api', apis: [{ method: 'GET', path: '/users/{id}' }], consecutiveFailures: 1 },
          { level: 'api', apis: [{ method: 'GET', path: '/users/me' }], consecutiveFailures: 1 },
        ],
        failureStatuses: [500],
      },
      () => 500,
    );
    await call('GET', '/users/me');
    assert.equal(executor.breaker('api', 'orders', 'GET /users/me')?.state, 'open', '/users/me is its own API, listed second');
    assert.equal(executor.breaker('api', 'orders', 'GET /users/{id}')?.state, 'closed');
    await call('HEAD', '/users/7/');
    await assert.rejects(
      call('GET', '/users/8'),
      (e: unknown) => e instanceof CircuitOpenError && e.api === 'GET /users/{id}',
      'a HEAD counts on the GET API it falls back to',
    );
  });

  it('records outcomes at all three levels: instance per attempt, service and API per call', async () => {
    const { call, executor } = setup(
      {
        rules: [
          { level: 'service', minimumCalls: 100 },
          { level: 'api', apis: [{ method: 'GET', path: '/x' }], minimumCalls: 100 },
          { level: 'instance', minimumCalls: 100, consecutiveFailures: 0 },
        ],
        retry: { maxRetries: 2, backoff: { baseMs: 0, maxMs: 0 } },
      },
      (id) => (id === 'a' ? 503 : 200),
    );
    // Round robin: a(503)→b, c, a(503)→b: five attempts for three calls.
    for (let i = 0; i < 3; i++) assert.equal((await call()).status, 200);
    const snap = Object.fromEntries(
      executor.snapshot().map((s) => [`${s.breaker.level}:${s.breaker.api ?? s.breaker.instance ?? ''}`, [s.calls, s.failures]]),
    );
    assert.deepEqual(snap, { 'service:': [3, 0], 'api:GET /x': [3, 0], 'instance:a': [2, 2], 'instance:b': [2, 0], 'instance:c': [1, 0] });
  });

  it('times an attempt out on the clock: TimeoutError, the signal aborts, and it counts as a failure', async () => {
    const clock = new ManualClock();
    const executor = new CallExecutor({ clock });
    executor.setRules('orders', parseBreakerRules({ timeoutMs: 100, rules: [{ level: 'instance', consecutiveFailures: 0 }] }, 'breaker'));
    let seen: AbortSignal | undefined;
    const pending = executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      pick: () => ({ id: 'a' }),
      send: (_i, signal) => {
        seen = signal;
        return new Promise(() => {}); // an upstream that never answers and ignores the signal
      },
    });
    clock.advance(99);
    assert.equal(seen?.aborted, false);
    clock.advance(1);
    await assert.rejects(pending, (e: unknown) => e instanceof TimeoutError && e.code === 'MESHLET_TIMEOUT' && e.timeoutMs === 100);
    assert.equal(seen?.aborted, true);
    assert.ok(seen?.reason instanceof TimeoutError);
    assert.equal(executor.instanceBreakers.forService('orders')?.breaker('a').snapshot().failures, 1);
    assert.equal(clock.pendingTimers, 0);
  });

  it('does not count on the instance breaker a timeout the loop was LOOP_LATE_MS or more late for, and expires it a turn of the loop later', async () => {
    const { clock, timerLate } = lateTimers();
    const executor = new CallExecutor({ clock });
    executor.setRules('orders', parseBreakerRules({ timeoutMs: 100, rules: [{ level: 'instance', consecutiveFailures: 0 }] }, 'breaker'));
    let seen: AbortSignal | undefined;
    const send = (_i: Inst, signal: AbortSignal) => {
      seen = signal;
      return new Promise<Response>(() => {});
    };
    const pending = executor.call<Inst>({ service: 'orders', method: 'GET', pick: () => ({ id: 'a' }), send });
    timerLate(100, LOOP_LATE_MS);
    assert.equal(seen?.aborted, false, 'not expired in the timers phase: answers read in the poll phase come first');
    await assert.rejects(pending, (e: unknown) => e instanceof TimeoutError && e.lateMs >= LOOP_LATE_MS);
    assert.equal(executor.instanceBreakers.forService('orders')?.breaker('a').snapshot().failures, 0);
  });

  for (const { late, counted } of [
    { late: 0, counted: 1 },
    { late: LOOP_LATE_MS, counted: 0 },
  ]) {
    it(`a timeout the loop was ${late} ms late for counts ${counted} on each of the instance, service and API breakers`, async () => {
      const { clock, timerLate } = lateTimers();
      const executor = new CallExecutor({ clock });
      const never = { consecutiveFailures: 0, minimumCalls: 100 };
      executor.setRules(
        'orders',
        parseBreakerRules(
          {
            timeoutMs: 100,
            rules: [
              { level: 'instance', ...never },
              { level: 'service', ...never },
              { level: 'api', apis: [{ method: 'GET', path: '/x' }], ...never },
            ],
          },
          'breaker',
        ),
      );
      const pending = executor.call<Inst>({
        service: 'orders',
        method: 'GET',
        path: '/x',
        pick: () => ({ id: 'a' }),
        send: () => new Promise<Response>(() => {}),
      });
      timerLate(100, late);
      await assert.rejects(pending, (e: unknown) => e instanceof TimeoutError && e.lateMs === late);
      assert.deepEqual(
        executor.snapshot().map((b) => [b.breaker.level, b.calls, b.failures]),
        [
          ['service', counted, counted],
          ['api', counted, counted],
          ['instance', counted, counted],
        ],
      );
    });
  }

  describe('late timeouts in a loop that lags (LoopLag): counted on the service and API breakers, never on the instance one', () => {
    /** One call a step, never answered: `gap` ms pass on time, then its deadline timer fires `late` ms late. */
    async function lateTimeouts(steps: { gap: number; late: number }[]) {
      const { clock, timerLate } = lateTimers();
      const executor = new CallExecutor({ clock });
      const never = { consecutiveFailures: 0, minimumCalls: 100 };
      executor.setRules(
        'orders',
        parseBreakerRules(
          {
            timeoutMs: 100,
            rules: [
              { level: 'instance', ...never },
              { level: 'service', ...never },
              { level: 'api', apis: [{ method: 'GET', path: '/x' }], ...never },
            ],
          },
          'breaker',
        ),
      );
      const lagging: boolean[] = [];
      let blocked = 0;
      for (const { gap, late } of steps) {
        // The loop's time moves on (blocked, on time), then the next call's deadline timer fires late.
        blocked += gap;
        timerLate(0, blocked);
        const pending = executor.call<Inst>({
          service: 'orders',
          method: 'GET',
          path: '/x',
          pick: () => ({ id: 'a' }),
          send: () => new Promise<Response>(() => {}),
        });
        blocked += late;
        timerLate(100, blocked);
        await assert.rejects(pending, (e: unknown) => {
          assert.ok(e instanceof TimeoutError && e.lateMs === late);
          lagging.push(e.loopLagging);
          return true;
        });
      }
      const counts = executor.snapshot().map((b) => [b.breaker.level, b.calls, b.failures]);
      return { lagging, counts };
    }

    it('a loop late at every deadline timer for LOOP_LAG_SPAN_MS: its late timeouts count from then on at the service and API levels', async () => {
      // A timer 150 ms late every 250 ms: the fifth fire is LOOP_LAG_SPAN_MS after the first.
      const { lagging, counts } = await lateTimeouts(Array.from({ length: 6 }, () => ({ gap: 0, late: 150 })));
      assert.equal(LOOP_LAG_SPAN_MS, 1_000);
      assert.deepEqual(lagging, [false, false, false, false, true, true]);
      assert.deepEqual(counts, [
        ['service', 2, 2],
        ['api', 2, 2],
        ['instance', 0, 0],
      ]);
    });

    it('a one-off stall, then the loop on time: no late timeout counts anywhere', async () => {
      // A 3 s stall, then on-time timers for 2 s (their timeouts count: they are the upstream's).
      const { lagging, counts } = await lateTimeouts([{ gap: 0, late: 3_000 }, ...Array.from({ length: 20 }, () => ({ gap: 0, late: 0 }))]);
      assert.deepEqual(lagging, Array(21).fill(false));
      assert.deepEqual(counts, [
        ['service', 20, 20],
        ['api', 20, 20],
        ['instance', 20, 20],
      ]);
    });

    it('a loop late at every other deadline timer lags: an on-time fire less than LOOP_LAG_QUIET_MS after a late one does not end the spell', async () => {
      // A timer 150 ms late, the next on time, and so on: late fires 350 ms apart, the fourth LOOP_LAG_SPAN_MS after the first.
      const { lagging, counts } = await lateTimeouts(Array.from({ length: 8 }, (_, i) => ({ gap: 0, late: i % 2 === 0 ? 150 : 0 })));
      assert.deepEqual(lagging, [false, false, false, false, false, false, true, true]);
      // The four on-time timeouts count everywhere; of the late ones, the one acted on while lagging at the service and API levels.
      assert.deepEqual(counts, [
        ['service', 5, 5],
        ['api', 5, 5],
        ['instance', 4, 4],
      ]);
    });

    it('stalls that recur with the loop on time between them are each a one-off: no late timeout counts anywhere', async () => {
      // A 400 ms stall every 3.6 s, the loop on time between them (a deadline timer on time 3.1 s after
      // each stall): each stall within LOOP_LAG_GAP_MS of the one before, but that on-time fire ends its spell.
      assert.equal(LOOP_LAG_QUIET_MS, 1_000);
      const stall = { gap: 0, late: 400 };
      const onTime = { gap: 3_000, late: 0 };
      const { lagging, counts } = await lateTimeouts([stall, onTime, stall, onTime, stall]);
      assert.deepEqual(lagging, [false, false, false, false, false]);
      // Only the on-time timeouts count: they are the upstream's.
      assert.deepEqual(counts, [
        ['service', 2, 2],
        ['api', 2, 2],
        ['instance', 2, 2],
      ]);
    });

    it('two stalls more than LOOP_LAG_GAP_MS apart are two one-off stalls, not lag', async () => {
      const { lagging, counts } = await lateTimeouts([
        { gap: 0, late: 3_000 },
        { gap: LOOP_LAG_GAP_MS, late: 3_000 },
      ]);
      assert.deepEqual(lagging, [false, false]);
      assert.deepEqual(counts, [
        ['service', 0, 0],
        ['api', 0, 0],
        ['instance', 0, 0],
      ]);
    });
  });

  describe('a timed attempt whose transport settles on its abort (settlesOnAbort): no race, the same outcomes', () => {
    // The transport hooks the record's abort and rejects with its reason, as the mesh's
    // undici dispatch does; `answer` answers the attempt (undefined: it never does).
    const rows: {
      name: string;
      answer?: (id: string) => number | undefined;
      callerAbort?: 'before' | 'during';
      advance: number;
      retry?: boolean;
      want: { error?: RegExp | typeof TimeoutError; status?: number; sent: string[]; failuresOfA: number };
    }[] = [
      { name: 'answered before the deadline', answer: () => 200, advance: 0, want: { status: 200, sent: ['a'], failuresOfA: 0 } },
      {
        name: 'the deadline passes: TimeoutError, a failure of the instance',
        advance: 100,
        want: { error: TimeoutError, sent: ['a'], failuresOfA: 1 },
      },
      {
        name: 'the deadline passes and the retry answers on another instance',
        answer: (id) => (id === 'a' ? undefined : 200),
        advance: 100,
        retry: true,
        want: { status: 200, sent: ['a', 'b'], failuresOfA: 1 },
      },
      {
        name: "the caller aborts: the caller's reason, counted against nobody",
        callerAbort: 'during',
        advance: 0,
        retry: true,
        want: { error: /caller left/, sent: ['a'], failuresOfA: 0 },
      },
      {
        name: 'the caller had aborted already: nothing is sent',
        callerAbort: 'before',
        advance: 0,
        want: { error: /caller left/, sent: [], failuresOfA: 0 },
      },
    ];
    for (const row of rows) {
      it(row.name, async () => {
        const clock = new ManualClock();
        const executor = new CallExecutor({ clock, random: () => 0.5 });
        const retry = row.retry ? { retry: { maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 } } } : {};
        executor.setRules(
          'orders',
          parseBreakerRules({ timeoutMs: 100, rules: [{ level: 'instance', consecutiveFailures: 0 }], ...retry }, 'breaker'),
        );
        executor.setInstances('orders', ['a', 'b', 'c']);
        const caller = new AbortController();
        if (row.callerAbort === 'before') caller.abort(new Error('caller left'));
        const sent: string[] = [];
        const pending = executor.call<Inst>({
          service: 'orders',
          method: 'GET',
          signal: caller.signal,
          abortsOnRecord: true,
          settlesOnAbort: true,
          pick: picker(executor),
          send: (inst, signal, rec) => {
            assert.equal(signal, undefined, 'no AbortSignal is made for the attempt');
            sent.push(inst.id);
            return new Promise((resolve, reject) => {
              rec.abort?.onAbort(reject);
              const status = row.answer?.(inst.id);
              if (status !== undefined) queueMicrotask(() => resolve(new Response(null, { status })));
            });
          },
        });
        if (row.callerAbort === 'during') caller.abort(new Error('caller left'));
        clock.advance(row.advance);
        if (row.want.error !== undefined) await assert.rejects(pending, row.want.error);
        else assert.equal((await pending).status, row.want.status);
        assert.deepEqual(sent, row.want.sent);
        assert.equal(executor.instanceBreakers.forService('orders')?.breaker('a').snapshot().failures ?? 0, row.want.failuresOfA);
        clock.advance(1_000);
        assert.equal(clock.pendingTimers, 0, 'no deadline left armed');
      });
    }
  });

  it("the caller's abort ends the call and does not count against the upstream", async () => {
    const clock = new ManualClock();
    const executor = new CallExecutor({ clock });
    executor.setRules(
      'orders',
      parseBreakerRules({ timeoutMs: 1_000, rules: [{ level: 'service' }, { level: 'instance' }], retry: { maxRetries: 2 } }, 'breaker'),
    );
    const caller = new AbortController();
    let sends = 0;
    const pending = executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      signal: caller.signal,
      pick: picker(executor),
      send: (_i, signal) => {
        sends++;
        return new Promise((_res, rej) => signal?.addEventListener('abort', () => rej(signal.reason)));
      },
    });
    caller.abort(new Error('user went away'));
    await assert.rejects(pending, /user went away/);
    assert.equal(sends, 1, 'not retried');
    for (const s of executor.snapshot()) assert.equal(s.calls, 0, `${s.breaker.level} counted nothing`);
    // No timer per attempt: the deadline sweep's one timer fires at the deadline, finds the
    // attempt settled, and is not armed again.
    for (const s of executor.snapshot()) assert.equal(s.calls, 0);
    clock.advance(1_000);
    assert.equal(clock.pendingTimers, 0, 'the sweep timer is not armed again');
  });

  it('retries idempotent calls, each on a different instance; returns the last 5xx when all fail', async () => {
    const { call, sent } = setup({ retry: { maxRetries: 2, backoff: { baseMs: 0, maxMs: 0 } } }, (id) => (id === 'c' ? 200 : 503));
    const res = await call('GET');
    assert.deepEqual([res.status, await res.text(), sent], [200, 'c', ['a', 'b', 'c']]);
    const all = setup({ retry: { maxRetries: 5, backoff: { baseMs: 0, maxMs: 0 } } }, () => 503);
    const last = await all.call('DELETE');
    assert.equal(last.status, 503);
    assert.deepEqual(all.sent, ['a', 'b', 'c'], 'three instances: never twice to one, even with 5 retries allowed');
  });

  it('does not retry POST or PATCH unless the rule says so', async () => {
    const plain = setup({ retry: { maxRetries: 2, backoff: { baseMs: 0, maxMs: 0 } } }, () => 503);
    await plain.call('POST');
    await plain.call('PATCH');
    assert.deepEqual(plain.sent, ['a', 'b']);
    const allowed = setup({ retry: { maxRetries: 1, retryNonIdempotent: true, backoff: { baseMs: 0, maxMs: 0 } } }, () => 503);
    await allowed.call('POST');
    assert.deepEqual(allowed.sent, ['a', 'b']);
    const stream = setup({ retry: { maxRetries: 2, backoff: { baseMs: 0, maxMs: 0 } } }, () => 503);
    await stream.call('PUT', '/x', { retryable: false });
    assert.deepEqual(stream.sent, ['a'], 'a body that cannot be sent twice is not retried');
  });

  it('retries connection errors; a 4xx is an answer, not a failure', async () => {
    const clock = new ManualClock();
    const executor = new CallExecutor({ clock });
    executor.setRules('orders', parseBreakerRules({ retry: { maxRetries: 1, backoff: { baseMs: 0, maxMs: 0 } } }, 'breaker'));
    const sent: string[] = [];
    const res = await executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      pick: picker(executor),
      send: async (i) => {
        sent.push(i.id);
        if (i.id === 'a') throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
        return new Response(null, { status: 404 });
      },
    });
    assert.deepEqual([res.status, sent], [404, ['a', 'b']]);
  });

  it('retries an answer the call calls worth another instance (retryableAnswer) within the rule and budget, as no failure', async () => {
    const limited = (r: Response) => r.headers.has('x-limited');
    const section = (maxRetries: number) => ({
      rules: [
        { level: 'service', minimumCalls: 100 },
        { level: 'instance', minimumCalls: 100, consecutiveFailures: 0 },
      ],
      retry: { maxRetries, backoff: { baseMs: 0, maxMs: 0 } },
    });
    const clock = new ManualClock();
    const executor = new CallExecutor({ clock });
    const sent: string[] = [];
    const asked: number[] = [];
    const refusing = new Set(['a']);
    const call = () =>
      executor.call<Inst>({
        service: 'orders',
        method: 'GET',
        pick: picker(executor),
        send: async (i) => {
          sent.push(i.id);
          return refusing.has(i.id) ? new Response(null, { status: 429, headers: { 'x-limited': '1' } }) : new Response(i.id);
        },
        retryableAnswer: (r) => {
          asked.push(r.status);
          return limited(r);
        },
      });
    executor.setRules('orders', parseBreakerRules(section(2), 'breaker'));
    executor.setInstances('orders', ['a', 'b', 'c']);
    const res = await call();
    assert.deepEqual([res.status, sent], [200, ['a', 'b']]);
    const snap = () =>
      Object.fromEntries(executor.snapshot().map((s) => [`${s.breaker.level}:${s.breaker.instance ?? ''}`, [s.calls, s.failures]]));
    assert.deepEqual(snap(), { 'service:': [1, 0], 'instance:a': [1, 0], 'instance:b': [1, 0] }, 'the refusal counts against no breaker');
    assert.equal(executor.retryStats('orders')?.retries, 1, 'paid from the retry budget');
    assert.deepEqual(asked, [429, 200]);
    // Every instance refuses: each tried once, the last refusal is the answer.
    refusing.add('b').add('c');
    sent.length = 0;
    assert.equal((await call()).status, 429);
    assert.deepEqual(sent.sort(), ['a', 'b', 'c']);
    // No retry left under the rule: not asked, not retried.
    executor.setRules('orders', parseBreakerRules(section(0), 'breaker'));
    sent.length = 0;
    asked.length = 0;
    assert.equal((await call()).status, 429);
    assert.deepEqual([sent.length, asked], [1, []]);
  });

  it('waits exponential backoff with full jitter on the clock between attempts', async () => {
    const clock = new ManualClock();
    const delays: number[] = [];
    const recording = {
      now: () => clock.now(),
      wallNow: () => clock.wallNow(),
      setTimeout: (fn: () => void, ms: number) => {
        delays.push(ms);
        return clock.setTimeout(fn, ms);
      },
    };
    const draws = [0.5, 0.25];
    const executor = new CallExecutor({ clock: recording, random: () => draws.shift() ?? 0 });
    executor.setRules('orders', parseBreakerRules({ retry: { maxRetries: 2, backoff: { baseMs: 100, maxMs: 150 } } }, 'breaker'));
    const times: number[] = [];
    const pending = executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      pick: picker(executor),
      send: async () => {
        times.push(clock.now());
        return new Response(null, { status: 503 });
      },
    });
    for (let i = 0; i < 20 && times.length < 3; i++) {
      await new Promise((r) => setImmediate(r));
      if (clock.pendingTimers > 0) clock.advance(1_000);
    }
    assert.equal((await pending).status, 503);
    // retry 1: 0.5 × min(150, 100 × 2⁰) = 50 ms; retry 2: 0.25 × min(150, 100 × 2¹) = 37.5 ms
    assert.deepEqual(delays, [50, 37.5]);
    assert.equal(times.length, 3);
  });

  it('the retry budget caps retries at a percentage of calls while an upstream is down', async () => {
    const { call, sent, executor } = setup(
      { retry: { maxRetries: 2, backoff: { baseMs: 0, maxMs: 0 }, budget: { percent: 10, minPerSecond: 0, windowMs: 10_000 } } },
      () => 503,
      // Default outlier detection would eject an instance and leave fewer to retry on.
      { defaults: { outlierDetection: false } },
    );
    for (let i = 0; i < 200; i++) await call();
    // Without the budget: 600 sends. With it: 200 first attempts + at most 10% of 200.
    assert.equal(sent.length, 220);
    // Every call ends on a denied retry: 180 at their first retry, 20 at their second.
    assert.deepEqual(executor.retryStats('orders'), { calls: 200, retries: 20, denied: 200 });
  });

  it('skips an instance whose probe permits are taken and picks another', async () => {
    const { call, executor, clock, sent } = setup(
      { rules: [{ level: 'instance', consecutiveFailures: 1, sleepWindowMs: 100, probes: 1 }] },
      (id, n) => (id === 'a' && n === 1 ? 503 : 200),
    );
    await call(); // a fails → open
    assert.equal(executor.instanceBreakers.isExcluded('a'), true);
    clock.advance(100);
    // A stale picker that still returns "a" although its single probe is in flight.
    const group = executor.instanceBreakers.forService('orders');
    executor.instanceBreakers.poll();
    const probe = group?.acquire('a') ?? -1;
    const stale = await executor.call<Inst>({
      service: 'orders',
      method: 'GET',
      pick: (tried) => (tried.has('a') ? { id: 'b' } : { id: 'a' }),
      send: async (i) => {
        sent.push(i.id);
        return new Response(i.id);
      },
    });
    assert.equal(await stale.text(), 'b');
    group?.record('a', probe, false, 1);
    assert.equal(group?.breaker('a').state, 'closed');
  });
});
