// BlockingWatch is logic: a scripted `query` stands in for Consul, a ManualClock for time.
// Every wait below is on an event of the watch (a query made, a callback called), never
// on real time.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CancelTimer, type Clock, ManualClock } from '@meshlet/core';
import { AgentProbe } from '../src/agent-probe.js';
import { BlockingWatch, type BlockingWatchOptions } from '../src/blocking-watch.js';
import { ConsulAnswerTooLargeError, ConsulBadAnswerError, ConsulError, type ConsulResponse } from '../src/consul-client.js';

/** One query the watch made, answered by the test. */
interface Call<T> {
  readonly index: number;
  readonly waitSeconds: number;
  readonly signal: AbortSignal;
  /** Answers as Consul would: a body and its X-Consul-Index. */
  answer(index: number, body: T): void;
  fail(err: unknown): void;
}

/** A Consul that answers only when the test says so. An aborted query rejects, as fetch does. */
class ScriptedConsul<T> {
  readonly calls: Call<T>[] = [];
  readonly #waiting: { n: number; resolve: (c: Call<T>) => void }[] = [];

  readonly query = (index: number, waitSeconds: number, signal: AbortSignal): Promise<ConsulResponse<T>> =>
    new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      const call: Call<T> = {
        index,
        waitSeconds,
        signal,
        answer: (i, body) => resolve({ index: i, body, status: 200 }),
        fail: reject,
      };
      this.calls.push(call);
      for (const w of this.#waiting.filter((w) => w.n === this.calls.length)) w.resolve(call);
    });

  /** The n-th query (from 1), once the watch has made it. */
  call(n: number): Promise<Call<T>> {
    const made = this.calls[n - 1];
    if (made) return Promise.resolve(made);
    return new Promise((resolve) => this.#waiting.push({ n, resolve }));
  }
}

/** A ManualClock that also records the delay of every timer set on it. */
class RecordingClock implements Clock {
  readonly manual = new ManualClock();
  readonly delays: number[] = [];
  readonly #waiting: { n: number; resolve: () => void }[] = [];
  now(): number {
    return this.manual.now();
  }
  wallNow(): number {
    return this.manual.wallNow();
  }
  setTimeout(fn: () => void, ms: number): CancelTimer {
    this.delays.push(ms);
    for (const w of this.#waiting.filter((w) => w.n === this.delays.length)) w.resolve();
    return this.manual.setTimeout(fn, ms);
  }
  /** Resolves once `n` timers have been set. */
  timersSet(n: number): Promise<void> {
    if (this.delays.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push({ n, resolve }));
  }
  advance(ms: number): void {
    this.manual.advance(ms);
  }
  get pendingTimers(): number {
    return this.manual.pendingTimers;
  }
}

type Event<T> = { type: 'change'; value: T } | { type: 'error'; err: unknown; consecutive: number } | { type: 'recover' };

/** A watch on a scripted Consul and a recording clock, with everything it reports. */
function harness<T>(options: Partial<BlockingWatchOptions<T>> = {}) {
  const consul = new ScriptedConsul<T>();
  const clock = new RecordingClock();
  const events: Event<T>[] = [];
  const listeners = new Set<() => void>();
  const record = (e: Event<T>) => {
    events.push(e);
    for (const l of listeners) l();
  };
  const watch = new BlockingWatch<T>({
    query: consul.query,
    onChange: (value) => record({ type: 'change', value }),
    onError: (err, consecutive) => record({ type: 'error', err, consecutive }),
    onRecover: () => record({ type: 'recover' }),
    clock,
    random: () => 0.5,
    ...options,
  });
  /** Resolves once `n` events of `type` have been reported. */
  const reported = (type: Event<T>['type'], n: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (events.filter((e) => e.type === type).length >= n) {
          listeners.delete(check);
          resolve();
        }
      };
      listeners.add(check);
      check();
    });
  const of = <K extends Event<T>['type']>(type: K) => events.filter((e): e is Extract<Event<T>, { type: K }> => e.type === type);
  return { consul, clock, events, watch, reported, of };
}

