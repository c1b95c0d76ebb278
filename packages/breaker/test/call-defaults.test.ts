import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '@meshlet/core';
import {
  Breaker,
  CallExecutor,
  type CallExecutorOptions,
  defaultOutlierPolicy,
  markStaleConnection,
  parseBreakerRules,
  type SendFailure,
  sendFailureOf,
} from '../src/index.js';

type Inst = { id: string };

// Errors shaped as Node and undici make them (see packages/sdk/test/send-failure-sockets.test.ts,
// which checks these shapes against real sockets).
const sysErr = (code: string, syscall: string) => Object.assign(new Error(`${syscall} ${code}`), { code, syscall });
const refused = () => sysErr('ECONNREFUSED', 'connect');
const fetchFailed = (cause: unknown) => new TypeError('fetch failed', { cause });
const socketClosed = () => Object.assign(new Error('other side closed'), { name: 'SocketError', code: 'UND_ERR_SOCKET' });
/** As the mesh's Agent marks it: closed on a kept-alive connection before any byte of the answer (packages/sdk/test/stale-connection.test.ts plays it on real sockets). */
const staleClosed = () => {
  const err = socketClosed();
  markStaleConnection(err);
  return err;
};

describe('sendFailureOf', () => {
  const table: [string, unknown, SendFailure][] = [
    ['undici request: connection refused', refused(), 'not-sent'],
    ['fetch: connection refused as the cause', fetchFailed(refused()), 'not-sent'],
    ['fetch: host unreachable', fetchFailed(sysErr('EHOSTUNREACH', 'connect')), 'not-sent'],
    ['connect timed out (syscall connect)', sysErr('ETIMEDOUT', 'connect'), 'not-sent'],
    ['undici connect timeout', Object.assign(new Error('Connect Timeout Error'), { code: 'UND_ERR_CONNECT_TIMEOUT' }), 'not-sent'],
    ['no address for a host name', fetchFailed(sysErr('ENOTFOUND', 'getaddrinfo')), 'not-sent'],
    ['happy eyeballs: every address refused', new AggregateError([refused(), sysErr('ECONNREFUSED', 'connect')]), 'not-sent'],
    ['happy eyeballs: one address broke after connect', new AggregateError([refused(), socketClosed()]), 'broken'],
    ['undici request: other side closed', socketClosed(), 'broken'],
    ['fetch: other side closed as the cause', fetchFailed(socketClosed()), 'broken'],
    ['reset while reading the answer', fetchFailed(sysErr('ECONNRESET', 'read')), 'broken'],
    ['broken pipe while writing', sysErr('EPIPE', 'write'), 'broken'],
    ['marked stale: closed on a kept-alive connection before the answer', staleClosed(), 'stale'],
    ['fetch: marked stale as the cause', fetchFailed(staleClosed()), 'stale'],
    ['happy eyeballs: one address went stale', new AggregateError([refused(), staleClosed()]), 'broken'],
    ['fetch failed without a cause', new TypeError('fetch failed'), 'other'],
    ['a timeout', Object.assign(new Error('timed out'), { name: 'TimeoutError' }), 'other'],
    ['an abort', new DOMException('aborted', 'AbortError'), 'other'],
    ['not an object', 'ECONNREFUSED', 'other'],
    [
      'a cause cycle ends',
      (() => {
        const e = new Error('loop') as Error & { cause?: unknown };
        e.cause = e;
        return e;
      })(),
      'other',
    ],
  ];
  for (const [name, err, want] of table) it(name, () => assert.equal(sendFailureOf(err), want));
});

const three: Inst[] = [{ id: 'a' }, { id: 'b' }, { id: 'c' }];