describe('BlockingWatch: the index', () => {
  it('starts at 0, then passes back each X-Consul-Index with the wait time', async () => {
    const { consul, watch } = harness<string[]>({ waitSeconds: 7 });
    watch.start();
    const indexes: number[] = [];
    for (const [n, answer] of [10, 12, 12, 30].entries()) {
      const call = await consul.call(n + 1);
      indexes.push(call.index);
      assert.equal(call.waitSeconds, 7);
      call.answer(answer, ['a']);
    }
    indexes.push((await consul.call(5)).index);
    assert.deepEqual(indexes, [0, 10, 12, 12, 30]);
    watch.stop();
    await watch.done;
  });

  it('waits 25 s per query unless told otherwise', async () => {
    const { consul, watch } = harness<string[]>();
    watch.start();
    assert.equal((await consul.call(1)).waitSeconds, 25);
    watch.stop();
    await watch.done;
  });

  it('resets to 0 when the index goes backwards, then blocks on the new index', async () => {
    // Consul: "if [the index] is lower than the previous value, reset index to 0 —
    // effectively restarting the blocking loop" (a snapshot restore, a new leader…).
    const { consul, watch } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(100, ['a']);
    (await consul.call(2)).answer(40, ['a']);
    const reset = await consul.call(3);
    assert.equal(reset.index, 0, 'the query after a backwards index is a fresh, non-blocking read');
    reset.answer(41, ['a']);
    assert.equal((await consul.call(4)).index, 41);
    assert.deepEqual(
      consul.calls.map((c) => c.index),
      [0, 100, 0, 41],
    );
    watch.stop();
    await watch.done;
  });

  it('never blocks on an index below 1: an answer with index 0 is carried forward as 1', async () => {
    // Consul: "clients should sanity check that their index is at least 1 after each
    // blocking response is handled. If it is zero, clients should reset it to 1".
    const { consul, watch } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(0, ['a']); // e.g. no X-Consul-Index header at all
    assert.equal((await consul.call(2)).index, 1);
    (await consul.call(2)).answer(1, ['a']);
    assert.equal((await consul.call(3)).index, 1);
    watch.stop();
    await watch.done;
  });

  it('an index of 0 after a positive one counts as going backwards: one fresh read, then 1', async () => {
    // What the code does when both rules apply: the backwards rule resets to 0 (one
    // non-blocking read), and the answer to that read (0 again) is raised to 1.
    const { consul, watch } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(5, ['a']);
    (await consul.call(2)).answer(0, ['a']);
    (await consul.call(3)).answer(0, ['a']);
    await consul.call(4);
    assert.deepEqual(
      consul.calls.map((c) => c.index),
      [0, 5, 0, 1],
    );
    watch.stop();
    await watch.done;
  });

  it('after a failed query the next one does not block: index 0, then the new agent’s index even when lower', async () => {
    // An agent restarted without its state (a dev agent, a new cluster) answers with an index
    // below the last one seen: blocking on the old index would hold the query for the whole
    // wait while the service changes (issue 17: blind 25.9 s).
    const { consul, clock, watch, reported, of } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(37, ['a']);
    (await consul.call(2)).fail(new Error('connection refused'));
    await reported('error', 1);
    clock.advance(clock.delays.at(-1) ?? Number.NaN);
    const afterError = await consul.call(3);
    assert.equal(afterError.index, 0, 'the first query after a failure is a fresh, non-blocking read');
    afterError.answer(18, ['b']);
    assert.equal((await consul.call(4)).index, 18, 'then it blocks on the new agent’s index, lower as it is');
    assert.deepEqual(
      of('change').map((e) => e.value),
      [['a'], ['b']],
    );
    watch.stop();
    await watch.done;
  });

  it('every failure in a run resets the index, not only the first', async () => {
    const { consul, clock, watch, reported } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(50, ['a']);
    (await consul.call(2)).fail(new Error('down'));
    await reported('error', 1);
    clock.advance(clock.delays.at(-1) ?? Number.NaN);
    (await consul.call(3)).fail(new Error('down'));
    await reported('error', 2);
    clock.advance(clock.delays.at(-1) ?? Number.NaN);
    (await consul.call(4)).answer(9, ['a']);
    await consul.call(5);
    assert.deepEqual(
      consul.calls.map((c) => c.index),
      [0, 50, 0, 0, 9],
    );
    watch.stop();
    await watch.done;
  });
});