/** Round robin over the instances not excluded and not tried. */
function picker(executor: CallExecutor, list: Inst[] = three) {
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

type Outcome = 'ok' | 'refused' | 'closed' | 'stale' | 'other' | 503;

function fail(o: Outcome): Response {
  if (o === 'refused') throw fetchFailed(refused());
  if (o === 'closed') throw fetchFailed(socketClosed());
  if (o === 'stale') throw fetchFailed(staleClosed());
  if (o === 'other') throw new Error('boom');
  return new Response(null, { status: o === 'ok' ? 200 : o });
}

describe('CallExecutor defaults: retry on another instance when nothing was sent', () => {
  interface Row {
    name: string;
    method: string;
    /** What each instance does. */
    upstream: Record<string, Outcome>;
    section?: unknown;
    options?: CallExecutorOptions;
    retryable?: boolean;
    sent: string[];
    /** The status, or the error thrown. */
    result: number | 'throws';
  }
  const rows: Row[] = [
    { name: 'POST refused: retried elsewhere, no rules', method: 'POST', upstream: { a: 'refused' }, sent: ['a', 'b'], result: 200 },
    {
      name: 'GET refused twice: the third instance answers',
      method: 'GET',
      upstream: { a: 'refused', b: 'refused' },
      sent: ['a', 'b', 'c'],
      result: 200,
    },
    {
      name: 'every instance refuses: 2 retries, then the error',
      method: 'GET',
      upstream: { a: 'refused', b: 'refused', c: 'refused' },
      sent: ['a', 'b', 'c'],
      result: 'throws',
    },
    {
      name: 'POST whose connection closed after it was written: never sent twice',
      method: 'POST',
      upstream: { a: 'closed' },
      sent: ['a'],
      result: 'throws',
    },
    {
      name: 'PATCH closed after write: not idempotent, not retried',
      method: 'PATCH',
      upstream: { a: 'closed' },
      sent: ['a'],
      result: 'throws',
    },
    {
      name: 'GET whose connection closed before the answer: idempotent, retried',
      method: 'GET',
      upstream: { a: 'closed' },
      sent: ['a', 'b'],
      result: 200,
    },
    { name: 'PUT closed before the answer: idempotent, retried', method: 'PUT', upstream: { a: 'closed' }, sent: ['a', 'b'], result: 200 },
    { name: 'an unknown error is not retried by default', method: 'GET', upstream: { a: 'other' }, sent: ['a'], result: 'throws' },
    { name: 'a 503 is an answer: not retried by default', method: 'GET', upstream: { a: 503 }, sent: ['a'], result: 503 },
    {
      name: 'a body that reads once is never retried',
      method: 'POST',
      upstream: { a: 'refused' },
      retryable: false,
      sent: ['a'],
      result: 'throws',
    },
    {
      name: 'a rule with maxRetries 0 turns retries off',
      method: 'GET',
      upstream: { a: 'refused' },
      section: { retry: { maxRetries: 0 } },
      sent: ['a'],
      result: 'throws',
    },
    {
      name: "a rule's retry covers POST when nothing was sent",
      method: 'POST',
      upstream: { a: 'refused' },
      section: { retry: { maxRetries: 1, backoff: { baseMs: 0 } } },
      sent: ['a', 'b'],
      result: 200,
    },
    {
      name: "a rule's retry does not resend a POST that may have arrived",
      method: 'POST',
      upstream: { a: 'closed' },
      section: { retry: { maxRetries: 2, backoff: { baseMs: 0 } } },
      sent: ['a'],
      result: 'throws',
    },
    {
      name: 'a breaker section without retry keeps the default',
      method: 'POST',
      upstream: { a: 'refused' },
      section: { timeoutMs: 1000 },
      sent: ['a', 'b'],
      result: 200,
    },
    {
      name: 'defaults off: a service without rules is sent once',
      method: 'GET',
      upstream: { a: 'refused' },
      options: { defaults: false },
      sent: ['a'],
      result: 'throws',
    },
    {
      name: 'default retries 0: sent once',
      method: 'GET',
      upstream: { a: 'refused' },
      options: { defaults: { retries: 0 } },
      sent: ['a'],
      result: 'throws',
    },
  ];
  for (const row of rows) {
    it(row.name, async () => {
      const executor = new CallExecutor({ clock: new ManualClock(), ...row.options });
      if (row.section !== undefined) executor.setRules('orders', parseBreakerRules(row.section, 'breaker'));
      executor.setInstances('orders', ['a', 'b', 'c']);
      const sent: string[] = [];
      const call = executor.call<Inst>({
        service: 'orders',
        method: row.method,
        ...(row.retryable === false ? { retryable: false } : {}),
        pick: picker(executor),
        send: async (i) => {
          sent.push(i.id);
          return fail(row.upstream[i.id] ?? 'ok');
        },
      });
      if (row.result === 'throws') await assert.rejects(call);
      else assert.equal((await call).status, row.result);
      assert.deepEqual(sent, row.sent);
    });
  }
});

describe('CallExecutor: a stale kept-alive connection when no untried instance is left', () => {
  interface Row {
    name: string;
    method: string;
    instances: string[];
    /** What each attempt meets, in order; past the list: an answer. */
    outcomes: Outcome[];
    options?: CallExecutorOptions;
    section?: unknown;
    /** The instance of each attempt, and whether it asked for a new connection. */
    sent: string[];
    result: number | 'throws';
  }
  const rows: Row[] = [
    {
      name: 'GET on the only instance: once more to it, on a new connection',
      method: 'GET',
      instances: ['a'],
      outcomes: ['stale'],
      sent: ['a', 'a fresh'],
      result: 200,
    },
    {
      name: 'the extra attempt is one: stale again, the call fails (two retries allowed)',
      method: 'GET',
      instances: ['a'],
      outcomes: ['stale', 'stale', 'stale'],
      sent: ['a', 'a fresh'],
      result: 'throws',
    },
    {
      name: 'a refused connection is not sent to the instance again',
      method: 'GET',
      instances: ['a'],
      outcomes: ['refused'],
      sent: ['a'],
      result: 'throws',
    },
    {
      name: 'a connection that broke without being stale (a new one) is not sent to the instance again',
      method: 'GET',
      instances: ['a'],
      outcomes: ['closed'],
      sent: ['a'],
      result: 'throws',
    },
    {
      name: 'a POST is not sent again: it may have reached the server',
      method: 'POST',
      instances: ['a'],
      outcomes: ['stale'],
      sent: ['a'],
      result: 'throws',
    },
    {
      name: "a rule's retry of non-idempotent methods covers it",
      method: 'POST',
      instances: ['a'],
      outcomes: ['stale'],
      section: { retry: { maxRetries: 1, retryNonIdempotent: true, backoff: { baseMs: 0 } } },
      sent: ['a', 'a fresh'],
      result: 200,
    },
    {
      name: 'no retry allowed: sent once',
      method: 'GET',
      instances: ['a'],
      outcomes: ['stale'],
      options: { defaults: { retries: 0 } },
      sent: ['a'],
      result: 'throws',
    },
    {
      name: 'an untried instance first; then the last stale one again',
      method: 'GET',
      instances: ['a', 'b'],
      outcomes: ['stale', 'stale'],
      sent: ['a', 'b', 'b fresh'],
      result: 200,
    },
    {
      name: 'after a refusal and a stale connection: the stale one again, not the refusing one',
      method: 'GET',
      instances: ['a', 'b'],
      outcomes: ['refused', 'stale'],
      sent: ['a', 'b', 'b fresh'],
      result: 200,
    },
    {
      name: 'the retries are counted: none left after two instances, no extra attempt',
      method: 'GET',
      instances: ['a', 'b', 'c'],
      outcomes: ['stale', 'stale', 'stale'],
      sent: ['a', 'b', 'c'],
      result: 'throws',
    },
  ];
  for (const row of rows) {
    it(row.name, async () => {
      const executor = new CallExecutor({ clock: new ManualClock(), ...row.options });
      if (row.section !== undefined) executor.setRules('orders', parseBreakerRules(row.section, 'breaker'));
      executor.setInstances('orders', row.instances);
      const sent: string[] = [];
      const outcomes = [...row.outcomes];
      const call = executor.call<Inst>({
        service: 'orders',
        method: row.method,
        pick: picker(
          executor,
          row.instances.map((id) => ({ id })),
        ),
        send: async (i, _signal, attempt) => {
          sent.push(attempt.freshConnection === true ? `${i.id} fresh` : i.id);
          return fail(outcomes.shift() ?? 'ok');
        },
      });
      if (row.result === 'throws') await assert.rejects(call);
      else assert.equal((await call).status, row.result);
      assert.deepEqual(sent, row.sent);
    });
  }
});

describe("CallExecutor: a stale failure that does not go again to its instance, on that instance's breaker", () => {
  // The stale attempt on `a` goes to `b` (a GET) or ends the call (a POST): it counts on a's
  // breaker only when its transport marked it repeated (a's kept-alive connections broke so
  // before, none answering between), not for a lone race on a healthy instance.
  for (const method of ['GET', 'POST'] as const) {
    for (const repeated of [false, true]) {
      it(`${method}, ${repeated ? 'repeated: counted' : 'a lone race: not counted'}`, async () => {
        const executor = new CallExecutor({ clock: new ManualClock() });
        executor.setInstances('orders', ['a', 'b']);
        const sent: string[] = [];
        const call = executor.call<Inst>({
          service: 'orders',
          method,
          pick: picker(executor, [{ id: 'a' }, { id: 'b' }]),
          send: async (i) => {
            sent.push(i.id);
            if (i.id !== 'a') return new Response(null, { status: 200 });
            const err = socketClosed();
            markStaleConnection(err, repeated);
            throw fetchFailed(err);
          },
        });
        if (method === 'POST') await assert.rejects(call);
        else assert.equal((await call).status, 200);
        assert.deepEqual(sent, method === 'POST' ? ['a'] : ['a', 'b']);
        const a = executor.instanceBreakers.forService('orders')?.breaker('a').snapshot();
        assert.deepEqual([a?.calls, a?.failures], repeated ? [1, 1] : [0, 0]);
      });
    }
  }
});

describe('CallExecutor defaults: passive outlier ejection', () => {
  function fleet(size: number, options: CallExecutorOptions = {}) {
    const clock = new ManualClock();
    const executor = new CallExecutor({ clock, ...options });
    const list = Array.from({ length: size }, (_, i) => ({ id: `i${i}` }));
    executor.setInstances(
      'orders',
      list.map((i) => i.id),
    );
    const down = new Set<string>();
    const sent: string[] = [];
    /** One call straight to `id` (the picker offers it first), as routing would send it. */
    const callTo = (id: string) =>
      executor
        .call<Inst>({
          service: 'orders',
          method: 'GET',
          pick: (tried) => (tried.has(id) ? undefined : { id }),
          send: async (i) => {
            sent.push(i.id);
            return fail(down.has(i.id) ? 'refused' : 'ok');
          },
        })
        .then(
          () => 'ok',
          () => 'failed',
        );
    return { clock, executor, down, sent, callTo, excluded: (id: string) => executor.instanceBreakers.isExcluded(id) };
  }

  it('ejects after 5 failures in a row (Envoy consecutive_5xx), not after 4; a success resets the count', async () => {
    const f = fleet(3);
    f.down.add('i0');
    for (let i = 0; i < 4; i++) await f.callTo('i0');
    assert.equal(f.excluded('i0'), false);
    f.down.delete('i0');
    await f.callTo('i0');
    f.down.add('i0');
    for (let i = 0; i < 4; i++) await f.callTo('i0');
    assert.equal(f.excluded('i0'), false, 'the success in between restarted the count');
    await f.callTo('i0');
    assert.equal(f.excluded('i0'), true);
  });

  it('a 5xx counts as a failure for ejection too', async () => {
    const f = fleet(3);
    for (let i = 0; i < 5; i++)
      await f.executor.call<Inst>({
        service: 'orders',
        method: 'GET',
        pick: () => ({ id: 'i1' }),
        send: async () => new Response(null, { status: 500 }),
      });
    assert.equal(f.excluded('i1'), true);
  });

  it('the ejection grows with repeats: 30 s, 60 s, 90 s … capped at 300 s, and healthy time forgives', async () => {
    const f = fleet(3);
    f.down.add('i0');
    for (let i = 0; i < 5; i++) await f.callTo('i0');
    // [advance to, excluded before, probe outcome] per step; each failed probe ejects again, longer.
    const steps: [ms: number, sleep: number][] = [
      [30_000, 60_000],
      [60_000, 90_000],
      [90_000, 120_000],
    ];
    for (const [sleep, next] of steps) {
      f.clock.advance(sleep - 1);
      f.executor.instanceBreakers.poll();
      assert.equal(f.excluded('i0'), true, `still ejected 1 ms before ${sleep} ms`);
      f.clock.advance(1);
      f.executor.instanceBreakers.poll();
      assert.equal(f.excluded('i0'), false, `back after ${sleep} ms`);
      await f.callTo('i0'); // the probe fails
      assert.equal(f.excluded('i0'), true);
      assert.equal(f.executor.snapshot().find((s) => s.breaker.instance === 'i0')?.retryAt, f.clock.now() + next);
    }
    const b = new Breaker({ level: 'instance', service: 's', instance: 'x' }, defaultOutlierPolicy, { clock: f.clock });
    const sleeps: number[] = [];
    for (let i = 0; i < 12; i++) {
      if (b.state === 'closed') for (let k = 0; k < 5; k++) b.record(b.tryAcquire(), true, 1);
      else b.record(b.tryAcquire(), true, 1);
      sleeps.push(b.retryAfter());
      f.clock.advance(b.retryAfter());
    }
    assert.deepEqual(
      sleeps,
      [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300].map((s) => s * 1000),
    );
    // Healed: closed for 4 base windows takes 4 off a streak of 12, so the next trip sleeps (12 - 4 + 1) × 30 s capped.
    b.record(b.tryAcquire(), false, 1);
    assert.equal(b.state, 'closed');
    f.clock.advance(4 * 30_000);
    for (let k = 0; k < 5; k++) b.record(b.tryAcquire(), true, 1);
    assert.equal(b.retryAfter(), 270_000);
    b.record(b.tryAcquire(), false, 1); // rejected while open: no effect
    f.clock.advance(270_000);
    b.record(b.tryAcquire(), false, 1);
    f.clock.advance(3_600_000);
    for (let k = 0; k < 5; k++) b.record(b.tryAcquire(), true, 1);
    assert.equal(b.retryAfter(), 30_000, 'an hour healthy forgives everything');
  });

  it('caps the ejected share at 10% and at least one (Envoy max_ejection_percent)', async () => {
    // [instances, dead, ejected at most]
    const table: [number, number, number][] = [
      [2, 2, 1],
      [3, 3, 1],
      [10, 3, 1],
      [20, 5, 2],
      [40, 6, 4],
    ];
    for (const [size, dead, cap] of table) {
      const f = fleet(size);
      for (let d = 0; d < dead; d++) {
        f.down.add(`i${d}`);
        for (let i = 0; i < 5; i++) await f.callTo(`i${d}`);
      }
      const ejected = Array.from({ length: size }, (_, i) => `i${i}`).filter((id) => f.excluded(id)).length;
      assert.equal(ejected, cap, `${size} instances, ${dead} dead`);
    }
  });

  it('an injected fault says nothing about the instance: five injected 503s eject nothing', async () => {
    const f = fleet(3);
    const injected = new WeakSet<Response>();
    for (let i = 0; i < 5; i++) {
      await f.executor.call<Inst>({
        service: 'orders',
        method: 'GET',
        pick: () => ({ id: 'i2' }),
        send: async () => {
          const res = new Response(null, { status: 503 });
          injected.add(res);
          return res;
        },
        injected: (res) => injected.has(res),
      });
    }
    assert.equal(f.excluded('i2'), false);
  });

  it("a rule's instance breaker overrides the default; defaults off ejects nothing", async () => {
    const f = fleet(3);
    f.executor.setRules(
      'orders',
      parseBreakerRules({ rules: [{ level: 'instance', consecutiveFailures: 2, maxEjectionPercent: 50 }] }, 'breaker'),
    );
    f.down.add('i0');
    await f.callTo('i0');
    await f.callTo('i0');
    assert.equal(f.excluded('i0'), true, 'ejected after the rule’s 2, not the default 5');
    const off = fleet(3, { defaults: { outlierDetection: false } });
    off.down.add('i0');
    for (let i = 0; i < 10; i++) await off.callTo('i0');
    assert.equal(off.excluded('i0'), false);
  });

  it('the ejection cap counts instances told before the first call', async () => {
    const f = fleet(20);
    for (const d of ['i0', 'i1', 'i2']) {
      f.down.add(d);
      for (let i = 0; i < 5; i++) await f.callTo(d);
    }
    // 10% of 20: two, although only three instances were ever called.
    assert.deepEqual(['i0', 'i1', 'i2'].map(f.excluded), [true, true, false]);
  });
});