describe('BlockingWatch: changes', () => {
  it('calls onChange once per distinct content, not for a timeout or an idempotent write', async () => {
    const { consul, watch, of } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(5, []); // the first answer is delivered even when empty
    (await consul.call(2)).answer(5, []); // the wait timed out: same index, same content
    (await consul.call(3)).answer(6, []); // the index moved, the content did not
    (await consul.call(4)).answer(7, ['a']);
    (await consul.call(5)).answer(8, ['a']);
    (await consul.call(6)).answer(9, ['a', 'b']);
    (await consul.call(7)).answer(10, []);
    await consul.call(8); // the seventh answer has been handled
    assert.deepEqual(
      of('change').map((e) => e.value),
      [[], ['a'], ['a', 'b'], []],
    );
    watch.stop();
    await watch.done;
  });

  it('an answer after a failure that repeats the content is not a change', async () => {
    const { consul, clock, watch, reported, of } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(5, ['a']);
    (await consul.call(2)).fail(new Error('503'));
    await reported('error', 1);
    clock.advance(clock.delays.at(-1) ?? Number.NaN);
    (await consul.call(3)).answer(5, ['a']);
    await consul.call(4);
    assert.deepEqual(
      of('change').map((e) => e.value),
      [['a']],
    );
    watch.stop();
    await watch.done;
  });

  it('tells a change by the signature it is given', async () => {
    type Entry = { id: string; modifyIndex: number };
    const { consul, watch, of } = harness<Entry[]>({ signature: (entries) => entries.map((e) => e.id).join(',') });
    watch.start();
    (await consul.call(1)).answer(5, [{ id: 'a', modifyIndex: 1 }]);
    (await consul.call(2)).answer(6, [{ id: 'a', modifyIndex: 2 }]); // same signature
    (await consul.call(3)).answer(7, [{ id: 'b', modifyIndex: 3 }]);
    await consul.call(4);
    assert.deepEqual(
      of('change').map((e) => e.value.map((x) => x.id)),
      [['a'], ['b']],
    );
    watch.stop();
    await watch.done;
  });
});

describe('BlockingWatch: failures', () => {
  it('reports each failure with a growing count and, while Consul is unreachable, backs off 200 ms doubling to 1 s, with jitter', async () => {
    const { consul, clock, watch, reported, of } = harness<string[]>({ random: () => 0.5 });
    watch.start();
    const errors: Error[] = [];
    for (let n = 1; n <= 8; n++) {
      const err = new Error(`failure ${n}`);
      errors.push(err);
      (await consul.call(n)).fail(err);
      await reported('error', n);
      const delay = clock.delays.at(-1) ?? Number.NaN;
      // Not a moment early: the retry waits for the whole backoff.
      clock.advance(delay - 1);
      assert.equal(consul.calls.length, n, `retry ${n} went out before its backoff of ${delay} ms`);
      clock.advance(1);
      await consul.call(n + 1);
    }
    assert.deepEqual(
      of('error').map((e) => e.consecutive),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.deepEqual(
      of('error').map((e) => e.err),
      errors,
    );
    // ceiling = min(1 000, 200·2^(n-1)); delay = ceiling/2 + random·ceiling/2, random 0.5.
    // (Before issue 17 the ceiling was 10 s: a view caught up 5.7–7.5 s after Consul was back.)
    assert.deepEqual(clock.delays, [150, 300, 600, 750, 750, 750, 750, 750]);
    assert.equal(of('recover').length, 0);
    watch.stop();
    await watch.done;
  });

  it('jitters each backoff within [ceiling/2, ceiling)', async () => {
    const randoms = [0, 0.999, 0, 0.999];
    const { consul, clock, watch, reported } = harness<string[]>({ random: () => randoms.shift() ?? Number.NaN });
    watch.start();
    for (let n = 1; n <= 4; n++) {
      (await consul.call(n)).fail(new Error('down'));
      await reported('error', n);
      clock.advance(clock.delays.at(-1) ?? Number.NaN);
    }
    await consul.call(5);
    const [a, b, c, d] = clock.delays;
    assert.equal(a, 100);
    assert.ok(b !== undefined && b > 399 && b < 400, `second backoff ${b}`);
    assert.equal(c, 400);
    assert.ok(d !== undefined && d > 999 && d < 1000, `fourth backoff ${d}`);
    watch.stop();
    await watch.done;
  });

  it('a refusal (4xx, 429 included) backs off to 10 s: retrying soon would not help', async () => {
    const { consul, clock, watch, reported } = harness<string[]>({ random: () => 0.5 });
    watch.start();
    for (let n = 1; n <= 8; n++) {
      (await consul.call(n)).fail(new ConsulError('HTTP 403: Permission denied', n === 8 ? 429 : 403));
      await reported('error', n);
      clock.advance(clock.delays.at(-1) ?? Number.NaN);
    }
    await consul.call(9);
    assert.deepEqual(clock.delays, [150, 300, 600, 1200, 2400, 4800, 7500, 7500]);
    watch.stop();
    await watch.done;
  });

  it('an answer the client refused (bad shape, too large) backs off as a refusal, without waiting for the probe', async () => {
    // The agent answered: the probe would pass at once, and the same answer would come back.
    let probes = 0;
    const probe = async () => {
      probes++;
    };
    const { consul, clock, watch, reported } = harness<string[]>({ random: () => 0.5, probe });
    watch.start();
    for (let n = 1; n <= 6; n++) {
      const err =
        n % 2
          ? new ConsulBadAnswerError('the answer is an object, not a list', 200)
          : new ConsulAnswerTooLargeError('over maxBodyBytes', 200, 1);
      (await consul.call(n)).fail(err);
      await reported('error', n);
      clock.advance(clock.delays.at(-1) ?? Number.NaN);
    }
    await consul.call(7);
    assert.deepEqual(clock.delays, [150, 300, 600, 1200, 2400, 4800]);
    assert.equal(probes, 0);
    watch.stop();
    await watch.done;
  });

  it('a 5xx is an outage, as unreachable is: the short backoff', async () => {
    const { consul, clock, watch, reported } = harness<string[]>({ random: () => 0.5 });
    watch.start();
    for (let n = 1; n <= 5; n++) {
      (await consul.call(n)).fail(new ConsulError('HTTP 500: No cluster leader', 500));
      await reported('error', n);
      clock.advance(clock.delays.at(-1) ?? Number.NaN);
    }
    await consul.call(6);
    assert.deepEqual(clock.delays, [150, 300, 600, 750, 750]);
    watch.stop();
    await watch.done;
  });

  it('calls onRecover once on the first success after failures, and starts counting again', async () => {
    const { consul, clock, watch, reported, of, events } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(5, ['a']);
    for (let n = 2; n <= 4; n++) {
      (await consul.call(n)).fail(new Error('down'));
      await reported('error', n - 1);
      clock.advance(clock.delays.at(-1) ?? Number.NaN);
    }
    (await consul.call(5)).answer(6, ['a', 'b']);
    (await consul.call(6)).answer(7, ['a', 'b']);
    (await consul.call(7)).fail(new Error('down again'));
    await reported('error', 4);
    assert.deepEqual(
      events.map((e) => (e.type === 'error' ? `error ${e.consecutive}` : e.type)),
      ['change', 'error 1', 'error 2', 'error 3', 'recover', 'change', 'error 1'],
    );
    assert.equal(of('recover').length, 1);
    // A new run of failures backs off from the minimum again.
    assert.deepEqual(clock.delays, [150, 300, 600, 150]);
    watch.stop();
    await watch.done;
  });

  it('works without onError and onRecover', async () => {
    const consul = new ScriptedConsul<string[]>();
    const clock = new RecordingClock();
    const changes: string[][] = [];
    const watch = new BlockingWatch<string[]>({ query: consul.query, onChange: (v) => changes.push(v), clock, random: () => 0 }).start();
    (await consul.call(1)).fail(new Error('down'));
    await clock.timersSet(1); // the backoff
    clock.advance(100);
    (await consul.call(2)).answer(3, ['a']);
    await consul.call(3);
    assert.deepEqual(changes, [['a']]);
    watch.stop();
    await watch.done;
  });
});

describe('BlockingWatch: rate limit', () => {
  it('answers that come back at once are limited to a burst of 10, then 10 per second', async () => {
    const { consul, clock, watch } = harness<string[]>();
    watch.start();
    for (let n = 1; n <= 10; n++) (await consul.call(n)).answer(n, ['a']);
    // The eleventh query waits for a token: 100 ms at 10 per second.
    await clock.timersSet(1);
    assert.deepEqual(clock.delays, [100]);
    clock.advance(99);
    assert.equal(consul.calls.length, 10);
    clock.advance(1);
    assert.equal((await consul.call(11)).index, 10);
    watch.stop();
    await watch.done;
  });

  it('over 5 s of answers that come back at once, makes 60 queries: the burst of 10, then one every 100 ms', async () => {
    // Simulated time: each timer the watch sets fires as soon as it is set, the clock moved
    // to its deadline; the first timer past the horizon ends the run. (The slept time was
    // credited twice, once by the sleep and again at the next refill: 110 queries, 22/s.)
    const horizon = 5_000;
    let now = 0;
    let ended!: () => void;
    const end = new Promise<void>((resolve) => {
      ended = resolve;
    });
    const clock: Clock = {
      now: () => now,
      wallNow: () => now,
      setTimeout(fn, ms) {
        if (now + ms > horizon) {
          ended();
          return () => {};
        }
        let cancelled = false;
        queueMicrotask(() => {
          if (cancelled) return;
          now += ms;
          fn();
        });
        return () => {
          cancelled = true;
        };
      },
    };
    const at: number[] = [];
    const watch = new BlockingWatch<string[]>({
      query: async () => {
        at.push(now);
        return { index: at.length, body: ['a'], status: 200 };
      },
      onChange: () => {},
      clock,
    }).start();
    await end;
    watch.stop();
    await watch.done;
    assert.equal(at.length, 60, `queries over ${horizon} ms`);
    assert.deepEqual(at.slice(0, 10), Array(10).fill(0));
    assert.deepEqual(
      at.slice(10),
      Array.from({ length: 50 }, (_, i) => (i + 1) * 100),
    );
  });
});

describe('BlockingWatch: stop()', () => {
  it('aborts the query in flight and ends the loop without reporting an error', async () => {
    const { consul, clock, watch, events } = harness<string[]>();
    watch.start();
    (await consul.call(1)).answer(5, ['a']);
    const inFlight = await consul.call(2);
    assert.equal(inFlight.signal.aborted, false);
    watch.stop();
    assert.equal(inFlight.signal.aborted, true);
    await watch.done;
    assert.equal(consul.calls.length, 2);
    assert.deepEqual(
      events.map((e) => e.type),
      ['change'],
    );
    assert.equal(clock.pendingTimers, 0);
    clock.advance(60_000);
    assert.equal(consul.calls.length, 2);
  });

  it('ends a backoff at once: no retry, no timer left', async () => {
    const { consul, clock, watch, reported } = harness<string[]>();
    watch.start();
    (await consul.call(1)).fail(new Error('down'));
    await reported('error', 1);
    assert.equal(clock.pendingTimers, 1);
    watch.stop();
    await watch.done; // without the clock moving
    assert.equal(clock.pendingTimers, 0);
    clock.advance(60_000);
    assert.equal(consul.calls.length, 1);
  });

  it('ends a wait for a rate-limit token at once', async () => {
    const { consul, clock, watch } = harness<string[]>();
    watch.start();
    for (let n = 1; n <= 10; n++) (await consul.call(n)).answer(n, ['a']);
    await clock.timersSet(1);
    watch.stop();
    await watch.done;
    assert.equal(clock.pendingTimers, 0);
    clock.advance(60_000);
    assert.equal(consul.calls.length, 10);
  });

  it('a watch stopped before it starts never queries', async () => {
    const { consul, watch } = harness<string[]>();
    watch.stop();
    watch.start();
    await watch.done;
    assert.equal(consul.calls.length, 0);
  });

  it('start() twice runs one loop', async () => {
    const { consul, watch } = harness<string[]>();
    watch.start();
    watch.start();
    (await consul.call(1)).answer(3, ['a']);
    await consul.call(2);
    assert.deepEqual(
      consul.calls.map((c) => c.index),
      [0, 3],
    );
    watch.stop();
    await watch.done;
  });
});

/** A scripted async function: each call waits until the test settles it. */
class Script {
  readonly calls: { signal: AbortSignal; pass: () => void; fail: (err: unknown) => void }[] = [];
  readonly #waiting: { n: number; resolve: () => void }[] = [];
  readonly fn = (signal: AbortSignal): Promise<void> =>
    new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      this.calls.push({ signal, pass: resolve, fail: reject });
      for (const w of this.#waiting.filter((w) => w.n === this.calls.length)) w.resolve();
    });
  /** The n-th call (from 1), once made. */
  async call(n: number) {
    if (this.calls.length < n) await new Promise<void>((resolve) => this.#waiting.push({ n, resolve }));
    return this.calls[n - 1] as Script['calls'][number];
  }
}

describe('BlockingWatch: waiting for the agent (probe)', () => {
  it('after an outage-like failure and its backoff, waits for the probe before querying again', async () => {
    const probe = new Script();
    const { consul, clock, watch, reported } = harness<string[]>({ probe: probe.fn });
    watch.start();
    (await consul.call(1)).answer(5, ['a']);
    (await consul.call(2)).fail(new Error('connection refused'));
    await reported('error', 1);
    clock.advance(clock.delays.at(-1) ?? Number.NaN);
    const waiting = await probe.call(1);
    clock.advance(60_000);
    assert.equal(consul.calls.length, 2, 'no query while the agent has not answered the probe');
    waiting.pass();
    assert.equal((await consul.call(3)).index, 0);
    watch.stop();
    await watch.done;
  });

  it('a refusal (4xx) does not wait for the probe: the agent is answering', async () => {
    const probe = new Script();
    const { consul, clock, watch, reported } = harness<string[]>({ probe: probe.fn });
    watch.start();
    (await consul.call(1)).fail(new ConsulError('HTTP 403: ACL not found', 403));
    await reported('error', 1);
    clock.advance(clock.delays.at(-1) ?? Number.NaN);
    await consul.call(2);
    assert.equal(probe.calls.length, 0);
    watch.stop();
    await watch.done;
  });

  it('stop() ends a wait for the probe: no query after it', async () => {
    const probe = new Script();
    const { consul, clock, watch, reported } = harness<string[]>({ probe: probe.fn });
    watch.start();
    (await consul.call(1)).fail(new Error('down'));
    await reported('error', 1);
    clock.advance(clock.delays.at(-1) ?? Number.NaN);
    const waiting = await probe.call(1);
    watch.stop();
    assert.equal(waiting.signal.aborted, true);
    await watch.done;
    assert.equal(consul.calls.length, 1);
  });

  it('20 watches on one AgentProbe: one check per period while the agent is down, then every watch resyncs at once', async () => {
    const consul = new ScriptedConsul<string[]>();
    const clock = new RecordingClock();
    const check = new Script();
    const probe = new AgentProbe({ check: check.fn, clock, random: () => 0.5 });
    const watches = Array.from({ length: 20 }, () =>
      new BlockingWatch<string[]>({
        query: consul.query,
        onChange: () => {},
        clock,
        random: () => 0.5,
        probe: (signal) => probe.wait(signal),
      }).start(),
    );
    for (let n = 1; n <= 20; n++) (await consul.call(n)).fail(new Error('connection refused'));
    await clock.timersSet(20); // every watch's first backoff, 150 ms
    clock.advance(150);
    (await check.call(1)).fail(new Error('connection refused'));
    await clock.timersSet(21); // the probe's pause: 500 + 0.5·500 ms
    assert.equal(clock.delays.at(-1), 750);
    clock.advance(749);
    assert.equal(check.calls.length, 1);
    clock.advance(1);
    (await check.call(2)).pass();
    await consul.call(40);
    assert.equal(probe.checks, 2, 'one check per period for 20 watches');
    assert.equal(consul.calls.length, 40, 'each watch queried once again, not once per period');
    assert.ok(
      consul.calls.slice(20).every((c) => c.index === 0),
      'the resync reads do not block',
    );
    for (const w of watches) w.stop();
    await Promise.all(watches.map((w) => w.done));
  });

  it('AgentProbe: a round nobody waits for any more ends after its check', async () => {
    const clock = new RecordingClock();
    const check = new Script();
    const probe = new AgentProbe({ check: check.fn, clock, random: () => 0 });
    const stop = new AbortController();
    const waited = probe.wait(stop.signal);
    const first = await check.call(1);
    stop.abort(new Error('stopped'));
    await assert.rejects(waited, /stopped/);
    first.fail(new Error('down'));
    // Give the round its chance to pause and check again; with no waiter it must not.
    await new Promise((r) => setImmediate(r));
    clock.advance(10_000);
    await new Promise((r) => setImmediate(r));
    assert.equal(check.calls.length, 1);
    assert.equal(clock.pendingTimers, 0);
  });
});
